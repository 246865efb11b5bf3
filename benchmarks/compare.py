"""Turn saved pytest-benchmark runs into a comparison report (Markdown + CSV).

    python benchmarks/compare.py [PREVIOUS.json] CURRENT.json --out-dir DIR [--fail-above PCT]
    python benchmarks/compare.py --latest .benchmarks --out-dir DIR      # the two newest saves

Loader benchmarks (``extra_info["suite"] == "loaders"``), per setting (codec, GOP, coverage,
stride): each loader's clips/s (``extra_info["clips"]`` over the median epoch time), its
ratio to the seed loader and to the best peer (the fastest other loader, the seed
excluded), and its change from the previous run. Decode-position benchmarks (``suite ==
"decode"``): ms per clip for one frame at each position and its cost relative to position 0.
Model and end-to-end benchmarks: median time per round and the change. A summary counts the
settings where DALI meets the targets (>= 2x the seed loader, >= 1.2x the best peer). ``--fail-above PCT`` exits with status 1 when any benchmark's
median time grew by more than PCT percent since the previous run (a regression), naming them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inforates._io import atomic_write_text

SEED = "seed"
SETTING_KEYS = ("codec", "gop", "coverage", "stride")


@dataclass(frozen=True)
class Row:
    name: str  # pytest-benchmark's fullname: unique within a run
    suite: str
    group: str
    loader: str | None
    setting: tuple
    median_s: float
    clips: int | None
    extra: dict[str, Any]

    @property
    def clips_per_s(self) -> float | None:
        return self.clips / self.median_s if self.clips and self.median_s > 0 else None


def machine_line(path: str | Path) -> str:
    """One line naming where and on what a saved run was measured (its ``machine_info``)."""
    info = (json.loads(Path(path).read_text()).get("machine_info") or {}).get("inforates") or {}
    if not info:
        return "unknown (no inforates machine info in the run)"
    v = info.get("versions") or {}
    gpus = ", ".join(info.get("gpus") or []) or "no GPU"
    pkgs = ", ".join(f"{k} {v[k]}" for k in ("torch", "nvidia-dali-cuda120", "av", "decord") if v.get(k))
    return (f"{info.get('cpu_name')} ({info.get('cpu_count')} CPUs, {info.get('torch_threads')} torch threads), "
            f"{gpus}; {pkgs}; git {info.get('git_sha')}")


def load_run(path: str | Path) -> dict[str, Row]:
    data = json.loads(Path(path).read_text())
    rows = {}
    for b in data.get("benchmarks", []):
        extra = b.get("extra_info") or {}
        stats = b.get("stats") or {}
        if "median" not in stats:
            continue  # a benchmark that did not run (disabled or failed)
        rows[b["fullname"]] = Row(
            name=b["fullname"], suite=extra.get("suite", "other"), group=b.get("group") or "",
            loader=extra.get("loader"), setting=tuple(extra.get(k) for k in SETTING_KEYS),
            median_s=float(stats["median"]), clips=extra.get("clips"), extra=extra,
        )
    return rows


def _change(cur: Row, prev: dict[str, Row]) -> float | None:
    """Percent change of the median time (positive: slower)."""
    p = prev.get(cur.name)
    return (cur.median_s / p.median_s - 1) * 100 if p and p.median_s > 0 else None


def loader_table(cur: dict[str, Row], prev: dict[str, Row]) -> list[dict[str, Any]]:
    settings: dict[tuple, dict[str, Row]] = {}
    for r in cur.values():
        if r.suite == "loaders" and r.loader:
            settings.setdefault(r.setting, {})[r.loader] = r
    table = []
    for setting in sorted(settings, key=lambda s: tuple((x is None, str(x) if not isinstance(x, (int, float)) else x) for x in s)):
        by_loader = settings[setting]
        rates = {n: r.clips_per_s for n, r in by_loader.items()}
        seed = rates.get(SEED)
        for name in sorted(by_loader, key=lambda n: (n != "dali", n)):
            rate = rates[name]
            # Variants of one loader (dali, dali-antialias) are not each other's peers.
            family = name.split("-")[0]
            peers = {n: v for n, v in rates.items() if n not in (name, SEED) and n.split("-")[0] != family and v}
            best = max(peers, key=peers.get) if peers else None
            p = prev.get(by_loader[name].name)
            table.append({
                **dict(zip(SETTING_KEYS, setting)),
                "loader": name,
                "clips_per_s": rate,
                "vs_seed": rate / seed if seed and rate and name != SEED else None,
                "best_peer": best,
                "vs_best_peer": rate / peers[best] if best and rate else None,
                "prev_clips_per_s": p.clips_per_s if p else None,
                "change_pct": _change(by_loader[name], prev),
            })
    return table


def decode_table(cur: dict[str, Row]) -> list[dict[str, Any]]:
    """Decode-position benchmarks: ms per clip for one frame at each position, and the cost
    relative to position 0 of the same decoder on the same clips."""
    runs: dict[tuple, dict[int, Row]] = {}
    for r in cur.values():
        if r.suite == "decode":
            runs.setdefault((r.extra.get("codec"), r.extra.get("gop"), r.loader), {})[int(r.extra["position"])] = r
    out = []
    for (codec, gop, decoder), by_pos in sorted(runs.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        base = by_pos.get(0)
        for pos in sorted(by_pos):
            r = by_pos[pos]
            per_clip = r.median_s / r.clips if r.clips else r.median_s
            out.append({
                "codec": codec, "gop": gop, "decoder": decoder, "position": pos, "ms_per_clip": per_clip * 1e3,
                "vs_position_0": r.median_s / base.median_s if base and base.median_s > 0 else None,
            })
    return out


def dali_targets(loaders: list[dict[str, Any]], vs_seed: float = 2.0, vs_peer: float = 1.2) -> dict[str, Any]:
    """How many settings meet the issue's targets for DALI (policy fixed), and which miss."""
    rows = [r for r in loaders if r["loader"] == "dali"]
    miss_seed = [r for r in rows if r["vs_seed"] is not None and r["vs_seed"] < vs_seed]
    miss_peer = [r for r in rows if r["vs_best_peer"] is not None and r["vs_best_peer"] < vs_peer]
    return {"settings": len(rows), "vs_seed": vs_seed, "vs_peer": vs_peer,
            "miss_seed": miss_seed, "miss_peer": miss_peer}


