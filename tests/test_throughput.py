"""inforates.throughput and the ``throughput`` command, on small stamped clips."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from inforates.commands.bench import throughput
from inforates.loaders import LOADERS, LoaderOptions
from inforates.sampling import Sampling
from inforates.throughput import add_ratios, measure_throughput


def test_measures_each_loader_on_the_same_clips(stamped_clips):
    records = stamped_clips.records("mjpeg", 4)
    result = measure_throughput(records, Sampling(coverage=50, stride=2), loaders=["dali", "seed", "pyav"],
                                options=LoaderOptions(batch_size=2, image_size=32), epochs=1)
    assert list(result["loaders"]) == ["dali", "seed", "pyav"]
    for name, r in result["loaders"].items():
        assert r["clips"] == 4 and r["clips_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["frames_per_s"] == pytest.approx(r["clips_per_s"] * 8)
    assert result["loaders"]["seed"]["vs_seed"] is None
    assert result["loaders"]["pyav"]["max_abs_diff"] < 64 / 255 / 0.225  # same frames, close values
    dali = result["loaders"]["dali"]
    assert dali["best_peer"] == "pyav"
    assert dali["vs_best_peer"] == pytest.approx(dali["clips_per_s"] / result["loaders"]["pyav"]["clips_per_s"])


def test_ratios():
    results = {n: {"clips_per_s": v} for n, v in {"dali": 300.0, "seed": 100.0, "decord": 150.0, "pyav": 200.0}.items()}
    add_ratios(results)
    assert results["dali"]["vs_seed"] == 3.0 and results["dali"]["best_peer"] == "pyav"
    assert results["dali"]["vs_best_peer"] == 1.5
    assert results["pyav"]["best_peer"] == "dali" and results["seed"]["vs_seed"] is None


def test_bad_arguments_are_named(stamped_clips):
    records = stamped_clips.records("mjpeg", 1)
    with pytest.raises(ValueError, match=re.escape("unknown loader 'nope'; choose from: ")):
        measure_throughput(records, Sampling(), loaders=["nope"])
    with pytest.raises(ValueError, match=re.escape("epochs (0) must be an integer >= 1")):
        measure_throughput(records, Sampling(), loaders=["pyav"], epochs=0)


def test_command_help_and_json(stamped_clips, tmp_path, monkeypatch):
    assert CliRunner().invoke(throughput, ["--help"]).exit_code == 0
    manifest = tmp_path / "m.csv"
    pd.DataFrame([{"video_path": r.video_path, "label": r.label, "label_id": r.label_id, "num_frames": r.num_frames}
                  for r in stamped_clips.records("mjpeg", 3)]).to_csv(manifest, index=False)
    args = ["--manifest", str(manifest), "--loaders", "pyav,seed", "--coverage", "25", "--stride", "4",
            "--image-size", "32", "--epochs", "1", "--batch-size", "2"]
    res = CliRunner().invoke(throughput, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["loaders"]) == {"pyav", "seed"} and data["loaders"]["pyav"]["vs_seed"] > 0
    assert data["setting"]["coverage"] == 25.0 and data["setting"]["stride"] == 4
    text = CliRunner().invoke(throughput, args)
    assert text.exit_code == 0 and "vs best peer" in text.output
    bad = CliRunner().invoke(throughput, ["--manifest", str(manifest), "--loaders", "dali,nope"])
    assert bad.exit_code == 2 and "unknown loader 'nope'" in bad.output
    # a loader whose library does not load here (e.g. torchcodec beside the CPU torch) says why
    monkeypatch.setitem(LOADERS._unavailable, "ghost", "ghostlib does not load (libghost.so: cannot open)")
    missing = CliRunner().invoke(throughput, ["--manifest", str(manifest), "--loaders", "dali,ghost"])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    assert "loader 'ghost' is not available here: ghostlib does not load (libghost.so: cannot open)" in missing.output
    gop = CliRunner().invoke(throughput, ["--manifest", str(manifest), "--gop", "5"])
    assert gop.exit_code == 2 and "--gop needs --codec" in gop.output
