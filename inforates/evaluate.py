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

Distributed (``distributed=True`` under an initialised ``torch.distributed`` group): rank
``r`` of ``w`` loads shard ``r`` of ``w`` (DALI ``shard_id``/``num_shards``, padded last
batch dropped by ``LastBatchPolicy.PARTIAL``; a short shard may get no last batch at all).
Counts are all-reduced (never means), and the evaluated rows are gathered and checked to
be exactly the readable rows, each once::

    7 clips, 3 ranks, batch 2      rank 0: [0 1] [pad]     rank 1: [2 3] [pad]     rank 2: [4 5] [6]
    all_reduce(total) = 2 + 2 + 3 = 7 = |rows 0..6|       padding never reaches the model's counts

Skipped clips are probed identically on every rank, so they are merged by row, not summed.
Rates across ranks are ``sum(clips) / max(seconds)`` (ranks run concurrently).

Peak memory: ``torch.cuda.max_memory_allocated`` for the setting on a GPU
(``peak_memory_kind = "cuda_max_allocated"``); on a CPU the process's peak resident set
size so far (``resource.getrusage(...).ru_maxrss``, ``"cpu_max_rss"``), which never goes down
within a process, so later settings of a sweep show at least the earlier peaks. The
largest value over ranks is reported.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch
import torch.distributed as dist

from inforates.data.manifest import ClipRecord
from inforates.flops import FlopReport, count_flops
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
    top5_accuracy: float = float("nan")  # top-k with k = min(5, number of labels): see top_k
    correct_top5: int = 0
    top_k: int = 5
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # label -> label_id/correct/total
    peak_memory_mb: float | None = None
    peak_memory_kind: str = ""
    world_size: int = 1
    # [row, label_id, predicted id, top-k hit] per evaluated clip, by row; only with keep_predictions
    samples: list[list[int]] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device == "gpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def _loader_pass(clip_loader, device: str) -> tuple[int, float]:
    """Clips and seconds of one loader-only epoch, timed from the first batch on so that
    building the pipeline (a one-off) is not charged to throughput."""
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
        return 0, 0.0
    return n, time.perf_counter() - t0


def _rate(clips: int, seconds: float) -> float | None:
    return clips / seconds if clips and seconds > 0 else None


def _peak_memory_mb(device: str) -> tuple[float, str]:
    if device == "gpu" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "cpu_max_rss"


