"""``inforates-bench``: a thin command line over the library.

Every command resolves its options into a config dataclass (defaults < ``--config`` YAML <
command line), calls one library function, and prints a table or ``--json``. Any error
a user can cause exits with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import click

from inforates import config as cfglib
from inforates.sampling import OFFSET_POLICIES, POLICIES, OffsetPolicy, Policy, check_coverage, check_stride

log = logging.getLogger("inforates")


class CliError(click.ClickException):
    exit_code = 2


# Library errors a user can cause; each carries a one-line message naming the bad value.
def _user_errors() -> tuple[type[BaseException], ...]:
    from inforates.config import ConfigError
    from inforates.data.manifest import ManifestError
    from inforates.loaders.dali import LoaderError
    from inforates.models import ModelError

    return (ConfigError, ManifestError, LoaderError, ModelError, FileNotFoundError)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def user_errors(fn: Callable) -> Callable:
    """Turn the library's user-facing errors into ``Error: <one line>`` and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except _user_errors() as exc:
            raise CliError(_one_line(exc)) from None
        except ValueError as exc:  # validation errors from sampling/config/data
            raise CliError(_one_line(exc)) from None

    return wrapper


class _Coverage(click.ParamType):
    name = "PERCENT"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"coverage ({value!r}) must be a number in (0, 100]", param, ctx)
        try:
            check_coverage(int(number) if number.is_integer() else number)  # message shows 150, not 150.0
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return number


class _Stride(click.ParamType):
    name = "INT"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            number = int(str(value))
        except ValueError:
            self.fail(f"stride ({value!r}) must be an integer >= 1", param, ctx)
        try:
            return check_stride(number)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


COVERAGE, STRIDE = _Coverage(), _Stride()


def sampling_options(default_coverage: float | None = 100.0, default_stride: int | None = 1) -> Callable:
    """Shared ``--coverage/--stride/--frames-per-clip/--policy/--offset`` options."""

    def deco(fn: Callable) -> Callable:
        for opt in reversed(
            [
                click.option("--coverage", type=COVERAGE, default=default_coverage, help="Share of the clip kept, percent in (0, 100]."),
                click.option("--stride", type=STRIDE, default=default_stride, help="Keep every k-th covered frame (integer >= 1)."),
                click.option("--frames-per-clip", "-T", type=click.IntRange(min=1), default=None, help="Frames handed to the model (policy fixed). Default: the model's."),
                click.option("--policy", type=click.Choice(POLICIES), default=None, help="fixed: always T frames; all: every kept frame."),
                click.option("--offset", type=click.Choice(OFFSET_POLICIES), default=None, help="Where the covered window starts."),
            ]
        ):
            fn = opt(fn)
        return fn

    return deco


def config_option(fn: Callable) -> Callable:
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="YAML file of options (command line wins; unknown keys are an error).",
    )(fn)


def _progress_bar(label: str) -> Callable[[int, int], None]:
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, desc=label, unit="clip", leave=False, file=sys.stderr)
        b = bar["bar"]
        b.total = total
        b.update(done - b.n)
        if done >= total:
            b.close()

    return update


