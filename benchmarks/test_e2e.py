"""End to end: a loader feeding the tiny model, per setting, with the data-wait share.

One round is an epoch of inference over the clips; ``extra_info["data_wait_share"]`` is
the share of the round spent waiting for the next batch (the rest is the model), so a
report shows whether a setting is bound by the loader or by the model.
"""

from __future__ import annotations

import time

import pytest
import torch

from inforates.loaders import LOADERS, LoaderOptions
from inforates.models import MODELS, build_model
from inforates.sampling import Sampling

from bench_common import ROUNDS

MODEL = "timesformer-tiny"
LOADER_NAMES = [n for n in ("dali", "seed", "decord", "pyav", "torchcodec") if n in LOADERS]


@pytest.mark.parametrize("loader_name", LOADER_NAMES)
def test_loader_and_model(benchmark, clips, setting, loader_name):
    coverage, stride = setting
    cfg = MODELS.get(MODEL)
    sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=cfg.num_frames)
    options = LoaderOptions(batch_size=8, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std, num_threads=2)
    model = build_model(MODEL, label_names=[f"class{i}" for i in range(3)], seed=0).eval()
    loader = LOADERS.get(loader_name)(clips.records, sampling, options)
    waits: list[float] = []
    totals: list[float] = []

    def epoch() -> int:
        seen, wait, t_start = 0, 0.0, time.perf_counter()
        batches = iter(loader)
        with torch.inference_mode():
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                wait += time.perf_counter() - t0
                if batch is None:
                    break
                model(batch.video)
                seen += len(batch.rows)
        waits.append(wait)
        totals.append(time.perf_counter() - t_start)
        return seen

    try:
        epoch()  # warm-up: pipelines, pools, first forward
        seen = benchmark.pedantic(epoch, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        loader.close()
    assert seen == len(clips.records)
    benchmark.group = f"e2e {clips.id} c{coverage} s{stride}"
    benchmark.extra_info.update(
        suite="e2e", loader=loader_name, model=MODEL, codec=clips.codec, gop=clips.gop, coverage=coverage,
        stride=stride, clips=len(clips.records), image_size=cfg.image_size,
        data_wait_share=sum(waits[-ROUNDS:]) / sum(totals[-ROUNDS:]) if sum(totals) > 0 else None,
    )
