"""The embedded default: a generated dataset and a tiny model, built on first use.

``inforates-bench run`` with no manifest or checkpoint must work on a fresh CPU machine
with no data and no downloads. The first call generates the synthetic dataset and trains
``timesformer-tiny`` on its train split into the cache directory; later calls reuse both.
Cache entries are keyed by the parameters that made them, so changing a default builds a
new entry instead of silently reusing a stale one.

Cache directory: ``--cache-dir`` > ``$INFORATES_CACHE`` > ``$XDG_CACHE_HOME/inforates`` >
``~/.cache/inforates``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from inforates import config as cfglib
from inforates._io import atomic_write_text

log = logging.getLogger(__name__)

SYNTH_PARAMS = dict(groups=10, clips_per_group=20, test_groups=3, num_frames=50, size=64, fps=25.0, codec="mjpeg", seed=0)
TRAIN_OVERRIDES = dict(model="timesformer-tiny", epochs=50, batch_size=16, lr=1e-3, seed=0)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    if os.environ.get("INFORATES_CACHE"):
        return Path(os.environ["INFORATES_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "inforates"


def _key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class DefaultDataset:
    root: Path
    train_manifest: Path
    test_manifest: Path


def _dataset_root(cache: str | os.PathLike | None) -> Path:
    return cache_dir(cache) / f"synth-{_key(SYNTH_PARAMS)}"


def _model_dir(cache: str | os.PathLike | None) -> Path:
    key = _key({"synth": SYNTH_PARAMS, "train": TRAIN_OVERRIDES})
    return cache_dir(cache) / f"model-{TRAIN_OVERRIDES['model']}-{key}"


def default_dataset_ready(cache: str | os.PathLike | None = None) -> bool:
    return (_dataset_root(cache) / "COMPLETE").is_file()


def default_checkpoint_ready(cache: str | os.PathLike | None = None) -> bool:
    return (_model_dir(cache) / "COMPLETE").is_file()


def default_dataset(
    cache: str | os.PathLike | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> DefaultDataset:
    """Generate (or reuse) the synthetic dataset and its train/test manifests."""
    from inforates.data.splits import build_manifest
    from inforates.data.synth import generate

    root = _dataset_root(cache)
    train_csv, test_csv = root / "train.csv", root / "test.csv"
    done = root / "COMPLETE"
    if not done.is_file():
        log.info("generating the synthetic dataset into %s", root)
        summary = generate(root, workers=workers or min(2, os.cpu_count() or 1), progress=progress, **SYNTH_PARAMS)
        build_manifest(summary.clips_dir, summary.split_dir / "trainlist01.txt", out=train_csv)
        build_manifest(summary.clips_dir, summary.split_dir / "testlist01.txt", out=test_csv)
        atomic_write_text(done, json.dumps(SYNTH_PARAMS))
    return DefaultDataset(root=root, train_manifest=train_csv, test_manifest=test_csv)


def default_checkpoint(
    cache: str | os.PathLike | None = None,
    *,
    progress: Callable[[dict], None] | None = None,
    data_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train (or reuse) the tiny model on the synthetic train split; returns its folder."""
    from inforates.train import TrainConfig, train

    data = default_dataset(cache, progress=data_progress)
    run_dir = _model_dir(cache)
    final = run_dir / "final"
    if not (run_dir / "COMPLETE").is_file():
        log.info("training %s on the synthetic dataset into %s", TRAIN_OVERRIDES["model"], run_dir)
        cfg = cfglib.resolve(
            TrainConfig, overrides={**TRAIN_OVERRIDES, "train_manifest": data.train_manifest, "out_dir": run_dir}
        )
        train(cfg, progress=progress)
        atomic_write_text(run_dir / "COMPLETE", run_dir.name)
    return final
