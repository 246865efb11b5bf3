"""``sweep``, ``flops`` and ``report``: the coverage x stride experiment from the command line.

Click command objects (:data:`sweep_command`, :data:`flops_command`, :data:`report_command`);
``inforates.cli`` registers them. Each resolves its options and calls one library function
(:func:`inforates.sweep.run_sweep`, :func:`inforates.sweep.preset_flops`,
:func:`inforates.report.write_report`). ``python -m inforates.evaluate`` runs
:data:`sweep_command` on every ``torchrun`` rank.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import click

from inforates.cli import COVERAGE, STRIDE, config_option, user_errors
from inforates.sampling import POLICIES


class _CommaList(click.ParamType):
    """``10,25,50`` -> ``(10.0, 25.0, 50.0)``, each item checked by ``item_type``."""

    def __init__(self, item_type: click.ParamType) -> None:
        self.item_type = item_type
        self.name = f"{item_type.name},..."

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple:
        if isinstance(value, (tuple, list)):
            items = list(value)
        else:
            items = [v.strip() for v in str(value).split(",") if v.strip()]
        return tuple(self.item_type.convert(v, param, ctx) for v in items)


@click.command("sweep")
@config_option
@click.option("--coverages", type=_CommaList(COVERAGE), default=None, help="Coverages, percent (default 10,25,50,75,100).")
@click.option("--strides", type=_CommaList(STRIDE), default=None, help="Strides (default 1,2,4,8,16).")
@click.option("--policy", type=click.Choice(POLICIES), default=None, help="fixed: always T frames; all: every kept frame.")
@click.option("--offset", type=click.Choice(["start", "center"]), default=None, help="Where the covered window starts.")
@click.option("--frames-per-clip", "-T", type=click.IntRange(min=1), default=None, help="T for policy fixed (default: the model's).")
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Manifest CSV (default: the synthetic test split).")
@click.option("--checkpoint", default=None, help="Checkpoint folder, hub id or preset (default: the embedded tiny model).")
@click.option("--loader", default=None, help="Loader name (registry).")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None)
@click.option("--num-threads", type=click.IntRange(min=1), default=None)
@click.option("--sample-size", type=click.IntRange(min=1), default=None, help="Evaluate a seeded random subset of this many clips.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="INFORATES_CACHE", help="Where the embedded default is built [env INFORATES_CACHE].")
@click.option("--no-loader-pass", is_flag=True, default=False, help="Skip the loader-only throughput pass.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Results folder (resumable; default sweep-results).")
@click.option("--json", "as_json", is_flag=True, help="Print the results table as JSON records.")
@user_errors
def sweep_command(config_file, as_json, no_loader_pass, **options):
    """Evaluate a coverage x stride grid: accuracy, clips/s, GFLOPs; resumable, DDP-ready."""
    from inforates import config as cfglib
    from inforates.sweep import resolve_config, run_sweep

    overrides = dict(options)
    if no_loader_pass:
        overrides["measure_loader"] = False
    cfg = resolve_config(cfglib.load_yaml(config_file) if config_file else None, overrides)
    summary = run_sweep(cfg, log_progress=lambda m: click.echo(m, err=True))
    if os.environ.get("RANK", "0") != "0":
        return
    df = summary.results
    if as_json:
        click.echo(df.to_json(orient="records"))
        return
    grid = df.pivot(index="coverage", columns="stride", values="accuracy")
    click.echo("top-1 accuracy (rows: coverage %, columns: stride)")
    click.echo(grid.to_string(float_format=lambda v: f"{v:.3f}"))
    click.echo(
        f"{len(summary.evaluated)} setting(s) evaluated, {len(summary.reused)} reused; "
        f"results: {summary.out_dir / 'results.csv'}"
    )


@click.command("flops")
@click.option("--model", default="timesformer-base", show_default=True, help="Model preset (registry).")
@click.option("--frames", "-T", type=click.IntRange(min=1), default=None, help="Frames per clip (default: the preset's).")
@click.option("--size", type=click.IntRange(min=1), default=None, help="Frame side, pixels (default: the preset's).")
@click.option("--views", type=click.IntRange(min=1), default=1, show_default=True, help="Clips x crops per video.")
@click.option("--num-labels", type=click.IntRange(min=1), default=400, show_default=True, help="Classifier outputs (Kinetics-400: 400).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@user_errors
def flops_command(model, frames, size, views, num_labels, as_json):
    """GFLOPs (multiply-adds, fvcore) and parameters of a preset built for T frames."""
    from inforates.sweep import preset_flops

    report = preset_flops(model, frames=frames, image_size=size, views=views, num_labels=num_labels)
    out = {"model": model, "num_labels": num_labels, **dataclasses.asdict(report)}
    if as_json:
        click.echo(json.dumps(out))
        return
    for key in ("model", "frames", "image_size", "views", "gflops_per_view", "gflops_total", "params"):
        value = out[key]
        click.echo(f"{key:>16}  {value:.3f}" if isinstance(value, float) else f"{key:>16}  {value}")
    unsupported = ", ".join(f"{k} x{v}" for k, v in out["unsupported_ops"].items()) or "none"
    click.echo(f"{'not counted':>16}  {unsupported}")


@click.command("report")
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Report folder (default RESULTS_DIR/report).")
@click.option("--compare", "others", multiple=True, type=click.Path(path_type=Path), help="Another finished sweep to show side by side (e.g. policy antialias); repeatable.")
@user_errors
def report_command(results_dir, out_dir, others):
    """Figures, statistics and a Markdown summary of a finished sweep."""
    from inforates.report import write_comparison, write_report

    report = write_report(results_dir, out_dir)
    for path in report.files:
        click.echo(str(path))
    if others:
        for path in write_comparison([results_dir, *others], report.out_dir):
            click.echo(str(path))


__all__ = ["flops_command", "report_command", "sweep_command"]
