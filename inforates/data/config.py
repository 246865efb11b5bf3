"""The data section of a project config, with the seed's ``config.yaml`` keys.

Keys and their meaning (the seed's names, unchanged):

- ``clips_dir``: folder of fixed-length clips (``<Class>/<stem>_segNN.<ext>``);
- ``train_manifest`` / ``eval_manifest``: manifest CSVs for training and evaluation;
- ``fixed_frames``: clip length for ``data build-clips`` (frames per clip);
- ``fixed_out_dir``: where ``data build-clips`` writes clips;
- ``split_file``: official training split list (e.g. ``ucfTrainTestlist/trainlist01.txt``);
  the evaluation list is its ``testlistNN.txt`` sibling;
- ``use_dev_split``: evaluate on a dev split carved from the training list (stratified by
  source video, seeded) instead of the test list;
- ``build_manifest_if_missing``: build missing manifests from ``clips_dir`` + ``split_file``;
- ``results_dir``: where results are written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    ALIASES: ClassVar[dict[str, str]] = {}

    clips_dir: Path | None = None
    train_manifest: Path | None = None
    eval_manifest: Path | None = None
    fixed_frames: int = 50
    fixed_out_dir: Path | None = None
    split_file: Path | None = None
    use_dev_split: bool = False
    build_manifest_if_missing: bool = False
    results_dir: Path = Path("results")
    dev_fraction: float = 0.15
    seed: int = 0


def _test_list_for(split_file: Path) -> Path:
    m = re.fullmatch(r"trainlist(\d+)\.txt", split_file.name)
    if m is None:
        raise ValueError(f"split_file ({split_file}) must be an official trainlistNN.txt to find its test list")
    return split_file.with_name(f"testlist{m.group(1)}.txt")


def ensure_manifests(cfg: DataConfig) -> tuple[Path | None, Path | None]:
    """``(train_manifest, eval_manifest)``, building the missing ones when the config allows.

    A configured manifest that does not exist is an error naming it, unless
    ``build_manifest_if_missing`` is set, in which case it is built from ``clips_dir`` and
    ``split_file`` (the dev split, with ``use_dev_split``, comes out of the training list).
    """
    from inforates.data.manifest import write_manifest
    from inforates.data.splits import build_manifest

    train, evaluate = cfg.train_manifest, cfg.eval_manifest
    wanted = [p for p in (train, evaluate) if p is not None and not Path(p).is_file()]
    if not wanted:
        return train, evaluate
    if not cfg.build_manifest_if_missing:
        raise FileNotFoundError(f"manifest not found: {wanted[0]} (set build_manifest_if_missing to build it)")
    if cfg.clips_dir is None or cfg.split_file is None:
        raise ValueError("build_manifest_if_missing needs clips_dir and split_file")
    train_rows = build_manifest(cfg.clips_dir, cfg.split_file).rows
    if cfg.use_dev_split:
        train_rows, eval_rows = _carve_dev(train_rows, cfg.dev_fraction, cfg.seed)
    else:
        eval_rows = build_manifest(cfg.clips_dir, _test_list_for(Path(cfg.split_file))).rows
    for path, rows in ((train, train_rows), (evaluate, eval_rows)):
        if path is not None and not Path(path).is_file():
            write_manifest(path, rows)
            log.info("built manifest %s (%d rows)", path, len(rows))
    return train, evaluate


def _carve_dev(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split manifest rows into train/dev by source video, stratified by label, seeded."""
    import zlib

    import numpy as np

    by_label: dict[str, list[str]] = {}
    for r in rows:
        sources = by_label.setdefault(r["label"], [])
        if r["source_video"] not in sources:
            sources.append(r["source_video"])
    dev_sources: set[str] = set()
    for label, sources in sorted(by_label.items()):
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        k = int(round(fraction * len(sources)))
        dev_sources |= {sources[i] for i in rng.permutation(len(sources))[:k]}
    return [r for r in rows if r["source_video"] not in dev_sources], [r for r in rows if r["source_video"] in dev_sources]
