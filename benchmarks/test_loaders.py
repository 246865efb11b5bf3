"""Loader throughput per (coverage, stride): DALI against the seed and the peer loaders.

Every benchmark of one group (same clips, same setting, same thread budget) times full
epochs of one loader, so pytest-benchmark's table reads side by side; ``benchmarks/
compare.py`` turns a saved run into clips/s and ratios to the seed and the best peer.
Before timing, each loader's output is checked against the sampler (the stamps) and
against DALI's tensor (close values), so the work compared is the same.
"""

from __future__ import annotations

import math

import pytest
import torch

from inforates.data.stamp import read_stamp
from inforates.loaders import LOADERS, DaliLoader, LoaderOptions
from inforates.sampling import Sampling

from bench_common import ROUNDS

LOADER_NAMES = [n for n in ("dali", "seed", "decord", "pyav", "torchcodec") if n in LOADERS]
OPTIONS = LoaderOptions(batch_size=8, image_size=64, num_threads=2)
MAX_DIFF = 64 / 255 / min(OPTIONS.std)  # see tests/test_reference_loaders.py

_dali_outputs: dict[tuple, torch.Tensor] = {}


def _dali_output(clips, sampling: Sampling) -> torch.Tensor:
    key = (clips.id, sampling)
    if key not in _dali_outputs:
        loader = DaliLoader(clips.records, sampling, OPTIONS)
        _dali_outputs[key] = torch.cat([b.video for b in loader])
        loader.close()
    return _dali_outputs[key]


def _time_epochs(benchmark, loader, num_clips: int) -> None:
    """Time whole epochs of ``loader``; every clip must arrive in each."""

    def epoch() -> int:
        return sum(len(b.rows) for b in loader)

    # DALI decodes up to prefetch_queue_depth (2) batches ahead while the checks before
    # timing run; untimed rounds back to back with the timed ones use those up first.
    warmup = math.ceil(2 * OPTIONS.batch_size / num_clips)
    delivered = benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=warmup)
    assert delivered == num_clips


@pytest.mark.parametrize("loader_name", LOADER_NAMES)
def test_loader_epoch(benchmark, clips, setting, loader_name):
    coverage, stride = setting
    sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=8, policy="fixed")
    selection = sampling.select(clips.records[0].num_frames)
    loader = LOADERS.get(loader_name)(clips.records, sampling, OPTIONS)
    benchmark.group = f"loaders {clips.id} c{coverage} s{stride}"
    benchmark.extra_info.update(
        suite="loaders", loader=loader_name, codec=clips.codec, gop=clips.gop, coverage=coverage, stride=stride,
        policy=sampling.policy, frames_per_clip=selection.frames_used, distinct_frames=selection.distinct_frames,
        clips=len(clips.records), batch_size=OPTIONS.batch_size, num_threads=OPTIONS.num_threads,
        image_size=OPTIONS.image_size,
    )
    try:
        warm = list(loader)  # builds pipelines/pools; checked, never timed
        video = torch.cat([b.video for b in warm])
        assert [r for b in warm for r in b.rows] == list(range(len(clips.records)))
        expected = list(selection.indices)
        assert all([read_stamp(f) for f in clip] == expected for clip in video.numpy())
        assert float((video - _dali_output(clips, sampling)).abs().max()) <= MAX_DIFF

        _time_epochs(benchmark, loader, len(clips.records))
    finally:
        loader.close()


def test_dali_antialias_epoch(benchmark, clips, setting):
    """Policy antialias beside fixed, in the same group: the whole covered window is decoded
    and box-filtered (inforates.kernels) down to the same T frames, so the cost of the
    filter shows as a ratio to DALI-fixed on the same clips and setting."""
    coverage, stride = setting
    sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=8, policy="antialias")
    selection = sampling.select(clips.records[0].num_frames)
    loader = DaliLoader(clips.records, sampling, OPTIONS)
    benchmark.group = f"loaders {clips.id} c{coverage} s{stride}"
    benchmark.extra_info.update(
        suite="loaders", loader="dali-antialias", codec=clips.codec, gop=clips.gop, coverage=coverage,
        stride=stride, policy="antialias", frames_per_clip=selection.frames_used,
        distinct_frames=selection.distinct_frames, decoded_frames=selection.decoded_frames,
        filter_stride=selection.filter_stride, clips=len(clips.records), batch_size=OPTIONS.batch_size,
        num_threads=OPTIONS.num_threads, image_size=OPTIONS.image_size,
    )
    try:
        warm = list(loader)
        video = torch.cat([b.video for b in warm])
        assert video.shape[1:] == (8, 3, OPTIONS.image_size, OPTIONS.image_size)
        assert torch.isfinite(video).all()
        if selection.filter_stride == 1:  # nothing to filter: the fixed frames exactly
            assert all([read_stamp(f) for f in clip] == list(selection.indices) for clip in video.numpy())

        _time_epochs(benchmark, loader, len(clips.records))
    finally:
        loader.close()
