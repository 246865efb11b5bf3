"""benchmarks/compare.py: ratios per setting, change from the previous run, regression gate."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

COMPARE = Path(__file__).resolve().parent.parent / "benchmarks" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("bench_compare", COMPARE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


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
