"""``inforates-bench spectrum``: each clip's temporal bandwidth, and the strides that alias it.

A thin layer over :mod:`inforates.spectrum`: :func:`~inforates.spectrum.analyze_manifest`,
then per class :func:`~inforates.spectrum.class_table` and, given a sweep,
:func:`~inforates.spectrum.compare_with_sweep`; ``--out`` writes tables, JSON and figures
(:func:`~inforates.spectrum.write_outputs`). ``inforates.cli`` registers :data:`spectrum`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import click

from inforates.cli import COVERAGE, _progress_bar, user_errors
from inforates.sampling import POLICIES


def _signals(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from inforates.spectrum import SIGNALS

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for name in names:
        if name not in SIGNALS:
            raise click.BadParameter(f"unknown signal {name!r}; choose from: {', '.join(SIGNALS)}", ctx, param)
    if not names:
        raise click.BadParameter(f"name at least one of: {', '.join(SIGNALS)}", ctx, param)
    return names


def _cell(value: Any, spec: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and value.is_integer() and not spec:
        return str(int(value))
    return format(value, spec)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain text table: ``columns`` is ``[(key, format spec)]``; the first is left-aligned."""
    cells = [[_cell(r.get(k), spec) for k, spec in columns] for r in rows]
    widths = [max([len(k)] + [len(c[i]) for c in cells]) for i, (k, _) in enumerate(columns)]
    lines = []
    for row in [[k for k, _ in columns]] + cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


CLIP_COLUMNS = [("video_path", ""), ("label", ""), ("f_dom", ".4f"), ("f_max", ".4f"), ("k_safe", ""), ("motion_rms", ".2f")]
CLASS_COLUMNS = [("label", ""), ("clips", ""), ("static_clips", ""), ("f_dom", ".4f"), ("f_max", ".4f"),
                 ("k_safe", ""), ("f_true", ".4f"), ("k_nyquist", "")]
COMPARE_COLUMNS = [("label", ""), ("k_safe", ""), ("predicted_fail_stride", ""), ("observed_fail_stride", ""),
                   ("baseline_accuracy", ".3f"), ("verdict", ""), ("note", "")]


@click.command("spectrum")
@click.option("--manifest", type=click.Path(path_type=Path), required=True, help="Manifest CSV of the clips to analyse.")
@click.option("--per-class", is_flag=True, help="Summarise per class (medians over its clips) instead of listing clips.")
@click.option("--sweep", "sweep", type=click.Path(path_type=Path), default=None,
              help="Sweep results folder (its per_class.csv) or a CSV with coverage,stride,label,accuracy: "
                   "compare predicted with observed failing strides (implies --per-class).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write tables (CSV), spectrum.json and figures (PNG) here.")
@click.option("--signals", default="x,y", show_default=True, callback=_signals,
              help="Motion signals: x,y (centroid of the changing pixels) and/or area (size of the change).")
@click.option("--energy", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True,
              help="Share of the non-DC power at or below f_max.")
@click.option("--correct-window", is_flag=True,
              help="Subtract the Hann window's own spread (~1/F) from f_max (exact for pure tones).")
@click.option("--coverage", type=COVERAGE, default=None, help="Sweep coverage to compare at (default 100, else the largest).")
@click.option("--drop", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.5, show_default=True,
              help="A stride fails when a class's accuracy falls below this share of its smallest-stride accuracy.")
@click.option("--frames-per-clip", "-T", type=click.IntRange(min=1), default=None,
              help="T of the sweep (default: from its results.csv, else 8).")
@click.option("--policy", type=click.Choice(POLICIES), default=None, help="Policy of the sweep (default: from its files, else fixed).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Analyse the first N clips only.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@user_errors
def spectrum(manifest, per_class, sweep, out_dir, signals, energy, correct_window, coverage, drop, frames_per_clip,
             policy, limit, as_json):
    """Temporal spectrum per clip: dominant frequency, bandwidth f_max and the largest safe stride."""
    from inforates import spectrum as sp

    options = sp.SpectrumOptions(signals=signals, energy=energy, correct_window=correct_window)
    accuracy = sp.read_class_accuracy(sweep, policy=policy) if sweep is not None else None  # fail fast, before decoding
    result = sp.analyze_manifest(manifest, options, limit=limit, progress=_progress_bar("spectrum"))
    per_class = per_class or sweep is not None
    classes = sp.class_table(result, sp.known_frequencies(manifest)) if per_class or out_dir else None
    comparison = None
    if accuracy is not None:
        comparison = sp.compare_with_sweep(classes, accuracy, coverage=coverage, frames_per_clip=frames_per_clip,
                                           policy=policy, drop=drop)
    files = []
    if out_dir is not None:
        extra = {"sweep": str(accuracy.source) if accuracy else None, "drop": drop}
        files = sp.write_outputs(result, classes, out_dir, comparison=comparison, extra=extra)

    if as_json:
        doc: dict[str, Any] = {
            "manifest": str(manifest),
            "options": dataclasses.asdict(options),
            "clips_analysed": len(result.clips),
            "failed": [{"video_path": p, "reason": r} for p, r in result.failed],
        }
        if per_class:
            doc["classes"] = sp.json_records(classes)
        else:
            doc["clips"] = sp.json_records(result.table())
        doc["comparison"] = sp.json_records(comparison) if comparison is not None else None
        doc["files"] = [str(f) for f in files]
        click.echo(json.dumps(doc))
    else:
        if per_class:
            click.echo(_table(sp.json_records(classes), CLASS_COLUMNS))
        else:
            click.echo(_table(sp.json_records(result.table()), CLIP_COLUMNS))
        if comparison is not None:
            c0 = comparison.iloc[0] if len(comparison) else None
            if c0 is not None:
                click.echo(f"\nvs sweep {accuracy.source} at coverage {c0.coverage:g}, T = {c0.frames_per_clip}, "
                           f"policy {c0.policy}; fails = accuracy < {drop:g} x smallest-stride accuracy")
            click.echo(_table(sp.json_records(comparison), COMPARE_COLUMNS))
        for f in files:
            click.echo(f"wrote {f}", err=True)
    if result.failed:
        p, r = result.failed[0]
        click.echo(f"{len(result.failed)} clip(s) could not be analysed, e.g. {p}: {r}", err=True)
    if classes is not None and comparison is None and not as_json and classes.static_clips.sum():
        click.echo("static clips (no motion above noise) have k_safe = clip length: motion does not bound their stride",
                   err=True)

