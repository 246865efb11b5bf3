"""Triton kernel for the gather + temporal window + normalise + layout pass.

Imported only once :func:`inforates.kernels.triton_available` has found Triton, so
``import inforates.kernels`` works without it. Arguments arrive validated and canonical
(see :mod:`inforates.kernels.reference`, which defines the maths).

One kernel does both public operations: :func:`normalize_gather` is the window with the
single tap ``(left=0, weights=(1.0,))``, and ``0 + 1.0 * v == v`` exactly, so it gives the
same bits as a dedicated gather would.

Layout: program ``(bt, pb)`` writes output frame ``bt = b * T + t`` for ``BLOCK_P`` pixels
and all channels. It reads a ``(BLOCK_P, BLOCK_C)`` uint8 tile per tap through the input's
own strides (no ``.contiguous()`` copy of the whole video: only the tapped frames are
read), so channels-last pixels come in as runs of bytes, and writes ``C`` runs of float32,
one per output channel plane.

Interpreted or compiled: ``triton.jit`` decides at decoration time from
``TRITON_INTERPRET``; :func:`kernel` builds one of each on demand, so the mode follows the
environment at *call* time, whatever was imported first. That only holds because the
kernel calls Triton *builtins* alone (``tl.full``, ``tl.minimum``, ...): the standard
library's ``@triton.jit`` helpers (``tl.zeros``, ``tl.cdiv``, reductions) took their mode
when ``triton`` itself was imported and fail when called from the other mode.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .reference import Taps

MAX_BLOCK_P = 1024


def _gather_taps_normalize(
    video_ptr,
    idx_ptr,
    weight_ptr,
    mean_ptr,
    std_ptr,
    out_ptr,
    T,
    F,
    H,
    W,
    C,
    left,
    num_taps,
    stride_vb,
    stride_vf,
    stride_vh,
    stride_vw,
    stride_vc,
    stride_ib,
    stride_it,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    bt = tl.program_id(0)
    pb = tl.program_id(1)
    b = bt // T
    t = bt % T
    centre = tl.load(idx_ptr + b.to(tl.int64) * stride_ib + t.to(tl.int64) * stride_it)

    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.arange(0, BLOCK_C)
    p_ok = p < H * W
    c_ok = c < C
    mask = p_ok[:, None] & c_ok[None, :]
    h = (p // W).to(tl.int64)
    w = (p % W).to(tl.int64)
    pixel = (h * stride_vh + w * stride_vw)[:, None] + c.to(tl.int64)[None, :] * stride_vc
    sample = video_ptr + b.to(tl.int64) * stride_vb

    acc = tl.full((BLOCK_P, BLOCK_C), 0.0, tl.float32)  # not tl.zeros: see the module docstring
    for k in range(num_taps):
        frame = tl.minimum(tl.maximum(centre - left + k, 0), F - 1)
        weight = tl.load(weight_ptr + k)
        v = tl.load(sample + frame * stride_vf + pixel, mask=mask, other=0)
        acc += weight * v.to(tl.float32)

    mean = tl.load(mean_ptr + c, mask=c_ok, other=0.0)
    std = tl.load(std_ptr + c, mask=c_ok, other=1.0)
    y = (acc / 255.0 - mean[None, :]) / std[None, :]
    plane = H * W
    out = (bt.to(tl.int64) * C + c.to(tl.int64)[None, :]) * plane + p[:, None]
    tl.store(out_ptr + out, y, mask=mask)


@functools.cache
def kernel(interpret: bool):
    """The kernel, run by Triton's interpreter (any device, slow) or compiled (CUDA)."""
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpret
        return triton.jit(_gather_taps_normalize)


def interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks for the interpreter now."""
    return bool(triton.knobs.runtime.interpret)


def gather_taps_normalize(
    video: torch.Tensor,
    indices: torch.Tensor,
    taps: Taps,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    interpret: bool,
) -> torch.Tensor:
    batch, num_frames, height, width, channels = video.shape
    frames_out = indices.shape[1]
    out = torch.empty(
        (batch, frames_out, channels, height, width), dtype=torch.float32, device=video.device
    )
    weights = torch.tensor(taps.weights, dtype=torch.float32, device=video.device)
    block_p = min(MAX_BLOCK_P, max(16, triton.next_power_of_2(height * width)))
    block_c = triton.next_power_of_2(channels)
    grid = (batch * frames_out, triton.cdiv(height * width, block_p))
    launch = kernel(interpret)[grid]
    args = (
        video,
        indices,
        weights,
        mean,
        std,
        out,
        frames_out,
        num_frames,
        height,
        width,
        channels,
        taps.left,
        len(taps.weights),
        *video.stride(),
        *indices.stride(),
    )
    if video.is_cuda:
        with torch.cuda.device(video.device):
            launch(*args, BLOCK_P=block_p, BLOCK_C=block_c)
    else:
        launch(*args, BLOCK_P=block_p, BLOCK_C=block_c)
    return out
