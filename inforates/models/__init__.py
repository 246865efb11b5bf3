"""Video models: presets (``MODELS``), architectures (``ARCHS``), build and load.

A model takes ``(B, T, C, H, W)`` clips, normalised with its ``cfg.mean``/``cfg.std``, for any
clip length T, and returns ``(B, num_labels)`` logits.
"""

from inforates.models import timesformer as _timesformer  # noqa: F401  (registers presets)
from inforates.models import vit_frames as _vit_frames  # noqa: F401  (registers presets)
from inforates.models._registry import (
    ARCHS,
    MODELS,
    Arch,
    ModelCfg,
    ModelError,
    build_model,
    load_model,
)
from inforates.models.timesformer import VideoClassifier
from inforates.models.vit_frames import FrameVideoClassifier

__all__ = [
    "ARCHS",
    "MODELS",
    "Arch",
    "FrameVideoClassifier",
    "ModelCfg",
    "ModelError",
    "VideoClassifier",
    "build_model",
    "load_model",
]
