"""Shared benchmark fixtures: generated stamped clips, the sampling grid, machine info.

Timed (``nox -s benchmark``) the loader suites run the full 5 x 5 grid (coverage 10..100 x
stride 1..16) on each clip format; untimed (``--benchmark-disable``, ``nox -s tests``, CI)
they run a three-setting subset once, so the whole folder stays under two minutes.

Knobs (environment): ``INFORATES_BENCH_CLIPS`` clips per format (default 32 timed, 8 untimed),
``INFORATES_BENCH_ROUNDS`` timed rounds per benchmark (default 5),
``INFORATES_BENCH_GRID`` ``full``/``quick`` to override the grid choice,
``INFORATES_BENCH_LARGE=1`` to include models too large for a CPU run (the 224² ``*-base`` presets).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib import metadata

import pytest
import torch

from inforates.data.manifest import ClipRecord
from inforates.data.video_io import CODECS, write_video
from inforates.provenance import cpu_name, git_sha, versions

from bench_common import CLIP_FORMATS, EXTRA_PACKAGES, NUM_FRAMES, SIZE, grid, num_clips, smooth_stamped_frames

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "setting" in metafunc.fixturenames:
        settings = grid(metafunc.config)
        metafunc.parametrize("setting", settings, ids=[f"c{c}-s{s}" for c, s in settings])


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """Versions and hardware with every saved run (principle 9)."""
    info = versions()
    for name in EXTRA_PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    machine_info["inforates"] = {
        "versions": info,
        "git_sha": git_sha(),
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "platform": platform.platform(),
    }


@dataclass(frozen=True)
class ClipSet:
    codec: str
    gop: int | None
    records: list[ClipRecord]

    @property
    def id(self) -> str:
        return f"{self.codec}-gop{self.gop or 'default'}"


@pytest.fixture(scope="session")
def clip_sets(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int | None], ClipSet]:
    root = tmp_path_factory.mktemp("bench-clips")
    sets = {}
    for codec, gop in CLIP_FORMATS:
        records = []
        for i in range(num_clips(request.config)):
            path = root / f"{codec}-gop{gop}-{i}{CODECS.get(codec).extension}"
            write_video(path, smooth_stamped_frames(i, NUM_FRAMES, SIZE, SIZE), codec=codec, gop=gop)
            records.append(ClipRecord(path, f"class{i % 3}", i % 3, NUM_FRAMES))
        sets[(codec, gop)] = ClipSet(codec, gop, records)
    return sets


@pytest.fixture(params=CLIP_FORMATS, ids=[f"{c}-gop{g or 'default'}" for c, g in CLIP_FORMATS])
def clips(request: pytest.FixtureRequest, clip_sets) -> ClipSet:
    return clip_sets[request.param]
