"""FLOP counts against closed forms (fvcore convention: one multiply-add = one flop)."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from inforates.flops import count_flops
import dataclasses

from inforates.models import ARCHS, MODELS, build_model

LABELS = [f"class{i}" for i in range(10)]
# The closed form below is for the paper's layout (several patches per frame, divided
# attention); the tiny preset has one token per frame and joint attention.
DIVIDED = dataclasses.replace(
    MODELS.get("timesformer-tiny"), name="tiny-divided", patch_size=8, attention_type="divided_space_time"
)


def build_divided(num_frames=None, seed=0):
    cfg = DIVIDED if num_frames is None else dataclasses.replace(DIVIDED, num_frames=num_frames)
    torch.manual_seed(seed)
    return ARCHS.get("timesformer").build(cfg, LABELS)


def timesformer_flops(*, frames, image_size, patch, hidden, layers, mlp, labels, channels=3):
    """Closed-form multiply-adds of divided space-time TimeSformer, as fvcore counts them.

    Counted: conv patch embedding, linears, attention matmuls, layer norms (5 per element
    with affine). Not counted: bias adds, softmax, GELU, residual adds, the CLS mean.
    N patches per frame, T frames; the temporal pass sees N sequences of T tokens, the spatial
    pass T sequences of N + 1 tokens (the CLS token is copied into every frame).
    """
    n, t, d = (image_size // patch) ** 2, frames, hidden
    tokens = n * t + 1
    temporal = 5 * n * t * d + 3 * n * t * d * d + 2 * n * t * t * d + 2 * n * t * d * d
    spatial = 5 * t * (n + 1) * d + 4 * t * (n + 1) * d * d + 2 * t * (n + 1) ** 2 * d
    mlp_block = 5 * tokens * d + 2 * tokens * d * mlp
    embed = t * n * d * channels * patch * patch
    return embed + layers * (temporal + spatial + mlp_block) + 5 * tokens * d + d * labels


TINY_SHAPE = dict(image_size=32, patch=8, hidden=64, layers=3, mlp=128, labels=len(LABELS))


@pytest.fixture(scope="module")
def tiny():
    return build_divided()


# --- closed forms on single ops ---------------------------------------------------------------


class Matmul(nn.Module):
    def forward(self, x):
        return x @ x.transpose(-1, -2)


class Attention(nn.Module):
    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused = fused

    def forward(self, x):
        if self.fused:
            return nn.functional.scaled_dot_product_attention(x, x, x)
        weights = (x @ x.transpose(-1, -2) * x.shape[-1] ** -0.5).softmax(-1)
        return weights @ x


def test_linear():
    # Linear(a=16, b=5) over the last dim of (1, T=2, C=3, 16, 16): n = 2*3*16 rows
    report = count_flops(nn.Linear(16, 5), frames=2, image_size=16)
    assert report.gflops_per_view * 1e9 == pytest.approx(2 * 3 * 16 * 16 * 5, abs=0.5)
    assert report.params == 16 * 5 + 5


def test_matmul():
    # (…, 16, 16) @ (…, 16, 16) batched over 1*2*3: 6 * 16^3
    report = count_flops(Matmul(), frames=2, image_size=16)
    assert report.gflops_per_view * 1e9 == pytest.approx(6 * 16**3, abs=0.5)
    assert report.params == 0


def test_sdpa_handle_equals_explicit_attention():
    fused = count_flops(Attention(fused=True), frames=2, image_size=16)
    explicit = count_flops(Attention(fused=False), frames=2, image_size=16)
    assert fused.gflops_per_view * 1e9 == pytest.approx(6 * 2 * 16**3, abs=0.5)  # QK^T and PV
    assert fused.gflops_per_view == pytest.approx(explicit.gflops_per_view, rel=1e-12)
    assert "aten::scaled_dot_product_attention" not in fused.unsupported_ops


def test_views_multiply_and_mode_restored():
    model = nn.Linear(16, 5).train()
    report = count_flops(model, frames=2, image_size=16, views=3)
    assert report.gflops_total == pytest.approx(3 * report.gflops_per_view)
    assert (report.frames, report.image_size, report.views) == (2, 16, 3)
    assert model.training


@pytest.mark.parametrize("field", ["frames", "image_size", "views", "channels"])
def test_bad_arguments(field):
    kwargs = dict(frames=2, image_size=16, views=1, channels=3) | {field: 0}
    with pytest.raises(ValueError, match=re.escape(f"{field} (0) must be a positive integer")):
        count_flops(nn.Linear(16, 5), **kwargs)


# --- TimeSformer ------------------------------------------------------------------------------


def test_tiny_matches_closed_form(tiny):
    for frames in (4, 8):
        report = count_flops(tiny, frames=frames, image_size=32)
        expected = timesformer_flops(frames=frames, **TINY_SHAPE)
        assert report.gflops_per_view * 1e9 == pytest.approx(expected, rel=1e-9)


def test_tiny_params(tiny):
    report = count_flops(tiny, frames=8, image_size=32)
    assert report.params == sum(p.numel() for p in tiny.parameters())
    assert {"aten::softmax", "aten::gelu"} <= set(report.unsupported_ops)  # kept, not hidden
    assert set(report.by_operator) >= {"conv", "linear", "matmul", "layer_norm"}


def test_flops_grow_with_frames(tiny):
    eight = count_flops(tiny, frames=8, image_size=32).gflops_per_view
    sixteen = count_flops(tiny, frames=16, image_size=32).gflops_per_view
    assert sixteen > 2 * eight  # linear in T, plus the temporal attention's T^2 term


@pytest.mark.parametrize("frames", [1, 4, 16])
def test_other_t_counts_like_model_built_for_t(tiny, frames):
    built = build_divided(num_frames=frames)
    got = count_flops(tiny, frames=frames, image_size=32)
    want = count_flops(built, frames=frames, image_size=32)
    assert got.gflops_per_view == pytest.approx(want.gflops_per_view, rel=1e-12)
    assert tiny.hf.config.num_frames == 8


@pytest.mark.slow
def test_base_matches_paper():
    """Bertasius et al. 2021, Table 1/3: TimeSformer 121.4M params, 0.59 TFLOPs for 3 views.

    Measured here: 121,566,352 params (400 labels) and 196.053 GFLOPs per view (588.2 for 3),
    equal to the closed form above to the last flop.
    """
    model = build_model("timesformer-base", label_names=[f"k{i}" for i in range(400)], seed=0)
    report = count_flops(model, frames=8, image_size=224, views=3)
    assert report.params == pytest.approx(121.4e6, rel=0.01)
    assert report.gflops_per_view == pytest.approx(196, rel=0.01)
    assert report.gflops_total == pytest.approx(590, rel=0.01)
    expected = timesformer_flops(frames=8, image_size=224, patch=16, hidden=768, layers=12,
                                 mlp=3072, labels=400)
    assert report.gflops_per_view * 1e9 == pytest.approx(expected, rel=1e-9)
