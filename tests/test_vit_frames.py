"""The per-frame ViT with temporal average pooling (``vit-frames-*``).

Oracles: each frame run alone through the backbone (batching B*T frames must not change
anything), a permutation of the frames (the model is order-blind by construction), and fvcore
counts against closed forms of the ViT's multiply-adds.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import ViTConfig

from inforates.flops import EXTRA_OP_HANDLES, FlopCountAnalysis, count_flops
from inforates.models import (
    ARCHS,
    MODELS,
    FrameVideoClassifier,
    ModelError,
    build_model,
    load_model,
)

LABELS = ["archery", "bowling", "diving", "fencing", "juggling"]
TINY = "vit-frames-tiny"


@pytest.fixture(scope="module")
def tiny() -> FrameVideoClassifier:
    return build_model(TINY, label_names=LABELS, seed=0).eval()


def clip(frames: int, batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=gen)


def test_registry_lists_presets():
    assert {"vit-frames-tiny", "vit-frames-base"} <= set(MODELS.names())
    assert "vit-frames" in ARCHS and "timesformer" in ARCHS
    tiny, base = MODELS.get("vit-frames-tiny"), MODELS.get("vit-frames-base")
    assert tiny.arch == base.arch == "vit-frames"
    assert (tiny.image_size, tiny.hidden_size, tiny.num_layers, tiny.num_heads, tiny.intermediate_size) == (
        32, 64, 3, 4, 128)
    assert tiny.num_frames == 8 and tiny.mean == MODELS.get("timesformer-tiny").mean
    assert tiny.std == MODELS.get("timesformer-tiny").std
    assert (base.num_frames, base.image_size, base.patch_size) == (8, 224, 16)
    assert (base.hidden_size, base.num_layers, base.num_heads, base.intermediate_size) == (768, 12, 12, 3072)


@pytest.mark.parametrize("frames", [1, 4, 8])
def test_forward_shape_and_equals_per_frame_average(tiny, frames):
    video = clip(frames)
    with torch.no_grad():
        logits = tiny(video)
        per_frame = torch.stack(
            [tiny.hf.vit(pixel_values=video[:, t]).last_hidden_state[:, 0] for t in range(frames)], dim=1
        )
        expected = tiny.hf.classifier(per_frame.mean(dim=1))
    assert logits.shape == (2, len(LABELS))
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_attributes(tiny):
    assert tiny.label_names == LABELS and tiny.num_labels == 5
    assert tiny.num_frames == 8 and tiny.name == TINY and tiny.cfg == MODELS.get(TINY)
    assert not any("time" in name for name, _ in tiny.named_parameters())  # no time embeddings


def test_frame_order_does_not_matter(tiny):
    """What makes it the contrast to TimeSformer: reversed or shuffled frames, same logits."""
    video = clip(8, seed=1)
    shuffled = video[:, torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        logits = tiny(video)
        torch.testing.assert_close(tiny(video.flip(1)), logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(tiny(shuffled), logits, rtol=0, atol=1e-5)


def test_other_image_size_runs(tiny):
    with torch.no_grad():
        assert tiny(clip(2, size=48)).shape == (2, 5)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 8, 32, 32), "video must be (B, T, 3, H, W) with T >= 1, got shape (2, 8, 32, 32)"),
        ((2, 0, 3, 32, 32), "got shape (2, 0, 3, 32, 32)"),
        ((2, 8, 3, 32, 36), "frames must be square with a side that is a multiple of 8, got 32x36"),
    ],
)
def test_bad_input_shape(tiny, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny(torch.zeros(shape))


def test_save_load_round_trip(tiny, tmp_path, monkeypatch):
    tiny.save(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["model_type"] == "vit" and config["inforates"]["arch"] == "vit-frames"
    assert config["id2label"] == {str(i): n for i, n in enumerate(LABELS)}

    def no_pickle(*args, **kwargs):
        raise AssertionError("weights must load from safetensors, not torch.load")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(str(tmp_path / "ckpt"))
    assert isinstance(loaded, FrameVideoClassifier)
    assert loaded.label_names == LABELS and loaded.cfg == tiny.cfg and loaded.name == str(tmp_path / "ckpt")
    for frames in (1, 8):
        video = clip(frames)
        with torch.no_grad():
            torch.testing.assert_close(loaded(video), tiny(video), rtol=0, atol=0)
    same = load_model(str(tmp_path / "ckpt"), label_names=LABELS)
    assert torch.equal(same.hf.classifier.weight, tiny.hf.classifier.weight)


def test_load_with_other_label_count_replaces_head(tiny, tmp_path):
    tiny.save(tmp_path)
    new = ["a", "b", "c"]
    loaded = load_model(str(tmp_path), label_names=new)
    assert loaded.label_names == new and loaded.hf.classifier.out_features == 3
    assert loaded.hf.config.label2id == {"a": 0, "b": 1, "c": 2}
    torch.testing.assert_close(loaded.hf.vit.state_dict(), tiny.hf.vit.state_dict(), rtol=0, atol=0)
    with torch.no_grad():
        assert loaded(clip(4)).shape == (2, 3)


def test_load_with_same_count_other_names_refused(tiny, tmp_path):
    tiny.save(tmp_path)
    other = LABELS[:2] + ["golf"] + LABELS[3:]
    with pytest.raises(ModelError, match=re.escape("(index 2: 'diving' in the checkpoint, 'golf' given)")):
        load_model(str(tmp_path), label_names=other)


def test_plain_vit_checkpoint_is_not_vit_frames(tmp_path):
    """Only the inforates metadata makes a "vit" checkpoint a per-frame video model."""
    ViTConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=re.escape(f"checkpoint {tmp_path} is a 'vit' model, expected ")):
        load_model(str(tmp_path))


def _closed_form_flops(cfg, frames: int, num_labels: int) -> dict[str, int]:
    """fvcore's multiply-adds for ``frames`` frames: per frame, N = patches + CLS tokens."""
    patches = (cfg.image_size // cfg.patch_size) ** 2
    tokens, width, layers = patches + 1, cfg.hidden_size, cfg.num_layers
    return {
        "conv": frames * patches * 3 * cfg.patch_size**2 * width,
        # q, k, v, out (4 D^2) and the MLP (2 D I) per token and layer; the head once per clip
        "linear": frames * layers * tokens * (4 * width**2 + 2 * width * cfg.intermediate_size)
        + width * num_labels,
        # Q K^T and P V: N^2 * D per layer over all heads, each
        "scaled_dot_product_attention": frames * layers * tokens**2 * 2 * width,
        # 2 per layer + the final one, 5 per element with affine (fvcore's convention)
        "layer_norm": frames * (2 * layers + 1) * tokens * width * 5,
    }


@pytest.mark.parametrize("frames", [1, 8])
def test_flops_closed_form(tiny, frames):
    report = count_flops(tiny, frames=frames, image_size=32)
    expected = _closed_form_flops(tiny.cfg, frames, len(LABELS))
    assert {op: round(g * 1e9) for op, g in report.by_operator.items()} == expected
    assert "aten::mean" in report.unsupported_ops  # temporal pooling: element-wise, not counted


def test_flops_linear_in_frames(tiny):
    """T frames cost T backbone passes plus one head: T x the bare ViT on one image, + D*K."""
    image = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        backbone = FlopCountAnalysis(tiny.hf.vit, (image,)).set_op_handle(**EXTRA_OP_HANDLES)
        backbone = backbone.unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    head = tiny.cfg.hidden_size * len(LABELS)
    for frames in (1, 4, 8):
        got = count_flops(tiny, frames=frames, image_size=32).gflops_per_view * 1e9
        assert round(got) == frames * backbone + head


def test_trains_and_checkpoint_loads(tmp_path):
    """A short run through inforates.train: the saved model comes back as a vit-frames model."""
    from inforates.data.splits import build_manifest
    from inforates.data.synth import generate
    from inforates.train import load_config, train

    s = generate(tmp_path / "synth", classes=["FlashEarly", "OscillateFast"], groups=2, clips_per_group=2,
                 test_groups=1, num_frames=12, size=32)
    manifest = tmp_path / "train.csv"
    build_manifest(s.clips_dir, s.split_dir / "trainlist01.txt", out=manifest)
    cfg = load_config(None, {"model": TINY, "train_manifest": manifest, "out_dir": tmp_path / "run",
                             "epochs": 1, "batch_size": 2, "warmup_epochs": 0})
    result = train(cfg)
    loaded = load_model(str(result.checkpoint))
    assert isinstance(loaded, FrameVideoClassifier) and loaded.cfg == MODELS.get(TINY)
    assert loaded.label_names == ["FlashEarly", "OscillateFast"]
