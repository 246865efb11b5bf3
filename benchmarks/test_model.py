"""Model forward and train step per clip length T and resolution, for the registered presets.

Random weights (throughput does not depend on them). Presets too large for a CPU run
(the 224^2, 12-layer ``*-base`` ones) run only on CUDA or with ``INFORATES_BENCH_LARGE=1``.
"""

from __future__ import annotations

import os

import pytest
import torch

from inforates.models import MODELS, build_model

from bench_common import ROUNDS, timed

BATCH = 4
LABELS = [f"class{i}" for i in range(5)]
LARGE_IMAGE_SIZE = 224  # full-size presets (timesformer-base, vit-frames-base): minutes per round on a CPU


def _large(name: str) -> bool:
    return MODELS.get(name).image_size >= LARGE_IMAGE_SIZE


def _cases(config: pytest.Config) -> list[tuple[str, int, int]]:
    cases = []
    for name in MODELS.names():
        size = MODELS.get(name).image_size
        if _large(name):
            cases.append((name, 8, size))
            continue
        frames = (4, 8, 16) if timed(config) else (8,)
        sizes = (size, 2 * size) if timed(config) else (size,)
        cases += [(name, t, s) for t in frames for s in sizes]
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_case" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("model_case", cases, ids=[f"{n}-T{t}-{s}px" for n, t, s in cases])


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _skip_large(name: str) -> None:
    if _large(name) and not torch.cuda.is_available() and os.environ.get("INFORATES_BENCH_LARGE") != "1":
        pytest.skip(f"{name} is too large for a CPU benchmark (set INFORATES_BENCH_LARGE=1 to run it)")


def _setup(benchmark, model_case, kind: str):
    name, frames, size = model_case
    _skip_large(name)
    device = _device()
    model = build_model(name, label_names=LABELS, seed=0).to(device)
    video = torch.randn(BATCH, frames, 3, size, size, device=device)
    benchmark.group = f"model {kind} {name}"
    benchmark.extra_info.update(suite="model", kind=kind, model=name, frames_per_clip=frames, image_size=size,
                                batch_size=BATCH, clips=BATCH, device=str(device))
    return model, video


def test_forward(benchmark, model_case):
    model, video = _setup(benchmark, model_case, "forward")
    model.eval()

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            out = model(video)
        _sync()
        return out

    forward()  # first call pays one-off allocation costs
    out = benchmark.pedantic(forward, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert out.shape == (BATCH, len(LABELS))


def test_train_step(benchmark, model_case):
    model, video = _setup(benchmark, model_case, "train_step")
    model.train()
    labels = torch.arange(BATCH, device=video.device) % len(LABELS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(video), labels)
        loss.backward()
        optimizer.step()
        _sync()
        return float(loss.detach())

    step()
    loss = benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert loss == loss  # not NaN
