"""Training, one process or many: ``[torchrun --nproc_per_node N] -m inforates.train``.

``python -m inforates.train --config config.yaml [--set key=value ...]`` trains in one
process; under ``torchrun`` every process runs the same command and the model is wrapped
in ``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU; rank and world from torchrun's
environment). Rank 0 alone logs, writes metrics and checkpoints, and saves the final
model with ``save_pretrained`` (label names included) so ``inforates-bench run
--checkpoint DIR`` and plain ``transformers`` load it. With no ``train_manifest`` it trains
on the embedded synthetic dataset.

Data: each rank reads its own DALI shard (``shard_id=rank``, ``num_shards=world``; DALI
pads and the loader drops the padding, so every clip is read by exactly one rank per
epoch). Shards differ by at most one clip, so a rank may run out of batches one step
before its peers. Rather than dropping clips (which would break "every clip once per
epoch") or ``Join`` (which cannot shadow our count all-reduce), every rank runs the same
precomputed number of micro-steps; a rank whose shard is exhausted runs a zero-weight
dummy batch so the gradient all-reduce still matches. Gradients are reduced as sums and
divided by the *global* number of clips in the optimizer step (one all-reduce of counts
per step), so the update is the exact mean over the clips that were really there::

    world 2, batch 4, 10 clips: shard sizes 5 / 5 -> batches per rank 4+1 / 4+1
    world 2, batch 4, 9 clips:  shard sizes 4 / 5 -> rank 0: [4] [dummy], rank 1: [4] [1]
                                step 2's gradient = grad(sum of 1 loss) / 1 clip

Each epoch's data is a pure function of ``(seed, epoch)``: the pipelines are rebuilt
every epoch with an epoch-derived seed, so a resumed job sees the same clips in the same
order as an uninterrupted one, and resuming mid-epoch replays (decodes and discards) the
batches already trained on.

Multi-rate training (``rates: ["100:1", "50:2"]``): a DALI pipeline decodes fixed frame
indices, so each rate gets its own pipeline. Every epoch the manifest rows are split at
random into one equal part per rate (seeded by ``(seed, epoch)``, identical on all ranks),
each part is sharded over the ranks as above, and the order in which the pipelines serve
micro-steps is a seeded shuffle of their batch counts, identical on all ranks, so all
ranks train the same rate at the same step and every clip is still seen once per epoch.

Checkpoints (rank 0, atomically: written to a hidden folder, then renamed) go to
``out_dir/checkpoints/step-XXXXXXXX/`` every ``save_every`` optimizer steps and at every
epoch end; ``resume: auto`` picks the latest. Weights are safetensors; the rest
(optimizer, scheduler, scaler, counters, per-rank RNG and running sums) is a tensor/plain
dict read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Mapping

import numpy as np
import torch

from inforates import config as cfglib
from inforates import distributed as distlib
from inforates._io import atomic_write_text
from inforates.data.manifest import ClipRecord, ManifestError, read_manifest
from inforates.data.manifest import label_names as names_of
from inforates.loaders import LOADERS, Batch, ClipLoader, LoaderOptions
from inforates.loaders.dali import resolve_device
from inforates.models import ModelError, VideoClassifier, load_model
from inforates.sampling import Sampling, check_coverage, check_stride

log = logging.getLogger(__name__)

#: The seed repository's ``config.yaml`` training keys, accepted with their old meaning.
TRAIN_ALIASES: dict[str, str] = {
    "train_epochs": "epochs",
    "train_batch_size": "batch_size",
    "train_learning_rate": "lr",
    "train_num_workers": "num_threads",
    "train_use_ddp": "use_ddp",
    "train_num_gpus": "num_gpus",
    "train_save_path": "save_path",
    "train_wandb_project": "wandb_project",
    "train_wandb_run_name": "wandb_run_name",
    "train_disable_wandb": "disable_wandb",
}

CHECKPOINT_FORMAT = 1
_FAULTS = ("crash", "kill", "hang")


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed from; the message names it and why."""


