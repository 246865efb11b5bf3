"""A synthetic video dataset whose classes differ only in temporal content, at known rates.

Every clip shows the same bright dot on a random textured background; the class decides
only how the dot (and, for the flash classes, a square) changes over time. So which
frames a coverage/stride setting keeps decides, predictably, whether the class can be
told apart. Rates are per frame (defined for the default clip, N = 50 frames at 25 fps)::

    OscillateSlow           x = cx + A sin(2 pi t / 48 + phase)        1/48 cycles/frame
    OscillateFast           x = cx + A sin(2 pi t / 18 + phase)        1/18 cycles/frame
    RotateClockwise         angle += 1/30 rev/frame (clockwise on screen, y down)
    RotateCounterClockwise  angle -= 1/30 rev/frame
    FlashEarly              square on for 8 frames from t0 in [round(.04N), round(.2N)]
    FlashLate               square on for 8 frames from t0 in [round(.64N), round(.8N)]

Sampling every 7th frame resolves OscillateFast (7/18 < 1/2 cycle per sample); every 16th
aliases it (16/18 cycle = -2/18: slow and reversed), and turns either rotation (16/30 rev)
into the opposite direction (-14/30 rev). Flash windows and their length scale with N
(8 frames = 16 % of the clip); the rates above do not.

:func:`generate` writes them in UCF-101's layout, so the same split/manifest tools serve
both::

    out_dir/UCF-101/FlashEarly/v_FlashEarly_g01_c01.avi
    out_dir/ucfTrainTestlist/classInd.txt       1 FlashEarly            (CRLF, like UCF)
    out_dir/ucfTrainTestlist/trainlist01.txt    FlashEarly/v_FlashEarly_g04_c01.avi 1
    out_dir/ucfTrainTestlist/testlist01.txt     FlashEarly/v_FlashEarly_g01_c01.avi
    out_dir/synth.json                          parameters, classes and frequencies

Each frame stamps its own index (``stamp.draw_stamp``, last) in a top band no object
enters. Stamps wrap modulo 256 for clips longer than that.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import numbers
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Sequence

import av
import numpy as np

from inforates._io import atomic_write_text
from inforates.data import stamp
from inforates.data.splits import count_frames
from inforates.data.video_io import CODECS, write_video
from inforates.registry import Registry

log = logging.getLogger(__name__)

#: Bump when rendering changes, so a resumed run refuses to mix old and new videos.
SYNTH_VERSION = 2
REFERENCE_FRAMES = 50  # clip length the class definitions are stated for
MIN_SIZE = 3 * stamp.CELLS  # smallest width the stamp reads reliably at
FLASH_FRAMES = 8  # flash length at REFERENCE_FRAMES; scales with N
JITTER = 0.15  # centre jitter, as a fraction of the room the dot has to move in
TEXTURE_CELLS = 6  # control points per side of the smooth background texture
TEXTURE_AMPLITUDE = 14.0
NOISE_LEVEL = 3  # per-frame pixel noise, +- grey levels

RenderFn = Callable[[np.random.Generator, int, int], np.ndarray]


@dataclass(frozen=True)
class SynthClass:
    name: str  # UCF-style CamelCase
    description: str
    frequency: float | None  # cycles (or signed revolutions, + = clockwise) per frame
    render: RenderFn  # (rng, num_frames, size) -> (F, size, size, 3) uint8
    flash_starts: tuple[float, float] | None = None  # flash start range, fractions of N


SYNTH_CLASSES: Registry[SynthClass] = Registry("synthetic class")


# ---------------------------------------------------------------------------- geometry


def check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < MIN_SIZE:
        raise ValueError(f"size ({size!r}) must be an integer >= {MIN_SIZE} so the frame-index stamp fits")
    if size % 2:
        raise ValueError(f"size ({size}) must be even (4:2:0 video stores colour at half resolution)")
    return int(size)


def check_num_frames(num_frames: object) -> int:
    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) or num_frames < 1:
        raise ValueError(f"num_frames ({num_frames!r}) must be an integer >= 1")
    return int(num_frames)


@dataclass(frozen=True)
class Layout:
    """Where objects may go in a ``size`` x ``size`` frame: below the stamp band + margin.

    ``(cx, cy)`` is the centre of the picture area; a dot centre stays within
    ``room_x``/``room_y`` of it, so the whole dot stays at or below row ``top``.
    """

    size: int
    top: int
    radius: float
    cx: float
    cy: float
    room_x: float
    room_y: float

    @property
    def square_side(self) -> int:
        return max(3, round(self.size / 6))


def layout(size: int) -> Layout:
    size = check_size(size)
    top = stamp.band_height(size) + max(2, size // 32)
    # A large soft blob, not a small hard dot: a from-scratch model reads the position of a
    # smooth blob from pixels far more easily (measured: test accuracy ~0.5 with a dot of
    # radius size/16, >0.9 with this blob), and motion is what the classes are about.
    radius = max(2.0, size / 7)
    edge = radius + 1.0
    return Layout(
        size=size,
        top=top,
        radius=radius,
        cx=(size - 1) / 2,
        cy=(top + size - 1) / 2,
        room_x=(size - 1) / 2 - edge,
        room_y=(size - 1 - top) / 2 - edge,
    )


def flash_window(num_frames: int, starts: tuple[float, float]) -> tuple[int, int, int]:
    """``(first start, last start, duration)`` of a flash in a clip of ``num_frames``.

    Starts are ``[round(a N), round(b N)]``; the duration is 8 frames at N = 50, scaled
    with N (at least 1), and starts are clamped so the flash ends inside the clip.
    """
    n = check_num_frames(num_frames)
    duration = min(n, max(1, round(FLASH_FRAMES * n / REFERENCE_FRAMES)))
    last_ok = n - duration
    lo, hi = (min(round(f * n), last_ok) for f in starts)
    return lo, hi, duration


# ----------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Scene:
    """The per-video look shared by every class (so one frame says little about the class)."""

    lay: Layout
    background: np.ndarray  # (H, W, 3) float32
    dot_colour: np.ndarray  # (3,)
    jitter: tuple[float, float]


def _scene(rng: np.random.Generator, size: int) -> _Scene:
    lay = layout(size)
    base = rng.uniform(10, 90, size=3)
    # Smooth texture: random control points, bilinearly interpolated (W = M G M^T).
    grid = rng.uniform(-TEXTURE_AMPLITUDE, TEXTURE_AMPLITUDE, size=(TEXTURE_CELLS, TEXTURE_CELLS, 3))
    pos = np.linspace(0, TEXTURE_CELLS - 1, size)
    interp = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(TEXTURE_CELLS)[None, :]))
    texture = np.einsum("hi,ijc,wj->hwc", interp, grid, interp)
    dot_colour = rng.uniform(170, 255, size=3)
    jitter = (rng.uniform(-JITTER, JITTER) * lay.room_x, rng.uniform(-JITTER, JITTER) * lay.room_y)
    return _Scene(lay, (base + texture).astype(np.float32), dot_colour.astype(np.float32), jitter)


def _disk(lay: Layout, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(F, H, W) coverage of a Gaussian blob (sigma = radius / 1.5) centred at (xs[t], ys[t]),
    faded to zero between ``radius`` and ``radius + 1`` so it never leaves its room."""
    grid = np.arange(lay.size, dtype=np.float32)
    dx = grid[None, None, :] - np.asarray(xs, np.float32)[:, None, None]
    dy = grid[None, :, None] - np.asarray(ys, np.float32)[:, None, None]
    d2 = dx * dx + dy * dy
    sigma = lay.radius / 1.5
    return np.exp(-d2 / (2 * sigma * sigma)) * np.clip(lay.radius + 1.0 - np.sqrt(d2), 0.0, 1.0)


