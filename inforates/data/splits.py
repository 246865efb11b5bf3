"""UCF-101 style split lists (``classInd.txt``, ``trainlistNN.txt``, ``testlistNN.txt``) to manifests.

The official files, exactly as UCF-101 distributes them (CRLF line endings)::

    classInd.txt      1 ApplyEyeMakeup                       (1-based ids)
    trainlist01.txt   ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1
    testlist01.txt    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi

The class is the folder part of the path, not the file name (UCF's
``HandstandPushups/v_HandStandPushups_g08_c01.avi`` differs in case). Each split entry
``Class/stem.ext`` matches the clip files under ``clips_dir/Class/`` named
``stem.<video ext>`` (the whole video, in any container) or ``stem_segNN.<video ext>``
(segments cut from it)::

    split entry   ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
    matches       ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.webm         segment -1 (whole)
                  ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01_seg00.avi    segment 0
                  ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01_seg01.avi    segment 1
    ignores       ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01_extra.avi, .v_..._c01.partial.avi

Manifest ``label_id`` is the classInd id minus one (0-based, for the model).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import av
import numpy as np

from inforates._io import atomic_write_text
from inforates.data.manifest import write_manifest
from inforates.data.video_io import CODECS

log = logging.getLogger(__name__)

#: File extensions (lower case) taken for video clips: every codec inforates writes, plus
#: the usual containers of downloaded datasets.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {CODECS.get(n).extension for n in CODECS} | {".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg"}
)

#: ``segment`` value of a row that is a whole source video rather than a ``_segNN`` cut.
WHOLE_VIDEO = -1

MANIFEST_COLUMNS = ("video_path", "label", "label_id", "num_frames", "source_video", "segment")

_CLIP_NAME = re.compile(r"^(?P<stem>.+?)(?:_seg(?P<segment>\d+))?(?P<ext>\.[^.]+)$")
_EXAMPLES = 5


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split list: ``Class/file.ext [label]``."""

    class_name: str
    path: str  # as written in the list, e.g. "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    label: int | None  # 1-based classInd id (train lists only)
    line: int = field(default=0, compare=False)

    @property
    def stem(self) -> str:
        """File name without folder and extension: ``v_ApplyEyeMakeup_g01_c01``."""
        return Path(self.path).stem


