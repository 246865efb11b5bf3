"""benchmarks/compare.py: ratios per setting, change from the previous run, regression gate."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest



@pytest.fixture(scope="module")
def compare(load_script):
    return load_script("compare")


# median seconds per epoch of 8 clips
RATES = {"dali": 0.010, "seed": 0.040, "decord": 0.020, "pyav": 0.016}


def _run(path: Path, medians: dict[str, float]) -> Path:
    benchmarks = []
    for coverage in (100, 10):
        for loader, median in medians.items():
            benchmarks.append({
                "group": f"loaders mjpeg-gopdefault c{coverage} s1",
                "fullname": f"benchmarks/test_loaders.py::test_loader_epoch[{loader}-c{coverage}-s1-mjpeg-gopdefault]",
                "extra_info": {"suite": "loaders", "loader": loader, "codec": "mjpeg", "gop": None,
                               "coverage": coverage, "stride": 1, "clips": 8},
                "stats": {"median": median * (coverage / 100 if loader != "seed" else 1), "min": median},
            })
    benchmarks.append({
        "group": "model forward timesformer-tiny", "fullname": "benchmarks/test_model.py::test_forward[tiny-T8-32px]",
        "extra_info": {"suite": "model", "clips": 4}, "stats": {"median": 0.005},
    })
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return path


def test_report_has_clips_per_s_and_ratios(compare, tmp_path):
    prev, cur = _run(tmp_path / "0001_a.json", RATES), _run(tmp_path / "0002_b.json", RATES)
    assert compare.main([str(prev), str(cur), "--out-dir", str(tmp_path / "r"), "--fail-above", "10"]) == 0
    rows = {(r["coverage"], r["loader"]): r for r in csv.DictReader((tmp_path / "r" / "loaders.csv").open())}
    dali = rows[("100", "dali")]
    assert float(dali["clips_per_s"]) == pytest.approx(800)
    assert float(dali["vs_seed"]) == pytest.approx(4.0)
    assert dali["best_peer"] == "pyav" and float(dali["vs_best_peer"]) == pytest.approx(1.6)
    assert rows[("100", "seed")]["vs_seed"] == ""
    assert float(rows[("10", "dali")]["vs_seed"]) == pytest.approx(40.0)
    text = (tmp_path / "r" / "comparison.md").read_text()
    assert "| mjpeg | default | 100 | 1 | dali | 800.0 | 4.00 | 1.60 (pyav) | 800.0 | +0.0 |" in text
    assert "test_forward[tiny-T8-32px]" in text and "## Regressions" in text


def test_a_slowed_loader_trips_the_regression_option(compare, tmp_path, capsys):
    prev = _run(tmp_path / "0001_a.json", RATES)
    cur = _run(tmp_path / "0002_b.json", {**RATES, "decord": RATES["decord"] * 1.5})  # 50% slower
    out = tmp_path / "r"
    assert compare.main([str(prev), str(cur), "--out-dir", str(out), "--fail-above", "20"]) == 1
    err = capsys.readouterr().err
    assert "regression: benchmarks/test_loaders.py::test_loader_epoch[decord-c100-s1-mjpeg-gopdefault]: median time +50.0%" in err
    assert "dali" not in err
    assert "+50.0%" in (out / "comparison.md").read_text()
    assert compare.main([str(prev), str(cur), "--out-dir", str(out), "--fail-above", "60"]) == 0
    assert compare.main([str(prev), str(cur), "--out-dir", str(out)]) == 0  # no gate without the option


def test_latest_picks_the_two_newest_saves_and_a_first_run_works(compare, tmp_path):
    machine = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    machine.mkdir(parents=True)
    _run(machine / "0001_a.json", {**RATES, "pyav": 1.0})
    _run(machine / "0002_b.json", RATES)
    _run(machine / "0003_c.json", RATES)
    assert [p.name for p in compare.latest_runs(tmp_path / ".benchmarks")][-2:] == ["0002_b.json", "0003_c.json"]
    assert compare.main(["--latest", str(tmp_path / ".benchmarks"), "--out-dir", str(tmp_path / "r"), "--fail-above", "5"]) == 0
    assert compare.main([str(machine / "0001_a.json"), "--out-dir", str(tmp_path / "first")]) == 0
    assert "previous: none (first run)" in (tmp_path / "first" / "comparison.md").read_text()


def test_summary_counts_the_settings_that_meet_the_dali_targets(compare, tmp_path):
    # c100: dali 800, seed 200, pyav 500 -> 4.0x seed, 1.6x peer; c10: 8000 vs 200/5000 -> 40x, 1.6x
    slow_peer = {**RATES, "pyav": RATES["dali"] * 1.1}  # pyav within 10% of dali: misses 1.2x
    cur = _run(tmp_path / "0001_a.json", slow_peer)
    assert compare.main([str(cur), "--out-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "comparison.md").read_text()
    assert "- >= 2x the seed loader: 2 of 2 settings\n" in text
    assert "- >= 1.2x the best peer: 0 of 2 settings (below: mjpeg/default c10 s1 1.10x vs pyav, " in text


def _decode_run(path: Path, ms: dict[tuple[str, int], float]) -> Path:
    benchmarks = [{
        "group": "decode position mjpeg-gopdefault",
        "fullname": f"benchmarks/test_decode.py::test_frame_at_position[mjpeg-gopdefault-{d}-{p}]",
        "extra_info": {"suite": "decode", "loader": d, "codec": "mjpeg", "gop": None, "position": p, "clips": 4},
        "stats": {"median": v / 1e3},
    } for (d, p), v in ms.items()]
    path.write_text(json.dumps({"machine_info": {}, "benchmarks": benchmarks}))
    return path


def test_decode_positions_are_reported_relative_to_position_0(compare, tmp_path):
    run = _decode_run(tmp_path / "0001_a.json", {("dali", 0): 2.0, ("dali", 48): 8.0, ("pyav", 0): 4.0, ("pyav", 48): 5.0})
    assert compare.main([str(run), "--out-dir", str(tmp_path / "r")]) == 0
    rows = list(csv.DictReader((tmp_path / "r" / "decode.csv").open()))
    got = {(r["decoder"], int(r["position"])): (float(r["ms_per_clip"]), float(r["vs_position_0"])) for r in rows}
    assert got == {("dali", 0): (0.5, 1.0), ("dali", 48): (2.0, 4.0), ("pyav", 0): (1.0, 1.0), ("pyav", 48): (1.25, 1.25)}
    assert "| mjpeg | default | dali | 48 | 2.000 | 4.00 |" in (tmp_path / "r" / "comparison.md").read_text()


SLOW_PLUGIN = '''
import time
import inforates.loaders.pyav as pyav

_read = pyav.read_frames


def _slow_read(path, indices):
    time.sleep(0.02)  # deliberately slowed: 20 ms more per clip
    return _read(path, indices)


pyav.read_frames = _slow_read
pyav.PyAVLoader.decode = lambda self, path, indices: _slow_read(path, indices)
'''


def test_a_deliberately_slowed_loader_trips_the_gate_on_real_benchmark_runs(compare, tmp_path, monkeypatch):
    """Two real timed pytest-benchmark runs of the PyAV loader, the second with its decode
    slowed by a plugin: the saved runs compare with a regression that the option turns
    into exit status 1, naming that benchmark."""
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "slowpyav.py").write_text(SLOW_PLUGIN)
    storage = tmp_path / "storage"
    env = {**os.environ, "INFORATES_BENCH_CLIPS": "4", "INFORATES_BENCH_ROUNDS": "3", "INFORATES_BENCH_GRID": "quick",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "benchmarks" / "test_loaders.py"),
            "-k", "test_loader_epoch and pyav and c100-s1 and mjpeg", "--benchmark-enable", "--benchmark-only",
            "--benchmark-autosave", f"--benchmark-storage={storage}"]
    for extra in ([], ["-p", "slowpyav"]):
        done = subprocess.run(args + extra, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = compare.latest_runs(storage)
    assert len(runs) == 2
    out = tmp_path / "report"
    assert compare.main(["--latest", str(storage), "--out-dir", str(out), "--fail-above", "50"]) == 1
    slowed = {r["loader"]: float(r["change_pct"]) for r in csv.DictReader((out / "loaders.csv").open())}
    assert set(slowed) == {"pyav"} and slowed["pyav"] > 50  # 4 clips x 20 ms on top of a few ms


def _collected(*args: str) -> int:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFORATES_BENCH_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(root / "benchmarks" / "test_loaders.py"), *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return sum(1 for line in done.stdout.splitlines() if "::" in line)


def test_timed_runs_cover_the_whole_grid_and_untimed_runs_a_subset():
    """``nox -s benchmark`` passes --benchmark-enable over the addopts' --benchmark-disable:
    that run is timed (pytest-benchmark's own rule), so it gets the full 5 x 5 grid."""
    per_setting = _collected("--benchmark-disable") // 3  # the quick grid has 3 settings
    assert _collected("--benchmark-enable") == 25 * per_setting
    assert _collected("--benchmark-disable", "--benchmark-enable") == 25 * per_setting
