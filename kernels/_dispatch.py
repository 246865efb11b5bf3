"""Public entry points: validate at the boundary, then run Triton or the reference.

Backend choice (``backend="auto"``):

- CUDA tensor and Triton importable: Triton, compiled;
- ``TRITON_INTERPRET=1`` in the environment and Triton importable: Triton under its
  interpreter, on any device (this is how CI runs the Triton code on CPU);
- otherwise: the PyTorch reference.

Each call logs its choice (and, for the reference, why) at DEBUG on ``inforates.kernels``.
``backend="triton"`` insists on Triton and raises ``RuntimeError`` where it cannot run;
``backend="reference"`` always runs the reference.

Argument checks run on every call; the index range check reads ``min``/``max`` back from
the device (one synchronisation per call on CUDA).
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import numbers
from types import ModuleType
from typing import Literal, Sequence, get_args

import numpy as np
import torch

from inforates.sampling import check_stride

from . import reference
from .reference import WINDOWS, Taps, Window

log = logging.getLogger("inforates.kernels")

Backend = Literal["auto", "triton", "reference"]
BACKENDS: tuple[str, ...] = get_args(Backend)

# Triton vs reference, elementwise: |triton - reference| <= atol + rtol * |reference|.
# The float32 maths is the same; differences come from FMA contraction of the tap sum and
# the GPU's approximate division (a few ulp). Outputs are O(1)-O(10) after normalisation,
# so 1e-5 leaves an order of magnitude of headroom. A single unit tap (box, stride 1;
# gaussian, stride 1 with the default sigma) matches normalize_gather bit for bit.
TOLERANCE: dict[str, float] = {"atol": 1e-5, "rtol": 1e-5}

ChannelStats = Sequence[float] | torch.Tensor
Indices = Sequence[int] | np.ndarray | torch.Tensor


@functools.cache
def _triton_module() -> ModuleType | None:
    try:
        return importlib.import_module("inforates.kernels._triton")
    except ImportError as exc:
        log.debug("triton is not available (%s); inforates.kernels uses the reference", exc)
        return None


def triton_available() -> bool:
    """Whether Triton imports here (it may still need a CUDA GPU or the interpreter)."""
    return _triton_module() is not None


def _check_video(video: object) -> torch.Tensor:
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"video ({type(video).__name__}) must be a torch.Tensor")
    if video.dtype != torch.uint8:
        raise ValueError(f"video dtype ({video.dtype}) must be torch.uint8")
    if video.ndim != 5:
        raise ValueError(f"video shape ({tuple(video.shape)}) must be (B, F, H, W, C)")
    if min(video.shape) < 1:
        raise ValueError(f"video shape ({tuple(video.shape)}) must have every dimension >= 1")
    return video


def _check_indices(indices: object, video: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` int64 on the video's device; 1-D indices are expanded (stride 0), not copied."""
    batch, num_frames = video.shape[:2]
    if isinstance(indices, torch.Tensor):
        if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
            raise ValueError(f"indices dtype ({indices.dtype}) must be an integer type")
        idx = indices.to(device=video.device, dtype=torch.int64)
    else:
        arr = np.asarray(indices)
        if arr.size and arr.dtype.kind not in "iu":
            raise ValueError(f"indices dtype ({arr.dtype}) must be an integer type")
        idx = torch.as_tensor(arr.astype(np.int64), device=video.device)
    if idx.ndim == 1:
        idx = idx.unsqueeze(0).expand(batch, -1)
    elif idx.ndim == 2:
        if idx.shape[0] != batch:
            raise ValueError(f"indices batch ({idx.shape[0]}) must equal the video batch ({batch})")
    else:
        raise ValueError(f"indices shape ({tuple(idx.shape)}) must be (T,) or (B, T)")
    if idx.shape[1] < 1:
        raise ValueError(f"indices shape ({tuple(idx.shape)}) must hold at least one frame")
    lo, hi = (int(v) for v in torch.aminmax(idx))
    if lo < 0 or hi >= num_frames:
        bad = lo if lo < 0 else hi
        raise ValueError(f"index ({bad}) must be in [0, {num_frames - 1}] for a video of {num_frames} frames")
    return idx


def _check_channel_stats(name: str, value: object, video: torch.Tensor) -> torch.Tensor:
    channels = video.shape[-1]
    if isinstance(value, torch.Tensor):
        stats = value.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            stats = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} ({value!r}) must be {channels} numbers") from exc
    shown = [round(float(v), 6) for v in stats.flatten()]
    if stats.ndim != 1 or stats.numel() != channels:
        raise ValueError(f"{name} ({shown}) must hold one value per channel (C = {channels})")
    if not bool(torch.isfinite(stats).all()):
        raise ValueError(f"{name} ({shown}) must be finite")
    if name == "std" and bool((stats <= 0).any()):
        raise ValueError(f"std ({shown}) must be > 0")
    return stats.to(device=video.device, dtype=torch.float32)


