"""Evaluate a model at one sampling setting: accuracy, throughput and FLOPs.

Throughput is measured, never assumed:

- ``loader_clips_per_s``: a loader-only pass over the same clips (decode + select +
  resize + normalise), no model, timed after the first batch (pipeline build excluded);
- ``model_clips_per_s``: clips per second of model forward time alone (after a warm-up),
  measured inside the evaluation pass, so it includes contention with the loader's
  threads on a shared CPU;
- ``e2e_clips_per_s``: clips per second of the wall time of the evaluation pass
  (loader and model together, as a user experiences it).

Skipped clips (unreadable, truncated) are reported in ``skipped`` next to ``total`` (clips
evaluated); ``accuracy = correct / total``, and ``manifest_clips = total + skipped``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from inforates.data.manifest import ClipRecord
from inforates.flops import count_flops
from inforates.loaders import LOADERS, LoaderOptions
from inforates.models import VideoClassifier
from inforates.sampling import Sampling

log = logging.getLogger(__name__)


@dataclass
class SettingResult:
    coverage: float
    stride: int
    policy: str
    offset: str
    frames_per_clip: int
    distinct_frames: int
    span_frames: int
    accuracy: float
    correct: int
    total: int
    skipped: int
    manifest_clips: int
    loader_clips_per_s: float | None
    model_clips_per_s: float
    e2e_clips_per_s: float
    gflops_per_clip: float
    params: int
    model: str
    loader: str
    device: str
    batch_size: int
    image_size: int
    skipped_clips: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device == "gpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def _loader_pass(clip_loader, device: str) -> float | None:
    """Clips/s of one loader-only epoch, timed from the first batch on so that building
    the pipeline (a one-off) is not charged to throughput."""
    n = 0
    t0 = None
    for batch in clip_loader:
        if t0 is None:
            _sync(device)
            t0 = time.perf_counter()
            continue
        n += batch.labels.numel()
    _sync(device)
    if t0 is None or n == 0:
        return None
    elapsed = time.perf_counter() - t0
    return n / elapsed if elapsed > 0 else None


def _warm_up(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> None:
    """Two untimed forwards: the first call of a model pays one-off allocation costs."""
    with torch.inference_mode():
        x = torch.zeros(shape, device=device)
        for _ in range(2):
            model(x)


def evaluate_setting(
    model: VideoClassifier,
    records: Sequence[ClipRecord],
    sampling: Sampling,
    *,
    loader: str = "dali",
    device: str = "cpu",
    batch_size: int = 8,
    num_threads: int = 2,
    measure_loader: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SettingResult:
    """Run ``model`` over ``records`` at ``sampling``; see the module docstring for the figures."""
    if not records:
        raise ValueError("no clips to evaluate")
    num_frames = records[0].num_frames
    selection = sampling.select(num_frames)
    cfg = model.cfg
    options = LoaderOptions(
        batch_size=batch_size,
        image_size=cfg.image_size,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        device=device,
        num_threads=num_threads,
    )
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    model = model.to(torch_device).eval()
    clip_loader = LOADERS.get(loader)(records, sampling, options)
    try:
        loader_rate = _loader_pass(clip_loader, device) if measure_loader else None
        _warm_up(model, (batch_size, selection.frames_used, 3, cfg.image_size, cfg.image_size), torch_device)

        correct = total = 0
        model_time = 0.0
        t_start = time.perf_counter()
        with torch.inference_mode():
            for batch in clip_loader:
                video = batch.video.to(torch_device, non_blocking=True)
                labels = batch.labels.to(torch_device)
                _sync(device)
                t0 = time.perf_counter()
                logits = model(video)
                pred = logits.argmax(dim=-1)
                _sync(device)
                model_time += time.perf_counter() - t0
                correct += int((pred == labels).sum())
                total += int(labels.numel())
                if progress is not None:
                    progress(total, clip_loader.num_samples)
        e2e_time = time.perf_counter() - t_start
        skipped = list(clip_loader.skipped)
    finally:
        clip_loader.close()

    flops = count_flops(model, frames=selection.frames_used, image_size=cfg.image_size)
    return SettingResult(
        coverage=sampling.coverage,
        stride=sampling.stride,
        policy=sampling.policy,
        offset=sampling.offset,
        frames_per_clip=selection.frames_used,
        distinct_frames=selection.distinct_frames,
        span_frames=selection.span_frames,
        accuracy=correct / total if total else float("nan"),
        correct=correct,
        total=total,
        skipped=len(skipped),
        manifest_clips=total + len(skipped),
        loader_clips_per_s=loader_rate,
        model_clips_per_s=total / model_time if model_time > 0 else float("nan"),
        e2e_clips_per_s=total / e2e_time if e2e_time > 0 else float("nan"),
        gflops_per_clip=flops.gflops_per_view,
        params=flops.params,
        model=model.name,
        loader=loader,
        device=device,
        batch_size=batch_size,
        image_size=cfg.image_size,
        skipped_clips=[{"path": str(s.path), "reason": s.reason} for s in skipped],
    )
