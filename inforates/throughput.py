"""Loader-only throughput: several loaders, the same clips, the same setting, the same threads.

:func:`measure_throughput` takes one loader at a time: it builds it, runs one untimed
warm-up epoch (DALI builds its pipeline, thread pools start) and then ``epochs`` timed
epochs back to back. Loaders are not interleaved: DALI's pipeline keeps decoding the next
epoch's first batches (``prefetch_queue_depth``) whenever its consumer is idle, so
interleaving would hand it free work during the other loaders' epochs (and slow them
down). For each loader::

    clips_per_s   clips delivered / seconds of its timed epochs
    frames_per_s  clips_per_s * T (frames handed to the model, repeats included)
    peak_rss_mb   the process's resident-set high-water mark during its timed epochs
                  (Linux: reset first via /proc/self/clear_refs; elsewhere the process's
                  lifetime peak, flagged by ``rss_scope: "process"``)
    vs_seed       clips_per_s / the seed loader's (when "seed" was measured)
    vs_best_peer  clips_per_s / the best other loader's, the seed excluded, and which one

The warm-up epoch's first batch of every loader is compared with the first loader's:
``max_abs_diff`` (normalised units) says that the work compared is the same.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from inforates.data.manifest import ClipRecord
from inforates.loaders import LOADERS, ClipLoader, LoaderOptions
from inforates.sampling import Sampling

SEED = "seed"
DEFAULT_LOADERS: tuple[str, ...] = ("dali", "seed", "decord", "pyav")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter for this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(scoped: bool) -> float:
    if scoped:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _epoch(loader: ClipLoader) -> tuple[int, torch.Tensor | None]:
    clips, first = 0, None
    for batch in loader:
        if first is None:
            first = batch.video[: min(2, len(batch.rows))].detach().cpu().clone()
        clips += len(batch.rows)
    if torch.cuda.is_available() and loader.options.device != "cpu":
        torch.cuda.synchronize()
    return clips, first


def measure_throughput(
    records: Sequence[ClipRecord],
    sampling: Sampling,
    *,
    loaders: Sequence[str] = DEFAULT_LOADERS,
    options: LoaderOptions = LoaderOptions(),
    epochs: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Clips/s of each loader in ``loaders`` on ``records`` at ``sampling``; see the module doc."""
    names = list(dict.fromkeys(loaders))
    if not names:
        raise ValueError("loaders ([]) must name at least one loader")
    for name in names:
        LOADERS.get(name)  # unknown name: the error lists the registered ones
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs ({epochs!r}) must be an integer >= 1")
    results: dict[str, dict[str, Any]] = {}
    reference: torch.Tensor | None = None
    for name in names:
        loader = LOADERS.get(name)(records, sampling, options)
        try:
            _, first = _epoch(loader)  # warm-up: pipelines, pools; drains DALI's prefetch queue
            diff = None
            if reference is None:
                reference = first
            elif first is not None and first.shape == reference.shape:
                diff = float((first - reference).abs().max())
            scoped = _reset_peak_rss()
            clips, t0 = 0, time.perf_counter()
            for _ in range(epochs):  # back to back: no idle gap for a pipeline to work ahead in
                clips += _epoch(loader)[0]
            seconds = time.perf_counter() - t0
        finally:
            loader.close()
        rate = clips / seconds if seconds > 0 else float("nan")
        results[name] = {
            "clips_per_s": rate, "frames_per_s": rate * (getattr(loader, "frames_per_clip", 0) or 0),
            "seconds": seconds, "clips": clips, "peak_rss_mb": _peak_rss_mb(scoped),
            "rss_scope": "timed epochs" if scoped else "process", "frames_per_clip": getattr(loader, "frames_per_clip", None),
            "skipped": len(loader.skipped), "max_abs_diff": diff,
        }
        if progress is not None:
            progress(f"{name}: {rate:.1f} clips/s")
    add_ratios(results)
    selection = sampling.select(records[0].num_frames) if sampling.offset != "random" else None
    return {
        "setting": dataclasses.asdict(sampling),
        "distinct_frames": selection.distinct_frames if selection else None,
        "num_clips": len(records),
        "epochs": epochs,
        "options": dataclasses.asdict(options),
        "cpu_count": os.cpu_count(),
        "loaders": results,
    }


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Add ``vs_seed``, ``best_peer`` and ``vs_best_peer`` to each loader's result, in place."""
    seed = results.get(SEED, {}).get("clips_per_s")
    for name, r in results.items():
        rate = r["clips_per_s"]
        r["vs_seed"] = rate / seed if seed and name != SEED else None
        peers = {n: o["clips_per_s"] for n, o in results.items() if n not in (name, SEED)}
        best = max(peers, key=peers.get) if peers else None
        r["best_peer"] = best
        r["vs_best_peer"] = rate / peers[best] if best and peers[best] else None


def transcoded_clips(
    records: Sequence[ClipRecord], *, codec: str, gop: int | None, out_dir: Path
) -> list[ClipRecord]:
    """``records`` re-encoded with ``codec`` (keyframe every ``gop`` frames) under ``out_dir``,
    reusing clips already there; same labels and frame counts."""
    from inforates.data.video_io import CODECS, read_video, write_video

    spec = CODECS.get(codec)
    out: list[ClipRecord] = []
    for i, rec in enumerate(records):
        path = out_dir / f"{i:05d}_{rec.video_path.stem}{spec.extension}"
        if not path.is_file():
            write_video(path, read_video(rec.video_path), codec=codec, gop=gop)
        out.append(dataclasses.replace(rec, video_path=path))
    return out