def _check_window(window: object, sigma: object) -> float | None:
    if window not in WINDOWS:
        raise ValueError(f"window ({window!r}) must be one of: {', '.join(WINDOWS)}")
    if sigma is None:
        return None
    if window != "gaussian":
        raise ValueError(f"sigma ({sigma!r}) only applies to window 'gaussian', not {window!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise ValueError(f"sigma ({sigma!r}) must be a number >= 0")
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma ({sigma}) must be a finite number >= 0")
    return float(sigma)


def _choose(op: str, video: torch.Tensor, backend: object) -> tuple[ModuleType | None, bool]:
    """``(triton module, interpret)`` to run Triton, or ``(None, False)`` for the reference."""
    if backend not in BACKENDS:
        raise ValueError(f"backend ({backend!r}) must be one of: {', '.join(BACKENDS)}")
    if backend == "reference":
        log.debug("%s: reference on %s (backend='reference')", op, video.device)
        return None, False
    module = _triton_module()
    if module is None:
        reason = "triton is not installed"
    else:
        interpret = module.interpreter_enabled()
        if interpret or video.is_cuda:
            mode = "interpreter" if interpret else "compiled"
            log.debug("%s: triton (%s) on %s", op, mode, video.device)
            return module, interpret
        reason = f"{video.device.type} tensor and TRITON_INTERPRET is not set"
    if backend == "triton":
        raise RuntimeError(f"{op}: backend 'triton' cannot run here: {reason}")
    log.debug("%s: reference on %s (%s)", op, video.device, reason)
    return None, False


def normalize_gather(
    video: torch.Tensor,
    indices: Indices,
    mean: ChannelStats,
    std: ChannelStats,
    *,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Gather frames, scale to [0, 1], normalise and move channels first, in one pass.

    ``video``: uint8 ``(B, F, H, W, C)`` decoded frames, channels last, any strides (the
    Triton kernel reads through them; nothing is copied). ``indices``: ``(T,)`` shared by
    the batch or ``(B, T)`` per sample, e.g. ``select_frames(...).indices``. ``mean``,
    ``std``: ``C`` values in [0, 1] units. Returns float32 ``(B, T, C, H, W)``::

        out[b, t, c, h, w] = (video[b, indices[b, t], h, w, c] / 255 - mean[c]) / std[c]
    """
    video = _check_video(video)
    idx = _check_indices(indices, video)
    mean_t = _check_channel_stats("mean", mean, video)
    std_t = _check_channel_stats("std", std, video)
    module, interpret = _choose("normalize_gather", video, backend)
    if module is None:
        return reference.normalize_gather(video, idx, mean_t, std_t)
    unit = Taps(left=0, weights=(1.0,))
    return module.gather_taps_normalize(video, idx, unit, mean_t, std_t, interpret=interpret)


def antialias_decimate(
    video: torch.Tensor,
    indices: Indices,
    stride: int,
    mean: ChannelStats,
    std: ChannelStats,
    *,
    window: Window = "box",
    sigma: float | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Low-pass in time around each sampled frame, then :func:`normalize_gather`'s output.

    Keeping every ``stride``-th frame aliases motion faster than the new Nyquist rate
    (``1 / (2 * stride)`` cycles per frame); averaging a window of input frames around
    each kept index first suppresses it. Output frame ``t`` is the weighted mean of frames
    ``clamp(indices[t] + d, 0, F - 1)`` (edge frames repeat):

    - ``box``: ``d = -floor((stride-1)/2) .. ceil((stride-1)/2)``, weights ``1/stride``;
      stride 1 is exactly :func:`normalize_gather`;
    - ``gaussian``: ``d = -r .. r``, ``r = ceil(3 * sigma)``, weights
      ``exp(-d**2 / (2 sigma**2))`` normalised; ``sigma`` defaults to ``stride / 2``
      (gain ``exp(-pi**2/8)``, about 0.29, at the new Nyquist), and to ``0`` for stride 1,
      which is the identity. An explicit ``sigma`` with stride 1 is a mild blur.

    See :func:`inforates.kernels.reference.window_taps` for a worked example.
    """
    video = _check_video(video)
    stride = check_stride(stride)
    sigma = _check_window(window, sigma)
    idx = _check_indices(indices, video)
    mean_t = _check_channel_stats("mean", mean, video)
    std_t = _check_channel_stats("std", std, video)
    taps = reference.window_taps(stride, window, sigma)
    module, interpret = _choose("antialias_decimate", video, backend)
    if module is None:
        return reference.antialias_decimate(video, idx, taps, mean_t, std_t)
    return module.gather_taps_normalize(video, idx, taps, mean_t, std_t, interpret=interpret)
