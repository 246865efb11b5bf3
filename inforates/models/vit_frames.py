"""A per-frame ViT with temporal average pooling: the order-blind contrast to TimeSformer.

Every frame goes through the same image ViT on its own (the B*T frames as one batch); the CLS
features are averaged over time, then one linear head classifies the average::

    clip (B, T, C, H, W) -> (B*T, C, H, W) -> ViT -> CLS (B*T, D) -> (B, T, D) -> mean over T
                                                                  -> (B, D) -> Linear -> (B, K)

There are no time embeddings and no attention across frames, so any T works and the logits
do not depend on frame order: the model can tell *what* is in a clip and how much of it, but
not clockwise from counter-clockwise, or an early flash from a late one. Comparing it with
TimeSformer over coverage x stride separates what a task needs from appearance alone from
what it needs from time.

Checkpoints are ordinary Hugging Face ones (``model.safetensors`` + ``config.json`` with
``model_type: "vit"``, backbone keys ``vit.*`` and head ``classifier.*`` as in
``ViTForImageClassification``). ``load_model`` tells them apart from an image ViT by the
``inforates`` metadata (``arch: "vit-frames"``), never by a path or name.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import ViTConfig, ViTModel
from transformers.models.vit.modeling_vit import ViTPreTrainedModel

from inforates.models._registry import ARCHS, MODELS, Arch, ModelCfg, ModelError, _first_line
from inforates.models.timesformer import (
    _METADATA_KEY, KINETICS_MEAN, KINETICS_STD, ClipClassifier, from_checkpoint, vit_config_kwargs,
)


ARCH = "vit-frames"

MODELS.add(
    "vit-frames-base",  # ViT-B/16 on each of 8 frames (8 is only the default clip length)
    ModelCfg(
        name="vit-frames-base", arch=ARCH, num_frames=8, image_size=224, patch_size=16,
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
        attention_type="space_only", mean=KINETICS_MEAN, std=KINETICS_STD,
    ),
)
MODELS.add(
    # Sized like timesformer-tiny (width, depth, heads, MLP), but 8x8 patches: one token per
    # frame would leave the ViT nothing to attend over.
    "vit-frames-tiny",
    ModelCfg(
        name="vit-frames-tiny", arch=ARCH, num_frames=8, image_size=32, patch_size=8,
        hidden_size=64, num_layers=3, num_heads=4, intermediate_size=128,
        attention_type="space_only", mean=KINETICS_MEAN, std=KINETICS_STD,
    ),
)


class FrameViTClassifier(ViTPreTrainedModel):
    """``ViTModel`` on each frame, CLS features averaged over T, linear head: (B, T, C, H, W) -> logits.

    A Hugging Face ``PreTrainedModel`` (``save_pretrained``/``from_pretrained``, safetensors,
    ``ignore_mismatched_sizes`` for a new head); :class:`FrameVideoClassifier` wraps it with the
    inforates interface and input checks.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config)
        self.vit = ViTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def frame_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, D): the final-layer-norm CLS token of every frame."""
        batch, frames = pixel_values.shape[:2]
        height = pixel_values.shape[-1]
        hidden = self.vit(
            pixel_values=pixel_values.flatten(0, 1),
            interpolate_pos_encoding=height != self.config.image_size,
        ).last_hidden_state
        return hidden[:, 0].unflatten(0, (batch, frames))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.frame_features(pixel_values).mean(dim=1))


class FrameVideoClassifier(ClipClassifier):
    """The per-frame ViT with the interface of :class:`~inforates.models.VideoClassifier`.

    Attributes: ``cfg`` (the :class:`ModelCfg`; ``num_frames`` is only the default clip
    length, there are no time embeddings), ``label_names``, ``num_labels``, ``num_frames``,
    ``name`` (preset, directory or Hub id it came from), ``hf`` (the
    :class:`FrameViTClassifier`: backbone, head and ``ViTConfig``; any T is fine).
    """

    def __init__(self, hf: FrameViTClassifier, cfg: ModelCfg, *, name: str) -> None:
        super().__init__()
        if cfg.arch != ARCH:
            raise ValueError(f"{cfg.name} is a {cfg.arch!r} model, not {ARCH!r}")
        if hf.config.image_size != cfg.image_size or hf.config.patch_size != cfg.patch_size:
            raise ValueError(
                f"HF config ({hf.config.image_size}px, patch {hf.config.patch_size}) disagrees "
                f"with {cfg.name} ({cfg.image_size}px, patch {cfg.patch_size})"
            )
        self.hf = hf
        self.cfg = cfg
        self.name = name

    def _logits(self, video: torch.Tensor) -> torch.Tensor:
        return self.hf(video)


def _hf_config(cfg: ModelCfg, label_names: list[str]) -> ViTConfig:
    return ViTConfig(**vit_config_kwargs(cfg, label_names))


def _cfg_from_hf(config: ViTConfig, saved: ModelCfg) -> ModelCfg:
    """The ModelCfg config.json describes; name, num_frames and mean/std only live in ``saved``."""
    return ModelCfg(
        name=saved.name, arch=ARCH, num_frames=saved.num_frames, image_size=config.image_size,
        patch_size=config.patch_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size, attention_type="space_only",
        mean=saved.mean, std=saved.std,
    )


def build_vit_frames(cfg: ModelCfg, label_names: list[str]) -> FrameVideoClassifier:
    hf = FrameViTClassifier(_hf_config(cfg, label_names)).eval()
    return FrameVideoClassifier(hf, cfg, name=cfg.name)


def load_vit_frames(source: str, label_names: list[str] | None) -> FrameVideoClassifier:
    try:
        config = ViTConfig.from_pretrained(source)
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"checkpoint {source}: bad ViT config ({_first_line(err)})") from err

    # load_model only dispatches here on this metadata, so it is present; a bad one is an error.
    try:
        saved = ModelCfg.from_dict(dict(getattr(config, _METADATA_KEY)))
    except (AttributeError, TypeError, ValueError) as err:
        raise ModelError(f"checkpoint {source}: bad inforates metadata ({err})") from err
    if _cfg_from_hf(config, saved) != saved:
        raise ModelError(f"checkpoint {source}: inforates metadata disagrees with config.json")

    hf = from_checkpoint(FrameViTClassifier, source, config, label_names)
    return FrameVideoClassifier(hf.eval(), saved, name=source)


ARCHS.add(ARCH, Arch(build=build_vit_frames, load=load_vit_frames))