def other_table(cur: dict[str, Row], prev: dict[str, Row]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(cur.values(), key=lambda r: (r.suite, r.group, r.name)):
        if r.suite in ("loaders", "decode"):
            continue
        p = prev.get(r.name)
        out.append({
            "suite": r.suite, "group": r.group, "name": r.name.split("::")[-1],
            "median_ms": r.median_s * 1e3, "prev_median_ms": p.median_s * 1e3 if p else None,
            "change_pct": _change(r, prev), "clips_per_s": r.clips_per_s,
            "data_wait_share": r.extra.get("data_wait_share"),
        })
    return out


def regressions(cur: dict[str, Row], prev: dict[str, Row], fail_above: float) -> list[tuple[str, float]]:
    out = []
    for r in cur.values():
        change = _change(r, prev)
        if change is not None and change > fail_above:
            out.append((r.name, change))
    return sorted(out, key=lambda x: -x[1])


def _f(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def _cell(r: dict) -> str:
    return f"{r['codec']}/{r['gop'] or 'default'} c{r['coverage']} s{r['stride']}"


def markdown(loaders: list[dict], others: list[dict], current: Path, previous: Path | None,
             regressed: list[tuple[str, float]] | None, fail_above: float | None,
             decode: list[dict] | None = None) -> str:
    lines = [
        "# Benchmark comparison", "",
        f"- current: `{current.name}`", f"- previous: `{previous.name}`" if previous else "- previous: none (first run)",
        f"- machine: {machine_line(current)}",
        "- clips/s = clips per epoch / median epoch time; change = median time vs previous (+ is slower)", "",
    ]
    targets = dali_targets(loaders)
    if targets["settings"]:
        n = targets["settings"]
        lines += ["## DALI against the targets", "",
                  f"- >= {targets['vs_seed']:g}x the seed loader: {n - len(targets['miss_seed'])} of {n} settings"
                  + (" (below: " + ", ".join(f"{_cell(r)} {r['vs_seed']:.2f}x" for r in targets["miss_seed"]) + ")"
                     if targets["miss_seed"] else ""),
                  f"- >= {targets['vs_peer']:g}x the best peer: {n - len(targets['miss_peer'])} of {n} settings"
                  + (" (below: " + ", ".join(f"{_cell(r)} {r['vs_best_peer']:.2f}x vs {r['best_peer']}"
                                               for r in targets["miss_peer"]) + ")" if targets["miss_peer"] else ""),
                  ""]
    if loaders:
        lines += ["## Loaders", "",
                  "| codec | gop | coverage | stride | loader | clips/s | vs seed | vs best peer | previous clips/s | change % |",
                  "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in loaders:
            peer = f"{_f(r['vs_best_peer'], '.2f')} ({r['best_peer']})" if r["best_peer"] else "-"
            lines.append(
                f"| {r['codec']} | {r['gop'] or 'default'} | {r['coverage']} | {r['stride']} | {r['loader']} | "
                f"{_f(r['clips_per_s'])} | {_f(r['vs_seed'], '.2f')} | {peer} | {_f(r['prev_clips_per_s'])} | "
                f"{_f(r['change_pct'], '+.1f')} |")
        lines.append("")
    if decode:
        lines += ["## Decode cost by frame position (one frame per clip, one thread)", "",
                  "| codec | gop | decoder | position | ms per clip | vs position 0 |", "|---|---|---|---:|---:|---:|"]
        for r in decode:
            lines.append(f"| {r['codec']} | {r['gop'] or 'default'} | {r['decoder']} | {r['position']} | "
                         f"{_f(r['ms_per_clip'], '.3f')} | {_f(r['vs_position_0'], '.2f')} |")
        lines.append("")
    if others:
        lines += ["## Model and end to end", "",
                  "| suite | benchmark | median ms | previous ms | change % | clips/s | data wait |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in others:
            lines.append(f"| {r['suite']} | {r['name']} | {_f(r['median_ms'], '.2f')} | {_f(r['prev_median_ms'], '.2f')} | "
                         f"{_f(r['change_pct'], '+.1f')} | {_f(r['clips_per_s'])} | {_f(r['data_wait_share'], '.0%')} |")
        lines.append("")
    if fail_above is not None:
        lines += [f"## Regressions (median time + more than {fail_above:g}%)", ""]
        lines += [f"- `{n}`: {c:+.1f}%" for n, c in regressed] if regressed else ["none"]
        lines.append("")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def latest_runs(folder: Path) -> list[Path]:
    """The saved runs under ``folder`` (pytest-benchmark's ``<machine>/NNNN_*.json``), oldest first."""
    return sorted(folder.glob("*/[0-9][0-9][0-9][0-9]_*.json"), key=lambda p: (p.name, p.stat().st_mtime))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="[PREVIOUS] CURRENT saved pytest-benchmark JSON")
    ap.add_argument("--latest", type=Path, help="Compare the two newest runs saved under this folder.")
    ap.add_argument("--out-dir", type=Path, required=True, help="Writes comparison.md, loaders.csv, decode.csv, others.csv.")
    ap.add_argument("--fail-above", type=float, default=None, metavar="PCT",
                    help="Exit 1 when a benchmark's median time grew by more than PCT percent.")
    args = ap.parse_args(argv)
    runs = list(args.runs)
    if args.latest is not None:
        runs = latest_runs(args.latest)[-2:]
    if not 1 <= len(runs) <= 2:
        ap.error(f"need one or two runs to compare, got {len(runs)}")
    if args.fail_above is not None and args.fail_above < 0:
        ap.error(f"--fail-above ({args.fail_above}) must be >= 0")
    previous, current = (runs[0], runs[1]) if len(runs) == 2 else (None, runs[0])
    cur, prev = load_run(current), load_run(previous) if previous else {}
    loaders, others, decode = loader_table(cur, prev), other_table(cur, prev), decode_table(cur)
    regressed = regressions(cur, prev, args.fail_above) if args.fail_above is not None else None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(loaders, others, current, previous, regressed, args.fail_above, decode)
    atomic_write_text(args.out_dir / "comparison.md", text)
    write_csv(args.out_dir / "loaders.csv", loaders)
    write_csv(args.out_dir / "decode.csv", decode)
    write_csv(args.out_dir / "others.csv", others)
    sys.stdout.write(f"report: {args.out_dir / 'comparison.md'}\n")
    if regressed:
        for name, change in regressed:
            sys.stderr.write(f"regression: {name}: median time {change:+.1f}% (limit {args.fail_above:g}%)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
