"""FLOPs of a video model on one clip shape, counted by fvcore on the model itself.

fvcore traces the model with one ``(1, frames, C, S, S)`` input and sums closed-form counts
per operator. Its convention is that **one fused multiply-add is one flop** (so a
``Linear(a, b)`` on ``n`` rows is ``n*a*b``, half of the "2 flops per MAC" convention); the
TimeSformer paper's numbers (0.59 TFLOPs for 3 views of 8x224^2) use the same convention.
Element-wise ops (add, mul, softmax, GELU, ...) are not counted; the ops fvcore skipped stay in
:attr:`FlopReport.unsupported_ops` so a reader can judge what is missing.

Counting goes through ``model.forward``, so a :class:`~inforates.models.VideoClassifier`
given T frames is counted as it runs them (T need not be the checkpoint's clip length).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

with warnings.catch_warnings():
    # fvcore.nn's __init__ runs torch.jit.script on its focal losses, deprecated in torch 2.13.
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
    from fvcore.nn import FlopCountAnalysis


@dataclass(frozen=True)
class FlopReport:
    gflops_per_view: float  # 1e9 multiply-adds for one clip
    gflops_total: float  # views * gflops_per_view
    params: int
    frames: int
    image_size: int
    views: int
    unsupported_ops: dict[str, int]  # op name -> number of calls fvcore did not count
    by_operator: dict[str, float]  # GFLOPs per view by operator (linear, matmul, conv, ...)


def _shape(value: Any) -> list[int]:
    return value.type().sizes()


def sdpa_flop_jit(inputs: Sequence[Any], outputs: Sequence[Any]) -> int:
    """``aten::scaled_dot_product_attention``: the two matmuls, ``Q K^T`` and ``P V``.

    With query (..., L, E), key (..., S, E), value (..., S, Ev) that is
    ``batch * (L*S*E + L*S*Ev)`` multiply-adds, exactly what fvcore counts for the same
    attention written with two ``@``; scale and softmax are element-wise and not counted.
    """
    query, key, value = (_shape(v) for v in inputs[:3])
    *batch, length, embed = query
    source, value_embed = key[-2], value[-1]
    return math.prod(batch) * length * source * (embed + value_embed)


# fvcore has no handle for SDPA; TimeSformer in transformers uses plain matmuls, other
# architectures (VideoMAE, ViViT in recent transformers) call SDPA.
EXTRA_OP_HANDLES = {"aten::scaled_dot_product_attention": sdpa_flop_jit}


def count_flops(
    model: nn.Module,
    *,
    frames: int,
    image_size: int,
    views: int = 1,
    channels: int = 3,
) -> FlopReport:
    """Count FLOPs (multiply-adds) of ``model`` on one ``(1, frames, channels, S, S)`` clip.

    Runs under ``torch.no_grad`` in eval mode (the previous mode is restored), on the model's
    device and dtype. ``views`` (temporal clips x spatial crops per video) only multiplies.
    """
    for name, value in (("frames", frames), ("image_size", image_size), ("views", views),
                        ("channels", channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} ({value!r}) must be a positive integer")

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    clip = torch.zeros(1, frames, channels, image_size, image_size, device=device, dtype=dtype)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = (
                FlopCountAnalysis(model, (clip,))
                .set_op_handle(**EXTRA_OP_HANDLES)
                .unsupported_ops_warnings(False)
                .uncalled_modules_warnings(False)
                .tracer_warnings("none")
            )
            total = analysis.total()
            by_operator = {op: n / 1e9 for op, n in sorted(analysis.by_operator().items())}
            unsupported = dict(sorted(analysis.unsupported_ops().items()))
    finally:
        model.train(was_training)

    per_view = total / 1e9
    return FlopReport(
        gflops_per_view=per_view,
        gflops_total=per_view * views,
        params=sum(p.numel() for p in model.parameters()),
        frames=frames,
        image_size=image_size,
        views=views,
        unsupported_ops=unsupported,
        by_operator=by_operator,
    )
