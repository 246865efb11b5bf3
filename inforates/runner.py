"""``inforates-bench run``: resolve data and model (the embedded default when none is
given), evaluate one setting, and attach provenance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from inforates import config as cfglib
from inforates.data.manifest import label_names as manifest_label_names
from inforates.data.manifest import read_manifest
from inforates.evaluate import evaluate_setting
from inforates.loaders.dali import resolve_device
from inforates.models import MODELS, load_model
from inforates.provenance import provenance
from inforates.sampling import Sampling

log = logging.getLogger(__name__)




def resolve_manifest(
    manifest: Path | str | None,
    cache_dir: Path | None,
    *,
    say: Callable[[str], None] = log.info,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """``manifest``, or the embedded synthetic test split (generated on first use)."""
    from inforates import defaults

    if manifest is not None:
        return Path(manifest)
    if not defaults.default_dataset_ready(cache_dir):
        say(f"first run: generating the synthetic dataset into {defaults.cache_dir(cache_dir)}")
    return defaults.default_dataset(cache_dir, progress=progress).test_manifest


def resolve_model(
    checkpoint: str | None,
    records: list,
    cache_dir: Path | None,
    *,
    say: Callable[[str], None] = log.info,
) -> tuple[str, Any]:
    """``(checkpoint, model)``: a checkpoint folder, hub id or preset (random weights, label
    names from the manifest), or the embedded tiny model (trained on first use)."""
    from inforates import defaults

    if checkpoint is None:
        if not defaults.default_checkpoint_ready(cache_dir):
            say("first run: training timesformer-tiny on the synthetic train split (about 2 minutes on 2 cores)")
        checkpoint = str(
            defaults.default_checkpoint(
                cache_dir,
                progress=lambda row: say(
                    f"  epoch {row['epoch']}: loss {row['loss']:.3f}, train acc {row['train_accuracy']:.2f}, "
                    f"{row['clips_per_s']:.0f} clips/s"
                ),
            )
        )
    checkpoint = str(checkpoint)
    if checkpoint in MODELS:
        # A preset name: random weights, for throughput and FLOPs; accuracy is chance level.
        log.warning("checkpoint %r is a preset with random weights: accuracy is meaningless", checkpoint)
        return checkpoint, load_model(checkpoint, label_names=manifest_label_names(records))
    return checkpoint, load_model(checkpoint)


def run_setting(
    cfg: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    log_progress: Callable[[str], None] | None = None,
    data_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg`` (a :class:`inforates.cli.RunConfig`); returns a JSON-ready dict."""
    say = log_progress or log.info
    manifest = resolve_manifest(cfg.manifest, cfg.cache_dir, say=say, progress=data_progress)
    records = read_manifest(manifest)  # fails early, naming the path, before any model work
    checkpoint, model = resolve_model(cfg.checkpoint, records, cfg.cache_dir, say=say)
    device = resolve_device(cfg.device)
    sampling = Sampling(
        coverage=cfg.coverage,
        stride=cfg.stride,
        frames_per_clip=cfg.frames_per_clip or model.num_frames,
        policy=cfg.policy,
        offset=cfg.offset,
    )
    result = evaluate_setting(
        model,
        records,
        sampling,
        loader=cfg.loader,
        device=device,
        batch_size=cfg.batch_size,
        num_threads=cfg.num_threads,
        measure_loader=cfg.measure_loader,
        progress=progress,
    ).to_dict()
    result["manifest"] = str(Path(manifest))
    result["checkpoint"] = str(checkpoint)
    result["provenance"] = provenance(device=device, world_size=1, config=cfglib.to_dict(cfg))
    return result
