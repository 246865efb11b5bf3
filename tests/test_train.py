"""Training in one process: config keys and aliases, validation before any process-group
work, exactly-once with gradient accumulation, checkpoint contents (loadable with weights_only)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from inforates.config import ConfigError
from inforates.data.manifest import ManifestError, read_manifest
from inforates.models import ModelError, build_model
from inforates.train import (
    ResumeError,
    TrainConfig,
    latest_checkpoint,
    load_config,
    parse_fault,
    parse_rates,
    train,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from inforates.data.splits import build_manifest
    from inforates.data.synth import generate

    root = tmp_path_factory.mktemp("train_data")
    s = generate(root / "synth", classes=["FlashEarly", "OscillateFast"], groups=3, clips_per_group=2,
                 test_groups=1, num_frames=20, size=32)
    train_csv = root / "train.csv"
    build_manifest(s.clips_dir, s.split_dir / "trainlist01.txt", out=train_csv)
    return {"train": train_csv, "n": len(read_manifest(train_csv))}


def test_seed_config_keys_are_aliases():
    cfg = load_config({
        "train_epochs": 3, "train_batch_size": 4, "train_learning_rate": 5e-4, "train_num_workers": 3,
        "train_use_ddp": True, "train_num_gpus": 1, "train_save_path": "/tmp/x", "train_wandb_project": "p",
        "train_wandb_run_name": "r", "train_disable_wandb": True,
    }, {"epochs": 5})
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.num_threads) == (5, 4, 5e-4, 3)
    assert cfg.use_ddp and cfg.num_gpus == 1 and cfg.save_path == Path("/tmp/x")
    assert (cfg.wandb_project, cfg.wandb_run_name, cfg.disable_wandb) == ("p", "r", True)


def test_defaults_unchanged_for_the_embedded_model():
    cfg = TrainConfig()
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.offset, cfg.grad_accum) == ("timesformer-tiny", 50, 16, 1e-3, "random", 1)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"no_such_key": 1}, "unknown override key 'no_such_key'"),
        ({"rates": "100:1,50"}, "rate ('50') must be coverage:stride, e.g. 50:2"),
        ({"rates": "100:1,150:2"}, "coverage (150.0) must be in (0, 100]"),
        ({"grad_accum": 0}, "grad_accum (0) must be an integer >= 1"),
        ({"debug_fault": "boom:0:1"}, "debug_fault ('boom:0:1') must be <crash|kill|hang>:<rank>:<step>"),
    ],
)
def test_bad_keys_name_the_value(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_parsers():
    assert parse_rates(["100:1", "50:2"]) == [(100.0, 1), (50.0, 2)]
    assert parse_fault("kill:1:7") == ("kill", 1, 7) and parse_fault(None) is None


@pytest.fixture
def as_rank0_of_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun's environment for rank 0 of 2, with no peer: reaching init_process_group
    would block (then fail on the unreachable port), so errors must come first."""
    for k, v in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "9"}.items():
        monkeypatch.setenv(k, v)


def _fails_before_process_group(cfg: TrainConfig, exc: type[BaseException], message: str) -> None:
    with pytest.raises(exc, match=re.escape(message)):
        train(cfg)
    assert not dist.is_initialized()


def test_missing_manifest_fails_first(as_rank0_of_2, tmp_path):
    cfg = TrainConfig(train_manifest=tmp_path / "nope.csv", out_dir=tmp_path / "run")
    _fails_before_process_group(cfg, ManifestError, f"manifest not found: {tmp_path / 'nope.csv'}")