# Commands that live beside their stage (inforates/commands/*), imported when first used:
# they import this module's helpers, and ``--help`` stays fast.
LAZY_COMMANDS = {
    "sweep": "inforates.commands.sweep:sweep_command",
    "flops": "inforates.commands.sweep:flops_command",
    "report": "inforates.commands.sweep:report_command",
    "spectrum": "inforates.commands.spectrum:spectrum",
    "throughput": "inforates.commands.bench:throughput",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            module, _, attr = LAZY_COMMANDS[name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """inforates: accuracy, throughput and FLOPs of video models over coverage x stride."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# --------------------------------------------------------------------------- frames
@cli.command()
@click.option("--num-frames", "-N", type=click.IntRange(min=1), required=True, help="Frames in the clip.")
@sampling_options()
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@user_errors
def frames(num_frames, coverage, stride, frames_per_clip, policy, offset, fps, as_json):
    """Print the frame indices a setting keeps, and what they cover."""
    from inforates.sampling import select_frames

    sel = select_frames(
        num_frames=num_frames, coverage=coverage, stride=stride, frames_per_clip=frames_per_clip or 8,
        policy=policy or "fixed", offset=offset or "start",
    )
    stats = sel.stats(fps)
    if as_json:
        click.echo(json.dumps({"indices": list(sel.indices), "candidate_indices": list(sel.candidates), **stats}))
        return
    click.echo(f"indices: {' '.join(map(str, sel.indices))}")
    for key, value in stats.items():
        click.echo(f"{key:>16}: {value:.3f}" if isinstance(value, float) else f"{key:>16}: {value}")


# --------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Generate datasets and build manifests."""


@data.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder (UCF-101 layout).")
@click.option("--groups", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--clips-per-group", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--test-groups", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--num-frames", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--size", type=click.IntRange(min=1), default=64, show_default=True, help="Frame width and height, pixels.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=25.0, show_default=True)
@click.option("--codec", default="mjpeg", show_default=True, help="mjpeg, vp9, vp8 (DALI CPU) or h264 (GPU only).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@user_errors
def data_synth(out, groups, clips_per_group, test_groups, num_frames, size, fps, codec, seed, workers):
    """Generate the synthetic dataset: classes told apart only by temporal content."""
    from inforates.data.synth import generate

    summary = generate(
        out, groups=groups, clips_per_group=clips_per_group, test_groups=test_groups, num_frames=num_frames,
        size=size, fps=fps, codec=codec, seed=seed, workers=workers, progress=_progress_bar("synth"),
    )
    click.echo(
        f"{summary.videos} videos ({summary.written} written, {summary.reused} reused) in {summary.seconds:.1f} s\n"
        f"clips: {summary.clips_dir}\nsplits: {summary.split_dir}"
    )


@data.command("build-clips")
@click.option("--video-root", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder-per-class tree of source videos (e.g. UCF-101/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Where the clips go (<Class>/<stem>_segNN.<ext>).")
@click.option("--frames", type=click.IntRange(min=1), default=50, show_default=True, help="Frames per clip; a shorter tail is dropped.")
@click.option("--codec", default="mjpeg", show_default=True, help="mjpeg/vp9/vp8 decode on DALI's CPU backend; h264 needs the GPU (NVDEC).")
@click.option("--size", type=click.IntRange(min=16), default=None, help="Rescale so the shorter side is this many pixels.")
@click.option("--gop", type=click.IntRange(min=1), default=None, help="Keyframe interval for inter-coded codecs.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@user_errors
def data_build_clips(video_root, out, frames, codec, size, gop, workers):
    """Cut source videos into fixed-length clips (resumable; failures listed, exit 1 if any)."""
    from tqdm import tqdm

    from inforates.data.clips import build_clips

    bar = tqdm(desc="build-clips", unit="video", file=sys.stderr)

    def progress(done: int, total: int, clips: int) -> None:
        bar.total = total
        bar.set_postfix(clips=clips, refresh=False)
        bar.update(done - bar.n)

    try:
        s = build_clips(video_root, out, frames=frames, codec=codec, size=size, gop=gop, workers=workers, progress=progress)
    finally:
        bar.close()
    click.echo(
        f"{s.videos} videos: {s.processed} processed, {s.reused} reused, {s.failed} failed; "
        f"{s.clips} clips, {s.frames} frames ({s.dropped_tail_frames} tail frames dropped), "
        f"{s.bytes / 1e6:.1f} MB in {s.seconds:.1f} s"
    )
    if s.too_short:
        click.echo(f"{len(s.too_short)} videos shorter than {frames} frames gave no clip", err=True)
    if not s.ok:
        click.echo(f"failures listed in {out / 'failures.csv'}", err=True)
        sys.exit(1)


@data.command("build-manifest")
@click.option("--clips-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--split-file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Official-format split list, e.g. trainlist01.txt. Without it: a seeded stratified train/dev/test split.")
@click.option("--class-index", type=click.Path(dir_okay=False, path_type=Path), default=None, help="classInd.txt (default: beside the split file).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CSV to write; without --split-file, the folder for train/dev/test manifests and lists.")
@click.option("--strict", is_flag=True, help="Missing clips or unknown classes are errors.")
@click.option("--fractions", default="0.7,0.15,0.15", show_default=True, help="train,dev,test shares (no --split-file).")
@click.option("--seed", type=int, default=0, show_default=True, help="Split seed (no --split-file).")
@user_errors
def data_build_manifest(clips_dir, split_file, class_index, out, strict, fractions, seed):
    """Build manifest CSVs from clips and an official split list (or a stratified split)."""
    from inforates.data.splits import build_manifest, make_splits

    if not clips_dir.exists():
        raise CliError(f"clips dir not found: {clips_dir}")
    if split_file is None:
        try:
            shares = tuple(float(x) for x in fractions.split(","))
        except ValueError:
            raise CliError(f"--fractions ({fractions!r}) must be three numbers, e.g. 0.7,0.15,0.15") from None
        builds = make_splits(clips_dir, out, fractions=shares, seed=seed)
        for name, b in builds.items():
            click.echo(f"{name}: {len(b.rows)} rows -> {b.manifest}")
        click.echo(f"split lists and classInd.txt written to {out}")
        return
    if not split_file.exists():
        raise CliError(f"split file not found: {split_file}")
    res = build_manifest(clips_dir, split_file, class_index=class_index, out=out, strict=strict)
    click.echo(f"{len(res.rows)} rows -> {out}")
    if res.missing:
        click.echo(f"{len(res.missing)} split entries have no clip, e.g. {', '.join(str(e.path) for e in res.missing[:3])}", err=True)


# --------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RunConfig(cfglib.EvalInputs):
    ALIASES: ClassVar[dict[str, str]] = {"eval_manifest": "manifest"}  # the seed's key

    coverage: float = 100.0
    stride: int = 1
    policy: Policy = "fixed"
    offset: OffsetPolicy = "start"
    frames_per_clip: int | None = None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@cli.command()
@sampling_options(default_coverage=None, default_stride=None)
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Manifest CSV to evaluate (default: the synthetic test split).")
@click.option("--checkpoint", default=None, help="Checkpoint folder, hub id or preset (default: the tiny model trained on the synthetic data).")
@click.option("--loader", default=None, help="Loader name (registry).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--num-threads", type=click.IntRange(min=1), default=None)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="INFORATES_CACHE", help="Where the embedded default is built [env INFORATES_CACHE].")
@click.option("--no-loader-pass", is_flag=True, default=False, help="Skip the loader-only throughput pass.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the JSON result here (atomically).")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@user_errors
def run(config_file, as_json, out, no_loader_pass, **options):
    """Evaluate a model at one coverage/stride setting: accuracy, clips/s, GFLOPs."""
    from inforates.runner import run_setting

    overrides = dict(options)
    if no_loader_pass:
        overrides["measure_loader"] = False
    yaml_data = cfglib.load_yaml(config_file) if config_file else None
    cfg = cfglib.resolve(RunConfig, yaml_data, overrides)
    if yaml_data:  # the data section may ask for the manifest to be built (seed: build_manifest_if_missing)
        import dataclasses

        from inforates.data.config import DataConfig, ensure_manifests

        data_cfg = cfglib.resolve(DataConfig, yaml_data)
        if cfg.manifest is not None:
            ensure_manifests(dataclasses.replace(data_cfg, train_manifest=None, eval_manifest=cfg.manifest))
    result = run_setting(
        cfg, progress=_progress_bar("eval"), data_progress=_progress_bar("synth"),
        log_progress=lambda m: click.echo(m, err=True),
    )
    text = json.dumps(result, default=str)
    if out is not None:
        from inforates._io import atomic_write_text

        atomic_write_text(out, json.dumps(result, indent=1, default=str))
    if as_json:
        click.echo(text)
        return
    keys = [
        "coverage", "stride", "policy", "frames_per_clip", "distinct_frames", "accuracy", "correct", "total",
        "skipped", "loader_clips_per_s", "model_clips_per_s", "e2e_clips_per_s", "gflops_per_clip", "model",
        "loader", "device",
    ]
    width = max(map(len, keys))
    for k in keys:
        click.echo(f"{k:>{width}}  {_fmt(result[k])}")
    for s in result.get("skipped_clips", [])[:5]:
        click.echo(f"skipped: {s['path']}: {s['reason']}", err=True)


# --------------------------------------------------------------------------- train
@click.command("train")
@config_option
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--resume", is_flag=True, default=False, help="Continue from the latest checkpoint in out_dir/checkpoints (fresh start if none).")
@click.option("--save-every", type=click.IntRange(min=0), default=None, help="Also checkpoint every N optimizer steps (0: epoch ends only).")
@click.option("--wandb", "use_wandb", is_flag=True, default=False, help="Log to Weights & Biases (needs wandb installed).")
@user_errors
def train_command(config_file, sets, resume, save_every, use_wandb):
    """Train a model; under torchrun, one process per GPU (DDP). Keys: inforates.train.TrainConfig
    (plus the seed's train_* names)."""
    from inforates.distributed import dist_env
    from inforates.train import load_config, train

    main_rank = dist_env().is_main
    level = logging.INFO if main_rank else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    overrides = cfglib.parse_set(sets)
    if resume:
        overrides["resume"] = "auto"
    if save_every is not None:
        overrides["save_every"] = save_every
    if use_wandb:
        overrides["disable_wandb"] = False
    cfg = load_config(cfglib.load_yaml(config_file) if config_file else None, overrides)
    result = train(cfg, progress=lambda row: click.echo(json.dumps(row), err=True))
    if main_rank:
        click.echo(f"checkpoint: {result.checkpoint}")


cli.add_command(train_command)


def _invoke(command: click.Command, argv: list[str] | None, prog_name: str) -> None:
    """Run ``command``; click errors become one line on stderr with exit status 2."""
    try:
        rv = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.echo(f"Error: {_one_line(Exception(exc.format_message()))}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    sys.exit(rv if isinstance(rv, int) else 0)


def main(argv: list[str] | None = None) -> None:
    _invoke(cli, argv, "inforates-bench")
