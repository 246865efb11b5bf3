"""Model registry, the any-T TimeSformer wrapper, and checkpoint save/load.

The oracle for "correct for T frames" is an independent HF TimeSformer built for T frames with
the same weights, its time embeddings resized the way HF does (nearest: frame i of T takes
embedding floor(i * 8 / T) of 8).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re

import huggingface_hub.constants
import pytest
import torch
from transformers import TimesformerConfig, ViTConfig

from inforates.models import (
    ARCHS,
    MODELS,
    ModelCfg,
    ModelError,
    VideoClassifier,
    build_model,
    load_model,
)

LABELS = ["archery", "bowling", "diving", "fencing", "juggling"]
TINY = "timesformer-tiny"
# The structural tests need several patches per frame and divided attention (the paper's
# layout), which the tiny preset (one token per frame, joint attention) does not have.
DIVIDED = dataclasses.replace(
    MODELS.get(TINY), name="tiny-divided", patch_size=8, attention_type="divided_space_time"
)


def build_divided(num_frames: int | None = None, seed: int = 0) -> VideoClassifier:
    cfg = DIVIDED if num_frames is None else dataclasses.replace(DIVIDED, num_frames=num_frames)
    torch.manual_seed(seed)
    return ARCHS.get("timesformer").build(cfg, LABELS)


@pytest.fixture(scope="module")
def tiny() -> VideoClassifier:
    model = build_divided()
    # HF initialises time embeddings to zeros, which would hide any error in their resizing.
    gen = torch.Generator().manual_seed(1)
    time_embeddings = model.hf.timesformer.embeddings.time_embeddings
    with torch.no_grad():
        time_embeddings.copy_(torch.randn(time_embeddings.shape, generator=gen))
    return model.eval()


def clip(frames: int, batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=gen)


def reference_logits(model: VideoClassifier, video: torch.Tensor) -> torch.Tensor:
    """Logits of a plain HF model built for T = video.shape[1] frames with ``model``'s weights."""
    frames = video.shape[1]
    ref = build_divided(num_frames=frames)
    state = model.hf.state_dict()
    key = "timesformer.embeddings.time_embeddings"
    index = [math.floor(i * model.num_frames / frames) for i in range(frames)]
    state[key] = state[key][:, index]
    ref.hf.load_state_dict(state)
    assert ref.hf.config.num_frames == frames
    with torch.no_grad():
        return ref.hf(pixel_values=video).logits


# --- registries -------------------------------------------------------------------------------


def test_registry_lists_presets_and_arch():
    assert {"timesformer-base", "timesformer-tiny"} <= set(MODELS.names())
    assert "timesformer" in ARCHS
    for name in MODELS:
        cfg = MODELS.get(name)
        assert cfg.name == name and cfg.arch in ARCHS


def test_paper_preset():
    cfg = MODELS.get("timesformer-base")
    assert (cfg.num_frames, cfg.image_size, cfg.patch_size) == (8, 224, 16)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size) == (768, 12, 12, 3072)
    assert cfg.attention_type == "divided_space_time"
    assert cfg.mean == (0.45, 0.45, 0.45) and cfg.std == (0.225, 0.225, 0.225)


def test_duplicate_registration_refused():
    with pytest.raises(ValueError, match=re.escape("model 'timesformer-tiny' is already registered")):
        MODELS.add(TINY, MODELS.get(TINY))
    with pytest.raises(ValueError, match=re.escape("architecture 'timesformer' is already registered")):
        ARCHS.add("timesformer", ARCHS.get("timesformer"))


def test_unknown_preset_lists_names():
    with pytest.raises(ValueError, match=re.escape("choose from: timesformer-base, timesformer-tiny")):
        build_model("timesformer-huge", label_names=LABELS)


def test_model_cfg_validates():
    good = MODELS.get(TINY).to_dict()
    with pytest.raises(ValueError, match=re.escape("image_size (30) must be a multiple of patch_size (32)")):
        ModelCfg(**{**good, "image_size": 30})
    with pytest.raises(ValueError, match=re.escape("num_frames (0) must be a positive integer")):
        ModelCfg(**{**good, "num_frames": 0})
    with pytest.raises(ValueError, match=re.escape("unknown ModelCfg keys: colour")):
        ModelCfg.from_dict({**good, "colour": "red"})
    assert ModelCfg.from_dict(json.loads(json.dumps(good))) == MODELS.get(TINY)


