"""benchmarks/gpu_check.py, the prepared GPU script: its code paths on the CPU, tiny sizes.

On a machine without a GPU the script's sections must still be right when one is lent, so
the same functions run here with ``--allow-cpu`` (DALI's CPU decoder, MJPEG clips): the
model rows, the multi-pipeline decode with its stamp check, and the JSON it writes.
"""

from __future__ import annotations

import json

import pytest
import torch



@pytest.fixture(scope="module")
def gpu_check(load_script):
    return load_script("gpu_check")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_without_cuda_writes_nothing(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu_check.main([str(out)]) == 0
    assert not out.exists()
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU plan runs only without CUDA")
def test_cpu_plan_runs_every_section(gpu_check, tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu_check.main([str(out), "--allow-cpu"]) == 0
    report = json.loads(out.read_text())
    plan = gpu_check.cpu_plan()
    assert report["machine"]["device"] == "cpu" and report["machine"]["versions"]["torch"]

    model = report["sections"]["model"]["result"]
    assert [(r["preset"], r["frames"]) for r in model] == [(p, t) for p in plan.presets for t in plan.frames]
    for row in model:
        assert row["forward_clips_per_s"] > 0 and row["train_clips_per_s"] > 0 and row["gflops_per_clip"] > 0
    # GFLOPs grow with T: the model was really built with num_frames = T
    assert model[1]["gflops_per_clip"] > model[0]["gflops_per_clip"]

    assert "CUDA" in report["sections"]["kernels"]["result"]["skipped"]

    decode = report["sections"]["decode"]["result"]
    assert decode["decoder"] == "cpu" and decode["codec"] == "mjpeg"
    rows = decode["results"]
    assert [(r["coverage"], r["stride"], r["pipelines"]) for r in rows] == [
        (c, s, p) for c, s in plan.settings for p in plan.pipelines
    ]
    for i, row in enumerate(rows):  # two timed epochs over all clips, whatever the number of pipelines
        assert row["clips"] == 2 * plan.clips and row["clips_per_s"] > 0
        one = rows[i - plan.pipelines.index(row["pipelines"])]
        assert one["pipelines"] == 1
        assert row["vs_one_pipeline"] == pytest.approx(row["clips_per_s"] / one["clips_per_s"])


def test_a_failing_section_is_recorded_and_fails_the_run(gpu_check, tmp_path, monkeypatch):
    def broken(plan, log):
        raise RuntimeError("decoder exploded")

    monkeypatch.setitem(gpu_check.SECTIONS, "decode", broken)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "gpu.json"
    assert gpu_check.main([str(out), "--allow-cpu", "--sections", "decode"]) == 1
    report = json.loads(out.read_text())
    assert report["sections"]["decode"]["result"] == {"error": "RuntimeError: decoder exploded"}


def test_unknown_section_is_a_usage_error(gpu_check, tmp_path):
    with pytest.raises(SystemExit) as exc:
        gpu_check.main([str(tmp_path / "x.json"), "--sections", "model,nvdec"])
    assert exc.value.code == 2


@pytest.mark.needs_cuda  # tests/conftest.py skips it without CUDA
def test_quick_model_section_on_cuda(gpu_check, tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu_check.main([str(out), "--quick", "--sections", "model"]) == 0
    rows = json.loads(out.read_text())["sections"]["model"]["result"]
    assert rows and all(r["peak_memory_mib"] > 0 for r in rows)
