"""The report on a sweep whose truth is known: a results folder written through the sweep's
own file format, with per-clip outcomes that follow fixed rules.

60 clips, three classes (20 each), the 5 x 5 grid at N = 50 frames, T = 8::

    Aliasing   right iff stride < 8          (fails at large strides)
    LateEvent  right iff coverage >= 75      (fails at low coverage)
    Static     always right

So the report must find a stride effect and a coverage effect, a 100 % -> 25 % drop of
1.0 for LateEvent and 0 for the others, and flag c10_s16 and c25_s16 (frame 0 only, like
c10_s8) as degenerate instead of testing them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from inforates._io import atomic_write_text
from inforates.commands.sweep import report_command
from inforates.report import cochran_q, holm, mcnemar_exact, pareto_front, write_report
from inforates.sweep import aggregate, plan_settings, setting_path

CLASSES = ["Aliasing", "LateEvent", "Static"]
PER_CLASS = 20
RULES = {
    0: lambda c, s: s < 8,
    1: lambda c, s: c >= 75,
    2: lambda c, s: True,
}


def _result(p, samples):
    correct = sum(y == pred for _, y, pred, _ in samples)
    per_class = {
        name: {"label_id": i, "correct": sum(1 for _, y, pred, _ in samples if y == i and pred == i), "total": PER_CLASS}
        for i, name in enumerate(CLASSES)
    }
    sel = p.selection
    return {
        "coverage": p.coverage, "stride": p.stride, "policy": "fixed", "offset": "start", "frames_per_clip": 8,
        "distinct_frames": sel.distinct_frames, "span_frames": sel.span_frames, "accuracy": correct / len(samples),
        "top5_accuracy": 1.0, "top_k": 3, "correct": correct, "correct_top5": len(samples), "total": len(samples),
        "skipped": 0, "manifest_clips": len(samples), "loader_clips_per_s": 100.0 + p.stride,
        "model_clips_per_s": 200.0, "e2e_clips_per_s": 50.0 + p.stride + p.coverage / 10,
        "gflops_per_clip": 0.0025, "params": 298115, "peak_memory_mb": 600.0, "peak_memory_kind": "cpu_max_rss",
        "world_size": 1, "device": "cpu", "batch_size": 8, "image_size": 32, "model": "tiny", "loader": "dali",
        "per_class": per_class, "samples": samples, "skipped_clips": [],
    }


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    plan = plan_settings([10, 25, 50, 75, 100], [1, 2, 4, 8, 16], num_frames=50, frames_per_clip=8)
    labels = [i for i in range(len(CLASSES)) for _ in range(PER_CLASS)]
    for p in plan:
        samples = []
        for row, y in enumerate(labels):
            right = RULES[y](p.coverage, p.stride)
            pred = y if right else (y + 1) % len(CLASSES)
            samples.append([row, y, pred, 1])
        record = {"setting": p.name, "fingerprint": {}, "result": _result(p, samples)}
        atomic_write_text(setting_path(out, p.name), json.dumps(record))
    aggregate(out, plan)
    info = {"device": "cpu", "world_size": 1, "date": "2026-01-01", "git_sha": "abc",
            "inputs": {"model": "tiny", "manifest": "synthetic.csv", "clips": 60, "num_frames": 50, "frames_per_clip": 8}}
    atomic_write_text(out / "sweep.json", json.dumps(info))
    return out


@pytest.fixture(scope="module")
def report(results_dir):
    return write_report(results_dir)


def test_files_written_and_not_empty(report, results_dir):
    names = {p.name for p in report.files}
    assert {"accuracy_heatmap.png", "accuracy_vs_coverage.png", "accuracy_vs_gflops.png",
            "accuracy_vs_throughput.png", "per_class_heatmaps.png", "per_class_drop.png",
            "stats.json", "summary.md"} <= names
    for p in report.files:
        assert p.parent == results_dir / "report" and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_statistics_find_both_effects(report):
    tests = report.stats["tests"]
    assert tests["all settings"]["p"] < 1e-6
    assert tests["coverage effect (stride 1)"]["p"] < 1e-6
    assert tests["stride effect (coverage 100)"]["p"] < 1e-6
    pairs = {p["setting"]: p for p in report.stats["mcnemar_vs_reference"]}
    assert report.stats["reference"] == "c100_s1"
    assert "c10_s16" not in pairs and "c25_s16" not in pairs and "c100_s1" not in pairs
    assert len(pairs) == 25 - 2 - 1
    assert pairs["c100_s2"]["p"] == 1.0  # identical outcomes
    assert (pairs["c100_s8"]["ref_only_correct"], pairs["c100_s8"]["other_only_correct"]) == (20, 0)
    assert pairs["c100_s8"]["p_holm"] < 1e-4


def test_summary_flags_degenerate_and_shows_cliffs(report):
    text = (report.out_dir / "summary.md").read_text()
    assert "- c10_s16 = c10_s8" in text and "- c25_s16 = c10_s8" in text
    assert "| 10 | 0.667 | 0.667 | 0.667 | 0.333 | 0.333 = |" in text  # stride 8/16 lose Aliasing too
    assert re.search(r"\| LateEvent \| 1\.000 \| 0\.000 \| 1\.000 \|", text)  # 100 % -> 25 % drop
    assert re.search(r"\| Static \| 1\.000 \| 1\.000 \| 0\.000 \|", text)
    assert "Every setting costs 0.0025 GFLOPs" in text


def test_report_command(results_dir, tmp_path):
    res = CliRunner().invoke(report_command, [str(results_dir), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "summary.md").stat().st_size > 0


def test_unfinished_sweep_is_a_clear_error(results_dir, tmp_path):
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "c10_s1.json").write_text(setting_path(results_dir, "c10_s1").read_text())
    res = CliRunner().invoke(report_command, [str(tmp_path)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"Error: {tmp_path} is not a finished sweep: results.csv is missing "
        f"(1 setting file(s) found: rerun the sweep with --out {tmp_path} to finish it)"
    )


# -- the statistics and the frontier against independent oracles ------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("lower", [True, False])
def test_pareto_front_matches_brute_force(seed, lower):
    rng = np.random.default_rng(seed)
    cost, acc = rng.integers(0, 6, 30).astype(float), rng.integers(0, 6, 30) / 5
    better = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
    at_most = (lambda a, b: a <= b) if lower else (lambda a, b: a >= b)

    def dominated(i):  # someone at most as costly and more accurate, or cheaper and as accurate
        return any((at_most(cost[j], cost[i]) and acc[j] > acc[i]) or (better(cost[j], cost[i]) and acc[j] >= acc[i])
                   for j in range(len(cost)))

    want = np.array([not dominated(i) for i in range(len(cost))])
    got = pareto_front(cost, acc, lower_cost_is_better=lower)
    # Among exact duplicates (same cost and accuracy) the frontier keeps one point.
    for i in np.flatnonzero(want & ~got):
        assert any(got[j] and cost[j] == cost[i] and acc[j] == acc[i] for j in range(len(cost)))
    assert not (got & ~want).any()


def test_cochran_q_with_two_settings_is_mcnemar_chi2():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (50, 2))
    b, c, _ = mcnemar_exact(x[:, 0], x[:, 1])
    q, p, df = cochran_q(x)
    assert df == 1 and q == pytest.approx((b - c) ** 2 / (b + c))
    assert cochran_q(np.ones((10, 4))) == (0.0, 1.0, 3)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_comparison_of_two_sweeps_side_by_side(tmp_path, results_dir):
    """Two finished sweeps (e.g. fixed vs antialias) in one table and one figure."""
    import shutil

    from inforates.report import write_comparison

    other = tmp_path / "other"
    shutil.copytree(results_dir, other)
    files = write_comparison([results_dir, other], tmp_path / "cmp")
    assert [f.name for f in files] == ["comparison.csv", "comparison_vs_stride.png", "comparison.md"]
    assert all(f.stat().st_size > 0 for f in files)
    text = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "1: " in text and "2: " in text
    with pytest.raises(ValueError, match="at least two"):
        write_comparison([results_dir], tmp_path / "cmp2")