def test_label_names_validated():
    with pytest.raises(ValueError, match=re.escape("label name 'a' appears twice")):
        build_model(TINY, label_names=["a", "b", "a"])
    with pytest.raises(ValueError, match="not the string"):
        build_model(TINY, label_names="ab")


def test_seed_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_model(TINY, label_names=LABELS, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model(TINY, label_names=LABELS, seed=3)
    c = build_model(TINY, label_names=LABELS, seed=4)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.hf.classifier.weight, c.hf.classifier.weight)


# --- forward for any T ------------------------------------------------------------------------


def test_forward_shape_and_attributes(tiny):
    assert tiny(clip(8)).shape == (2, len(LABELS))
    assert tiny.label_names == LABELS and tiny.num_labels == 5
    assert tiny.num_frames == 8 and tiny.name == DIVIDED.name and tiny.cfg == DIVIDED


def test_unwrapped_hf_model_silently_misgroups_other_t(tiny):
    """The bug the wrapper exists for: T=4 into a num_frames=8 HF model runs without error."""
    video = clip(4)
    with torch.no_grad():
        wrong = tiny.hf(pixel_values=video).logits  # layers regroup 4 frames x 16 patches as 8 x 8
    right = reference_logits(tiny, video)
    assert wrong.shape == right.shape
    assert not torch.allclose(wrong, right, atol=1e-3)


@pytest.mark.parametrize("frames", [1, 3, 4, 8, 16])
def test_wrapper_matches_model_built_for_t(tiny, frames):
    video = clip(frames)
    with torch.no_grad():
        got = tiny(video)
    torch.testing.assert_close(got, reference_logits(tiny, video), rtol=0, atol=1e-5)
    assert tiny.hf.config.num_frames == 8 and tiny.hf.config.image_size == 32  # restored


def test_wrapper_equals_hf_at_checkpoint_t(tiny):
    video = clip(8)
    with torch.no_grad():
        torch.testing.assert_close(tiny(video), tiny.hf(pixel_values=video).logits, rtol=0, atol=0)


def test_config_restored_after_error(tiny):
    with pytest.raises(RuntimeError):
        tiny(torch.randn(1, 4, 3, 32, 32, dtype=torch.float64))  # dtype mismatch inside HF
    assert tiny.hf.config.num_frames == 8


def test_other_image_size_runs(tiny):
    with torch.no_grad():
        assert tiny(clip(4, size=48)).shape == (2, 5)


