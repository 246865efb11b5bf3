"""Figures, statistics and a Markdown summary of a finished sweep (:mod:`inforates.sweep`).

:func:`write_report` reads a results folder and writes, into ``RESULTS_DIR/report`` by
default::

    accuracy_heatmap.png         top-1 over coverage (rows) x stride (columns)
    per_class_heatmaps.png       the same grid for each class (where the cliffs are)
    accuracy_vs_coverage.png     one line per stride
    accuracy_vs_gflops.png       Pareto frontier (fewer GFLOPs, higher accuracy) marked
    accuracy_vs_throughput.png   Pareto frontier (more clips/s, higher accuracy) marked
    per_class_drop.png           per-class accuracy lost from 100 % to 25 % coverage
    stats.json, summary.md       tests below; best setting per compute budget

Statistics use the per-clip outcomes each setting file keeps, on the clips every compared
setting evaluated (paired data):

- Cochran's Q: do the settings differ in accuracy at all? (``k`` settings, binary
  outcomes, ``chi2(k-1)``), over the whole grid, over coverages at the reference stride
  (the coverage effect) and over strides at the reference coverage (the stride effect);
- exact McNemar (binomial on the discordant pairs) of each setting against the reference
  setting (100 %, stride 1, or the largest coverage and smallest stride), Holm-adjusted.

Degenerate settings (same frames as another setting of the grid) are left out of the
tests and the frontiers and marked ``=`` in the tables: they are one finding, not two.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats as sps  # noqa: E402

from inforates._io import atomic_write_bytes, atomic_write_text  # noqa: E402
from inforates.sweep import SweepResults, load_results  # noqa: E402

log = logging.getLogger(__name__)


Sequence_ = Any  # array-like


@dataclass(frozen=True)
class Report:
    out_dir: Path
    files: list[Path]
    stats: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- pure helpers


def pareto_front(cost: Sequence_, accuracy: Sequence_, *, lower_cost_is_better: bool = True) -> np.ndarray:
    """Mask of the points no other point beats on both cost and accuracy.

    A point is kept when every cheaper-or-equal point is less accurate (ties in accuracy
    keep only the cheapest). ``lower_cost_is_better=False`` for throughput.
    """
    c = np.asarray(cost, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if not lower_cost_is_better:
        c = -c
    order = np.lexsort((-a, c))  # by cost, then best accuracy first
    mask = np.zeros(len(c), dtype=bool)
    best = -math.inf
    for i in order:
        if a[i] > best:
            mask[i] = True
            best = a[i]
    return mask


def cochran_q(outcomes: np.ndarray) -> tuple[float, float, int]:
    """Cochran's Q for an ``(n clips, k settings)`` 0/1 matrix: ``(Q, p, df)``."""
    x = np.asarray(outcomes, dtype=float)
    n, k = x.shape
    if k < 2 or n == 0:
        return 0.0, 1.0, max(k - 1, 0)
    col, row = x.sum(axis=0), x.sum(axis=1)
    total = x.sum()
    denom = k * total - (row**2).sum()
    if denom == 0:  # every clip right (or wrong) in every setting: no evidence of a difference
        return 0.0, 1.0, k - 1
    q = (k - 1) * (k * (col**2).sum() - total**2) / denom
    return float(q), float(sps.chi2.sf(q, k - 1)), k - 1