def _compose(
    rng: np.random.Generator,
    scene: _Scene,
    num_frames: int,
    layers: Iterable[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Background + per-frame noise, then ``(alpha (F,H,W), colour (3,))`` layers, then stamps."""
    size = scene.lay.size
    noise = rng.integers(-NOISE_LEVEL, NOISE_LEVEL + 1, size=(num_frames, size, size, 1)).astype(np.float32)
    frames = scene.background[None] + noise
    for alpha, colour in layers:
        frames += alpha[..., None] * (colour - frames)
    out = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    for t in range(num_frames):
        stamp.draw_stamp(out[t], t)
    return out


def _render_oscillation(period: float, rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    num_frames = check_num_frames(num_frames)
    sc = _scene(rng, size)
    lay, (jx, _) = sc.lay, sc.jitter
    amplitude = rng.uniform(0.5, 1.0) * (lay.room_x - abs(jx))
    phase = rng.uniform(0, 2 * math.pi)
    y = lay.cy + rng.uniform(-1, 1) * lay.room_y  # the row is the vertical jitter
    t = np.arange(num_frames)
    xs = lay.cx + jx + amplitude * np.sin(2 * math.pi * t / period + phase)
    ys = np.full(num_frames, y)
    return _compose(rng, sc, num_frames, [(_disk(lay, xs, ys), sc.dot_colour)])


def _render_rotation(rev_per_frame: float, rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    num_frames = check_num_frames(num_frames)
    sc = _scene(rng, size)
    lay, (jx, jy) = sc.lay, sc.jitter
    radius = rng.uniform(0.5, 1.0) * min(lay.room_x - abs(jx), lay.room_y - abs(jy))
    angle0 = rng.uniform(0, 2 * math.pi)
    angle = angle0 + 2 * math.pi * rev_per_frame * np.arange(num_frames)
    # Image rows grow downwards, so increasing angle turns clockwise on screen.
    xs = lay.cx + jx + radius * np.cos(angle)
    ys = lay.cy + jy + radius * np.sin(angle)
    return _compose(rng, sc, num_frames, [(_disk(lay, xs, ys), sc.dot_colour)])


def _render_flash(
    starts: tuple[float, float], rng: np.random.Generator, num_frames: int, size: int
) -> np.ndarray:
    num_frames = check_num_frames(num_frames)
    sc = _scene(rng, size)
    lay = sc.lay
    x = lay.cx + rng.uniform(-1, 1) * lay.room_x
    y = lay.cy + rng.uniform(-1, 1) * lay.room_y
    lo, hi, duration = flash_window(num_frames, starts)
    start = int(rng.integers(lo, hi + 1))
    side = lay.square_side
    x0 = int(rng.integers(1, lay.size - side))
    y0 = int(rng.integers(lay.top + 1, lay.size - side))
    square_colour = rng.uniform(170, 255, size=3).astype(np.float32)
    square = np.zeros((num_frames, lay.size, lay.size), np.float32)
    square[start : start + duration, y0 : y0 + side, x0 : x0 + side] = 1.0
    dot = _disk(lay, np.full(num_frames, x), np.full(num_frames, y))
    return _compose(rng, sc, num_frames, [(square, square_colour), (dot, sc.dot_colour)])


def _oscillation(name: str, period: float) -> SynthClass:
    return SynthClass(name, f"dot swings left-right, period {period:g} frames", 1 / period,
                      functools.partial(_render_oscillation, period))


def _rotation(name: str, rev_per_frame: float) -> SynthClass:
    turn = "clockwise" if rev_per_frame > 0 else "counter-clockwise"
    rate = Fraction(abs(rev_per_frame)).limit_denominator(1000)
    return SynthClass(name, f"dot circles {turn}, {rate} rev per frame", rev_per_frame,
                      functools.partial(_render_rotation, rev_per_frame))


def _flash(name: str, starts: tuple[float, float]) -> SynthClass:
    share = FLASH_FRAMES / REFERENCE_FRAMES
    when = f"{starts[0]:.0%}-{starts[1]:.0%}"
    return SynthClass(name, f"static dot; square shown for {share:.0%} of the clip, starting at {when}", None,
                      functools.partial(_render_flash, starts), flash_starts=starts)


for _cls in (
    _oscillation("OscillateSlow", 48.0),
    _oscillation("OscillateFast", 18.0),
    _rotation("RotateClockwise", 1 / 30),
    _rotation("RotateCounterClockwise", -1 / 30),
    _flash("FlashEarly", (0.04, 0.20)),
    _flash("FlashLate", (0.64, 0.80)),
):
    SYNTH_CLASSES.add(_cls.name, _cls)


# -------------------------------------------------------------------------- generation


def video_rng(seed: int, class_name: str, group: int, clip: int) -> np.random.Generator:
    """The generator for one video, stable across processes and Python runs."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(class_name.encode()), group, clip]))


def video_name(class_name: str, group: int, clip: int, extension: str) -> str:
    return f"v_{class_name}_g{group:02d}_c{clip:02d}{extension}"


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    clips_dir: Path  # root / "UCF-101"
    split_dir: Path  # root / "ucfTrainTestlist"
    videos: int
    written: int
    reused: int
    seconds: float
    train: int = 0
    test: int = 0


@dataclass(frozen=True)
class _Job:
    class_name: str
    group: int
    clip: int
    path: str
    seed: int
    num_frames: int
    size: int
    fps: float
    codec: str


def _make_video(job: _Job) -> int:
    rng = video_rng(job.seed, job.class_name, job.group, job.clip)
    frames = SYNTH_CLASSES.get(job.class_name).render(rng, job.num_frames, job.size)
    return write_video(job.path, frames, fps=job.fps, codec=job.codec)


def _is_done(path: Path, num_frames: int) -> bool:
    if not path.is_file():
        return False
    try:
        return count_frames(path) == num_frames
    except (av.error.FFmpegError, ValueError) as exc:
        log.warning("re-rendering unreadable %s: %s", path, exc)
        return False


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} ({value!r}) must be an integer >= {minimum}")
    return int(value)


# Parameters that change a video's pixels: a resumed run must match them.
_PIXEL_KEYS = ("version", "seed", "num_frames", "size", "fps", "codec")


def _check_resumable(meta_path: Path, meta: dict) -> None:
    if not meta_path.is_file():
        return
    try:
        old = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON ({exc}); remove it or use a fresh out_dir") from None
    diff = [f"{k}={old.get(k)!r} (asked {meta[k]!r})" for k in _PIXEL_KEYS if old.get(k) != meta[k]]
    if diff:
        raise ValueError(
            f"{meta_path.parent} holds a synthetic dataset made with {', '.join(diff)}; "
            "use a fresh out_dir so videos of different settings are not mixed"
        )


def _class_meta(cls: SynthClass, class_index: int, num_frames: int) -> dict:
    window = flash_window(num_frames, cls.flash_starts) if cls.flash_starts else None
    return {
        "name": cls.name,
        "class_index": class_index,  # 1-based, as in classInd.txt
        "description": cls.description,
        "frequency": cls.frequency,
        "flash_window": list(window) if window else None,  # [first start, last start, frames]
    }


def _crlf(lines: Sequence[str]) -> str:
    return "".join(line + "\r\n" for line in lines)


def generate(
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    groups: int = 10,
    clips_per_group: int = 4,
    test_groups: int = 3,
    num_frames: int = REFERENCE_FRAMES,
    size: int = 64,
    fps: float = 25.0,
    codec: str = "mjpeg",
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Render the synthetic dataset into ``out_dir`` in UCF-101's layout (see module doc).

    Groups ``1..test_groups`` form the test list, the rest the train list. Deterministic
    from ``seed``; videos already present with ``num_frames`` frames are kept, so an
    interrupted run resumes (a folder made with other pixel settings is refused).
    """
    if isinstance(classes, str):
        raise ValueError(f"classes ({classes!r}) must be a list of class names, not a string")
    names = SYNTH_CLASSES.names() if classes is None else list(classes)
    if not names:
        raise ValueError("classes ([]) must name at least one class")
    for name in names:
        SYNTH_CLASSES.get(name)  # unknown name: ValueError listing the valid ones
    if len(set(names)) != len(names):
        raise ValueError(f"classes ({names}) lists a class twice")
    names = sorted(names)  # classInd is alphabetical, like UCF-101's
    groups = _check_int("groups", groups, 1)
    clips_per_group = _check_int("clips_per_group", clips_per_group, 1)
    test_groups = _check_int("test_groups", test_groups, 0)
    if test_groups >= groups:
        raise ValueError(f"test_groups ({test_groups}) must be < groups ({groups}) so some groups are left to train")
    num_frames = check_num_frames(num_frames)
    size = check_size(size)
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps ({fps!r}) must be a positive number")
    spec = CODECS.get(codec)  # unknown codec: ValueError listing the valid ones
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 1)

    root = Path(out_dir)
    clips_dir, split_dir = root / "UCF-101", root / "ucfTrainTestlist"
    started = time.perf_counter()

    jobs: list[_Job] = []
    train_lines, test_lines = [], []
    for label, name in enumerate(names, start=1):
        for g in range(1, groups + 1):
            for c in range(1, clips_per_group + 1):
                rel = f"{name}/{video_name(name, g, c, spec.extension)}"
                jobs.append(_Job(name, g, c, str(clips_dir / rel), seed, num_frames, size, float(fps), codec))
                if g <= test_groups:
                    test_lines.append(rel)
                else:
                    train_lines.append(f"{rel} {label}")

    meta = {
        "format": "inforates-synth",
        "version": SYNTH_VERSION,
        "seed": seed,
        "num_frames": num_frames,
        "size": size,
        "fps": float(fps),
        "codec": codec,
        "extension": spec.extension,
        "groups": groups,
        "clips_per_group": clips_per_group,
        "test_groups": test_groups,
        "videos": len(jobs),
        "train_videos": len(train_lines),
        "test_videos": len(test_lines),
        "layout": {"stamp_band": stamp.band_height(size), **dataclasses.asdict(layout(size))},
        "classes": [_class_meta(SYNTH_CLASSES.get(name), i, num_frames) for i, name in enumerate(names, start=1)],
    }
    meta_path = root / "synth.json"
    _check_resumable(meta_path, meta)
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")

    todo = [j for j in jobs if not _is_done(Path(j.path), num_frames)]
    total, done = len(jobs), len(jobs) - len(todo)
    if progress is not None:
        progress(done, total)
    if workers == 1 or len(todo) <= 1:
        for job in todo:
            _make_video(job)
            done += 1
            if progress is not None:
                progress(done, total)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            for future in as_completed([pool.submit(_make_video, j) for j in todo]):
                future.result()
                done += 1
                if progress is not None:
                    progress(done, total)

    atomic_write_text(split_dir / "classInd.txt", _crlf([f"{i} {n}" for i, n in enumerate(names, start=1)]))
    atomic_write_text(split_dir / "trainlist01.txt", _crlf(train_lines))
    atomic_write_text(split_dir / "testlist01.txt", _crlf(test_lines))

    summary = SynthSummary(
        root=root,
        clips_dir=clips_dir,
        split_dir=split_dir,
        videos=total,
        written=len(todo),
        reused=total - len(todo),
        seconds=time.perf_counter() - started,
        train=len(train_lines),
        test=len(test_lines),
    )
    log.info(
        "synthetic dataset in %s: %d videos (%d written, %d reused) in %.1f s",
        root, summary.videos, summary.written, summary.reused, summary.seconds,
    )
    return summary
