"""TimeSformer (Bertasius et al., 2021) through Hugging Face ``transformers``, for any clip length.

Why a wrapper: the embeddings of ``TimesformerForVideoClassification`` take T from the input
(and interpolate the time embeddings when T differs from the checkpoint's), but every
``TimesformerLayer`` regroups tokens with ``self.config.num_frames`` and
``self.config.image_size``. Given T=4 frames of 16 patches to a model configured for 8, the
65 tokens still reshape without error, as 8 "patches" of 8 "frames": temporal attention then
runs over the tokens of two patches at once, spatial attention over tokens of different frames,
and the logits are silently wrong. :class:`VideoClassifier` sets the config to the input's T and size for the duration of
each forward, so a clip cut to any number of frames is grouped correctly::

    tokens after embedding, T=4, 2x2 patches (p = patch, f = frame), CLS first:
        CLS p0f0 p0f1 p0f2 p0f3 p1f0 ... p3f3       (patch-major, as HF lays them out)
    temporal attention groups, correct (num_frames=4):  [p0f0 p0f1 p0f2 p0f3] ...
    with config.num_frames=8 (wrong):                   [p0f0 p0f1 p0f2 p0f3 p1f0 p1f1 p1f2 p1f3] ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TimesformerConfig, TimesformerForVideoClassification

from inforates.models._registry import (
    ARCHS,
    MODELS,
    Arch,
    ModelCfg,
    ModelError,
    _first_line,
)

log = logging.getLogger(__name__)

# Normalisation of the facebook/timesformer-* checkpoints: their preprocessor_config.json
# (VideoMAEImageProcessor; facebook/timesformer-base-finetuned-k400 commit 4022b66 "update
# processor params", Dec 2022) sets image_mean [0.45]*3 and image_std [0.225]*3, the values of
# the original TimeSformer/SlowFast training config (_C.DATA.MEAN / _C.DATA.STD). The class
# defaults of transformers' TimesformerVideoProcessor (IMAGENET_DEFAULT_MEAN/STD, 0.485/0.229...)
# never apply to those checkpoints, because from_pretrained reads the JSON.
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

MODELS.add(
    "timesformer-base",  # the paper's TimeSformer (divided space-time), 8 x 224^2
    ModelCfg(
        name="timesformer-base", arch="timesformer", num_frames=8, image_size=224, patch_size=16,
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
        attention_type="divided_space_time", mean=KINETICS_MEAN, std=KINETICS_STD,
    ),
)
MODELS.add(
    # Small enough to train from scratch on a CPU in a minute or two. Measured on the
    # synthetic dataset (README): with 8x8 patches and divided attention a from-scratch model
    # learned which objects move but not the direction or rate (test accuracy ~0.5); one
    # token per frame (patch = frame) with joint space-time attention and non-zero initial
    # time embeddings reaches >0.9 in the same budget.
    "timesformer-tiny",
    ModelCfg(
        name="timesformer-tiny", arch="timesformer", num_frames=8, image_size=32, patch_size=32,
        hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128,
        attention_type="joint_space_time", mean=KINETICS_MEAN, std=KINETICS_STD,
    ),
)

@contextlib.contextmanager
def _quiet_hf():
    """Hide transformers' per-file progress bars ("Loading weights", "Writing model shards")
    for the duration: a checkpoint written every epoch would otherwise print one each time."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


_METADATA_KEY = "inforates"  # the ModelCfg, stored inside the HF config.json


class _ShapeOverride:
    """Sets ``num_frames``/``image_size`` on HF config objects while a forward runs.

    Shared (by reference) by ``nn.DataParallel`` replicas, which run concurrently in threads
    on the same config objects: the first forward in sets the values, the last one out
    restores them, and a concurrent forward with a different shape is refused rather than
    misgrouped. Forwards on one model with one shape at a time need none of this.
    """

    def __init__(self, configs: list[TimesformerConfig]) -> None:
        self.configs = configs
        self._lock = threading.Lock()
        self._active: tuple[int, int] | None = None
        self._depth = 0
        self._saved: list[tuple[int, Any]] = []

    @contextlib.contextmanager
    def __call__(self, num_frames: int, image_size: int) -> Iterator[None]:
        shape = (num_frames, image_size)
        with self._lock:
            if self._depth and self._active != shape:
                raise RuntimeError(
                    f"concurrent forwards with different clip shapes {self._active} and {shape} "
                    "on one TimeSformer; run them one after the other"
                )
            if not self._depth:
                self._saved = [(c.num_frames, c.image_size) for c in self.configs]
                for c in self.configs:
                    c.num_frames, c.image_size = shape
                self._active = shape
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if not self._depth:
                    for c, (frames, size) in zip(self.configs, self._saved):
                        c.num_frames, c.image_size = frames, size
                    self._active = None

    def __getstate__(self) -> dict[str, Any]:  # deepcopy / pickle: a lock cannot be copied
        return {"configs": self.configs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["configs"])  # type: ignore[misc]


