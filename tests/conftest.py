"""Shared test fixtures: small videos whose frames stamp their own index, and the GPU marker."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from inforates.data.manifest import ClipRecord
from inforates.data.stamp import draw_stamp
from inforates.data.video_io import CODECS, write_video

REQUIRE_CUDA_ENV = "INFORATES_REQUIRE_CUDA"
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="session")
def load_script():
    """``load_script(name)``: the module ``benchmarks/<name>.py`` (a folder of scripts, not a
    package), loaded by its path and registered under ``name`` for the session."""
    loaded: list[str] = []

    def load(name: str):
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up while being built
            spec.loader.exec_module(module)
            loaded.append(name)
        return sys.modules[name]

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``needs_cuda`` tests skip without CUDA, or fail when ``INFORATES_REQUIRE_CUDA=1``."""
    if item.get_closest_marker("needs_cuda") is None or torch.cuda.is_available():
        return
    if os.environ.get(REQUIRE_CUDA_ENV) == "1":
        pytest.fail(f"{REQUIRE_CUDA_ENV}=1 but torch.cuda.is_available() is False")
    pytest.skip(f"needs CUDA (set {REQUIRE_CUDA_ENV}=1 to make this a failure)")


def stamped_frames(
    num_frames: int, size: int = 64, *, seed: int = 0, colour: tuple[int, int, int] | None = None
) -> list[np.ndarray]:
    """``(size, size, 3)`` uint8 frames, each with its index stamped in the top band.

    Below the band: a grey, noisy picture (``colour=None``) or one flat ``colour``.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(num_frames):
        if colour is None:
            frame = rng.integers(70, 186, (size, size, 3), dtype=np.uint8)
        else:
            frame = np.empty((size, size, 3), np.uint8)
            frame[:] = colour
        frames.append(draw_stamp(frame, i))
    return frames


MakeClip = Callable[..., Path]


@pytest.fixture(scope="session")
def make_stamped_clip(tmp_path_factory: pytest.TempPathFactory) -> MakeClip:
    """``make_stamped_clip(name, num_frames=50, codec="mjpeg", size=64, seed=0, colour=None)``
    writes a stamped clip (extension from the codec) in a session folder and returns its path."""
    root = tmp_path_factory.mktemp("stamped")

    def make(
        name: str,
        num_frames: int = 50,
        *,
        codec: str = "mjpeg",
        size: int = 64,
        seed: int = 0,
        colour: tuple[int, int, int] | None = None,
    ) -> Path:
        path = root / f"{name}{CODECS.get(codec).extension}"
        write_video(path, stamped_frames(num_frames, size, seed=seed, colour=colour), codec=codec)
        return path

    return make


@dataclass(frozen=True)
class StampedClips:
    """Clips of ``num_frames`` stamped ``size x size`` frames, per codec."""

    num_frames: int
    size: int
    paths: dict[str, list[Path]]  # codec -> clip paths
    constant: Path  # mjpeg clip of one flat colour below the stamp band
    constant_rgb: tuple[int, int, int]

    def records(self, codec: str = "mjpeg", count: int | None = None) -> list[ClipRecord]:
        """Manifest records for the ``codec`` clips; ``label_id`` is ``row % 3``."""
        paths = self.paths[codec][:count]
        return [ClipRecord(p, f"class{i % 3}", i % 3, self.num_frames) for i, p in enumerate(paths)]


CONSTANT_RGB = (100, 150, 200)


@pytest.fixture(scope="session")
def stamped_clips(make_stamped_clip: MakeClip) -> StampedClips:
    """7 mjpeg, 3 vp9, 3 vp8 and 1 h264 clips of 50 frames at 64x64, plus a flat-colour clip."""
    counts = {"mjpeg": 7, "vp9": 3, "vp8": 3, "h264": 1}
    paths = {
        codec: [make_stamped_clip(f"{codec}_{i}", 50, codec=codec, seed=i) for i in range(n)]
        for codec, n in counts.items()
    }
    constant = make_stamped_clip("constant", 50, codec="mjpeg", colour=CONSTANT_RGB)
    return StampedClips(num_frames=50, size=64, paths=paths, constant=constant, constant_rgb=CONSTANT_RGB)