def mcnemar_exact(reference: np.ndarray, other: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar: ``(b, c, p)`` with ``b`` = right only in reference, ``c`` = right only in other."""
    ref, oth = np.asarray(reference, bool), np.asarray(other, bool)
    b, c = int((ref & ~oth).sum()), int((~ref & oth).sum())
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


# ----------------------------------------------------------------------------- statistics


def _reference(df: pd.DataFrame) -> str:
    hit = df[(df.coverage == 100) & (df.stride == 1)]
    if len(hit):
        return str(hit.setting.iloc[0])
    top = df[df.coverage == df.coverage.max()]
    return str(top.sort_values("stride").setting.iloc[0])


def _correct_matrix(res: SweepResults, settings: list[str]) -> np.ndarray:
    """0/1 outcomes on the clips all ``settings`` evaluated, one column per setting."""
    frames = [res.samples[s].set_index("row") for s in settings]
    rows = sorted(set.intersection(*(set(f.index) for f in frames))) if frames else []
    return np.stack([(f.loc[rows, "pred"] == f.loc[rows, "label_id"]).to_numpy() for f in frames], axis=1)


def significance(res: SweepResults) -> dict[str, Any]:
    df = res.results
    distinct = df[df.same_frames_as == ""]
    ref = _reference(df)
    out: dict[str, Any] = {"reference": ref, "tests": {}}
    usable = [s for s in distinct.setting if s in res.samples]
    if len(usable) < len(distinct):
        out["note"] = "some settings have no per-clip outcomes; they are left out of the tests"
    ref_row = df[df.setting == ref].iloc[0]
    groups = {
        "all settings": usable,
        f"coverage effect (stride {ref_row.stride})": [
            s for s in distinct[distinct.stride == ref_row.stride].setting if s in usable
        ],
        f"stride effect (coverage {ref_row.coverage:g})": [
            s for s in distinct[distinct.coverage == ref_row.coverage].setting if s in usable
        ],
    }
    for name, settings in groups.items():
        if len(settings) < 2:
            out["tests"][name] = {"settings": settings, "note": "fewer than two distinct settings"}
            continue
        x = _correct_matrix(res, settings)
        q, p, dof = cochran_q(x)
        out["tests"][name] = {"test": "Cochran's Q", "settings": settings, "clips": int(x.shape[0]),
                              "Q": q, "df": dof, "p": p}
    pairs = []
    if ref in res.samples:
        others = [s for s in usable if s != ref]
        raw = []
        for s in others:
            x = _correct_matrix(res, [ref, s])
            b, c, p = mcnemar_exact(x[:, 0], x[:, 1])
            raw.append(p)
            pairs.append({"setting": s, "clips": int(x.shape[0]), "ref_only_correct": b, "other_only_correct": c,
                          "accuracy_change": (c - b) / x.shape[0] if x.shape[0] else math.nan, "p": p})
        for pair, adj in zip(pairs, holm(raw)):
            pair["p_holm"] = adj
    out["mcnemar_vs_reference"] = pairs
    return out


# ----------------------------------------------------------------------------- figures


def _save(fig: plt.Figure, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(df: pd.DataFrame, value: str) -> pd.DataFrame:
    return df.pivot(index="coverage", columns="stride", values=value).sort_index(ascending=False)


def _heatmap_axes(ax: plt.Axes, grid: pd.DataFrame, marks: pd.DataFrame | None, title: str) -> Any:
    im = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(s) for s in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{c:g}" for c in grid.index])
    ax.set_xlabel("stride")
    ax.set_ylabel("coverage (%)")
    ax.set_title(title, fontsize=9)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.iat[i, j]
            mark = "=" if marks is not None and marks.iat[i, j] else ""
            ax.text(j, i, f"{v:.2f}{mark}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    return im


def _fig_heatmap(df: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.2, 4))
    marks = _grid(df.assign(deg=df.same_frames_as != ""), "deg")
    im = _heatmap_axes(ax, _grid(df, "accuracy"), marks, "top-1 accuracy  (= : same frames as another cell)")
    fig.colorbar(im, ax=ax)
    return _save(fig, path)


def _fig_per_class(df: pd.DataFrame, per_class: pd.DataFrame, path: Path) -> Path:
    labels = list(dict.fromkeys(per_class.sort_values("label_id").label))
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    marks = _grid(df.assign(deg=df.same_frames_as != ""), "deg")
    for ax, label in zip(axes.flat, labels):
        _heatmap_axes(ax, _grid(per_class[per_class.label == label], "accuracy"), marks, label)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def _fig_vs_coverage(df: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for stride, g in df.sort_values("coverage").groupby("stride"):
        ax.plot(g.coverage, g.accuracy, marker="o", label=f"stride {stride}")
        deg = g[g.same_frames_as != ""]
        ax.scatter(deg.coverage, deg.accuracy, marker="x", color="k", zorder=3)
    ax.set_xlabel("coverage (%)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("accuracy vs coverage (x: same frames as another setting)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _fig_pareto(df: pd.DataFrame, column: str, label: str, lower_is_better: bool, path: Path) -> Path:
    d = df[(df.same_frames_as == "") & df[column].notna()]
    front = pareto_front(d[column], d.accuracy, lower_cost_is_better=lower_is_better)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(d[column], d.accuracy, c="0.6", s=18, label="setting")
    f = d[front].sort_values(column)
    ax.plot(f[column], f.accuracy, "-o", color="C3", label="Pareto frontier")
    for _, r in f.iterrows():
        ax.annotate(r.setting, (r[column], r.accuracy), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(label)
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"accuracy vs {label}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _drop_table(df: pd.DataFrame, per_class: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Per-class accuracy at the reference vs 25 % coverage (or the lowest), at the reference stride."""
    ref = df[df.setting == _reference(df)].iloc[0]
    low = 25.0 if (df.coverage == 25).any() else float(df.coverage.min())
    at = per_class[per_class.stride == ref.stride]
    hi = at[at.coverage == ref.coverage].set_index("label").accuracy
    lo = at[at.coverage == low].set_index("label").accuracy
    table = pd.DataFrame({"high": hi, "low": lo}).dropna()
    table["drop"] = table.high - table.low
    title = f"coverage {ref.coverage:g}% -> {low:g}%, stride {ref.stride}"
    return table.sort_values("drop", ascending=False), title


def _fig_drop(table: pd.DataFrame, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(table) + 1.2))
    ax.barh(table.index[::-1], table["drop"][::-1], color="C1")
    ax.set_xlabel("accuracy drop")
    ax.set_xlim(min(0, table["drop"].min()) - 0.05, 1.0)
    ax.set_title(f"per-class drop, {title}", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


# ----------------------------------------------------------------------------- markdown


def _md_table(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    sep = "|" + "---|" * len(frame.columns)
    lines = [head, sep]
    for _, r in frame.iterrows():
        cells = [floatfmt.format(v) if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else str(v))
                 for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _p(p: float) -> str:
    return "< 1e-300" if p == 0 else f"= {p:.3g}"  # chi2.sf underflows to 0 for huge Q


def _budget_table(d: pd.DataFrame) -> pd.DataFrame:
    """Best distinct setting within each GFLOPs budget (each measured cost level)."""
    rows = []
    for budget in sorted(d.gflops_per_clip.round(6).unique()):
        within = d[d.gflops_per_clip.round(6) <= budget]
        best = within.sort_values(["accuracy", "e2e_clips_per_s"], ascending=False).iloc[0]
        rows.append({"GFLOPs budget": f"{budget:.4g}", "best setting": best.setting,
                     "top-1": float(best.accuracy), "frames": int(best.frames_per_clip),
                     "e2e clips/s": float(best.e2e_clips_per_s)})
    return pd.DataFrame(rows)


def _markdown(res: SweepResults, stats: dict, drop: tuple[pd.DataFrame, str] | None, figures: list[Path]) -> str:
    df, info = res.results, res.info
    d = df[df.same_frames_as == ""]
    inputs = info.get("inputs", {})
    grid = _grid(df, "accuracy")
    marks = _grid(df.assign(deg=df.same_frames_as != ""), "deg")
    grid_cells = pd.DataFrame(
        [[f"{grid.iat[i, j]:.3f}{' =' if marks.iat[i, j] else ''}" for j in range(grid.shape[1])]
         for i in range(grid.shape[0])],
        columns=[f"s{s}" for s in grid.columns],
    )
    grid_cells.insert(0, "coverage %", [f"{c:g}" for c in grid.index])
    first = df.iloc[0]
    lines = [
        "# Coverage x stride sweep",
        "",
        f"Model `{inputs.get('model', first.model)}` on `{inputs.get('manifest', '?')}` "
        f"({inputs.get('clips', '?')} clips of {inputs.get('num_frames', '?')} frames), policy `{first.policy}`, "
        f"T = {inputs.get('frames_per_clip', '?')}; device {info.get('device')}, world size {info.get('world_size')}, "
        f"{info.get('date')}, git {info.get('git_sha')}. Skipped clips per setting: "
        f"{', '.join(sorted(set(str(int(v)) for v in df.skipped)))}.",
        "",
        "## Top-1 accuracy",
        "",
        _md_table(grid_cells),
        "",
        "`=`: the setting hands the model the same frames as another cell (see *Degenerate settings*).",
        "",
    ]
    if res.per_class is not None:
        pc = res.per_class
        ref = stats["reference"]
        lines += ["## Per class: where each class fails", ""]
        rows = []
        for label, g in pc.groupby("label", sort=False):
            g = g[g.setting.isin(d.setting)]
            at_ref = g[g.setting == ref].accuracy
            worst = g.sort_values("accuracy").iloc[0]
            low = g[g.accuracy < 0.5].setting.tolist()
            rows.append({"class": label, f"top-1 at {ref}": float(at_ref.iloc[0]) if len(at_ref) else math.nan,
                         "worst setting": worst.setting, "worst top-1": float(worst.accuracy),
                         "settings below 0.5": ", ".join(low) if low else "none"})
        lines += [_md_table(pd.DataFrame(rows)), ""]
        if drop is not None:
            table, title = drop
            t = table.reset_index().rename(columns={"index": "class", "label": "class"})
            lines += [f"Per-class drop, {title}:", "", _md_table(t), ""]
    lines += ["## Cost", ""]
    if d.gflops_per_clip.round(6).nunique() == 1:
        lines += [
            f"Every setting costs {d.gflops_per_clip.iloc[0]:.4g} GFLOPs per clip: policy `{first.policy}` hands the "
            "model the same T frames whatever the setting, so compute cannot separate settings "
            "(run with `--policy all` to trade frames for compute).",
            "",
        ]
    lines += ["Best distinct setting per GFLOPs budget:", "", _md_table(_budget_table(d)), ""]
    for column, label, lower in (("gflops_per_clip", "GFLOPs", True), ("e2e_clips_per_s", "e2e clips/s", False)):
        dd = d[d[column].notna()]
        front = dd[pareto_front(dd[column], dd.accuracy, lower_cost_is_better=lower)].sort_values(column)
        lines += [f"Pareto frontier, accuracy vs {label}: "
                  + ", ".join(f"{r.setting} ({r.accuracy:.3f} @ {r[column]:.4g})" for _, r in front.iterrows()), ""]
    mem_kind = str(first.peak_memory_kind)
    lines += [f"Peak memory ({mem_kind}): up to {df.peak_memory_mb.max():.0f} MiB. "
              "Rates: loader-only, model-only and end-to-end clips/s per setting in results.csv.", ""]
    lines += ["## Does coverage or stride change accuracy?", ""]
    for name, t in stats["tests"].items():
        if "Q" in t:
            lines.append(f"- {name}: Cochran's Q = {t['Q']:.2f}, df {t['df']}, p {_p(t['p'])} "
                         f"({t['clips']} paired clips, {len(t['settings'])} settings)")
        else:
            lines.append(f"- {name}: {t['note']}")
    lines.append("")
    pairs = stats.get("mcnemar_vs_reference", [])
    if pairs:
        t = pd.DataFrame(pairs)[["setting", "clips", "ref_only_correct", "other_only_correct", "accuracy_change", "p", "p_holm"]]
        lines += [f"Exact McNemar of each distinct setting against {stats['reference']} (Holm-adjusted):", "",
                  _md_table(t, "{:.3g}"), ""]
    deg = df[df.same_frames_as != ""]
    lines += ["## Degenerate settings", ""]
    if len(deg):
        lines += ["These select exactly the frames of an earlier setting (typically stride >= kept frames); "
                  "their results repeat that setting's and are left out of the tests and frontiers:", ""]
        lines += [f"- {r.setting} = {r.same_frames_as} (top-1 {r.accuracy:.3f})" for _, r in deg.iterrows()]
    else:
        lines.append("None: every setting selects different frames.")
    lines += ["", "## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures] + [""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry


def write_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> Report:
    """Write the figures, ``stats.json`` and ``summary.md`` for the sweep in ``results_dir``."""
    res = load_results(results_dir)
    out = Path(out_dir) if out_dir is not None else res.out_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = res.results
    figures = [
        _fig_heatmap(df, out / "accuracy_heatmap.png"),
        _fig_vs_coverage(df, out / "accuracy_vs_coverage.png"),
        _fig_pareto(df, "gflops_per_clip", "GFLOPs per clip", True, out / "accuracy_vs_gflops.png"),
    ]
    if df.e2e_clips_per_s.notna().any():
        figures.append(_fig_pareto(df, "e2e_clips_per_s", "end-to-end clips/s", False, out / "accuracy_vs_throughput.png"))
    drop = None
    if res.per_class is not None and not res.per_class.empty:
        figures.append(_fig_per_class(df, res.per_class, out / "per_class_heatmaps.png"))
        drop = _drop_table(df, res.per_class)
        if len(drop[0]):
            figures.append(_fig_drop(drop[0], drop[1], out / "per_class_drop.png"))
    stats = significance(res)
    stats_path = out / "stats.json"
    atomic_write_text(stats_path, json.dumps(stats, indent=1))
    summary = out / "summary.md"
    atomic_write_text(summary, _markdown(res, stats, drop, figures))
    return Report(out_dir=out, files=[*figures, stats_path, summary], stats=stats)


def _label(res: SweepResults) -> str:
    """``policy (model folder)``, e.g. ``antialias (aa_train)``."""
    policy = res.info.get("config", {}).get("policy", "?")
    checkpoint = Path(str(res.info.get("inputs", {}).get("checkpoint", "?")))
    model = checkpoint.parent.name if checkpoint.name == "final" else checkpoint.name
    return f"{policy} ({model})"


def write_comparison(results_dirs: Sequence_, out_dir: str | os.PathLike) -> list[Path]:
    """Several finished sweeps side by side (e.g. policy ``fixed`` vs ``antialias``): per
    setting, each sweep's top-1, loader and end-to-end clips/s and GFLOPs; per class, top-1
    at every stride for full coverage. Writes ``comparison.md``, ``comparison.csv`` and
    ``comparison_vs_stride.png`` into ``out_dir``."""
    sweeps = [load_results(d) for d in results_dirs]
    if len(sweeps) < 2:
        raise ValueError("a comparison needs at least two results directories")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = [f"{i + 1}: {_label(r)}" for i, r in enumerate(sweeps)]
    keys = ["coverage", "stride"]
    cols = ["accuracy", "loader_clips_per_s", "e2e_clips_per_s", "gflops_per_clip"]
    merged = None
    for label, res in zip(labels, sweeps):
        part = res.results[keys + cols].rename(columns={c: f"{c} [{label}]" for c in cols})
        merged = part if merged is None else merged.merge(part, on=keys, how="outer")
    merged = merged.sort_values(keys, ascending=[False, True])
    csv_path = out / "comparison.csv"
    atomic_write_text(csv_path, merged.to_csv(index=False))

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, res in zip(labels, sweeps):
        full = res.results[res.results.coverage == res.results.coverage.max()].sort_values("stride")
        ax.plot(full.stride, full.accuracy, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("stride (coverage 100 %)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    png = _save(fig, out / "comparison_vs_stride.png")

    lines = ["# Sweeps side by side", ""]
    lines += [f"- {label}: `{res.out_dir}`" for label, res in zip(labels, sweeps)] + [""]
    table = merged[keys + [f"{c} [{label}]" for c in ("accuracy", "e2e_clips_per_s", "gflops_per_clip") for label in labels]]
    lines += [_md_table(table), ""]
    per_class = [r.per_class for r in sweeps]
    if all(pc is not None and not pc.empty for pc in per_class):
        lines += ["## Per class at full coverage (top-1 by stride)", ""]
        rows = []
        for label, res in zip(labels, sweeps):
            pc = res.per_class[res.per_class.coverage == res.per_class.coverage.max()]
            wide = pc.pivot_table(index="label", columns="stride", values="accuracy")
            wide.insert(0, "sweep", label)
            rows.append(wide.reset_index())
        lines += [_md_table(pd.concat(rows).sort_values(["label", "sweep"])), ""]
    lines += [f"![comparison]({png.name})", ""]
    md = out / "comparison.md"
    atomic_write_text(md, "\n".join(lines))
    return [csv_path, png, md]


__all__ = [
    "Report", "cochran_q", "holm", "mcnemar_exact", "pareto_front", "significance", "write_comparison", "write_report",
]
