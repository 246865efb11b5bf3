"""Model presets, architectures, and the two ways to get a model: build or load.

Two registries, one per kind of thing:

* ``MODELS`` maps a preset name (``timesformer-tiny``) to a :class:`ModelCfg`: the shape of the
  network plus the preprocessing (image size, mean/std) a loader must apply for it.
* ``ARCHS`` maps an architecture name (``timesformer``, ``vit-frames``; the ``arch`` of the
  inforates metadata in a checkpoint's ``config.json``, else its Hugging Face ``model_type``)
  to an :class:`Arch`: how to build it with
  random weights and how to load it from a checkpoint. A second architecture is one more
  ``ARCHS.add`` call, never an ``if arch == ...`` branch here.

``load_model`` resolves a name in a fixed order: preset, existing local directory, missing
local path (an error), Hugging Face Hub id.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

import torch

from inforates.registry import Registry

if TYPE_CHECKING:
    from inforates.models.timesformer import VideoClassifier

AttentionType = Literal["divided_space_time", "space_only", "joint_space_time"]


class ModelError(ValueError):
    """A model cannot be built or loaded; the message is one line naming what and why."""


@dataclass(frozen=True)
class ModelCfg:
    """Everything fixed about a model before it sees data (like timm's ``PretrainedCfg``).

    ``mean``/``std`` are per RGB channel in [0, 1] units: a loader scales pixels to [0, 1],
    then applies ``(x - mean) / std``. ``num_frames`` is the clip length the checkpoint was
    trained with (the size of its time embeddings); the model still accepts any T.
    """

    name: str
    arch: str
    num_frames: int
    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    attention_type: AttentionType
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        for field in ("num_frames", "image_size", "patch_size", "hidden_size", "num_layers",
                      "num_heads", "intermediate_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} ({value!r}) must be a positive integer")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})"
            )
        if self.attention_type not in ("divided_space_time", "space_only", "joint_space_time"):
            raise ValueError(f"attention_type ({self.attention_type!r}) is not a TimeSformer attention")
        for field in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, field))
            if len(value) != 3:
                raise ValueError(f"{field} ({value}) must have 3 values (R, G, B)")
            object.__setattr__(self, field, value)  # lists from JSON become tuples
        if min(self.std) <= 0:
            raise ValueError(f"std ({self.std}) must be positive")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCfg:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelCfg keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Arch:
    """How to make one architecture.

    ``build(cfg, label_names)`` returns a randomly initialised model (seeding is the
    caller's job). ``load(source, label_names)`` loads a checkpoint from a local directory or
    Hub id whose ``config.json`` names this architecture (inforates ``arch``, else
    ``model_type``); ``label_names=None`` keeps the checkpoint's labels, a different number of
    labels gets a new head.
    """

    build: Callable[[ModelCfg, list[str]], VideoClassifier]
    load: Callable[[str, list[str] | None], VideoClassifier]


MODELS: Registry[ModelCfg] = Registry("model")
ARCHS: Registry[Arch] = Registry("architecture")


def check_label_names(label_names: Sequence[str]) -> list[str]:
    if isinstance(label_names, str):
        raise ValueError(f"label_names must be a sequence of names, not the string {label_names!r}")
    names = list(label_names)
    if not names:
        raise ValueError("label_names is empty")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"label name {name!r} must be a non-empty string")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"label name {name!r} appears twice")
        seen.add(name)
    return names


def build_model(
    preset: str,
    *,
    label_names: Sequence[str],
    num_frames: int | None = None,
    seed: int | None = None,
) -> VideoClassifier:
    """A randomly initialised model of a registered preset.

    ``num_frames`` overrides the preset's clip length (the size of the time embeddings);
    ``seed`` makes the weights reproducible without touching the global RNG.
    """
    cfg = MODELS.get(preset)
    labels = check_label_names(label_names)
    if num_frames is not None:
        cfg = dataclasses.replace(cfg, num_frames=num_frames)
    arch = ARCHS.get(cfg.arch)
    if seed is None:
        return arch.build(cfg, labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return arch.build(cfg, labels)


def load_model(name_or_path: str, *, label_names: Sequence[str] | None = None) -> VideoClassifier:
    """A preset (random weights), a local checkpoint directory, or a Hugging Face Hub id.

    ``label_names`` is required for a preset. For a checkpoint it names the classes to
    predict: the same number as the checkpoint keeps its head, a different number replaces
    the head with a new random one (fine-tuning a Kinetics-400 checkpoint on UCF-101).
    """
    labels = None if label_names is None else check_label_names(label_names)
    if name_or_path in MODELS:
        if labels is None:
            raise ModelError(f"preset {name_or_path!r} has random weights; pass label_names")
        return build_model(name_or_path, label_names=labels)

    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"checkpoint {path} is a file, expected a directory with config.json")
        source, config_file = str(path), path / "config.json"
        if not config_file.is_file():
            raise ModelError(f"checkpoint {path} has no config.json")
    elif _looks_like_path(name_or_path):
        raise ModelError(f"checkpoint not found: {name_or_path}")
    else:
        source, config_file = name_or_path, Path(_hub_file(name_or_path, "config.json"))

    arch = _read_arch(config_file, source)
    if arch not in ARCHS:
        raise ModelError(
            f"checkpoint {source} is a {arch!r} model, expected {' or '.join(ARCHS.names())}"
        )
    return ARCHS.get(arch).load(source, labels)


def _looks_like_path(name: str) -> bool:
    """True for things only a filesystem path looks like.

    A Hub id is ``name`` or ``owner/name`` (one ``/``), so a single ``/`` does not make a
    path on POSIX; an absolute path, a leading ``.`` or ``~``, two or more ``/``, or the
    platform's own separator where that is not ``/`` do.
    """
    if name.startswith((".", "~")) or os.path.isabs(name) or name.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in name


def _hub_file(repo_id: str, filename: str) -> str:
    """Local path of ``filename`` from Hub repo ``repo_id`` (cached or downloaded)."""
    from transformers.utils import cached_file

    try:
        resolved = cached_file(repo_id, filename)
    except OSError as err:
        raise ModelError(
            f"weights for {repo_id!r} could not be loaded: it is not a preset "
            f"({', '.join(MODELS.names())}) or a local directory, and the Hugging Face Hub "
            f"failed ({_first_line(err)}); without network, download it elsewhere and pass "
            "the directory, or set HF_HUB_OFFLINE=1 to use only the local cache"
        ) from err
    if resolved is None:
        raise ModelError(f"Hub repo {repo_id!r} has no {filename}")
    return resolved


def _read_arch(config_file: Path, source: str) -> str:
    """The architecture a checkpoint's config.json names: the ``arch`` of its inforates
    metadata when there is one (a per-frame ViT saves as HF ``model_type`` "vit", like any
    image ViT), else its ``model_type`` (a plain Hugging Face checkpoint)."""
    try:
        data = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"checkpoint {source}: cannot read config.json ({_first_line(err)})") from err
    metadata = data.get("inforates") if isinstance(data, dict) else None
    if isinstance(metadata, dict) and isinstance(metadata.get("arch"), str):
        return metadata["arch"]
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if not isinstance(model_type, str):
        raise ModelError(f"checkpoint {source}: config.json has no model_type")
    return model_type


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
