"""`inforates-bench run` end to end on tiny generated data: the embedded default is built
once and reused, results carry the promised keys, and a corrupt clip is skipped and counted."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from inforates import defaults
from inforates.cli import cli
from inforates.data.splits import build_manifest
from inforates.data.synth import generate
from inforates.models import build_model

RESULT_KEYS = {
    "coverage", "stride", "policy", "frames_per_clip", "distinct_frames", "accuracy", "correct", "total",
    "skipped", "loader_clips_per_s", "e2e_clips_per_s", "gflops_per_clip", "model", "loader", "device",
}
SMALL_SYNTH = dict(classes=["FlashEarly", "FlashLate"], groups=3, clips_per_group=2, test_groups=1,
                   num_frames=20, size=32, fps=25.0, codec="mjpeg", seed=0)


@pytest.fixture
def small_default(monkeypatch, tmp_path):
    """The embedded default, shrunk so a test can build it: same code path, less work."""
    monkeypatch.setattr(defaults, "SYNTH_PARAMS", SMALL_SYNTH)
    monkeypatch.setattr(defaults, "TRAIN_OVERRIDES", dict(model="timesformer-tiny", epochs=1, batch_size=4, seed=0))
    monkeypatch.setenv("INFORATES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_default_is_built_once_then_reused(small_default):
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "--coverage", "50", "--stride", "2", "--json"])
    assert first.exit_code == 0, first.output
    assert "first run: training" in first.stderr
    result = json.loads(first.stdout.strip().splitlines()[-1])
    assert RESULT_KEYS <= set(result)
    assert (result["coverage"], result["stride"], result["policy"]) == (50.0, 2, "fixed")
    assert result["total"] == 4 and result["skipped"] == 0  # 2 classes x 1 test group x 2 clips
    assert result["frames_per_clip"] == 8 and result["distinct_frames"] == 5  # keep 10 -> 0 2 4 6 8
    assert result["provenance"]["world_size"] == 1 and result["provenance"]["versions"]["torch"]
    checkpoint = small_default.glob("model-*/final/model.safetensors")
    (weights,) = list(checkpoint)
    stamp = weights.stat().st_mtime_ns

    second = runner.invoke(cli, ["run", "--coverage", "100", "--stride", "1", "--json"])
    assert second.exit_code == 0, second.output
    assert "first run" not in second.stderr
    assert weights.stat().st_mtime_ns == stamp


def test_corrupt_clip_is_skipped_and_counted(tmp_path):
    summary = generate(tmp_path / "synth", **SMALL_SYNTH)
    manifest = tmp_path / "test.csv"
    build_manifest(summary.clips_dir, summary.split_dir / "testlist01.txt", out=manifest)
    rows = pd.read_csv(manifest)
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"\x00garbage" * 200)
    corrupt = rows.iloc[0].copy()
    corrupt["video_path"] = str(bad)
    pd.concat([rows, corrupt.to_frame().T]).to_csv(manifest, index=False)
    ckpt = tmp_path / "model"
    build_model("timesformer-tiny", label_names=["FlashEarly", "FlashLate"], seed=0).save(ckpt)

    res = CliRunner().invoke(
        cli, ["run", "--manifest", str(manifest), "--checkpoint", str(ckpt), "--coverage", "100", "--json"]
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["skipped"] == 1 and result["total"] == len(rows)
    assert result["manifest_clips"] == len(rows) + 1
    assert result["skipped_clips"][0]["path"] == str(bad)


def test_missing_checkpoint_names_the_path(tmp_path):
    summary = generate(tmp_path / "synth", **SMALL_SYNTH)
    manifest = tmp_path / "test.csv"
    build_manifest(summary.clips_dir, summary.split_dir / "testlist01.txt", out=manifest)
    missing = tmp_path / "no_such_model"
    res = CliRunner().invoke(cli, ["run", "--manifest", str(manifest), "--checkpoint", str(missing)])
    assert res.exit_code == 2
    assert f"checkpoint not found: {missing}" in res.output
