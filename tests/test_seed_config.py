"""A seed-style config.yaml (data keys with the seed's names and meanings) works as is."""

import json
import re

import pytest
from click.testing import CliRunner

from inforates import config as cfglib
from inforates.cli import RunConfig, cli
from inforates.data.config import DataConfig, ensure_manifests
from inforates.data.synth import generate
from inforates.models import build_model

SMALL = dict(classes=["FlashEarly", "FlashLate"], groups=4, clips_per_group=2, test_groups=1,
             num_frames=20, size=32, codec="mjpeg", seed=0)


def _seed_yaml(tmp_path, **extra):
    summary = generate(tmp_path / "UCF101_data", **SMALL)
    lines = {
        "clips_dir": summary.clips_dir,
        "train_manifest": tmp_path / "ucf101_train.csv",
        "eval_manifest": tmp_path / "ucf101_test.csv",
        "fixed_frames": 20,
        "fixed_out_dir": tmp_path / "UCF101_20f",
        "split_file": summary.split_dir / "trainlist01.txt",
        "use_dev_split": False,
        "build_manifest_if_missing": True,
        "results_dir": tmp_path / "results",
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def test_seed_data_keys_build_missing_manifests_and_run(tmp_path):
    config = _seed_yaml(tmp_path, coverage=100, stride=1)
    ckpt = tmp_path / "model"
    build_model("timesformer-tiny", label_names=["FlashEarly", "FlashLate"], seed=0).save(ckpt)
    res = CliRunner().invoke(cli, ["run", "--config", str(config), "--checkpoint", str(ckpt), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["total"] == 4  # testlist01: 2 classes x 1 group x 2 clips
    assert result["manifest"] == str(tmp_path / "ucf101_test.csv")
    assert (tmp_path / "ucf101_test.csv").is_file()


def test_dev_split_is_carved_from_train_by_source(tmp_path):
    config = _seed_yaml(tmp_path, use_dev_split=True)
    data = cfglib.resolve(DataConfig, cfglib.load_yaml(config))
    train, dev = ensure_manifests(data)
    import pandas as pd

    t, d = pd.read_csv(train), pd.read_csv(dev)
    assert len(t) + len(d) == 12 and len(d) > 0  # 2 classes x 3 train groups x 2 clips
    assert not set(t["source_video"]) & set(d["source_video"])


def test_keys_of_other_sections_pass_but_typos_fail(tmp_path):
    data = {"clips_dir": "x", "eval_manifest": "e.csv", "coverage": 50, "epochs": 3}
    cfg = cfglib.resolve(RunConfig, data)
    assert cfg.coverage == 50 and str(cfg.manifest) == "e.csv"
    with pytest.raises(cfglib.ConfigError, match=re.escape("unknown config key 'clip_dir'")):
        cfglib.resolve(RunConfig, {"clip_dir": "x"})


def test_missing_manifest_without_build_flag_names_it(tmp_path):
    data = DataConfig(eval_manifest=tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match=re.escape(f"manifest not found: {tmp_path / 'nope.csv'}")):
        ensure_manifests(data)


def test_one_seed_config_serves_every_command(tmp_path):
    """The seed's config.yaml mixes data, train_* and eval_* keys; each command takes its own."""
    from inforates.sweep import SweepConfig
    from inforates.train import TrainConfig

    seed = {
        "clips_dir": "UCF101_data/UCF101_50f", "split_file": "ucfTrainTestlist/trainlist01.txt",
        "use_dev_split": True, "build_manifest_if_missing": True, "results_dir": "results",
        "train_epochs": 3, "train_batch_size": 4, "train_learning_rate": 1e-4,
        "eval_manifest": "test.csv", "eval_coverages": [10, 100], "eval_strides": [1, 16], "eval_batch_size": 2,
    }
    assert cfglib.resolve(TrainConfig, seed).epochs == 3
    sweep = cfglib.resolve(SweepConfig, seed)
    assert sweep.coverages == (10.0, 100.0) and sweep.strides == (1, 16) and sweep.batch_size == 2
    assert str(cfglib.resolve(RunConfig, seed).manifest) == "test.csv"
    assert cfglib.resolve(DataConfig, seed).use_dev_split is True
