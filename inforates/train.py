"""Training: ``python -m inforates.train [--config FILE] [--set key=value ...]``.

Single process for now (the seed of the DDP trainer): the DALI loader delivers clips at
the training sampling setting (offset ``random`` for augmentation), AdamW with warm-up and
cosine decay, and the final model is written with ``save_pretrained`` (label names
included) so ``inforates-bench run --checkpoint DIR`` and plain ``transformers`` load it.
With no ``train_manifest`` it trains on the embedded synthetic dataset.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch

from inforates import config as cfglib
from inforates._io import atomic_write_text
from inforates.data.manifest import read_manifest
from inforates.loaders import LOADERS, LoaderOptions
from inforates.loaders.dali import resolve_device
from inforates.models import VideoClassifier, load_model
from inforates.sampling import Sampling

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "timesformer-tiny"  # a registered preset, a checkpoint dir or a hub id
    train_manifest: Path | None = None  # None: the embedded synthetic dataset
    out_dir: Path = Path("runs/train")
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    coverage: float = 100.0
    stride: int = 1
    offset: Literal["start", "center", "random"] = "random"
    frames_per_clip: int | None = None  # None: the model's own num_frames
    loader: str = "dali"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    num_threads: int = 2
    seed: int = 0


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: list[dict]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cosine_with_warmup(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def save_checkpoint(model: VideoClassifier, path: Path) -> None:
    """``save_pretrained`` into a temporary folder, then rename: never a half-written model."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def train(
    cfg: TrainConfig,
    *,
    label_names: list[str] | None = None,
    progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    from inforates import defaults

    seed_everything(cfg.seed)
    manifest = cfg.train_manifest
    if manifest is None:
        manifest = defaults.default_dataset().train_manifest
    records = read_manifest(manifest)
    from inforates.data.manifest import label_names as names_of

    names = label_names or names_of(records)
    model = load_model(cfg.model, label_names=names)  # preset (random init) or checkpoint
    device = resolve_device(cfg.device)
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    model.to(torch_device).train()

    sampling = Sampling(
        coverage=cfg.coverage,
        stride=cfg.stride,
        frames_per_clip=cfg.frames_per_clip or model.num_frames,
        policy="fixed",
        offset=cfg.offset,
    )
    options = LoaderOptions(
        batch_size=cfg.batch_size,
        image_size=model.cfg.image_size,
        mean=tuple(model.cfg.mean),
        std=tuple(model.cfg.std),
        device=device,
        num_threads=cfg.num_threads,
        shuffle=True,
        seed=cfg.seed,
    )
    loader = LOADERS.get(cfg.loader)(records, sampling, options)
    steps_per_epoch = math.ceil(loader.num_samples / cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _cosine_with_warmup(cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfglib.dump(cfg, out_dir / "config.yaml")
    history: list[dict] = []
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    try:
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            wait = 0.0
            loss_sum, correct, seen = 0.0, 0, 0
            t_wait = time.perf_counter()
            for batch in loader:
                wait += time.perf_counter() - t_wait
                video = batch.video.to(torch_device)
                labels = batch.labels.to(torch_device)
                logits = model(video)
                loss = loss_fn(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                loss_sum += float(loss) * labels.numel()
                correct += int((logits.argmax(-1) == labels).sum())
                seen += labels.numel()
                t_wait = time.perf_counter()
            elapsed = time.perf_counter() - t0
            row = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(1, seen),
                "train_accuracy": correct / max(1, seen),
                "lr": scheduler.get_last_lr()[0],
                "clips": seen,
                "clips_per_s": seen / elapsed if elapsed > 0 else float("nan"),
                "data_wait_share": wait / elapsed if elapsed > 0 else float("nan"),
                "seconds": elapsed,
            }
            history.append(row)
            with metrics_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            if progress is not None:
                progress(row)
            log.info("epoch %d/%d loss %.4f acc %.3f", epoch + 1, cfg.epochs, row["loss"], row["train_accuracy"])
    finally:
        loader.close()
    final = out_dir / "final"
    save_checkpoint(model.cpu().eval(), final)
    atomic_write_text(out_dir / "history.json", json.dumps(history, indent=1))
    return TrainResult(checkpoint=final, history=history)


def main(argv: list[str] | None = None) -> None:
    from inforates.cli import _invoke, train_command

    _invoke(train_command, argv, "python -m inforates.train")


if __name__ == "__main__":
    main()
