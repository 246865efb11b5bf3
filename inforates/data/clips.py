"""Cut a folder-per-class video tree into fixed-length clips, restartably.

``video_root/<Class>/<name>.<ext>`` (UCF-101, HMDB-51, Kinetics-style trees; any container
PyAV reads) becomes ``out_dir/<Class>/<name>_segNN<codec ext>``: each source is cut into
consecutive, non-overlapping segments of exactly ``frames`` frames, and a short tail is
dropped::

    source of 107 frames, frames=50
    |<----- seg00 ----->|<----- seg01 ----->|.......|
     0                49 50                99 100 106   <- 7 tail frames dropped

Layout of ``out_dir`` after a build::

    <Class>/<stem>_segNN.<ext>      the clips (NN counts from 00; 3 digits past 99)
    .done/<Class>/<stem>.json       per-source completion record, written after its clips
    .done/<Class>/<stem>.lock       per-source lock (kept; never delete while building)
    .done/settings.json             frames/codec/size/gop the folder was built with
    failures.csv                    source,reason for every source that gave no clips
    build_summary.json              :class:`ClipBuildSummary` of the last build

A source with a valid completion record (same size and mtime, all its clips present) is
not decoded again, so an interrupted build resumes where it stopped. Clips and records are
written to hidden temporary names and renamed into place, so a killed build never leaves a
half-written file under a final name; the leftovers (``.*.partial.*``) are removed by the
next build.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from inforates._io import atomic_write_text
from inforates.data.video_io import CODECS, write_video

try:  # POSIX only; without it a build still works, it just is not safe to run twice at once
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".avi", ".mp4", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".ogv")
FALLBACK_FPS = 25.0
MIN_SIZE = 16
DONE_DIR = ".done"
SUMMARY_FILE = "build_summary.json"
FAILURES_FILE = "failures.csv"
SETTINGS_FILE = "settings.json"

# A decode that stops this many frames short of what the container declares is a truncated
# source, not a short one: max(2 frames, 5 %) absorbs headers that round the duration.
_TRUNCATION_TOLERANCE = 0.05
# Output errors that say "the disk is the problem", not the source: stop the build.
_FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}
# What a broken, truncated or unreadable source raises (av.error.* derive from FFmpegError;
# several are also OSError/ValueError subclasses).
_SOURCE_ERRORS = (av.error.FFmpegError, OSError, ValueError)

ProgressFn = Callable[[int, int, int], None]


@dataclass
class ClipBuildSummary:
    """What a :func:`build_clips` call found and produced.

    ``clips``, ``frames``, ``dropped_tail_frames`` and ``bytes`` describe the whole output
    folder after the build (reused sources included); ``new_clips`` counts the clips this
    call wrote. ``too_short`` lists sources that decoded fine but had fewer than ``frames``
    frames (no clip, not a failure); ``truncated`` lists sources whose decode stopped early
    but that still gave at least one full clip (kept, not a failure).
    """

    videos: int = 0
    processed: int = 0
    reused: int = 0
    failed: int = 0
    clips: int = 0
    new_clips: int = 0
    frames: int = 0
    dropped_tail_frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    stale_removed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    too_short: list[tuple[str, int]] = field(default_factory=list)
    truncated: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass(frozen=True)
class _Task:
    source: str  # absolute path
    rel: str  # "<Class>/<file>", POSIX, as reported
    label: str
    stem: str
    out_dir: str
    frames: int
    codec: str
    size: int | None
    gop: int | None


@dataclass
class _Result:
    rel: str
    status: str  # "done" | "failed"
    reason: str | None = None
    record: dict | None = None
    new_clips: int = 0
    warnings: list[str] = field(default_factory=list)


def build_clips(
    video_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames: int = 50,
    codec: str = "mjpeg",
    size: int | None = None,
    workers: int = 1,
    gop: int | None = None,
    progress: ProgressFn | None = None,
) -> ClipBuildSummary:
    """Cut every video under ``video_root/<Class>/`` into clips of exactly ``frames`` frames.

    Args:
        video_root: folder with one sub-folder per class holding the source videos.
        out_dir: where ``<Class>/<stem>_segNN<ext>`` clips go (must not be inside
            ``video_root``). Re-running on the same folder resumes an interrupted build.
        frames: frames per clip; a source's tail shorter than this is dropped.
        codec: clip codec, a name from ``inforates.data.video_io.CODECS``. Intra-only
            ``mjpeg`` (default) lets a decoder seek any frame at the cost of one JPEG decode,
            so strided/sparse sampling is cheap, but clips are several times larger. Inter-coded
            codecs (``vp9``, ``vp8``, ``h264``) are small but must decode from the last
            keyframe, so for strided sampling a short ``gop`` bounds the wasted decoding.
            DALI's CPU decoder reads only mjpeg/vp8/vp9; h264 needs DALI's GPU backend.
        size: if given, rescale so the shorter side is ``size`` pixels (aspect kept, both
            sides even). Otherwise the source size is kept (rounded down to even sides).
        workers: processes, one source video per task. With ``workers > 1`` the processes
            are spawned, so a script calling this needs an ``if __name__ == "__main__":``
            guard. Each worker holds one clip of decoded frames in memory.
        gop: keyframe interval for inter-coded codecs (encoder default if ``None``).
        progress: ``progress(done_videos, total_videos, clips_so_far)``, called in the
            calling process after each source (reused ones included).

    Sources that cannot be read (empty, not a video, no video stream, truncated before the
    first full clip) are listed in ``out_dir/failures.csv`` and the summary; the build
    carries on. Running out of disk space stops it.
    """
    started = time.perf_counter()
    root = Path(video_root)
    out = Path(out_dir)
    _validate(root, out, frames=frames, codec=codec, size=size, workers=workers, gop=gop)
    sources = _find_sources(root)
    if not sources:
        raise ValueError(
            f"no videos found under video_root ({root}) in <Class>/ folders "
            f"(extensions: {' '.join(VIDEO_EXTENSIONS)})"
        )
    settings = {"frames": frames, "codec": codec, "size": size, "gop": gop}
    _check_settings(out, settings)

    summary = ClipBuildSummary(videos=len(sources))
    summary.stale_removed = _remove_stale_temp_files(out)

    # Two sources that differ only by extension would write the same clip names.
    tasks: list[_Task] = []
    claimed: dict[tuple[str, str], str] = {}
    ext = CODECS.get(codec).extension
    done_count = 0
    clips_so_far = 0

    def _tick() -> None:
        if progress is not None:
            progress(done_count, len(sources), clips_so_far)

    for path in sources:
        label, stem = path.parent.name, path.stem
        rel = f"{label}/{path.name}"
        if (label, stem) in claimed:
            _add_failure(summary, rel, f"clip names collide with {claimed[(label, stem)]}")
            done_count += 1
            _tick()
            continue
        claimed[(label, stem)] = rel
        record = _valid_record(out, label, stem, path, settings, ext)
        if record is not None:
            summary.reused += 1
            _add_record(summary, rel, record)
            clips_so_far += record["segments"]
            done_count += 1
            _tick()
            continue
        tasks.append(_Task(str(path), rel, label, stem, str(out), frames, codec, size, gop))

    with closing(_run(tasks, workers)) as results:  # closing: an interrupt stops the pool now
        for result in results:
            for w in result.warnings:
                log.warning("%s: %s", result.rel, w)
            if result.status == "failed":
                _add_failure(summary, result.rel, result.reason or "unknown error")
            else:
                summary.processed += 1
                summary.new_clips += result.new_clips
                _add_record(summary, result.rel, result.record or {})
                clips_so_far += (result.record or {}).get("segments", 0)
            done_count += 1
            _tick()

    for items in (summary.failures, summary.too_short, summary.truncated):
        items.sort()
    summary.seconds = time.perf_counter() - started
    _write_reports(out, summary)
    if summary.failures:
        log.warning("%d of %d sources failed; see %s", summary.failed, summary.videos, out / FAILURES_FILE)
    log.info(
        "clips: %d (%d new) from %d sources (%d processed, %d reused, %d failed) in %.1f s",
        summary.clips, summary.new_clips, summary.videos, summary.processed, summary.reused,
        summary.failed, summary.seconds,
    )
    return summary


# --- boundary -----------------------------------------------------------------------------


def _validate(root: Path, out: Path, *, frames, codec, size, workers, gop) -> None:
    if not root.is_dir():
        raise ValueError(f"video_root ({root}) is not an existing folder")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames ({frames!r}) must be an integer >= 1")
    CODECS.get(codec)  # ValueError listing the valid names
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
            raise ValueError(f"size ({size!r}) must be an integer >= {MIN_SIZE}")
        if size % 2:
            raise ValueError(f"size ({size}) must be even (4:2:0 video needs even sides)")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers ({workers!r}) must be an integer >= 1")
    if gop is not None and (isinstance(gop, bool) or not isinstance(gop, int) or gop < 1):
        raise ValueError(f"gop ({gop!r}) must be an integer >= 1")
    r, o = root.resolve(), out.resolve()
    if o == r or r in o.parents:
        raise ValueError(f"out_dir ({out}) must not be inside video_root ({root})")


def _find_sources(root: Path) -> list[Path]:
    found = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for p in sorted(class_dir.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_EXTENSIONS:
                found.append(p)
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
    if loose:
        log.warning("ignoring %d video(s) directly under %s (not in a class folder)", len(loose), root)
    return found


def _check_settings(out: Path, settings: dict) -> None:
    path = out / DONE_DIR / SETTINGS_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None
        if isinstance(previous, dict) and previous != settings:
            diff = ", ".join(
                f"{k}={previous.get(k)!r} (now {settings[k]!r})" for k in settings if previous.get(k) != settings[k]
            )
            raise ValueError(
                f"out_dir ({out}) holds clips built with {diff}; use another out_dir or delete it"
            )
        if isinstance(previous, dict):
            return
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


# --- completion records -----------------------------------------------------------------


def _record_path(out: Path, label: str, stem: str) -> Path:
    return out / DONE_DIR / label / f"{stem}.json"


def _source_stat(path: Path) -> dict:
    st = path.stat()
    return {"source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}


def _valid_record(out: Path, label: str, stem: str, source: Path, settings: dict, ext: str) -> dict | None:
    """The completion record of ``source`` if it still describes the clips on disk."""
    path = _record_path(out, label, stem)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable completion record %s (%s); redoing its source", path, exc)
        return None
    try:
        if any(record[k] != v for k, v in _source_stat(source).items()):
            return None
        if any(record["settings"].get(k) != v for k, v in settings.items()):
            return None
        clips = record["clips"]
        if len(clips) != record["segments"]:
            return None
        if not all((out / label / c).is_file() and c.endswith(ext) for c in clips):
            return None
    except (KeyError, TypeError, AttributeError, OSError):
        return None
    return record


def _add_record(summary: ClipBuildSummary, rel: str, record: dict) -> None:
    n = record.get("segments", 0)
    summary.clips += n
    summary.frames += n * record.get("frames_per_clip", 0)
    summary.dropped_tail_frames += record.get("dropped_tail_frames", 0)
    summary.bytes += record.get("clip_bytes", 0)
    if n == 0:
        summary.too_short.append((rel, record.get("source_frames", 0)))
    if record.get("truncated"):
        summary.truncated.append((rel, record["truncated"]))


def _add_failure(summary: ClipBuildSummary, rel: str, reason: str) -> None:
    summary.failed += 1
    summary.failures.append((rel, reason))


def _write_reports(out: Path, summary: ClipBuildSummary) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", "reason"])
    writer.writerows(summary.failures)
    atomic_write_text(out / FAILURES_FILE, buf.getvalue())
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary.to_dict(), indent=2) + "\n")


# --- temp files and locks -----------------------------------------------------------------

_PARTIAL = re.compile(r"^\.(?P<clip>.+)\.partial\.[^.]+$")  # video_io.temp_path_for
_SEGMENT = re.compile(r"^(?P<stem>.+)_seg\d{2,}$")
_RECORD_TMP = re.compile(r"^\.(?P<stem>.+)\.json\..+\.tmp$")  # _io.atomic_write_bytes


def _remove_stale_temp_files(out: Path) -> int:
    """Delete temp files a killed build left behind; returns how many.

    A temp file whose source is being written right now (its lock is held, e.g. by a
    concurrent build) is left alone; that writer cleans up after itself.
    """
    if not out.is_dir():
        return 0
    removed = 0
    for p in out.glob(".*.tmp"):  # build_summary.json / failures.csv temp names
        p.unlink(missing_ok=True)
        removed += 1
    candidates: list[tuple[Path, str, str]] = []  # (file, class, source stem)
    done = out / DONE_DIR
    for class_dir in (d for d in out.iterdir() if d.is_dir() and d.name != DONE_DIR):
        for p in class_dir.iterdir():
            if m := _PARTIAL.match(p.name):
                seg = _SEGMENT.match(m.group("clip"))
                candidates.append((p, class_dir.name, seg.group("stem") if seg else m.group("clip")))
    if done.is_dir():
        for p in done.glob(".*.tmp"):  # settings.json temp name
            p.unlink(missing_ok=True)
            removed += 1
        for class_dir in (d for d in done.iterdir() if d.is_dir()):
            for p in class_dir.iterdir():
                if m := _RECORD_TMP.match(p.name):
                    candidates.append((p, class_dir.name, m.group("stem")))
    for p, label, stem in candidates:
        with _source_lock(out, label, stem, blocking=False) as held:
            if held:
                p.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted build in %s", removed, out)
    return removed


@contextmanager
def _source_lock(out: Path, label: str, stem: str, *, blocking: bool) -> Iterator[bool]:
    """Hold the per-source lock file; yields whether it was acquired."""
    if fcntl is None:  # pragma: no cover - Windows
        yield True
        return
    path = out / DONE_DIR / label / f"{stem}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --- running the tasks --------------------------------------------------------------------


def _run(tasks: list[_Task], workers: int) -> Iterator[_Result]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield _process_source(task)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold threads
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    )
    try:
        # Keep at most 2 tasks per worker queued so an interrupt cancels the rest cheaply.
        pending: set[Future] = set()
        queue = iter(tasks)
        for task in queue:
            pending.add(pool.submit(_process_source, task))
            if len(pending) >= 2 * workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                for task in queue:
                    pending.add(pool.submit(_process_source, task))
                    break
                try:
                    result = fut.result()
                except BrokenProcessPool as exc:
                    raise RuntimeError(
                        "a clip-building worker process died (a decoder crash, out of memory, or a "
                        "calling script without an `if __name__ == '__main__':` guard, which spawned "
                        "workers need); run again to resume, or pass workers=1"
                    ) from exc
                yield result
    finally:
        # On an interrupt: drop queued sources, let running ones finish their clip files.
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_init(parent_pid: int) -> None:
    """Make a pool worker exit when the building process dies (e.g. SIGKILL).

    Otherwise an orphaned worker blocks forever on its task queue, or keeps writing while a
    resumed build works on the same source.
    """

    def _watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=_watch, name="inforates-parent-watch", daemon=True).start()


def _process_source(task: _Task) -> _Result:
    out = Path(task.out_dir)
    source = Path(task.source)
    with _source_lock(out, task.label, task.stem, blocking=True):
        settings = {"frames": task.frames, "codec": task.codec, "size": task.size, "gop": task.gop}
        ext = CODECS.get(task.codec).extension
        # A concurrent build may have finished this source while we waited for the lock.
        record = _valid_record(out, task.label, task.stem, source, settings, ext)
        if record is not None:
            return _Result(task.rel, "done", record=record)
        return _cut_source(task, out, source, settings, ext)


def _cut_source(task: _Task, out: Path, source: Path, settings: dict, ext: str) -> _Result:
    class_out = out / task.label
    _remove_clips_of(class_out, task.stem, ext)
    _record_path(out, task.label, task.stem).unlink(missing_ok=True)
    warnings: list[str] = []
    clips: list[str] = []
    clip_bytes = 0
    decoded = 0
    error: str | None = None  # why decoding stopped early, if it did
    try:
        stat = _source_stat(source)
        if stat["source_bytes"] == 0:
            return _Result(task.rel, "failed", reason="empty file (0 bytes)")
        with av.open(str(source)) as container:
            if not container.streams.video:
                return _Result(task.rel, "failed", reason="no video stream")
            stream = container.streams.video[0]
            fps = _stream_fps(stream, warnings)
            expected = _expected_frames(container, stream, fps)
            target: tuple[int, int] | None = None
            buffer: list[np.ndarray] = []
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except _SOURCE_ERRORS as exc:
                    if _is_fatal_output_error(exc):
                        raise
                    error = f"decoding stopped after {decoded} frames: {_one_line(exc)}"
                    break
                if target is None:
                    target = _target_size(frame.width, frame.height, task.size)
                buffer.append(_to_rgb(frame, target))
                decoded += 1
                if len(buffer) == task.frames:
                    name = f"{task.stem}_seg{len(clips):02d}{ext}"
                    try:
                        write_video(class_out / name, buffer, fps=fps, codec=task.codec, gop=task.gop)
                    except (av.error.FFmpegError, ValueError) as exc:
                        if _is_fatal_output_error(exc):
                            raise
                        _remove_clips_of(class_out, task.stem, ext)
                        return _Result(task.rel, "failed", reason=f"encoding {name}: {_one_line(exc)}", warnings=warnings)
                    clip_bytes += (class_out / name).stat().st_size
                    clips.append(name)
                    buffer = []
    except _SOURCE_ERRORS as exc:
        if _is_fatal_output_error(exc):
            raise
        _remove_clips_of(class_out, task.stem, ext)
        return _Result(task.rel, "failed", reason=_one_line(exc), warnings=warnings)

    if error is None and expected is not None and decoded < expected - max(2, _TRUNCATION_TOLERANCE * expected):
        error = f"truncated: decoded {decoded} of the {expected} frames its container declares"
    if error is not None and not clips:
        return _Result(task.rel, "failed", reason=error, warnings=warnings)
    if error is not None:
        warnings.append(f"{error}; keeping its {len(clips)} full clip(s)")

    record = {
        "source": task.rel,
        **stat,
        "settings": settings,
        "fps": fps,
        "source_frames": decoded,
        "frames_per_clip": task.frames,
        "segments": len(clips),
        "dropped_tail_frames": decoded - len(clips) * task.frames,
        "clips": clips,
        "clip_bytes": clip_bytes,
        "truncated": error,
    }
    atomic_write_text(_record_path(out, task.label, task.stem), json.dumps(record, indent=2) + "\n")
    return _Result(task.rel, "done", record=record, new_clips=len(clips), warnings=warnings)


def _remove_clips_of(class_out: Path, stem: str, ext: str) -> None:
    """Delete clips an earlier (interrupted or outdated) build wrote for ``stem``."""
    if not class_out.is_dir():
        return
    pattern = re.compile(re.escape(stem) + r"_seg\d{2,}" + re.escape(ext))
    partial = re.compile(r"\." + re.escape(stem) + r"_seg\d{2,}\.partial" + re.escape(ext))
    for p in class_out.iterdir():
        if pattern.fullmatch(p.name) or partial.fullmatch(p.name):
            p.unlink(missing_ok=True)


def _stream_fps(stream, warnings: list[str]) -> float:
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    warnings.append(f"no frame rate in the stream; writing clips at {FALLBACK_FPS:g} fps")
    return FALLBACK_FPS


def _expected_frames(container, stream, fps: float) -> int | None:
    """Frames the container says the stream has (header count, else duration x fps)."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    if container.duration and container.duration > 0:
        return int(round(container.duration / av.time_base * fps))
    return None


def _target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) of the clips: shorter side ``size`` if given; both sides even.

    >>> _target_size(320, 240, 112), _target_size(240, 320, 112), _target_size(321, 241, None)
    ((150, 112), (112, 150), (320, 240))
    """
    if size is None:  # keep the size; an odd row/column is cropped, not resampled
        return max(2, width - width % 2), max(2, height - height % 2)
    if width <= height:
        return size, max(2, 2 * round(height * size / width / 2))
    return max(2, 2 * round(width * size / height / 2)), size


def _to_rgb(frame: av.VideoFrame, target: tuple[int, int]) -> np.ndarray:
    w, h = target
    if 0 <= frame.width - w <= 1 and 0 <= frame.height - h <= 1:
        return frame.to_ndarray(format="rgb24")[:h, :w]
    shrink = w * h < frame.width * frame.height
    return frame.reformat(
        width=w, height=h, format="rgb24", interpolation="AREA" if shrink else "BILINEAR"
    ).to_ndarray()


def _is_fatal_output_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