def _warm_up(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> None:
    """Two untimed forwards: the first call of a model pays one-off allocation costs."""
    with torch.inference_mode():
        x = torch.zeros(shape, device=device)
        for _ in range(2):
            model(x)


def _class_names(records: Sequence[ClipRecord], num_labels: int) -> list[str]:
    names = [f"class_{i}" for i in range(num_labels)]
    for r in records:
        if not 0 <= r.label_id < num_labels:
            raise ValueError(
                f"label_id ({r.label_id}) of {r.video_path} is outside the model's {num_labels} labels"
            )
        names[r.label_id] = r.label
    return names


def _dist_world() -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed=True needs an initialised torch.distributed process group")
    return dist.get_rank(), dist.get_world_size()


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
    keep_predictions: bool = False,
    flops: FlopReport | None = None,
    distributed: bool = False,
) -> SettingResult:
    """Run ``model`` over ``records`` at ``sampling``; see the module docstring for the figures.

    ``keep_predictions`` fills :attr:`SettingResult.samples` (per-clip outcomes, for paired
    tests). ``flops`` reuses a count for this setting's ``T`` (a sweep counts once per T).
    ``distributed`` shards the clips over the process group; every rank returns the same
    merged result.
    """
    if not records:
        raise ValueError("no clips to evaluate")
    rank, world = _dist_world() if distributed else (0, 1)
    num_frames = records[0].num_frames
    selection = sampling.select(num_frames)
    cfg = model.cfg
    class_names = _class_names(records, model.num_labels)
    num_labels = len(class_names)
    top_k = min(5, num_labels)
    options = LoaderOptions(
        batch_size=batch_size,
        image_size=cfg.image_size,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        device=device,
        num_threads=num_threads,
        shard_id=rank,
        num_shards=world,
    )
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    model = model.to(torch_device).eval()
    if device == "gpu" and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    clip_loader = LOADERS.get(loader)(records, sampling, options)
    try:
        loader_n, loader_s = _loader_pass(clip_loader, device) if measure_loader else (0, 0.0)
        _warm_up(model, (batch_size, selection.frames_used, 3, cfg.image_size, cfg.image_size), torch_device)

        # counts[0:3] = correct, correct top-k, total; then per-class correct, per-class total
        counts = torch.zeros(3 + 2 * num_labels, dtype=torch.int64)
        outcomes: list[list[int]] = []
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
                topk = logits.topk(top_k, dim=-1).indices
                _sync(device)
                model_time += time.perf_counter() - t0
                hit = (pred == labels).cpu()
                hit_k = (topk == labels[:, None]).any(dim=-1).cpu()
                labels_cpu = labels.cpu()
                counts[0] += int(hit.sum())
                counts[1] += int(hit_k.sum())
                counts[2] += int(labels_cpu.numel())
                counts[3 : 3 + num_labels] += torch.bincount(labels_cpu[hit], minlength=num_labels)
                counts[3 + num_labels :] += torch.bincount(labels_cpu, minlength=num_labels)
                outcomes.extend(
                    [row, int(y), int(p), int(k)]
                    for row, y, p, k in zip(batch.rows, labels_cpu.tolist(), pred.cpu().tolist(), hit_k.tolist())
                )
                if progress is not None:
                    progress(int(counts[2]), clip_loader.num_samples)
        e2e_time = time.perf_counter() - t_start
        skipped = [{"row": s.row, "path": str(s.path), "reason": s.reason} for s in clip_loader.skipped]
    finally:
        clip_loader.close()

    peak_mb, peak_kind = _peak_memory_mb(device)
    local = {
        "loader": (loader_n, loader_s),
        "model": (int(counts[2]), model_time),
        "e2e": (int(counts[2]), e2e_time),
        "outcomes": outcomes,
        "skipped": skipped,
        "peak_mb": peak_mb,
    }
    if world > 1:
        counts, parts = _merge_ranks(counts, local, device, world)
    else:
        parts = [local]
    correct, correct_k, total = (int(v) for v in counts[:3])
    outcomes = sorted(o for part in parts for o in part["outcomes"])
    skipped = sorted({s["row"]: s for part in parts for s in part["skipped"]}.values(), key=lambda s: s["row"])
    _check_exactly_once(outcomes, total, len(records) - len(skipped))

    def combined(key: str) -> float | None:
        return _rate(sum(p[key][0] for p in parts), max(p[key][1] for p in parts))

    if flops is None or flops.frames != selection.frames_used or flops.image_size != cfg.image_size:
        flops = count_flops(model, frames=selection.frames_used, image_size=cfg.image_size)
    per_class = {
        name: {"label_id": i, "correct": int(counts[3 + i]), "total": int(counts[3 + num_labels + i])}
        for i, name in enumerate(class_names)
        if int(counts[3 + num_labels + i]) > 0
    }
    nan = float("nan")
    return SettingResult(
        coverage=sampling.coverage,
        stride=sampling.stride,
        policy=sampling.policy,
        offset=sampling.offset,
        frames_per_clip=selection.frames_used,
        distinct_frames=selection.distinct_frames,
        span_frames=selection.span_frames,
        accuracy=correct / total if total else nan,
        correct=correct,
        total=total,
        skipped=len(skipped),
        manifest_clips=total + len(skipped),
        loader_clips_per_s=combined("loader") if measure_loader else None,
        model_clips_per_s=combined("model") or nan,
        e2e_clips_per_s=combined("e2e") or nan,
        gflops_per_clip=flops.gflops_per_view,
        params=flops.params,
        model=model.name,
        loader=loader,
        device=device,
        batch_size=batch_size,
        image_size=cfg.image_size,
        skipped_clips=[{"path": s["path"], "reason": s["reason"]} for s in skipped],
        top5_accuracy=correct_k / total if total else nan,
        correct_top5=correct_k,
        top_k=top_k,
        per_class=per_class,
        peak_memory_mb=max(p["peak_mb"] for p in parts),
        peak_memory_kind=peak_kind,
        world_size=world,
        samples=outcomes if keep_predictions else None,
    )


def _merge_ranks(counts: torch.Tensor, local: dict, device: str, world: int) -> tuple[torch.Tensor, list[dict]]:
    """All-reduce the counts; gather each rank's timings, per-row outcomes and skips."""
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    reduced = counts.to(on)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    parts: list[dict | None] = [None] * world
    dist.all_gather_object(parts, local)
    return reduced.cpu(), [p for p in parts if p is not None]


def _check_exactly_once(outcomes: list[list[int]], total: int, readable: int) -> None:
    """Every readable row evaluated once: padding or a shard overlap would break this."""
    rows = [o[0] for o in outcomes]
    if len(rows) != total or len(set(rows)) != len(rows) or total != readable:
        dupes = sorted({r for r in rows if rows.count(r) > 1})[:5]
        raise RuntimeError(
            f"exactly-once violated: {total} counted, {len(set(rows))} distinct rows, {readable} readable"
            + (f" (repeated rows: {dupes})" if dupes else "")
        )


def main(argv: list[str] | None = None) -> None:
    """``torchrun --nproc_per_node N -m inforates.evaluate --config config.yaml``.

    The ``inforates-bench sweep`` command, run by every rank: each setting's clips are
    sharded over the ranks and rank 0 writes the results (see :mod:`inforates.sweep`).
    """
    import os

    from inforates.cli import _invoke
    from inforates.commands.sweep import sweep_command

    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=logging.INFO if rank == "0" else logging.WARNING,
        format=f"%(levelname)s rank{rank} %(name)s: %(message)s",
    )
    _invoke(sweep_command, argv, "python -m inforates.evaluate")


if __name__ == "__main__":
    main()