def test_backward_with_other_t():
    model = build_model(TINY, label_names=LABELS, seed=0).train()
    loss = torch.nn.functional.cross_entropy(model(clip(4)), torch.tensor([0, 3]))
    loss.backward()
    assert model.hf.timesformer.embeddings.time_embeddings.grad is not None


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 8, 32, 32), "video must be (B, T, 3, H, W) with T >= 1, got shape (2, 8, 32, 32)"),
        ((2, 8, 1, 32, 32), "got shape (2, 8, 1, 32, 32)"),
        ((2, 0, 3, 32, 32), "got shape (2, 0, 3, 32, 32)"),
        ((2, 8, 3, 32, 36), "frames must be square with a side that is a multiple of 8, got 32x36"),
        ((2, 8, 3, 36, 36), "got 36x36"),
    ],
)
def test_bad_input_shape(tiny, shape, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        tiny(torch.zeros(shape))


def test_deepcopy_is_independent(tiny):
    twin = copy.deepcopy(tiny)
    video = clip(4)
    with torch.no_grad():
        torch.testing.assert_close(twin(video), tiny(video), rtol=0, atol=0)
    assert twin.hf.config is not tiny.hf.config
    assert twin._shape_override.configs[0] is twin.hf.config


# --- save / load ------------------------------------------------------------------------------


def test_save_load_round_trip(tiny, tmp_path, monkeypatch):
    tiny.save(tmp_path / "ckpt")
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert "model.safetensors" in files and "config.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["inforates"] == tiny.cfg.to_dict() | {"mean": [0.45] * 3, "std": [0.225] * 3}
    assert config["id2label"] == {str(i): n for i, n in enumerate(LABELS)}

    def no_pickle(*args, **kwargs):
        raise AssertionError("weights must load from safetensors, not torch.load")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(str(tmp_path / "ckpt"))
    assert loaded.label_names == LABELS and loaded.cfg == tiny.cfg
    assert loaded.name == str(tmp_path / "ckpt")
    for frames in (4, 8):
        video = clip(frames)
        with torch.no_grad():
            torch.testing.assert_close(loaded(video), tiny(video), rtol=0, atol=0)


def test_load_same_labels_keeps_head(tiny, tmp_path):
    tiny.save(tmp_path)
    loaded = load_model(str(tmp_path), label_names=LABELS)
    assert torch.equal(loaded.hf.classifier.weight, tiny.hf.classifier.weight)


def test_load_with_other_label_count_replaces_head(tiny, tmp_path):
    tiny.save(tmp_path)
    new = ["a", "b", "c"]
    loaded = load_model(str(tmp_path), label_names=new)
    assert loaded.label_names == new and loaded.hf.classifier.out_features == 3
    assert loaded.hf.config.label2id == {"a": 0, "b": 1, "c": 2}
    torch.testing.assert_close(loaded.hf.timesformer.state_dict(), tiny.hf.timesformer.state_dict())
    with torch.no_grad():
        assert loaded(clip(4)).shape == (2, 3)


def test_load_with_same_count_other_names_refused(tiny, tmp_path):
    tiny.save(tmp_path)
    other = LABELS[:2] + ["golf"] + LABELS[3:]
    with pytest.raises(ModelError, match=re.escape("(index 2: 'diving' in the checkpoint, 'golf' given)")):
        load_model(str(tmp_path), label_names=other)


def test_load_plain_hf_checkpoint_uses_its_preprocessing(tiny, tmp_path):
    hf = copy.deepcopy(tiny.hf)
    if hasattr(hf.config, "inforates"):
        del hf.config.inforates
    hf.config.id2label = {i: f"LABEL_{i}" for i in range(5)}
    hf.config.label2id = {f"LABEL_{i}": i for i in range(5)}
    hf.save_pretrained(tmp_path / "plain")
    loaded = load_model(str(tmp_path / "plain"))
    assert loaded.cfg.mean == (0.45,) * 3 and loaded.cfg.name == str(tmp_path / "plain")
    assert loaded.cfg.image_size == 32 and loaded.num_frames == 8

    (tmp_path / "plain" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]})
    )
    relabelled = load_model(str(tmp_path / "plain"), label_names=LABELS)  # generic names: adopt
    assert relabelled.cfg.mean == (0.5,) * 3 and relabelled.cfg.std == (0.5,) * 3
    assert relabelled.label_names == LABELS
    assert torch.equal(relabelled.hf.classifier.weight, tiny.hf.classifier.weight)


@pytest.mark.parametrize("name", ["./no/such/ckpt", "/no/such/ckpt", "~/no-such-ckpt-xyz", "a/b/c"])
def test_load_missing_path(name):
    with pytest.raises(ModelError, match=re.escape(f"checkpoint not found: {name}")):
        load_model(name)


def test_load_non_timesformer_checkpoint(tmp_path):
    ViTConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=re.escape(f"checkpoint {tmp_path} is a 'vit' model, expected timesformer")):
        load_model(str(tmp_path))


def test_load_dir_without_config(tmp_path):
    with pytest.raises(ModelError, match=re.escape(f"checkpoint {tmp_path} has no config.json")):
        load_model(str(tmp_path))


def test_load_config_without_weights(tmp_path):
    TimesformerConfig().save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=re.escape(f"checkpoint {tmp_path}: weights could not be loaded")):
        load_model(str(tmp_path))


def test_load_preset_needs_labels():
    with pytest.raises(ModelError, match=re.escape("preset 'timesformer-tiny' has random weights; pass label_names")):
        load_model(TINY)
    assert load_model(TINY, label_names=LABELS).label_names == LABELS


def test_load_unreachable_hub_id(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no network
    name = "inforates-test/no-such-model"
    with pytest.raises(ModelError, match=re.escape(f"weights for {name!r} could not be loaded")) as err:
        load_model(name, label_names=LABELS)
    assert "HF_HUB_OFFLINE" in str(err.value) and "\n" not in str(err.value)