@dataclass(frozen=True)
class TrainConfig:
    ALIASES: ClassVar[dict[str, str]] = TRAIN_ALIASES

    model: str = "timesformer-tiny"  # a registered preset, a checkpoint dir or a hub id
    train_manifest: Path | None = None  # None: the embedded synthetic dataset
    val_manifest: Path | None = None  # per-epoch validation (sharded, counts reduced)
    out_dir: Path = Path("runs/train")
    save_path: Path | None = None  # final save_pretrained folder; None: out_dir/final
    epochs: int = 50
    batch_size: int = 16  # per process; global batch = batch_size * world * grad_accum
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    grad_accum: int = 1  # micro-batches per optimizer step
    clip_grad_norm: float = 1.0  # 0 disables clipping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    coverage: float = 100.0
    stride: int = 1
    offset: Literal["start", "center", "random"] = "random"
    policy: Literal["fixed", "antialias"] = "fixed"  # antialias: train on filtered frames
    rates: tuple[str, ...] = ()  # multi-rate: "coverage:stride" each, e.g. 100:1,50:2; () = coverage/stride
    val_offset: Literal["start", "center", "random"] = "center"
    frames_per_clip: int | None = None  # None: the model's own num_frames
    loader: str = "dali"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    num_threads: int = 2
    seed: int = 0
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at epoch ends
    keep_checkpoints: int = 2  # newest checkpoints kept; 0: keep all
    resume: str | None = None  # "auto" (latest in out_dir/checkpoints, if any) or a checkpoint folder
    use_ddp: bool = True  # False refuses to run under a multi-process torchrun
    num_gpus: int | None = None  # if set: processes per node torchrun must have started
    dist_timeout_s: float = 600.0  # bound on every collective: a dead or hung peer becomes an error
    log_every: int = 10  # optimizer steps between progress lines (rank 0)
    disable_wandb: bool = True
    wandb_project: str = "inforates"
    wandb_run_name: str | None = None
    debug_log_rows: bool = False  # each rank writes out_dir/debug/rows-rank<r>.jsonl (rows per epoch)
    debug_fault: str | None = None  # tests: "crash|kill|hang:<rank>:<step>" before that optimizer step

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "num_threads", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} ({value!r}) must be an integer >= 1")
        for name in ("warmup_epochs", "save_every", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} ({value!r}) must be an integer >= 0")
        if not self.lr > 0:
            raise ValueError(f"lr ({self.lr}) must be > 0")
        if self.clip_grad_norm < 0:
            raise ValueError(f"clip_grad_norm ({self.clip_grad_norm}) must be >= 0 (0 disables)")
        if not self.dist_timeout_s > 0:
            raise ValueError(f"dist_timeout_s ({self.dist_timeout_s}) must be > 0")
        if self.num_gpus is not None and self.num_gpus < 1:
            raise ValueError(f"num_gpus ({self.num_gpus}) must be >= 1")
        check_coverage(self.coverage)
        check_stride(self.stride)
        parse_rates(self.rates)
        parse_fault(self.debug_fault)


def parse_rates(rates: tuple[str, ...] | list[str]) -> list[tuple[float, int]]:
    """``("100:1", "50:2")`` -> ``[(100.0, 1), (50.0, 2)]``, each value checked."""
    out = []
    for item in rates:
        cov, sep, stride = str(item).partition(":")
        try:
            if not sep:
                raise ValueError
            pair = (float(cov), int(stride))
        except ValueError:
            raise ValueError(f"rate ({item!r}) must be coverage:stride, e.g. 50:2") from None
        check_coverage(pair[0])
        check_stride(pair[1])
        out.append(pair)
    if len(set(out)) != len(out):
        raise ValueError(f"rates ({list(rates)}) lists a rate twice")
    return out


def parse_fault(spec: str | None) -> tuple[str, int, int] | None:
    if spec is None:
        return None
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] not in _FAULTS or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"debug_fault ({spec!r}) must be <{'|'.join(_FAULTS)}>:<rank>:<step>")
    return parts[0], int(parts[1]), int(parts[2])


