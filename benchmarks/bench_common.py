"""Constants and helpers shared by the benchmark files and their conftest.

A module of its own (not ``conftest``) so that ``pytest tests benchmarks`` cannot confuse
it with ``tests/conftest.py``. Knobs: see ``benchmarks/conftest.py``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

NUM_FRAMES, SIZE = 50, 64
COVERAGES = (10, 25, 50, 75, 100)
STRIDES = (1, 2, 4, 8, 16)
QUICK_GRID = ((100, 1), (25, 4), (10, 16))
# (codec, gop): intra-only MJPEG (the default clips' format) and VP9 with a keyframe every
# 10 frames (inter-coded: decoding frame k costs the frames since its keyframe).
CLIP_FORMATS = (("mjpeg", None), ("vp9", 10))
EXTRA_PACKAGES = ("decord", "opencv-python-headless", "pytest-benchmark", "nvidia-dali-cuda120")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


ROUNDS = env_int("INFORATES_BENCH_ROUNDS", 5)


def timed(config: pytest.Config) -> bool:
    """Whether pytest-benchmark times this run: its own rule, ``--benchmark-enable`` (as
    ``nox -s benchmark`` passes) overriding the ``--benchmark-disable`` in the addopts."""
    disabled = config.getoption("benchmark_disable", default=False)
    return not disabled or bool(config.getoption("benchmark_enable", default=False))


def num_clips(config: pytest.Config) -> int:
    """Clips per format: 32 when timed (4 batches an epoch, so one round is not one batch
    and its pipeline start-up), 8 when the files only run once, untimed."""
    return env_int("INFORATES_BENCH_CLIPS", 32 if timed(config) else 8)


def grid(config: pytest.Config) -> list[tuple[int, int]]:
    choice = os.environ.get("INFORATES_BENCH_GRID") or ("full" if timed(config) else "quick")
    if choice not in ("full", "quick"):
        raise pytest.UsageError(f"INFORATES_BENCH_GRID ({choice!r}) must be full or quick")
    return [(c, s) for c in COVERAGES for s in STRIDES] if choice == "full" else list(QUICK_GRID)


def smooth_stamped_frames(seed: int, num_frames: int, width: int, height: int) -> list[np.ndarray]:
    """Stamped frames over a moving, smooth picture (compresses like video, not like noise)."""
    from inforates.data.stamp import draw_stamp

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 2 * np.pi, 3)
    out = []
    for i in range(num_frames):
        phase = base + 0.2 * i
        frame = np.stack([127 + 100 * np.sin(xx / 7 + yy / 11 + p) for p in phase], axis=-1)
        out.append(draw_stamp(frame.astype(np.uint8), i))
    return out
