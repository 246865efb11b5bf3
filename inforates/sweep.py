"""The sweep: every (coverage, stride) of a grid evaluated once, resumable, exactly-once under DDP.

One :func:`run_sweep` call evaluates the grid with :func:`inforates.evaluate.evaluate_setting`
(one process, or sharded over a ``torch.distributed`` group started by ``torchrun``) and
leaves in ``out_dir``::

    config.yaml                  the resolved SweepConfig (defaults < YAML < command line)
    settings/c25_s4.json         one file per finished setting, written atomically by rank 0:
                                 fingerprint, frame indices, every figure, per-clip outcomes
    results.csv                  one row per setting (RESULT_COLUMNS)
    per_class.csv                one row per setting and class
    sweep.json                   provenance (resolved config, git sha, versions, device,
                                 world size, date), inputs, degenerate settings, FLOPs per T

Resume: a setting whose file exists (and whose fingerprint matches this sweep) is not run
again; a setting interrupted half-way left no file and is redone. The tables are always
rebuilt from the setting files, so a resumed sweep's tables equal an uninterrupted one's
(apart from measured rates and dates). The fingerprint holds what decides a result
(manifest and its content hash, checkpoint, policy, offset, T, sample, loader, device,
batch size, image size); a directory made by a different sweep is refused, not mixed.

Degenerate settings: two settings of the grid that hand the model the same frame indices
(``stride >= kept frames`` keeps frame 0 alone, whatever the stride)::

    N = 50, T = 8, policy fixed
    c10 s8   keep 5, candidates 0        -> 0 0 0 0 0 0 0 0
    c10 s16  keep 5, candidates 0        -> 0 0 0 0 0 0 0 0     same frames as c10_s8

They are still evaluated (a free determinism check), and flagged with ``same_frames_as``
naming the first setting of the grid (by coverage, then stride) with those frames.

Seed keys (``config.yaml`` of the original ``scripts/run_eval.py``) are accepted as
aliases: see :data:`SEED_ALIASES`. ``eval_wandb: true`` and a non-zero
``eval_jitter_coverage_pct`` are refused with a message (not implemented here: results go
to CSV/JSON, and evaluation windows are deterministic so that resume and exactly-once
checks hold).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from inforates import config as cfglib
from inforates._io import atomic_write_text
from inforates.data.manifest import ClipRecord, read_manifest
from inforates.flops import FlopReport, count_flops
from inforates.sampling import FrameSelection, Policy, check_coverage, check_stride, select_frames

log = logging.getLogger(__name__)

SEED_ALIASES: dict[str, str] = {
    "eval_manifest": "manifest",
    "eval_coverages": "coverages",
    "eval_strides": "strides",
    "eval_sample_size": "sample_size",
    "eval_batch_size": "batch_size",
    "eval_workers": "num_threads",
    "eval_per_class": "per_class",
    "eval_jitter_coverage_pct": "jitter_coverage_pct",
    "eval_wandb": "wandb",
}

SETTINGS_DIR = "settings"
RESULTS_CSV = "results.csv"
PER_CLASS_CSV = "per_class.csv"
SWEEP_JSON = "sweep.json"
CONFIG_YAML = "config.yaml"

RESULT_COLUMNS = [
    "setting", "coverage", "stride", "policy", "offset", "frames_per_clip", "distinct_frames", "span_frames",
    "same_frames_as", "accuracy", "top5_accuracy", "top_k", "correct", "correct_top5", "total", "skipped",
    "manifest_clips", "loader_clips_per_s", "model_clips_per_s", "e2e_clips_per_s", "gflops_per_clip",
    "params", "peak_memory_mb", "peak_memory_kind", "world_size", "device", "batch_size", "image_size",
    "model", "loader",
]
PER_CLASS_COLUMNS = ["setting", "coverage", "stride", "label", "label_id", "correct", "total", "accuracy"]


@dataclass(frozen=True)
class SweepConfig(cfglib.EvalInputs):
    """Keys of a sweep (YAML or command line); seed ``eval_*`` names via :data:`SEED_ALIASES`."""

    ALIASES: ClassVar[dict[str, str]] = SEED_ALIASES

    coverages: tuple[float, ...] = (10.0, 25.0, 50.0, 75.0, 100.0)
    strides: tuple[int, ...] = (1, 2, 4, 8, 16)
    policy: Policy = "fixed"
    offset: Literal["start", "center"] = "start"  # no "random": evaluation must be repeatable
    frames_per_clip: int | None = None  # T for policy fixed; None: the model's
    sample_size: int | None = None  # evaluate a seeded random subset of this many clips
    seed: int = 0
    per_class: bool = True  # write per_class.csv
    jitter_coverage_pct: float = 0.0  # seed key; only 0 is supported
    wandb: bool = False  # seed key; only false is supported
    out_dir: Path = Path("sweep-results")

    def __post_init__(self) -> None:
        check_grid(self.coverages, self.strides)
        for name in ("batch_size", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)}) must be an integer >= 1")
        if self.frames_per_clip is not None and self.frames_per_clip < 1:
            raise ValueError(f"frames_per_clip ({self.frames_per_clip}) must be an integer >= 1")
        if self.sample_size is not None and self.sample_size < 1:
            raise ValueError(f"sample_size ({self.sample_size}) must be an integer >= 1")
        if self.jitter_coverage_pct != 0:
            raise ValueError(
                f"jitter_coverage_pct / eval_jitter_coverage_pct ({self.jitter_coverage_pct:g}) is not supported: "
                "evaluation windows are deterministic (offset start or center); set it to 0"
            )
        if self.wandb:
            raise ValueError(
                "wandb / eval_wandb is not supported: results are written to CSV/JSON in out_dir; set it to false"
            )


def check_grid(coverages: Sequence[float], strides: Sequence[int]) -> None:
    """Non-empty, valid, without repeats; raises ``ValueError`` naming the bad value."""
    for name, values, check in (("coverages", coverages, check_coverage), ("strides", strides, check_stride)):
        if not values:
            raise ValueError(f"{name} is empty: give at least one value, e.g. --{name} 100")
        seen: set[float] = set()
        for v in values:
            v = check(v)
            if v in seen:
                raise ValueError(f"{name} lists {v:g} twice (duplicate settings)")
            seen.add(v)


def setting_name(coverage: float, stride: int) -> str:
    return f"c{coverage:g}_s{stride}"


@dataclass(frozen=True)
class PlannedSetting:
    coverage: float
    stride: int
    selection: FrameSelection
    same_frames_as: str | None  # first earlier setting of the grid with the same indices

    @property
    def name(self) -> str:
        return setting_name(self.coverage, self.stride)


def plan_settings(
    coverages: Sequence[float],
    strides: Sequence[int],
    *,
    num_frames: int,
    frames_per_clip: int,
    policy: str = "fixed",
    offset: str = "start",
) -> list[PlannedSetting]:
    """The grid in run order (coverage, then stride, as given), with degenerate pairs flagged.

    ``same_frames_as`` names the first setting in (coverage, stride) ascending order that
    selects identical indices, so flags do not depend on the order the user listed values.
    """
    check_grid(coverages, strides)
    too_long = [s for s in strides if s > num_frames]
    if too_long:
        raise ValueError(f"stride ({too_long[0]}) is larger than the clip ({num_frames} frames)")
    selections = {
        (float(c), int(s)): select_frames(
            num_frames=num_frames, coverage=c, stride=s, frames_per_clip=frames_per_clip,
            policy=policy, offset=offset,  # type: ignore[arg-type]
        )
        for c in coverages
        for s in strides
    }
    first_with: dict[tuple[int, ...], str] = {}
    for c, s in sorted(selections):
        first_with.setdefault(selections[(c, s)].indices, setting_name(c, s))
    plan = []
    for (c, s), sel in selections.items():
        first = first_with[sel.indices]
        plan.append(PlannedSetting(c, s, sel, None if first == setting_name(c, s) else first))
    return plan


# ----------------------------------------------------------------------------- distributed


@dataclass
class _World:
    rank: int = 0
    size: int = 1
    owns_group: bool = False

    @classmethod
    def from_env(cls, device: str) -> _World:
        """Join the group ``torchrun`` describes (``WORLD_SIZE`` > 1), or run alone."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        if device == "gpu":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "gpu" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), owns_group=True)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def _on_rank0_first(world: _World, fn: Callable[[], Any]) -> Any:
    """Rank 0 runs ``fn`` (which may build the embedded default) before the others reuse it.

    A failure on rank 0 is announced to the others, so they raise instead of waiting.
    """
    error = None
    if world.rank == 0:
        try:
            value = fn()
        except (ValueError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            world.broadcast(error)
            raise
        world.broadcast(None)
        return value
    error = world.broadcast(None)
    if error is not None:
        raise RuntimeError(f"rank 0 failed: {error}")
    return fn()


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SweepInputs:
    manifest: Path
    checkpoint: str
    records: list[ClipRecord]  # the clips evaluated (the sample, when sample_size is set)
    manifest_rows: list[int]  # manifest row of each record
    model: Any  # VideoClassifier
    device: str
    frames_per_clip: int


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def resolve_inputs(cfg: SweepConfig, say: Callable[[str], None] = log.info) -> SweepInputs:
    """Manifest and model from ``cfg``; the embedded default when either is missing."""
    from inforates.loaders.dali import resolve_device
    from inforates.runner import resolve_manifest, resolve_model

    manifest = resolve_manifest(cfg.manifest, cfg.cache_dir, say=say)
    records = read_manifest(manifest)
    rows = list(range(len(records)))
    if cfg.sample_size is not None and cfg.sample_size < len(records):
        rng = np.random.default_rng(cfg.seed)
        rows = sorted(int(i) for i in rng.choice(len(records), size=cfg.sample_size, replace=False))
        records = [records[i] for i in rows]
    checkpoint, model = resolve_model(cfg.checkpoint, records, cfg.cache_dir, say=say)
    return SweepInputs(
        manifest=Path(manifest),
        checkpoint=str(checkpoint),
        records=records,
        manifest_rows=rows,
        model=model,
        device=resolve_device(cfg.device),
        frames_per_clip=cfg.frames_per_clip or model.num_frames,
    )


def fingerprint(cfg: SweepConfig, inputs: SweepInputs) -> dict[str, Any]:
    """What decides a setting's result; setting files of another fingerprint are refused."""
    return {
        "manifest": str(inputs.manifest.resolve()),
        "manifest_sha256": _file_sha256(inputs.manifest),
        "checkpoint": inputs.checkpoint,
        "policy": cfg.policy,
        "offset": cfg.offset,
        "frames_per_clip": inputs.frames_per_clip,
        "sample_size": cfg.sample_size,
        "seed": cfg.seed if cfg.sample_size is not None else None,
        "loader": cfg.loader,
        "device": inputs.device,
        "batch_size": cfg.batch_size,
        "image_size": inputs.model.cfg.image_size,
    }


# ----------------------------------------------------------------------------- setting files


def setting_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / SETTINGS_DIR / f"{name}.json"


def _read_setting(path: Path) -> dict | None:
    """A finished setting's record, or ``None`` (absent or unreadable: the setting is redone)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable setting file %s (%s); the setting is redone", path, exc)
        return None


def pending_settings(out_dir: Path, plan: Sequence[PlannedSetting], fp: dict[str, Any]) -> list[str]:
    """Names of the settings of ``plan`` without a finished file of fingerprint ``fp``."""
    todo = []
    for p in plan:
        done = _read_setting(setting_path(out_dir, p.name))
        if done is None:
            todo.append(p.name)
            continue
        theirs = done.get("fingerprint", {})
        if theirs != fp:
            key = next((k for k in fp if theirs.get(k) != fp[k]), "fingerprint")
            raise ValueError(
                f"{setting_path(out_dir, p.name)} was made by a different sweep "
                f"({key}: {theirs.get(key)!r}, now {fp.get(key)!r}); use another --out or delete it"
            )
    return todo


# ----------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class SweepSummary:
    out_dir: Path
    evaluated: list[str]  # settings run by this call
    reused: list[str]  # settings found finished and kept
    results: pd.DataFrame  # results.csv
    world_size: int


def run_sweep(
    cfg: SweepConfig,
    *,
    log_progress: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Evaluate every pending setting of ``cfg``'s grid and rebuild the tables.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; the clips of each setting
    are sharded over the ranks and rank 0 writes the files. Returns on every rank.
    """
    from inforates.evaluate import evaluate_setting
    from inforates.loaders.dali import resolve_device
    from inforates.provenance import provenance

    say = log_progress or log.info
    world = _World.from_env(resolve_device(cfg.device))
    try:
        inputs = _on_rank0_first(world, lambda: resolve_inputs(cfg, say if world.rank == 0 else log.debug))
        num_frames = inputs.records[0].num_frames
        plan = plan_settings(
            cfg.coverages, cfg.strides, num_frames=num_frames, frames_per_clip=inputs.frames_per_clip,
            policy=cfg.policy, offset=cfg.offset,
        )
        fp = fingerprint(cfg, inputs)
        out_dir = Path(cfg.out_dir)
        todo = _on_rank0_first(world, lambda: pending_settings(out_dir, plan, fp) if world.rank == 0 else None)
        todo = world.broadcast(todo)
        if world.rank == 0:
            cfglib.dump(cfg, out_dir / CONFIG_YAML)
            reused = [p.name for p in plan if p.name not in todo]
            if reused:
                say(f"resuming: {len(reused)} of {len(plan)} settings already done in {out_dir}")
        flops: dict[int, FlopReport] = {}
        for p in plan:
            if p.name not in todo:
                continue
            sampling = _sampling(cfg, inputs, p)
            t = p.selection.frames_used
            if t not in flops:
                flops[t] = count_flops(inputs.model, frames=t, image_size=inputs.model.cfg.image_size)
            result = evaluate_setting(
                inputs.model, inputs.records, sampling, loader=cfg.loader, device=inputs.device,
                batch_size=cfg.batch_size, num_threads=cfg.num_threads, measure_loader=cfg.measure_loader,
                keep_predictions=True, flops=flops[t], distributed=world.distributed,
            ).to_dict()
            if world.rank == 0:
                _write_setting(out_dir, p, result, fp, inputs, flops[t])
                say(
                    f"{p.name}: top-1 {result['accuracy']:.3f} ({result['correct']}/{result['total']}, "
                    f"{result['skipped']} skipped), {result['e2e_clips_per_s']:.1f} clips/s"
                )
        results = pd.DataFrame()
        if world.rank == 0:
            results = aggregate(out_dir, plan, per_class=cfg.per_class)
            info = provenance(device=inputs.device, world_size=world.size, config=cfglib.to_dict(cfg))
            info.update(
                inputs={
                    "manifest": str(inputs.manifest), "checkpoint": inputs.checkpoint,
                    "clips": len(inputs.records), "num_frames": num_frames,
                    "frames_per_clip": inputs.frames_per_clip, "model": inputs.model.name,
                    "labels": inputs.model.label_names,
                },
                fingerprint=fp,
                settings=[p.name for p in plan],
                degenerate={p.name: p.same_frames_as for p in plan if p.same_frames_as},
                peak_memory="cuda_max_allocated per setting on a GPU; process peak RSS so far on a CPU",
                rates="clips/s over all ranks: sum(clips) / max(seconds)",
            )
            atomic_write_text(out_dir / SWEEP_JSON, json.dumps(info, indent=1, default=str))
        world.barrier()
        return SweepSummary(
            out_dir=out_dir, evaluated=[p.name for p in plan if p.name in todo],
            reused=[p.name for p in plan if p.name not in todo], results=results, world_size=world.size,
        )
    finally:
        world.close()


def _sampling(cfg: SweepConfig, inputs: SweepInputs, p: PlannedSetting):
    from inforates.sampling import Sampling

    return Sampling(
        coverage=p.coverage, stride=p.stride, frames_per_clip=inputs.frames_per_clip,
        policy=cfg.policy, offset=cfg.offset,
    )


def _write_setting(
    out_dir: Path, p: PlannedSetting, result: dict, fp: dict, inputs: SweepInputs, flops: FlopReport
) -> None:
    # Rows of the evaluated records -> rows of the manifest, so samples compare across sweeps.
    result["samples"] = [[inputs.manifest_rows[r], y, pred, k] for r, y, pred, k in result["samples"]]
    record = {
        "setting": p.name,
        "fingerprint": fp,
        "selection": {**p.selection.stats(), "indices": list(p.selection.indices)},
        "flops_unsupported_ops": flops.unsupported_ops,
        "result": result,
    }
    atomic_write_text(setting_path(out_dir, p.name), json.dumps(record, default=str))


# ----------------------------------------------------------------------------- tables


def aggregate(out_dir: Path, plan: Sequence[PlannedSetting], *, per_class: bool = True) -> pd.DataFrame:
    """``results.csv`` (and ``per_class.csv``) from the setting files of ``plan``."""
    out_dir = Path(out_dir)
    rows, class_rows = [], []
    for p in sorted(plan, key=lambda q: (q.coverage, q.stride)):
        record = _read_setting(setting_path(out_dir, p.name))
        if record is None:
            raise RuntimeError(f"setting {p.name} has no result file in {out_dir / SETTINGS_DIR}")
        r = record["result"]
        rows.append({**{k: r.get(k) for k in RESULT_COLUMNS}, "setting": p.name, "same_frames_as": p.same_frames_as or ""})
        for label, c in r["per_class"].items():
            class_rows.append({
                "setting": p.name, "coverage": p.coverage, "stride": p.stride, "label": label,
                "label_id": c["label_id"], "correct": c["correct"], "total": c["total"],
                "accuracy": c["correct"] / c["total"] if c["total"] else math.nan,
            })
    df = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    atomic_write_text(out_dir / RESULTS_CSV, df.to_csv(index=False))
    if per_class:
        atomic_write_text(out_dir / PER_CLASS_CSV, pd.DataFrame(class_rows, columns=PER_CLASS_COLUMNS).to_csv(index=False))
    return df


@dataclass(frozen=True)
class SweepResults:
    """A finished sweep as the report reads it."""

    out_dir: Path
    results: pd.DataFrame
    per_class: pd.DataFrame | None
    info: dict[str, Any]
    samples: dict[str, pd.DataFrame]  # setting -> row, label_id, pred, top5 (per clip)


def load_results(results_dir: str | os.PathLike) -> SweepResults:
    """Read ``results_dir`` as :func:`run_sweep` left it; a clear error if it is not one."""
    d = Path(results_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"results directory not found: {d}")
    for name in (RESULTS_CSV, SWEEP_JSON):
        if not (d / name).is_file():
            done = len(list((d / SETTINGS_DIR).glob("c*_s*.json"))) if (d / SETTINGS_DIR).is_dir() else 0
            hint = f" ({done} setting file(s) found: rerun the sweep with --out {d} to finish it)" if done else ""
            raise FileNotFoundError(f"{d} is not a finished sweep: {name} is missing{hint}")
    results = pd.read_csv(d / RESULTS_CSV, dtype={"same_frames_as": str})
    results["same_frames_as"] = results["same_frames_as"].fillna("")
    if results.empty:
        raise ValueError(f"{d / RESULTS_CSV} has no settings")
    per_class = pd.read_csv(d / PER_CLASS_CSV) if (d / PER_CLASS_CSV).is_file() else None
    info = json.loads((d / SWEEP_JSON).read_text())
    samples = {}
    for name in results["setting"]:
        record = _read_setting(setting_path(d, name))
        if record is not None and record["result"].get("samples") is not None:
            samples[name] = pd.DataFrame(record["result"]["samples"], columns=["row", "label_id", "pred", "top5"])
    return SweepResults(d, results, per_class, info, samples)


def preset_flops(
    preset: str,
    *,
    frames: int | None = None,
    image_size: int | None = None,
    views: int = 1,
    num_labels: int = 400,
) -> FlopReport:
    """FLOPs of registered ``preset`` built for ``frames`` (its time embeddings sized to T).

    Defaults are the preset's own T and image size; ``num_labels`` sizes the head (the
    paper's 121.4M parameters are with Kinetics-400's 400 labels).
    """
    from inforates.models import MODELS, build_model

    cfg = MODELS.get(preset)
    frames = cfg.num_frames if frames is None else frames
    image_size = cfg.image_size if image_size is None else image_size
    for name, value in (("frames", frames), ("size", image_size), ("views", views), ("num_labels", num_labels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} ({value!r}) must be a positive integer")
    if image_size % cfg.patch_size:
        raise ValueError(f"size ({image_size}) must be a multiple of {preset}'s patch size ({cfg.patch_size})")
    model = build_model(preset, label_names=[f"label_{i}" for i in range(num_labels)], num_frames=frames, seed=0)
    return count_flops(model, frames=frames, image_size=image_size, views=views)


def resolve_config(
    yaml_data: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> SweepConfig:
    """``SweepConfig`` from defaults < YAML (seed ``eval_*`` keys accepted) < overrides."""
    return cfglib.resolve(SweepConfig, yaml_data, overrides, aliases=SEED_ALIASES)


__all__ = [
    "PER_CLASS_CSV",
    "RESULTS_CSV",
    "RESULT_COLUMNS",
    "SEED_ALIASES",
    "SWEEP_JSON",
    "PlannedSetting",
    "SweepConfig",
    "SweepInputs",
    "SweepResults",
    "SweepSummary",
    "aggregate",
    "check_grid",
    "fingerprint",
    "load_results",
    "pending_settings",
    "plan_settings",
    "preset_flops",
    "resolve_config",
    "resolve_inputs",
    "run_sweep",
    "setting_name",
]