def load_config(
    yaml_data: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Defaults < YAML < overrides, accepting the seed's ``train_*`` keys (:data:`TRAIN_ALIASES`)."""
    return cfglib.resolve(TrainConfig, yaml_data, overrides, aliases=TRAIN_ALIASES)


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    history: list[dict]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
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


def _epoch_seed(seed: int, epoch: int, part: int = 0) -> int:
    return int(np.random.SeedSequence([seed % (1 << 64), epoch, part, 0x1F]).generate_state(1)[0] & 0x7FFFFFFF)


# --------------------------------------------------------------------------- checkpoints
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``out_dir/checkpoints`` (hidden partials ignored)."""
    root = checkpoint_dir(out_dir)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    found = [(s, p) for s, p in found if (p / "state.pt").is_file() and (p / "model").is_dir()]
    return max(found)[1] if found else None


@dataclass
class _Resume:
    path: Path
    state: dict
    model: VideoClassifier


def _find_resume(cfg: TrainConfig) -> Path | None:
    if cfg.resume is None:
        return None
    if cfg.resume == "auto":
        found = latest_checkpoint(cfg.out_dir)
        if found is None:
            log.info("resume: auto, but no checkpoint under %s; starting fresh", checkpoint_dir(cfg.out_dir))
        return found
    path = Path(cfg.resume).expanduser()
    if not path.is_dir():
        raise ResumeError(f"resume checkpoint not found: {path}")
    if not (path / "state.pt").is_file() or not (path / "model").is_dir():
        raise ResumeError(f"resume checkpoint {path} lacks state.pt or model/ (not a training checkpoint)")
    return path


def _load_resume(path: Path, cfg: TrainConfig, model: VideoClassifier, world_size: int) -> _Resume:
    """Read and check a checkpoint against this run; raises before any process-group work."""
    try:
        saved_model = load_model(str(path / "model"), label_names=None)
    except ModelError as err:
        raise ResumeError(f"resume checkpoint {path}: {err}") from None
    mine = {k: v for k, v in model.cfg.to_dict().items() if k != "name"}
    theirs = {k: v for k, v in saved_model.cfg.to_dict().items() if k != "name"}
    if mine != theirs:
        diff = sorted(k for k in mine if mine[k] != theirs.get(k))
        k = diff[0]
        raise ResumeError(
            f"resume checkpoint {path} is a different architecture ({k}: {theirs.get(k)!r} in the "
            f"checkpoint, {mine[k]!r} for model {cfg.model!r})"
        )
    if saved_model.label_names != model.label_names:
        raise ResumeError(f"resume checkpoint {path} has labels {saved_model.label_names}, this run {model.label_names}")
    try:
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file; name it and stop
        raise ResumeError(f"resume checkpoint {path}: state.pt unreadable ({type(err).__name__}: {err})".splitlines()[0]) from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ResumeError(f"resume checkpoint {path}: format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    saved_cfg = state["config"]
    same_data = {
        "world_size": (state["world_size"], world_size),
        "batch_size": (saved_cfg["batch_size"], cfg.batch_size),
        "grad_accum": (saved_cfg["grad_accum"], cfg.grad_accum),
        "seed": (saved_cfg["seed"], cfg.seed),
        "rates": (list(saved_cfg["rates"]), list(cfg.rates)),
    }
    changed = {k: v for k, v in same_data.items() if v[0] != v[1]}
    if changed and state["micro_step"] > 0:
        k, (old, new) = next(iter(changed.items()))
        raise ResumeError(
            f"resume checkpoint {path} was written mid-epoch with {k}={old!r}; this run has {k}={new!r}, "
            "so its data position cannot be restored (resume with the same setting, or from an epoch-end checkpoint)"
        )
    if changed:
        log.warning("resuming %s with changed %s: data order differs from an uninterrupted run", path, sorted(changed))
    return _Resume(path=path, state=state, model=saved_model)


def _prune_checkpoints(out_dir: Path, keep: int) -> None:
    if keep <= 0:
        return
    root = checkpoint_dir(out_dir)
    steps = sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name))
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- RNG state
def _rng_tensors() -> dict[str, torch.Tensor]:
    """This process's RNG states as fixed-shape tensors (gatherable, weights_only-loadable)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state().to(torch.int64),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_misc": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor([py_version, *py_internal], dtype=torch.int64),
        "python_gauss": torch.tensor([math.nan if py_gauss is None else py_gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state().to(torch.int64)
    return out


def _set_rng(states: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"].to(torch.uint8))
    misc = states["numpy_misc"].tolist()
    np.random.set_state(("MT19937", states["numpy_keys"].numpy().astype(np.uint32), misc[0], misc[1],
                         float(states["numpy_gauss"][0])))
    py = states["python"].tolist()
    gauss = float(states["python_gauss"][0])
    random.setstate((py[0], tuple(py[1:]), None if math.isnan(gauss) else gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"].to(torch.uint8))


# --------------------------------------------------------------------------- data
@dataclass
class _RatePlan:
    """One epoch: a loader per rate and the order in which they serve micro-steps."""

    loaders: list[ClipLoader]
    row_maps: list[list[int]]  # loader row -> manifest row
    schedule: list[int]  # rate index per micro-step, identical on all ranks


def _sampling(cfg: TrainConfig, model: VideoClassifier, coverage: float, stride: int, offset: str) -> Sampling:
    return Sampling(
        coverage=coverage, stride=stride, frames_per_clip=cfg.frames_per_clip or model.num_frames,
        policy=cfg.policy, offset=offset,
    )


def _loader_options(cfg: TrainConfig, model: VideoClassifier, info: distlib.DistInfo, device: str,
                    *, shuffle: bool, seed: int) -> LoaderOptions:
    return LoaderOptions(
        batch_size=cfg.batch_size, image_size=model.cfg.image_size, mean=tuple(model.cfg.mean),
        std=tuple(model.cfg.std), device=device, num_threads=cfg.num_threads,
        shard_id=info.rank, num_shards=info.world_size, shuffle=shuffle, seed=seed,
    )


def _epoch_plan(cfg: TrainConfig, records: list[ClipRecord], model: VideoClassifier,
                info: distlib.DistInfo, device: str, epoch: int) -> _RatePlan:
    rates = parse_rates(cfg.rates) or [(cfg.coverage, cfg.stride)]
    if len(rates) == 1:
        parts = [list(range(len(records)))]
    else:
        perm = np.random.default_rng(_epoch_seed(cfg.seed, epoch, 1)).permutation(len(records))
        parts = [sorted(p.tolist()) for p in np.array_split(perm, len(rates))]
    loaders, counts = [], []
    for r, ((coverage, stride), rows) in enumerate(zip(rates, parts)):
        opts = _loader_options(cfg, model, info, device, shuffle=True, seed=_epoch_seed(cfg.seed, epoch, 100 + r))
        loader = LOADERS.get(cfg.loader)([records[i] for i in rows], _sampling(cfg, model, coverage, stride, cfg.offset), opts)
        loaders.append(loader)
        counts.append(math.ceil(loader.num_samples / cfg.batch_size))
    counts = [int(c) for c in distlib.all_reduce(counts, "max")]  # the longest shard sets the pace
    schedule = [r for r, c in enumerate(counts) for _ in range(c)]
    if len(rates) > 1:
        np.random.default_rng(_epoch_seed(cfg.seed, epoch, 2)).shuffle(schedule)
    return _RatePlan(loaders=loaders, row_maps=parts, schedule=schedule)


def _default_manifest(info: distlib.DistInfo) -> Path:
    """The embedded dataset; one process per node generates it, the others wait (no process group yet)."""
    from inforates import defaults

    if info.local_rank == 0 or defaults.default_dataset_ready():
        return defaults.default_dataset().train_manifest
    deadline = time.monotonic() + 3600
    while not defaults.default_dataset_ready():
        if time.monotonic() > deadline:
            raise TimeoutError("waited an hour for local rank 0 to generate the synthetic dataset")
        time.sleep(1.0)
    return defaults.default_dataset().train_manifest


# --------------------------------------------------------------------------- the run
@dataclass
class _Setup:
    cfg: TrainConfig
    info: distlib.DistInfo
    records: list[ClipRecord]
    val_records: list[ClipRecord] | None
    model: VideoClassifier
    device: str
    torch_device: torch.device
    resume: _Resume | None


def _prepare(cfg: TrainConfig, info: distlib.DistInfo, label_names: list[str] | None) -> _Setup:
    """Everything a user can get wrong, checked before any process-group work starts."""
    if info.distributed and not cfg.use_ddp:
        raise cfglib.ConfigError(f"use_ddp (train_use_ddp) is false but torchrun started {info.world_size} processes")
    if cfg.num_gpus is not None and cfg.num_gpus != info.local_world_size:
        raise cfglib.ConfigError(
            f"num_gpus (train_num_gpus) is {cfg.num_gpus} but {info.local_world_size} process(es) run on this node; "
            f"launch with torchrun --nproc_per_node {cfg.num_gpus}"
        )
    if not cfg.disable_wandb and importlib.util.find_spec("wandb") is None:
        raise cfglib.ConfigError(
            "wandb logging is enabled (train_disable_wandb: false or --wandb) but wandb is not installed; "
            "pip install wandb, or leave it disabled"
        )
    manifest = cfg.train_manifest if cfg.train_manifest is not None else _default_manifest(info)
    records = read_manifest(manifest)
    names = label_names or names_of(records)
    val_records = None
    if cfg.val_manifest is not None:
        val_records = read_manifest(cfg.val_manifest)
        too_big = [r for r in val_records if r.label_id >= len(names)]
        if too_big:
            raise ManifestError(
                f"val manifest {cfg.val_manifest}: label_id {too_big[0].label_id} ({too_big[0].label}) "
                f"is not one of the {len(names)} training labels"
            )
    device = resolve_device(cfg.device)
    if device == "gpu" and not torch.cuda.is_available():
        raise cfglib.ConfigError("device gpu needs CUDA, but torch.cuda.is_available() is False")
    if cfg.precision == "fp16" and device != "gpu":
        raise cfglib.ConfigError("precision fp16 needs a GPU (use bf16 or fp32 on the CPU)")
    torch_device = torch.device("cuda", info.local_rank) if device == "gpu" else torch.device("cpu")
    seed_everything(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = load_model(cfg.model, label_names=names)  # preset (random init) or checkpoint
    if info.rank:
        seed_everything(cfg.seed + info.rank)  # per-rank randomness; rank 0 keeps the single-process stream
    path = _find_resume(cfg)
    resume = _load_resume(path, cfg, model, info.world_size) if path is not None else None
    return _Setup(cfg=cfg, info=info, records=records, val_records=val_records, model=model,
                  device=device, torch_device=torch_device, resume=resume)


def train(
    cfg: TrainConfig,
    *,
    label_names: list[str] | None = None,
    progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model``; under torchrun one call per process, alone a plain loop.

    ``progress`` receives each epoch's metrics row (rank 0 only). Returns the final
    ``save_pretrained`` folder (on every rank) and the epoch rows.
    """
    info = distlib.dist_env()
    setup = _prepare(cfg, info, label_names)
    distlib.init(info, device=setup.torch_device, timeout_s=cfg.dist_timeout_s)
    try:
        return _Trainer(setup, progress).run()
    finally:
        distlib.shutdown()


class _Trainer:
    def __init__(self, setup: _Setup, progress: Callable[[dict], None] | None) -> None:
        self.s = setup
        self.cfg = cfg = setup.cfg
        self.info = setup.info
        self.progress = progress
        self.main = self.info.is_main
        self.out_dir = Path(cfg.out_dir)
        self.fault = parse_fault(cfg.debug_fault)
        model = setup.model.to(setup.torch_device).train()
        self.model = model
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [setup.torch_device.index] if setup.torch_device.type == "cuda" else None
            self.ddp: torch.nn.Module = DistributedDataParallel(model, device_ids=ids)
        else:
            self.ddp = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        precision = cfg.precision
        if precision == "auto":
            precision = "bf16" if setup.device == "gpu" else "fp32"
        self.precision = precision
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
        self.val_loader = None
        if setup.val_records is not None:
            opts = _loader_options(cfg, model, self.info, setup.device, shuffle=False, seed=cfg.seed)
            self.val_loader = LOADERS.get(cfg.loader)(
                setup.val_records, _sampling(cfg, model, cfg.coverage, cfg.stride, cfg.val_offset), opts
            )

    # -- helpers -----------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.s.torch_device.type, dtype=self.autocast_dtype)

    def _write_metrics(self, row: dict) -> None:
        if self.main:
            with (self.out_dir / "metrics.jsonl").open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _debug_write(self, name: str, row: dict) -> None:
        if self.cfg.debug_log_rows:
            path = self.out_dir / "debug" / f"{name}-rank{self.info.rank}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    def _maybe_fault(self, step: int) -> None:
        if self.fault is None:
            return
        kind, rank, at = self.fault
        if rank != self.info.rank or step != at:
            return
        log.warning("debug_fault: %s on rank %d before step %d", kind, rank, step)
        if kind == "crash":
            raise RuntimeError(f"debug_fault: rank {rank} crashed before step {step}")
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        while True:  # hang: peers must give up after dist_timeout_s
            time.sleep(60)

    def _save(self, epoch: int, micro_step: int, step: int, sums: torch.Tensor, history: list[dict]) -> None:
        """All ranks gather their RNG and running sums; rank 0 writes the checkpoint folder."""
        rng = {k: torch.stack(distlib.all_gather_tensor(v)) for k, v in _rng_tensors().items()}
        all_sums = torch.stack(distlib.all_gather_tensor(sums))
        if self.main:
            root = checkpoint_dir(self.out_dir)
            final = root / f"step-{step:08d}"
            tmp = root / f".step-{step:08d}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self.model.save(tmp / "model")
            state = {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "micro_step": micro_step,
                "step": step,
                "world_size": self.info.world_size,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "sums": all_sums,
                "history": history,
                "config": cfglib.to_dict(self.cfg),
            }
            torch.save(state, tmp / "state.pt")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _prune_checkpoints(self.out_dir, self.cfg.keep_checkpoints)
            where = f"end of epoch {epoch}" if micro_step == 0 else f"epoch {epoch + 1}, micro-step {micro_step}"
            log.info("checkpoint %s (%s, step %d)", final, where, step)
        distlib.barrier()  # nobody runs ahead (or exits) before the checkpoint is in place

    def _weights_digest(self) -> str:
        h = hashlib.sha256()
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _validate(self) -> dict:
        assert self.val_loader is not None
        model = self.model.eval()
        correct = total = 0
        t0 = time.perf_counter()
        with torch.no_grad(), self._autocast():
            for batch in self.val_loader:
                logits = model(batch.video.to(self.s.torch_device))
                correct += int((logits.argmax(-1) == batch.labels.to(logits.device)).sum())
                total += len(batch.rows)
        model.train()
        correct, total = (int(v) for v in distlib.all_reduce_sum([correct, total]))  # counts, not means
        return {"val_accuracy": correct / max(1, total), "val_correct": correct, "val_total": total,
                "val_seconds": time.perf_counter() - t0}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, info, s = self.cfg, self.info, self.s
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfglib.dump(cfg, self.out_dir / "config.yaml")
        plan = _epoch_plan(cfg, s.records, self.model, info, s.device, 0)
        steps_per_epoch = math.ceil(len(plan.schedule) / cfg.grad_accum)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            _cosine_with_warmup(cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch),
        )
        history: list[dict] = []
        start_epoch, skip, step = 0, 0, 0
        sums0 = None
        if s.resume is not None:
            st = s.resume.state
            self.model.hf.load_state_dict(s.resume.model.hf.state_dict())
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            self.scaler.load_state_dict(st["scaler"])
            start_epoch, skip, step = int(st["epoch"]), int(st["micro_step"]), int(st["step"])
            history = list(st["history"])
            if st["world_size"] == info.world_size:
                _set_rng({k: v[info.rank] for k, v in st["rng"].items()})
                if skip:
                    sums0 = st["sums"][info.rank].clone()
            log.info("resumed from %s: epoch %d, micro-step %d, step %d", s.resume.path, start_epoch + 1, skip, step)
            s.resume = None  # free the loaded copy
            if start_epoch != 0:
                for loader in plan.loaders:
                    loader.close()
                plan = None
        lo, hi = distlib.all_reduce([step], "min")[0], distlib.all_reduce([step], "max")[0]
        if lo != hi:
            raise ResumeError(
                f"ranks resumed from different steps ({int(lo)} to {int(hi)}): out_dir {self.out_dir} "
                "must be on a filesystem every node sees"
            )
        if step == 0:
            self._clear_earlier_run()
        if self.main:
            self._restore_metrics(step)
        wandb_run = self._wandb_init() if self.main and not cfg.disable_wandb else None
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if plan is None:
                    plan = _epoch_plan(cfg, s.records, self.model, info, s.device, epoch)
                try:
                    row, step = self._epoch(epoch, plan, skip, step, sums0, history)
                finally:
                    for loader in plan.loaders:
                        loader.close()
                plan, skip, sums0 = None, 0, None
                if wandb_run is not None:
                    wandb_run.log(row, step=step)
        finally:
            if self.val_loader is not None:
                self.val_loader.close()
            if wandb_run is not None:
                wandb_run.finish()
        if cfg.debug_log_rows:
            self._debug_write("final", {"step": step, "weights_sha256": self._weights_digest()})
        final = Path(cfg.save_path) if cfg.save_path is not None else self.out_dir / "final"
        if self.main:
            save_checkpoint(self.model.cpu().eval(), final)
            atomic_write_text(self.out_dir / "history.json", json.dumps(history, indent=1))
        distlib.barrier()
        return TrainResult(checkpoint=final, history=history)

    def _clear_earlier_run(self) -> None:
        """A fresh start in a used out_dir: old checkpoints would be picked by a later ``resume: auto``."""
        if self.cfg.debug_log_rows:
            for path in (self.out_dir / "debug").glob(f"*-rank{self.info.rank}.jsonl"):
                path.unlink()
        old = checkpoint_dir(self.out_dir)
        if self.main and old.is_dir():
            log.warning("starting fresh: removing checkpoints of an earlier run in %s (use --resume to continue it)", old)
            shutil.rmtree(old)

    def _restore_metrics(self, step: int) -> None:
        path = self.out_dir / "metrics.jsonl"
        if step == 0 or not path.is_file():
            path.unlink(missing_ok=True)
            return
        kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        atomic_write_text(path, "".join(ln + "\n" for ln in kept))

    def _wandb_init(self) -> Any:
        import wandb  # optional; presence checked in _prepare

        return wandb.init(project=self.cfg.wandb_project, name=self.cfg.wandb_run_name,
                          config=cfglib.to_dict(self.cfg), dir=str(self.out_dir), resume="allow")

    def _batches(self, plan: _RatePlan) -> Iterator[tuple[int, Batch | None, float]]:
        """(rate, batch or None when this rank's shard of that rate is spent, seconds waited)."""
        iters = [iter(loader) for loader in plan.loaders]
        for r in plan.schedule:
            t = time.perf_counter()
            batch = next(iters[r], None)
            yield r, batch, time.perf_counter() - t
        for r, it in enumerate(iters):  # close each epoch; a leftover batch would mean a lost clip
            extra = next(it, None)
            if extra is not None:
                raise RuntimeError(f"rate {r}: loader delivered more batches than the schedule ({len(plan.schedule)} steps)")

    def _epoch(self, epoch: int, plan: _RatePlan, skip: int, step: int, sums0: torch.Tensor | None,
               history: list[dict]) -> tuple[dict, int]:
        cfg, info = self.cfg, self.info
        dev = self.s.torch_device
        # running sums of this rank: loss, correct, clips, data wait s, train s
        sums = sums0.clone() if sums0 is not None else torch.zeros(5, dtype=torch.float64)
        consumed: list[int] = []
        t_start = time.perf_counter()
        micro = len(plan.schedule)
        window = {"count": 0, "loss": 0.0, "correct": 0}
        log_t, log_clips = time.perf_counter(), 0
        shapes = [(cfg.frames_per_clip or self.model.num_frames, 3, self.model.cfg.image_size, self.model.cfg.image_size)]
        for k, (r, batch, waited) in enumerate(self._batches(plan)):
            rows = [plan.row_maps[r][i] for i in batch.rows] if batch is not None else []
            consumed.extend(rows)
            if k < skip:  # resumed mid-epoch: these were trained on before the checkpoint
                continue
            if k % cfg.grad_accum == 0:  # first micro-batch of an optimizer step
                self._maybe_fault(step + 1)
            sums[3] += waited
            last_in_window = (k + 1) % cfg.grad_accum == 0 or k + 1 == micro
            if batch is None:  # this rank's shard is spent: zero-weight stand-in keeps DDP in step
                video = torch.zeros(1, *shapes[0], device=dev)
                labels = torch.zeros(1, dtype=torch.int64, device=dev)
                weight = 0.0
            else:
                video, labels, weight = batch.video.to(dev), batch.labels.to(dev), 1.0
            sync = last_in_window or not info.distributed
            ctx = contextlib.nullcontext() if sync else self.ddp.no_sync()
            with ctx:
                with self._autocast():
                    logits = self.ddp(video)
                    loss_sum = self.loss_fn(logits.float(), labels) * weight
                # DDP averages gradients over ranks; scale by world so the reduced gradient is
                # the sum over all clips, divided below by the global clip count of the step.
                self.scaler.scale(loss_sum * info.world_size).backward()
            if batch is not None:
                n = labels.numel()
                window["count"] += n
                window["loss"] += float(loss_sum.detach())
                window["correct"] += int((logits.argmax(-1) == labels).sum())
            if not last_in_window:
                continue
            count, loss_w, correct_w = distlib.all_reduce_sum([window["count"], window["loss"], window["correct"]])
            if count > 0:
                self.scaler.unscale_(self.optimizer)
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.div_(count)
                if cfg.clip_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            step += 1
            sums[0] += window["loss"]
            sums[1] += window["correct"]
            sums[2] += window["count"]
            log_clips += count
            window = {"count": 0, "loss": 0.0, "correct": 0}
            if self.main and step % cfg.log_every == 0:
                now = time.perf_counter()
                elapsed = float(sums[4]) + now - t_start
                row = {"kind": "step", "epoch": epoch + 1, "step": step, "loss": loss_w / max(1, count),
                       "lr": self.scheduler.get_last_lr()[0], "clips_per_s": log_clips / max(1e-9, now - log_t),
                       "data_wait_share": float(sums[3]) / elapsed if elapsed > 0 else float("nan")}
                log.info("epoch %d step %d loss %.4f lr %.2e %.1f clips/s data-wait %.0f%%", epoch + 1, step,
                         row["loss"], row["lr"], row["clips_per_s"], 100 * row["data_wait_share"])
                self._write_metrics(row)
                log_t, log_clips = now, 0
            if cfg.save_every and step % cfg.save_every == 0 and k + 1 < micro:
                snap = sums.clone()
                snap[4] += time.perf_counter() - t_start
                self._save(epoch, k + 1, step, snap, history)
        sums[4] += time.perf_counter() - t_start
        self._debug_write("rows", {"epoch": epoch + 1, "rows": consumed})
        loss_t, correct_t, clips_t, wait_t, secs_t = distlib.all_reduce_sum(sums.tolist())
        wait_max = distlib.all_reduce([float(sums[3] / max(1e-9, sums[4]))], "max")[0]
        elapsed = secs_t / info.world_size
        row = {
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": step,
            "loss": loss_t / max(1, clips_t),
            "train_accuracy": correct_t / max(1, clips_t),
            "lr": self.scheduler.get_last_lr()[0],
            "clips": int(clips_t),
            "clips_per_s": clips_t / elapsed if elapsed > 0 else float("nan"),
            "data_wait_share": wait_t / secs_t if secs_t > 0 else float("nan"),  # mean over ranks
            "data_wait_share_max": wait_max,
            "seconds": elapsed,
            "world_size": info.world_size,
        }
        if self.val_loader is not None:
            row.update(self._validate())
        history.append(row)
        self._write_metrics(row)
        if self.main:
            if self.progress is not None:
                self.progress(row)
            log.info("epoch %d/%d loss %.4f acc %.3f %.1f clips/s data-wait %.0f%%%s", epoch + 1, cfg.epochs,
                     row["loss"], row["train_accuracy"], row["clips_per_s"], 100 * row["data_wait_share"],
                     f" val {row['val_accuracy']:.3f}" if "val_accuracy" in row else "")
        self._save(epoch + 1, 0, step, torch.zeros(5, dtype=torch.float64), history)
        return row, step


def main(argv: list[str] | None = None) -> None:
    from inforates.cli import _invoke, train_command

    _invoke(train_command, argv, "python -m inforates.train")


if __name__ == "__main__":
    main()