@dataclass(frozen=True)
class ManifestBuild:
    """What :func:`build_manifest` found; ``rows`` are manifest rows with absolute paths."""

    split_file: Path
    clips_dir: Path
    entries: int  # lines in the split list
    rows: list[dict]
    missing: list[SplitEntry]  # entries without any clip file
    unknown_class: list[Path]  # clip files whose class is not in the class index (no rows)
    unreadable: list[tuple[Path, str]]  # clip files PyAV could not count (no rows)
    manifest: Path | None = None  # the CSV written, if any

    @property
    def found_entries(self) -> int:
        return self.entries - len(self.missing)

    def counts(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "found_entries": self.found_entries,
            "rows": len(self.rows),
            "missing": len(self.missing),
            "unknown_class": len(self.unknown_class),
            "unreadable": len(self.unreadable),
        }


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace-split fields) of each non-blank line."""
    if not path.is_file():
        raise ValueError(f"split file not found: {path}")
    text = path.read_bytes().decode("utf-8-sig")
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | os.PathLike) -> dict[str, int]:
    """``classInd.txt`` as ``{class name: 1-based id}``; ids must be exactly 1..K."""
    p = Path(path)
    index: dict[str, int] = {}
    for n, fields in _lines(p):
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) < 1:
            raise ValueError(f"{p} line {n}: expected '<id> <ClassName>' with id >= 1, got {' '.join(fields)!r}")
        cid, name = int(fields[0]), fields[1]
        if name in index:
            raise ValueError(f"{p} line {n}: class {name!r} listed twice (ids {index[name]} and {cid})")
        index[name] = cid
    if not index:
        raise ValueError(f"{p}: no classes")
    ids = sorted(index.values())
    if ids != list(range(1, len(ids) + 1)):
        raise ValueError(f"{p}: class ids must be 1..{len(ids)} without gaps or repeats, got {_preview(ids)}")
    return index


def read_split_file(path: str | os.PathLike) -> list[SplitEntry]:
    """A ``trainlistNN.txt`` (``Class/file.avi <id>``) or ``testlistNN.txt`` (``Class/file.avi``)."""
    p = Path(path)
    entries = []
    for n, fields in _lines(p):
        if len(fields) > 2:
            raise ValueError(f"{p} line {n}: expected 'Class/file.ext [label]', got {' '.join(fields)!r}")
        rel = fields[0]
        parts = rel.split("/")
        if len(parts) != 2 or not all(parts) or not Path(parts[1]).suffix:
            raise ValueError(f"{p} line {n}: path {rel!r} must be 'Class/file.ext'")
        label = None
        if len(fields) == 2:
            if not fields[1].isdigit() or int(fields[1]) < 1:
                raise ValueError(f"{p} line {n}: label {fields[1]!r} must be a 1-based class id")
            label = int(fields[1])
        entries.append(SplitEntry(class_name=parts[0], path=rel, label=label, line=n))
    return entries


def count_frames(path: str | os.PathLike) -> int:
    """Frames in the first video stream: the container's count, else demuxed packets.

    Raises ``av.error.FFmpegError`` for files FFmpeg cannot open or demux.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        if stream.frames > 0:
            return int(stream.frames)
        # WebM/Matroska store no frame count; the demuxer's final flush packet is empty.
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _clip_files(class_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """Video files in one class folder, grouped by source stem: ``{stem: [(segment, path)]}``."""
    found: dict[str, list[tuple[int, Path]]] = {}
    if not class_dir.is_dir():
        return found
    for f in class_dir.iterdir():
        if f.name.startswith(".") or not f.is_file():  # hidden: write_video's partial files
            continue
        m = _CLIP_NAME.match(f.name)
        if m is None or m["ext"].lower() not in VIDEO_EXTENSIONS:
            continue
        segment = int(m["segment"]) if m["segment"] is not None else WHOLE_VIDEO
        found.setdefault(m["stem"], []).append((segment, f))
    return found


def _preview(items: list, k: int = _EXAMPLES) -> str:
    shown = ", ".join(str(i) for i in items[:k])
    return shown + (f", ... ({len(items) - k} more)" if len(items) > k else "")


def build_manifest(
    clips_dir: str | os.PathLike,
    split_file: str | os.PathLike,
    *,
    class_index: str | os.PathLike | Mapping[str, int] | None = None,
    out: str | os.PathLike | None = None,
    strict: bool = False,
) -> ManifestBuild:
    """Manifest rows for every clip of ``split_file`` found under ``clips_dir``.

    ``class_index`` is a ``classInd.txt`` path or a ``{name: 1-based id}`` mapping; by
    default the ``classInd.txt`` beside ``split_file``. Entries without clips and clips of
    classes the index lacks are reported in the result (and logged); with ``strict`` they
    raise ``ValueError``. An empty result always raises. ``out``: write the CSV there
    (paths relative to its folder where the clips lie under it).
    """
    clips = Path(clips_dir)
    split = Path(split_file)
    if not clips.is_dir():
        raise ValueError(f"clips_dir not found: {clips}")
    if class_index is None:
        class_index = split.parent / "classInd.txt"
    index = dict(class_index) if isinstance(class_index, Mapping) else read_class_index(class_index)
    entries = read_split_file(split)

    for e in entries:
        if e.label is not None and e.class_name in index and index[e.class_name] != e.label:
            raise ValueError(
                f"{split} line {e.line}: label {e.label} for {e.path!r} disagrees with the class index "
                f"({e.class_name} = {index[e.class_name]})"
            )

    by_class: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    rows: list[dict] = []
    missing: list[SplitEntry] = []
    unknown: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    for e in entries:
        if e.class_name not in by_class:
            by_class[e.class_name] = _clip_files(clips / e.class_name)
        files = sorted(by_class[e.class_name].get(e.stem, []))
        if not files:
            missing.append(e)
            continue
        if e.class_name not in index:
            unknown.extend(f for _, f in files)
            continue
        for segment, f in files:
            try:
                frames = count_frames(f)
            except (av.error.FFmpegError, ValueError) as exc:
                unreadable.append((f, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                continue
            if frames < 1:
                unreadable.append((f, "no video frames"))
                continue
            rows.append(
                {
                    "video_path": f,
                    "label": e.class_name,
                    "label_id": index[e.class_name] - 1,
                    "num_frames": frames,
                    "source_video": e.path,
                    "segment": segment,
                }
            )

    build = ManifestBuild(
        split_file=split,
        clips_dir=clips,
        entries=len(entries),
        rows=rows,
        missing=missing,
        unknown_class=unknown,
        unreadable=unreadable,
    )
    counts = ", ".join(f"{k}={v}" for k, v in build.counts().items())
    problems = []
    if missing:
        problems.append(f"{len(missing)} split entries have no clip (e.g. {_preview([m.path for m in missing])})")
    if unknown:
        problems.append(
            f"{len(unknown)} clips belong to classes missing from the class index "
            f"(e.g. {_preview([str(u.relative_to(clips)) for u in unknown])})"
        )
    if unreadable:
        examples = _preview([f"{p}: {r}" for p, r in unreadable])
        problems.append(f"{len(unreadable)} clips are unreadable (e.g. {examples})")
    if not rows:
        raise ValueError(f"no clips of {split} found under {clips} ({counts}); " + "; ".join(problems))
    if strict and problems:
        raise ValueError(f"{split} against {clips} ({counts}): " + "; ".join(problems))
    for problem in problems:
        log.warning("%s: %s", split.name, problem)
    log.info("%s: %s", split.name, counts)

    if out is not None:
        out_path = Path(out)
        write_manifest(out_path, rows)
        build = dataclasses.replace(build, manifest=out_path)
    return build


SPLIT_NAMES = ("train", "dev", "test")


def make_splits(
    clips_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, ManifestBuild]:
    """Seeded, stratified train/dev/test split of a folder-per-class tree without official lists.

    Kinetics-, HMDB- or Something-style trees: ``clips_dir/<Class>/<video or clip files>``.
    Sources are split, not clips: the ``_segNN`` clips of one source video always land in
    the same split, so no video leaks from train into test. Per class, sources are shuffled
    with a seed derived from ``seed`` and the class name, and cut by ``fractions``.

    Writes, in ``out_dir``: ``classInd.txt`` and ``{train,dev,test}list.txt`` in the official
    UCF-101 format (the lists it used, so the split can be rebuilt or shared), and the
    manifests ``{train,dev,test}.csv``. Returns each split's :class:`ManifestBuild`.
    """
    clips = Path(clips_dir)
    out = Path(out_dir)
    if not clips.is_dir():
        raise ValueError(f"clips_dir not found: {clips}")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions ({fractions}) must be three non-negative numbers summing to 1")
    classes = sorted(d.name for d in clips.iterdir() if d.is_dir() and not d.name.startswith("."))
    sources = {c: _clip_files(clips / c) for c in classes}
    classes = [c for c in classes if sources[c]]
    if not classes:
        raise ValueError(f"no class folders with video clips under {clips}")
    index = {c: i for i, c in enumerate(classes, start=1)}
    lists: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    for c in classes:
        stems = sorted(sources[c])
        rng = np.random.default_rng([seed, zlib.crc32(c.encode())])
        order = [stems[i] for i in rng.permutation(len(stems))]
        n = len(order)
        n_test = int(round(fractions[2] * n))
        n_dev = int(round(fractions[1] * n))
        if n - n_test - n_dev < 1 and fractions[0] > 0:
            raise ValueError(f"class {c} has {n} source videos: too few to split by {fractions}")
        parts = {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}
        for name, picked in parts.items():
            for stem in sorted(picked):
                ext = sorted(sources[c][stem])[0][1].suffix
                entry = f"{c}/{stem}{ext}"
                lists[name].append(f"{entry} {index[c]}" if name == "train" else entry)
    atomic_write_text(out / "classInd.txt", "".join(f"{i} {c}\r\n" for c, i in index.items()))
    builds: dict[str, ManifestBuild] = {}
    for name in SPLIT_NAMES:
        list_path = out / f"{name}list.txt"
        atomic_write_text(list_path, "".join(f"{line}\r\n" for line in lists[name]))
        if lists[name]:
            builds[name] = build_manifest(clips, list_path, class_index=index, out=out / f"{name}.csv")
    return builds
