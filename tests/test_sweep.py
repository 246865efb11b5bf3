"""The sweep: exactly-once under DDP (world sizes 1, 2, 3), resume after a kill, seed config
keys, grid validation, degenerate settings, ``flops`` for T != 8, one-line CLI errors.

Data: 7 synthetic clips of 20 frames plus one corrupt file (manifest row 3), and a
random-init ``timesformer-tiny`` saved to disk. Accuracy is chance level; what is checked is
which clips were counted, how often, and that every run agrees with the single-process one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from inforates.commands.sweep import flops_command, report_command, sweep_command
from inforates.config import ConfigError
from inforates.data.manifest import label_names, read_manifest, write_manifest
from inforates.flops import count_flops
from inforates.models import build_model
from inforates.sweep import SweepConfig, load_results, plan_settings, resolve_config, run_sweep

CLASSES = ["OscillateFast", "FlashLate", "RotateClockwise"]
N = 20  # frames per clip
CORRUPT_ROW = 3
GRID = {"coverages": [50, 100], "strides": [1, 4]}
EXACT = ["accuracy", "top5_accuracy", "correct", "correct_top5", "total", "skipped", "manifest_clips"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    from inforates.data.splits import build_manifest
    from inforates.data.synth import generate

    root = tmp_path_factory.mktemp("sweep")
    summary = generate(root / "synth", classes=CLASSES, groups=3, clips_per_group=2, test_groups=1,
                       num_frames=N, size=32)
    built = build_manifest(summary.clips_dir, summary.split_dir / "trainlist01.txt", out=root / "all.csv")
    rows = [{k: r[k] for k in ("video_path", "label", "label_id", "num_frames")} for r in built.rows[:7]]
    corrupt = root / "corrupt.avi"
    corrupt.write_bytes(b"this is not a video\n" * 64)
    rows.insert(CORRUPT_ROW, {**rows[0], "video_path": corrupt})
    write_manifest(root / "clips.csv", rows)
    records = read_manifest(root / "clips.csv")
    model = build_model("timesformer-tiny", label_names=label_names(records), seed=0)
    model.save(root / "model")
    return SimpleNamespace(root=root, manifest=root / "clips.csv", checkpoint=str(root / "model"))


def _yaml(tiny, out: Path, **extra) -> Path:
    """A config in the seed's key names, as a user would bring it."""
    data = {"eval_manifest": str(tiny.manifest), "eval_coverages": GRID["coverages"],
            "eval_strides": GRID["strides"], "eval_batch_size": 2, "eval_workers": 1,
            "checkpoint": tiny.checkpoint, "device": "cpu", "out_dir": str(out), **extra}
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cfg(tiny, out: Path, **extra) -> SweepConfig:
    return resolve_config(yaml.safe_load(_yaml(tiny, out, **extra).read_text()))


def _settings(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "settings").glob("c*_s*.json"))}


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> Path:
    """The single-process sweep every other run must agree with."""
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = run_sweep(_cfg(tiny, out, measure_loader=True))
    assert summary.world_size == 1 and len(summary.evaluated) == 4 and not summary.reused
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


# -- exactly once ----------------------------------------------------------------------


def test_world_size_1_counts_each_clip_once(reference):
    readable = [r for r in range(8) if r != CORRUPT_ROW]
    res = load_results(reference)
    assert len(res.results) == 4
    for name, record in _settings(reference).items():
        r = record["result"]
        rows = [s[0] for s in r["samples"]]
        assert rows == readable, name
        assert (r["total"], r["skipped"], r["manifest_clips"]) == (7, 1, 8), name
        assert r["correct"] == sum(s[1] == s[2] for s in r["samples"])
        assert sum(c["total"] for c in r["per_class"].values()) == 7
        assert "corrupt.avi" in r["skipped_clips"][0]["path"]
    row = res.results.iloc[0]
    assert row.peak_memory_kind == "cpu_max_rss" and row.peak_memory_mb > 0
    assert row.loader_clips_per_s > 0 and row.model_clips_per_s > 0 and row.e2e_clips_per_s > 0
    info = json.loads((reference / "sweep.json").read_text())
    assert info["world_size"] == 1 and info["config"]["batch_size"] == 2 and "git_sha" in info


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_ddp_counts_each_clip_once(tiny, reference, tmp_path, world):
    """7 clips on 2 or 3 ranks, batch 2: shards of 3+4 or 2+2+3 clips, padded last batches,
    ranks that get no last batch; every clip counted once, the corrupt one skipped once."""
    out = tmp_path / "out"
    config = _yaml(tiny, out, measure_loader=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           "-m", "inforates.evaluate", "--config", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, ref = _settings(out), _settings(reference)
    assert sorted(ours) == sorted(ref)
    for name in ref:
        a, b = ours[name]["result"], ref[name]["result"]
        assert a["world_size"] == world
        assert {k: a[k] for k in EXACT} == {k: b[k] for k in EXACT}, name
        assert a["samples"] == b["samples"], name  # same rows, labels and predictions
        assert a["per_class"] == b["per_class"]
    assert json.loads((out / "sweep.json").read_text())["world_size"] == world


# -- resume ----------------------------------------------------------------------------


def test_resume_after_kill_finishes_only_the_rest(tiny, reference, tmp_path):
    out = tmp_path / "out"
    config = _yaml(tiny, out)
    proc = subprocess.Popen([sys.executable, "-m", "inforates.evaluate", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 180
        while not _settings(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)  # mid-sweep, possibly mid-setting
    finally:
        proc.wait()
    done_before = _settings(out)
    assert 1 <= len(done_before) < 4, "the kill came too late to leave work undone"
    assert not (out / "results.csv").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "settings").glob("*.json")}
    pending = sorted(set(_settings(reference)) - set(done_before))
    (out / "settings" / f"{pending[0]}.json").write_text('{"setting": "trunc')  # a torn file is redone

    summary = run_sweep(_cfg(tiny, out))
    assert sorted(summary.reused) == sorted(done_before)
    assert sorted(summary.evaluated) == pending
    assert {p.name: p.stat().st_mtime_ns for p in (out / "settings").glob("*.json") if p.name in mtimes
            and p.stem in done_before} == {k: v for k, v in mtimes.items() if Path(k).stem in done_before}
    got, want = load_results(out).results, load_results(reference).results
    assert got[["setting", *EXACT]].equals(want[["setting", *EXACT]])
    for name, record in _settings(reference).items():
        assert _settings(out)[name]["result"]["samples"] == record["result"]["samples"]

    again = run_sweep(_cfg(tiny, out))  # nothing left to do
    assert again.evaluated == [] and len(again.reused) == 4


def test_other_sweep_in_same_folder_is_refused(tiny, reference):
    with pytest.raises(ValueError, match=re.escape("was made by a different sweep (batch_size: 2, now 3)")):
        run_sweep(_cfg(tiny, reference, eval_batch_size=3))


# -- config, grid, degenerate settings ------------------------------------------------


def test_seed_keys_are_aliases(tiny, tmp_path):
    cfg = _cfg(tiny, tmp_path / "o", eval_sample_size=5, eval_per_class=False)
    assert (cfg.manifest, cfg.coverages, cfg.strides) == (tiny.manifest, (50.0, 100.0), (1, 4))
    assert (cfg.batch_size, cfg.num_threads, cfg.sample_size, cfg.per_class) == (2, 1, 5, False)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"eval_wandb": True}, "wandb / eval_wandb is not supported"),
        ({"eval_jitter_coverage_pct": 5}, "jitter_coverage_pct / eval_jitter_coverage_pct (5) is not supported"),
        ({"eval_coverages": []}, "coverages is empty"),
        ({"eval_strides": [2, 2]}, "strides lists 2 twice (duplicate settings)"),
        ({"eval_coverages": [150]}, "coverage (150.0) must be in (0, 100]"),
        ({"offset": "random"}, "offset ('random') must be one of: start, center"),
        ({"eval_epochs": 3}, "unknown config key 'eval_epochs'"),
    ],
)
def test_bad_config_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_config(data)