def test_wandb_enabled_but_missing_fails_first(as_rank0_of_2, tmp_path, data, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    cfg = load_config({"train_disable_wandb": False}, {"train_manifest": data["train"], "out_dir": tmp_path})
    _fails_before_process_group(cfg, ConfigError, "wandb logging is enabled (train_disable_wandb: false or --wandb) but wandb is not installed")


def test_use_ddp_false_under_torchrun_fails_first(as_rank0_of_2, tmp_path, data):
    cfg = load_config({"train_use_ddp": False}, {"train_manifest": data["train"], "out_dir": tmp_path})
    _fails_before_process_group(cfg, ConfigError, "use_ddp (train_use_ddp) is false but torchrun started 2 processes")


def test_model_checkpoint_of_another_architecture_fails_first(as_rank0_of_2, tmp_path, data):
    other = tmp_path / "videomae"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    cfg = TrainConfig(model=str(other), train_manifest=data["train"], out_dir=tmp_path / "run")
    _fails_before_process_group(cfg, ModelError, f"checkpoint {other} is a 'videomae' model, expected timesformer")


def test_resume_from_another_architecture_fails_first(as_rank0_of_2, tmp_path, data):
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000003"
    build_model("timesformer-tiny", label_names=["FlashEarly", "OscillateFast"], num_frames=4).save(ckpt / "model")
    torch.save({"format": 1}, ckpt / "state.pt")
    cfg = TrainConfig(train_manifest=data["train"], out_dir=tmp_path / "run", resume="auto")
    _fails_before_process_group(
        cfg, ResumeError, f"resume checkpoint {ckpt} is a different architecture (num_frames: 4 in the checkpoint, 8 for model 'timesformer-tiny')"
    )
    cfg = TrainConfig(train_manifest=data["train"], out_dir=tmp_path / "run", resume=str(tmp_path / "nope"))
    _fails_before_process_group(cfg, ResumeError, f"resume checkpoint not found: {tmp_path / 'nope'}")


def test_single_process_every_clip_once_and_checkpoint(tmp_path, data):
    cfg = load_config(None, {
        "train_manifest": data["train"], "out_dir": tmp_path / "run", "epochs": 2, "batch_size": 2,
        "debug_log_rows": True, "grad_accum": 2, "warmup_epochs": 0,
    })
    rows_seen: list[dict] = []
    result = train(cfg, progress=rows_seen.append)
    assert [r["epoch"] for r in rows_seen] == [1, 2]
    for r in result.history:
        assert r["clips"] == data["n"] and 0 <= r["data_wait_share"] <= 1
    logged = [json.loads(x) for x in (tmp_path / "run" / "debug" / "rows-rank0.jsonl").read_text().splitlines()]
    for entry in logged:
        assert sorted(entry["rows"]) == list(range(data["n"]))
    # 8 clips, batch 2 -> 4 micro-batches per epoch, accum 2 -> 2 steps
    assert [r["step"] for r in result.history] == [2, 4]
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-00000004"
    state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["micro_step"] == 0 and state["step"] == 4
    assert set(state["rng"]) >= {"torch", "numpy_keys", "python"}
    assert (result.checkpoint / "model.safetensors").is_file()


def test_training_with_policy_antialias(tmp_path, data):
    """The anti-aliased sampling mode trains end to end (the loader filters the window)."""
    cfg = load_config(None, {"train_manifest": data["train"], "out_dir": tmp_path / "aa", "epochs": 1,
                             "batch_size": 4, "policy": "antialias", "coverage": 50, "stride": 2})
    result = train(cfg)
    assert result.history[-1]["clips"] == data["n"]
    assert (result.checkpoint / "model.safetensors").is_file()


def test_wandb_logging_works_offline(tmp_path, data, monkeypatch):
    """WandB on (`--wandb` / train_disable_wandb: false) with WANDB_MODE=offline: no network,
    the run is written locally for a later `wandb sync`."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = load_config({"train_disable_wandb": False, "train_wandb_project": "inforates-test"},
                      {"train_manifest": data["train"], "out_dir": tmp_path / "run", "epochs": 1, "batch_size": 4})
    train(cfg)
    runs = list(tmp_path.rglob("offline-run-*"))
    assert runs, "no offline wandb run was written"
