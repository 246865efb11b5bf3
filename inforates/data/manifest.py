"""Manifests: one CSV row per clip, ``video_path,label,label_id,num_frames[,...]``.

Relative ``video_path`` values are resolved against the manifest's own folder, so a
dataset folder can be moved or shared as a whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from inforates._io import atomic_write_text

REQUIRED_COLUMNS = ("video_path", "label", "label_id", "num_frames")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ClipRecord:
    video_path: Path
    label: str
    label_id: int
    num_frames: int


def read_manifest(path: str | os.PathLike) -> list[ClipRecord]:
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"manifest not found: {p}")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {p} is not a readable CSV: {exc}".splitlines()[0]) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest {p} lacks column(s): {', '.join(missing)}")
    if df.empty:
        raise ManifestError(f"manifest {p} has no rows")
    base = p.parent
    records = []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        try:
            label_id, num_frames = int(row.label_id), int(row.num_frames)
        except (TypeError, ValueError):
            raise ManifestError(f"manifest {p} line {i}: label_id and num_frames must be integers") from None
        video = Path(str(row.video_path))
        records.append(
            ClipRecord(
                video_path=video if video.is_absolute() else base / video,
                label=str(row.label),
                label_id=label_id,
                num_frames=num_frames,
            )
        )
    return records


def write_manifest(path: str | os.PathLike, rows: Sequence[dict], relative_to: str | os.PathLike | None = None) -> None:
    """Write manifest rows atomically; paths under ``relative_to`` (default: the manifest's folder) are stored relative."""
    p = Path(path)
    base = Path(relative_to) if relative_to is not None else p.parent
    out = []
    for r in rows:
        r = dict(r)
        vp = Path(r["video_path"])
        try:
            r["video_path"] = str(vp.resolve().relative_to(base.resolve()))
        except ValueError:
            r["video_path"] = str(vp)
        out.append(r)
    df = pd.DataFrame(out)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"rows for {p} lack column(s): {', '.join(missing)}")
    cols = list(REQUIRED_COLUMNS) + [c for c in df.columns if c not in REQUIRED_COLUMNS]
    atomic_write_text(p, df[cols].to_csv(index=False))


def label_names(records: Sequence[ClipRecord]) -> list[str]:
    """Label names ordered by id, ``0..max(label_id)``.

    Ids absent from the records (a manifest of some UCF-101 classes keeps the official
    ids) are named ``class_<id>``, so a model's head still lines up with the official ids.
    """
    by_id: dict[int, str] = {}
    for r in records:
        if r.label_id < 0:
            raise ManifestError(f"label_id ({r.label_id}) of {r.video_path} must be >= 0")
        if by_id.setdefault(r.label_id, r.label) != r.label:
            raise ManifestError(f"label_id {r.label_id} names both {by_id[r.label_id]!r} and {r.label!r}")
    return [by_id.get(i, f"class_{i}") for i in range(max(by_id) + 1)]