def test_degenerate_settings_against_hand_derived_frames():
    """N = 50, T = 8: coverage 10 keeps frames 0-4 and coverage 25 frames 0-11, so stride 8
    and 16 at 10 % and stride 16 at 25 % all keep frame 0 alone (0 0 0 0 0 0 0 0)."""
    for policy in ("fixed", "all"):
        plan = plan_settings([10, 25, 50, 75, 100], [1, 2, 4, 8, 16], num_frames=50, frames_per_clip=8, policy=policy)
        flagged = {p.name: p.same_frames_as for p in plan if p.same_frames_as}
        assert flagged == {"c10_s16": "c10_s8", "c25_s16": "c10_s8"}, policy
    # Flags do not depend on the order the values were listed in.
    plan = plan_settings([25, 10], [16, 8], num_frames=50, frames_per_clip=8)
    assert {p.name: p.same_frames_as for p in plan} == {
        "c25_s16": "c10_s8", "c25_s8": None, "c10_s16": "c10_s8", "c10_s8": None}


def test_stride_larger_than_clip():
    with pytest.raises(ValueError, match=re.escape("stride (32) is larger than the clip (20 frames)")):
        plan_settings([100], [1, 32], num_frames=20, frames_per_clip=8)


# -- command line ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [sweep_command, flops_command, report_command])
def test_help(command):
    res = CliRunner().invoke(command, ["--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def _last_line(res) -> str:
    return res.output.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--coverages", ""], "Error: coverages is empty: give at least one value, e.g. --coverages 100"),
        (["--coverages", "10,25,10"], "Error: coverages lists 10 twice (duplicate settings)"),
        (["--strides", "1,64"], "Error: stride (64) is larger than the clip (20 frames)"),
        (["--coverages", "0"], "coverage (0) must be in (0, 100]"),
    ],
)
def test_sweep_cli_errors(tiny, tmp_path, args, message):
    res = CliRunner().invoke(sweep_command, ["--manifest", str(tiny.manifest), "--checkpoint", tiny.checkpoint,
                                             "--device", "cpu", "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    assert message in _last_line(res)


def test_report_cli_missing_dir(tmp_path):
    res = CliRunner().invoke(report_command, [str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert _last_line(res) == f"Error: results directory not found: {tmp_path / 'nope'}"


def test_flops_for_other_clip_lengths_matches_model_built_for_it():
    labels = [f"label_{i}" for i in range(400)]
    for frames in (4, 16):
        res = CliRunner().invoke(flops_command, ["--model", "timesformer-tiny", "--frames", str(frames),
                                                 "--views", "3", "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        model = build_model("timesformer-tiny", label_names=labels, num_frames=frames, seed=1)
        want = count_flops(model, frames=frames, image_size=32)
        assert got["gflops_per_view"] == pytest.approx(want.gflops_per_view, rel=1e-9)
        assert got["gflops_total"] == pytest.approx(3 * want.gflops_per_view, rel=1e-9)
        assert got["params"] == want.params and got["frames"] == frames
        assert isinstance(got["unsupported_ops"], dict)
    res = CliRunner().invoke(flops_command, ["--model", "timesformer-tiny", "--size", "48"])
    assert res.exit_code == 2
    assert _last_line(res) == "Error: size (48) must be a multiple of timesformer-tiny's patch size (32)"
