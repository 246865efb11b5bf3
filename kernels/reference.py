"""Plain-PyTorch definitions of the kernels' maths; the Triton code must match these.

Both functions take arguments already checked and put in canonical form by
:mod:`inforates.kernels` (call the public functions there with ``backend="reference"`` to
get validation too):

- ``video``: uint8 ``(B, F, H, W, C)``, any strides;
- ``indices``: int64 ``(B, T)`` on the video's device, every value in ``[0, F - 1]``
  (a 1-D index list arrives expanded to ``(B, T)``);
- ``mean``, ``std``: float32 ``(C,)`` on the video's device, in ``[0, 1]`` pixel units;
- ``taps`` (anti-aliasing only): the temporal window, from :func:`window_taps`.

Both return a new contiguous float32 ``(B, T, C, H, W)`` tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

Window = Literal["box", "gaussian"]
WINDOWS: tuple[str, ...] = get_args(Window)


@dataclass(frozen=True)
class Taps:
    """A temporal window: output frame ``t`` averages input frames
    ``clamp(indices[t] - left + k, 0, F - 1)`` for ``k = 0 .. len(weights) - 1`` with
    ``weights[k]`` (they sum to 1). Clamping repeats the edge frame, and a repeated frame
    keeps the weight of the tap it replaces."""

    left: int
    weights: tuple[float, ...]

    @property
    def offsets(self) -> range:
        return range(-self.left, len(self.weights) - self.left)


def default_sigma(stride: int) -> float:
    """``stride / 2`` frames, which puts the Gaussian's gain at the new Nyquist frequency
    ``1 / (2 * stride)`` at ``exp(-pi**2 / 8)`` (about 0.29); ``0`` for stride 1, so that
    keeping every frame applies no filter at all (one tap of weight 1)."""
    return stride / 2 if stride > 1 else 0.0


def window_taps(stride: int, window: Window, sigma: float | None = None) -> Taps:
    """The taps of ``window`` for decimation by ``stride`` (arguments already validated).

    ``box``: the ``stride`` frames ``i - floor((stride-1)/2) .. i + ceil((stride-1)/2)``,
    equal weights. ``gaussian``: frames ``i - r .. i + r`` with ``r = ceil(3 * sigma)``,
    weights ``exp(-d**2 / (2 * sigma**2))`` normalised to sum 1; ``sigma`` defaults to
    :func:`default_sigma`, and ``sigma = 0`` is the single tap ``d = 0``::

        stride 4, box        taps i-1 i i+1 i+2      weights 1/4 each
        frame                0  1  2  3  4  5  6  7
        i = 4                         w  w  w  w      frames 3 4 5 6
        i = 0                w  w  w                  frames 0 0 1 2 (frame -1 repeats 0)

        stride 4, gaussian   sigma = 2, r = 6        taps i-6 .. i+6
    """
    if window == "box":
        left = (stride - 1) // 2
        return Taps(left=left, weights=(1.0 / stride,) * stride)
    if sigma is None:
        sigma = default_sigma(stride)
    radius = math.ceil(3 * sigma)
    if radius == 0:
        return Taps(left=0, weights=(1.0,))
    raw = [math.exp(-(d * d) / (2 * sigma * sigma)) for d in range(-radius, radius + 1)]
    total = math.fsum(raw)
    return Taps(left=radius, weights=tuple(w / total for w in raw))


def normalize_gather(
    video: torch.Tensor, indices: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``out[b, t, c, h, w] = (video[b, indices[b, t], h, w, c] / 255 - mean[c]) / std[c]``."""
    batch = torch.arange(video.shape[0], device=video.device).unsqueeze(1)
    frames = video[batch, indices].to(torch.float32)  # (B, T, H, W, C)
    out = (frames / 255.0 - mean) / std
    return out.permute(0, 1, 4, 2, 3).contiguous()


def antialias_decimate(
    video: torch.Tensor,
    indices: torch.Tensor,
    taps: Taps,
    mean: torch.Tensor,
    std: torch.Tensor,
) -> torch.Tensor:
    """Weighted sum of the taps around each sampled frame, then :func:`normalize_gather`'s
    normalisation and layout. The sum runs over ``k`` in order, in float32 and in
    ``[0, 255]`` units, as the Triton kernel does; a single tap of weight 1 therefore gives
    exactly :func:`normalize_gather`'s result."""
    num_frames = video.shape[1]
    batch = torch.arange(video.shape[0], device=video.device).unsqueeze(1)
    weights = torch.tensor(taps.weights, dtype=torch.float32, device=video.device)
    acc = torch.zeros((*indices.shape, *video.shape[2:]), dtype=torch.float32, device=video.device)
    for k, offset in enumerate(taps.offsets):
        frame = (indices + offset).clamp(0, num_frames - 1)
        acc += weights[k] * video[batch, frame].to(torch.float32)
    out = (acc / 255.0 - mean) / std
    return out.permute(0, 1, 4, 2, 3).contiguous()
