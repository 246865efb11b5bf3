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


def run_setting(
    cfg: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    log_progress: Callable[[str], None] | None = None,
    data_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg`` (a :class:`inforates.cli.RunConfig`); returns a JSON-ready dict."""
    from inforates import defaults

    say = log_progress or log.info
    manifest, checkpoint = cfg.manifest, cfg.checkpoint
    if manifest is None:
        if not defaults.default_dataset_ready(cfg.cache_dir):
            say(f"first run: generating the synthetic dataset into {defaults.cache_dir(cfg.cache_dir)}")
        manifest = defaults.default_dataset(cfg.cache_dir, progress=data_progress).test_manifest
    records = read_manifest(manifest)  # fails early, naming the path, before any model work
    if checkpoint is None:
        if not defaults.default_checkpoint_ready(cfg.cache_dir):
            say("first run: training timesformer-tiny on the synthetic train split (about a minute on 2 cores)")
        checkpoint = str(
            defaults.default_checkpoint(
                cfg.cache_dir,
                progress=lambda row: say(
                    f"  epoch {row['epoch']}: loss {row['loss']:.3f}, train acc {row['train_accuracy']:.2f}, "
                    f"{row['clips_per_s']:.0f} clips/s"
                ),
            )
        )
    if str(checkpoint) in MODELS:
        # A preset name: random weights, for throughput and FLOPs; accuracy is chance level.
        log.warning("checkpoint %r is a preset with random weights: accuracy is meaningless", checkpoint)
        model = load_model(str(checkpoint), label_names=manifest_label_names(records))
    else:
        model = load_model(str(checkpoint))
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