class ClipClassifier(nn.Module):
    """What every model wrapper offers: ``(B, T, C, H, W)`` clips in, logits out.

    Subclasses set ``hf`` (a Hugging Face ``PreTrainedModel`` with ``id2label`` in its config),
    ``cfg`` (the :class:`ModelCfg`) and ``name``, and implement :meth:`_logits`; input checks,
    label names and saving live here once.
    """

    hf: Any
    cfg: ModelCfg
    name: str

    @property
    def num_frames(self) -> int:
        return self.cfg.num_frames

    @property
    def label_names(self) -> list[str]:
        id2label = self.hf.config.id2label
        return [id2label[i] for i in range(len(id2label))]

    @property
    def num_labels(self) -> int:
        return len(self.hf.config.id2label)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``video``: (B, T, C, H, W) float, normalised with ``cfg.mean``/``cfg.std``; T >= 1.

        H == W must be a multiple of the patch size; a size other than ``cfg.image_size``
        works (position embeddings are interpolated) but is not what the model was trained on.
        """
        channels, patch = self.hf.config.num_channels, self.cfg.patch_size
        if video.ndim != 5 or video.shape[2] != channels or video.shape[1] < 1:
            raise ValueError(
                f"video must be (B, T, {channels}, H, W) with T >= 1, got shape {tuple(video.shape)}"
            )
        height, width = video.shape[-2:]
        if height != width or height % patch:
            raise ValueError(
                f"frames must be square with a side that is a multiple of {patch}, got {height}x{width}"
            )
        return self._logits(video)

    def _logits(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` (with labels and the :class:`ModelCfg`) and ``model.safetensors``."""
        directory = Path(directory)
        setattr(self.hf.config, _METADATA_KEY, self.cfg.to_dict())
        with _quiet_hf():
            self.hf.save_pretrained(directory)
        return directory


class VideoClassifier(ClipClassifier):
    """A TimeSformer classifier taking ``(B, T, C, H, W)`` clips of any T, returning logits.

    Attributes: ``cfg`` (the :class:`ModelCfg`; its ``image_size``, ``mean`` and ``std`` are
    what the loader must produce), ``label_names``, ``num_frames`` (the checkpoint's clip
    length), ``name`` (preset, directory or Hub id it came from), ``hf`` (the wrapped
    ``TimesformerForVideoClassification``; call it directly only with T == ``num_frames``).
    """

    def __init__(self, hf: TimesformerForVideoClassification, cfg: ModelCfg, *, name: str) -> None:
        super().__init__()
        if hf.config.num_frames != cfg.num_frames or hf.config.image_size != cfg.image_size:
            raise ValueError(
                f"HF config ({hf.config.num_frames} frames x {hf.config.image_size}px) disagrees "
                f"with {cfg.name} ({cfg.num_frames} frames x {cfg.image_size}px)"
            )
        self.hf = hf
        self.cfg = cfg
        self.name = name
        # Every config object the layers read (one in practice; collected so that a future
        # transformers copying configs per submodule is still covered).
        configs = {id(m.config): m.config for m in hf.modules()
                   if isinstance(getattr(m, "config", None), TimesformerConfig)}
        self._shape_override = _ShapeOverride(list(configs.values()))

    def _logits(self, video: torch.Tensor) -> torch.Tensor:
        with self._shape_override(int(video.shape[1]), int(video.shape[-1])):
            return self.hf(pixel_values=video, return_dict=True).logits


def vit_config_kwargs(cfg: ModelCfg, label_names: list[str]) -> dict[str, Any]:
    """The ViT-shaped keys every HF config we build shares (TimeSformer, per-frame ViT)."""
    return dict(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
    )


def _hf_config(cfg: ModelCfg, label_names: list[str]) -> TimesformerConfig:
    return TimesformerConfig(
        num_frames=cfg.num_frames, attention_type=cfg.attention_type, **vit_config_kwargs(cfg, label_names)
    )


def _cfg_from_hf(config: TimesformerConfig, *, name: str, mean: tuple, std: tuple) -> ModelCfg:
    return ModelCfg(
        name=name, arch="timesformer", num_frames=config.num_frames, image_size=config.image_size,
        patch_size=config.patch_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size, attention_type=config.attention_type,
        mean=mean, std=std,
    )


# HF initialises TimeSformer's time embeddings to zero (the paper fine-tunes from image
# weights, where that is harmless). From scratch, zero time embeddings leave every frame
# token order-blind at the start and a tiny model never learned temporal order (direction,
# early vs late) in our measurements; a random start fixes it.
TIME_EMBEDDING_INIT_STD = 0.5


def build_timesformer(cfg: ModelCfg, label_names: list[str]) -> VideoClassifier:
    hf = TimesformerForVideoClassification(_hf_config(cfg, label_names)).eval()
    with torch.no_grad():
        torch.nn.init.trunc_normal_(hf.timesformer.embeddings.time_embeddings, std=TIME_EMBEDDING_INIT_STD)
    return VideoClassifier(hf, cfg, name=cfg.name)


def from_checkpoint(model_cls: type, source: str, config: Any, label_names: list[str] | None) -> Any:
    """``model_cls.from_pretrained(source)`` with the labels of ``label_names`` (a Hugging Face
    classifier whose ``config`` was read from ``source``).

    ``None`` or the checkpoint's own names keep its head; another number of labels gets a new
    head; the same number under other names is an error (a silent relabel would scramble the
    classes), unless the checkpoint's names are the Hugging Face placeholders ``LABEL_i``.
    """
    ckpt_labels = [config.id2label[i] for i in range(len(config.id2label))]
    new_head = False
    if label_names is not None and label_names != ckpt_labels:
        generic = ckpt_labels == [f"LABEL_{i}" for i in range(len(ckpt_labels))]
        if len(label_names) != len(ckpt_labels):
            new_head = True
            log.info("%s: new classification head, %d -> %d labels", source, len(ckpt_labels),
                     len(label_names))
        elif not generic:
            first = next(i for i, (a, b) in enumerate(zip(label_names, ckpt_labels)) if a != b)
            raise ModelError(
                f"checkpoint {source} has the same number of labels but different names "
                f"(index {first}: {ckpt_labels[first]!r} in the checkpoint, {label_names[first]!r} given)"
            )
        config.id2label = dict(enumerate(label_names))
        config.label2id = {n: i for i, n in enumerate(label_names)}
    try:
        with _quiet_hf():
            return model_cls.from_pretrained(source, config=config, ignore_mismatched_sizes=new_head)
    except OSError as err:
        raise ModelError(f"checkpoint {source}: weights could not be loaded ({_first_line(err)})") from err


def load_timesformer(source: str, label_names: list[str] | None) -> VideoClassifier:
    try:
        config = TimesformerConfig.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"checkpoint {source}: bad TimeSformer config ({_first_line(err)})") from err

    hf = from_checkpoint(TimesformerForVideoClassification, source, config, label_names)
    hf.eval()

    metadata = getattr(config, _METADATA_KEY, None)
    if metadata is not None:
        try:
            saved = ModelCfg.from_dict(dict(metadata))
        except (TypeError, ValueError) as err:
            raise ModelError(f"checkpoint {source}: bad inforates metadata ({err})") from err
        cfg = _cfg_from_hf(config, name=saved.name, mean=saved.mean, std=saved.std)
        if cfg != saved:
            raise ModelError(f"checkpoint {source}: inforates metadata disagrees with config.json")
    else:
        mean, std = _checkpoint_normalisation(source)
        cfg = _cfg_from_hf(config, name=source, mean=mean, std=std)
    return VideoClassifier(hf, cfg, name=source)


def _checkpoint_normalisation(source: str) -> tuple[tuple, tuple]:
    """mean/std from the checkpoint's preprocessor_config.json, else the facebook defaults."""
    local = Path(source) / "preprocessor_config.json"
    if local.is_file():
        path: str | None = str(local)
    elif Path(source).is_dir():
        path = None
    else:
        from transformers.utils import cached_file

        try:
            path = cached_file(source, "preprocessor_config.json",
                               _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
    if path is None:
        return KINETICS_MEAN, KINETICS_STD
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"checkpoint {source}: cannot read preprocessor_config.json ({err})") from err
    mean, std = data.get("image_mean", KINETICS_MEAN), data.get("image_std", KINETICS_STD)
    if isinstance(mean, (int, float)):
        mean = (mean,) * 3
    if isinstance(std, (int, float)):
        std = (std,) * 3
    return tuple(mean), tuple(std)


ARCHS.add("timesformer", Arch(build=build_timesformer, load=load_timesformer))
