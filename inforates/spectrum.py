"""Temporal spectrum of clips: how fast their content changes, and which strides alias it.

Striding is decimation without a low-pass filter: a setting that hands the model frames
``d`` apart samples the clip at ``1/d`` frames per frame, and content faster than half of
that (Nyquist) folds onto a slower, possibly reversed, motion. This module measures each
clip's temporal bandwidth from its pixels and turns it into the largest safe spacing::

    frames (F, H, W, 3)
      -> motion signals per frame    x(t), y(t): centroid of |frame - temporal median|,
                                     below the stamp band, in pixels (``area`` on request)
      -> power spectrum              Hann window, rfft (zero-padded), power summed over signals
      -> f_dom                       frequency of the largest non-DC power, cycles/frame
      -> f_max                       smallest f with >= 95 % of the non-DC power at or below f
      -> k_safe = floor(1 / (2 f_max))   largest frame spacing that stays above Nyquist

Worked example, ``OscillateFast`` (1/18 cycles/frame): Nyquist allows frames up to
``1 / (2/18) = 9`` apart. Every 16th frame sees ``16/18`` cycle per sample, i.e. ``-2/18``:
a slow swing in the wrong direction.

**Stride is not the spacing the model sees.** With policy ``fixed`` the model gets ``T``
frames spread over the ``keep / stride`` candidates (:func:`inforates.sampling.select_frames`),
so their spacing is about ``max(stride, keep / T)``; :func:`frame_spacing` takes it from the
indices themselves. ``N = 50``, coverage 100, ``T = 8``::

    stride  indices                       largest gap   ok for f_max = 1/18 (k_safe 9)?
      1     0  7 14 21 28 35 42 49              7       yes
      2     0  6 12 20 26 34 40 48              8       yes
      8     0  0  8 16 24 32 40 48              8       yes
     16     0  0  0 16 16 32 32 48             16       no: aliased

So at full coverage and ``T = 8`` a 50-frame clip is already sampled every ~7 frames at
stride 1, and strides up to 8 change little; :func:`predicted_ok` applies the Nyquist test
to the largest gap of a setting's distinct frames.

Caveats, measured on the synthetic classes (``inforates.data.synth``):

- ``f_max`` as defined is conservative on short clips: the Hann window spreads a pure tone
  over about ``+-1/F`` (``F`` frames), so ``f_max`` of a tone at ``f0`` is ``~f0 + 1/F``
  (50 frames: +0.02 cycles/frame; OscillateFast ``k_safe`` 6 instead of 9). With
  ``correct_window=True`` the window's own spread (``resolution``, the half-width holding
  90 % of the window's power, ~0.98/F) is subtracted, never going below ``f_dom``; exact
  for tones, slightly optimistic for broadband content.
- A clip whose motion signals stay below ``min_motion`` pixels RMS is *static*: ``f_dom``
  is NaN, ``f_max`` 0, and ``k_safe`` the clip length (motion does not bound the stride).
  The flash classes are such clips: a square appearing moves no centroid. Their failure
  mode is missing a short event (8 frames), not aliasing; the ``area`` signal (size of the
  changed region, in pixels) sees the flash, as an 8-frame pulse whose bandwidth is broad
  (``k_safe`` 1-2, far below the ~8 frames that detecting it needs). ``area`` is off by default since
  for objects that cover a pixel most of the time the median background keeps a "ghost"
  and the area then swings at twice the motion frequency.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import av
import numpy as np
import pandas as pd

from inforates.data import stamp
from inforates.data.manifest import ClipRecord, read_manifest
from inforates.data.video_io import read_video
from inforates.sampling import Sampling, select_frames

log = logging.getLogger(__name__)

Signal = Literal["x", "y", "area"]
SIGNALS: tuple[str, ...] = get_args(Signal)
DEFAULT_SIGNALS: tuple[str, ...] = ("x", "y")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as JPEG's Y
CODEC_BLOCK = 8  # JPEG/MPEG luma block: the stamp's changes bleed to the end of its block row
MIN_FRAMES = 4  # shorter clips have no meaningful spectrum
GRID_POINTS = 257  # common frequency grid (0 .. 0.5) for per-class curves

# File names a sweep folder holds (inforates.sweep; not imported from there: it loads torch).
PER_CLASS_CSV = "per_class.csv"
RESULTS_CSV = "results.csv"


# ------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SpectrumOptions:
    """How clips are turned into spectra; every figure in the output depends on these.

    ``noise_k`` and ``noise_floor`` set the change threshold ``max(noise_k * sigma,
    noise_floor)`` grey levels, ``sigma`` the clip's robust (MAD) noise level; ``min_motion``
    (pixels RMS) separates static clips from moving ones; ``pad`` zero-pads the FFT to at
    least ``pad * F`` points (a finer grid, not a finer resolution).
    """

    signals: tuple[str, ...] = DEFAULT_SIGNALS
    energy: float = 0.95
    pad: int = 8
    noise_k: float = 5.0
    noise_floor: float = 8.0
    min_motion: float = 1.0
    correct_window: bool = False

    def __post_init__(self) -> None:
        signals = tuple(self.signals)
        if not signals:
            raise ValueError(f"signals ({list(signals)}) must name at least one of: {', '.join(SIGNALS)}")
        for s in signals:
            if s not in SIGNALS:
                raise ValueError(f"signal ({s!r}) must be one of: {', '.join(SIGNALS)}")
        if len(set(signals)) != len(signals):
            raise ValueError(f"signals ({list(signals)}) lists a signal twice")
        object.__setattr__(self, "signals", signals)
        if not 0 < self.energy < 1:
            raise ValueError(f"energy ({self.energy}) must be in (0, 1)")
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 1:
            raise ValueError(f"pad ({self.pad!r}) must be an integer >= 1")
        for name in ("noise_k", "noise_floor", "min_motion"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} ({value}) must be a finite number >= 0")


# ------------------------------------------------------------------------ signal -> spectrum


def analysis_top(height: int, width: int) -> int:
    """First row below the frame-index stamp, rounded up to a codec block row.

    The stamp changes every frame, and lossy codecs smear those changes to the end of its
    8-pixel block row (measured on MJPEG: rows 6-7 of a 64-pixel frame, band 0-5, flicker
    by ~12 grey levels), so both are left out of every motion signal.
    """
    band = stamp.band_height(width)
    top = -(-band // CODEC_BLOCK) * CODEC_BLOCK
    return min(top, height - 1)


@dataclass(frozen=True)
class MotionSignals:
    names: tuple[str, ...]
    values: np.ndarray  # (len(names), F), pixels
    threshold: float  # grey levels a pixel must differ from the median background by
    top: int  # first analysed row

    @property
    def rms(self) -> float:
        """RMS about the mean, pixels (summed over signals): how much anything moves."""
        v = self.values - self.values.mean(axis=-1, keepdims=True)
        return float(np.sqrt((v * v).mean(axis=-1).sum()))


def motion_signals(frames: np.ndarray, options: SpectrumOptions = SpectrumOptions()) -> MotionSignals:
    """Per-frame motion signals of ``(F, H, W, 3)`` frames (see module doc), in pixels.

    ``w_t(p) = max(|Y_t(p) - median_t Y(p)| - threshold, 0)`` below :func:`analysis_top`;
    ``x(t) = sum_p w_t(p) (x_p - x0) / max_t m_t`` with ``m_t = sum_p w_t(p)`` and ``x0``
    the clip's mass-weighted mean column (``y`` alike): a displacement in pixels for an
    object of constant contrast, and 0, not noise, in frames where nothing differs.
    ``area(t) = m_t / max m * L``, ``L`` the square root of the changed area (pixels)
    in the frame of largest change: an object of size ``L`` appearing counts like a move by ``L``.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames of shape {arr.shape} must be (F, H, W, 3)")
    f, h, w = arr.shape[:3]
    top = analysis_top(h, w)
    luma = arr[:, top:].astype(np.float32) @ LUMA
    diff = np.abs(luma - np.median(luma, axis=0))
    sigma = 1.4826 * float(np.median(diff))
    threshold = max(options.noise_k * sigma, options.noise_floor)
    weight = np.maximum(diff - threshold, 0.0)
    mass = weight.sum(axis=(1, 2))
    out = np.zeros((len(options.signals), f))
    m_ref = float(mass.max())
    if m_ref > 0:
        rows = np.arange(luma.shape[1], dtype=np.float64)[:, None]
        cols = np.arange(w, dtype=np.float64)[None, :]
        total = float(mass.sum())
        x0 = float((weight * cols).sum()) / total
        y0 = float((weight * rows).sum()) / total
        for i, name in enumerate(options.signals):
            if name == "x":
                out[i] = (weight * (cols - x0)).sum(axis=(1, 2)) / m_ref
            elif name == "y":
                out[i] = (weight * (rows - y0)).sum(axis=(1, 2)) / m_ref
            else:  # area
                size = math.sqrt(float((weight[int(mass.argmax())] > 0).sum()))
                out[i] = mass / m_ref * size
    return MotionSignals(tuple(options.signals), out, threshold, top)


def fft_length(num_frames: int, pad: int = 8) -> int:
    """Power of two >= ``pad * num_frames``."""
    return 1 << math.ceil(math.log2(max(2, pad * num_frames)))


def hann(num_frames: int) -> np.ndarray:
    """Hann window without its zero end points (every frame counts)."""
    return np.hanning(num_frames + 2)[1:-1]


def power_spectrum(signals: np.ndarray, *, pad: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs, power)`` of ``(F,)`` or ``(S, F)`` signals, power summed over signals.

    Each signal loses its window-weighted mean, so the windowed signal sums to zero and the
    DC bin is exactly 0 (no DC leakage into the low bins); then Hann window and a
    zero-padded rfft (:func:`fft_length`). ``freqs`` in cycles per frame, 0 .. 0.5.
    """
    x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
    f = x.shape[-1]
    if f < MIN_FRAMES:
        raise ValueError(f"signals of {f} frames are too short for a spectrum (need >= {MIN_FRAMES})")
    win = hann(f)
    x = x - (x * win).sum(axis=-1, keepdims=True) / win.sum()
    n = fft_length(f, pad)
    power = (np.abs(np.fft.rfft(x * win, n=n)) ** 2).sum(axis=0)
    power[0] = 0.0
    return np.fft.rfftfreq(n), power


def dominant_frequency(freqs: np.ndarray, power: np.ndarray) -> float:
    """Frequency of the largest non-DC power; NaN when there is none."""
    p = np.asarray(power, dtype=np.float64)[1:]
    if p.size == 0 or not p.max() > 0:
        return math.nan
    return float(freqs[1 + int(np.argmax(p))])


def bandwidth(freqs: np.ndarray, power: np.ndarray, energy: float = 0.95) -> float:
    """Smallest ``f`` with at least ``energy`` of the non-DC power at or below it; 0 when none."""
    p = np.asarray(power, dtype=np.float64).copy()
    p[0] = 0.0
    total = p.sum()
    if not total > 0:
        return 0.0
    cum = np.cumsum(p) / total
    return float(freqs[min(int(np.searchsorted(cum, energy - 1e-12)), len(freqs) - 1)])


def window_resolution(num_frames: int, *, pad: int = 8, energy: float = 0.95) -> float:
    """How far the Hann window alone moves ``f_max`` above a pure tone: the half-width
    (cycles/frame) holding ``2 * energy - 1`` of the window's power (~0.98 / F at 95 %)."""
    freqs, power = _window_power(num_frames, pad=pad)
    two_sided = power.copy()
    two_sided[1:] *= 2
    cum = np.cumsum(two_sided) / two_sided.sum()
    return float(freqs[int(np.searchsorted(cum, 2 * energy - 1))])


def _window_power(num_frames: int, *, pad: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs, |W(f)|^2)`` of the Hann window: the spectrum of a pure tone at f = 0."""
    n = fft_length(num_frames, pad)
    return np.fft.rfftfreq(n), np.abs(np.fft.rfft(hann(num_frames), n=n)) ** 2


def safe_stride(f_max: float, num_frames: int | None = None) -> int:
    """``k_safe = floor(1 / (2 f_max))``, at least 1; ``f_max = 0`` (nothing moves) gives
    ``num_frames`` (any stride), capped there too when given."""
    if not math.isfinite(f_max) or f_max < 0:
        raise ValueError(f"f_max ({f_max}) must be a finite number >= 0")
    if f_max == 0:
        if num_frames is None:
            raise ValueError("f_max 0 (no motion) needs num_frames to bound the stride")
        return int(num_frames)
    k = max(1, math.floor(1 / (2 * f_max) + 1e-9))
    return min(k, int(num_frames)) if num_frames is not None else k


# ------------------------------------------------------------------------- sampling relation


@dataclass(frozen=True)
class Spacing:
    """Spacing of the distinct frames one setting hands the model."""

    indices: tuple[int, ...]
    distinct: int
    mean_gap: float  # span / (distinct - 1); NaN for a single frame
    max_gap: int  # 0 for a single frame


def frame_spacing(setting: Sampling, num_frames: int) -> Spacing:
    """Spacing of ``setting``'s frames in a clip of ``num_frames`` (via :func:`select_frames`)."""
    sel = select_frames(
        num_frames=num_frames, coverage=setting.coverage, stride=setting.stride,
        frames_per_clip=setting.frames_per_clip, policy=setting.policy,
        offset="start" if setting.offset == "random" else setting.offset,  # spacing does not depend on it
    )
    distinct = sorted(set(sel.indices))
    if len(distinct) < 2:
        return Spacing(sel.indices, len(distinct), math.nan, 0)
    gaps = np.diff(distinct)
    return Spacing(sel.indices, len(distinct), float((distinct[-1] - distinct[0]) / (len(distinct) - 1)), int(gaps.max()))


def predicted_ok(setting: Sampling, f_max: float, *, num_frames: int) -> bool:
    """Whether ``setting`` samples content of bandwidth ``f_max`` above Nyquist:
    ``max_gap * f_max <= 1/2``, i.e. ``max_gap <= k_safe``, the largest gap between the
    distinct frames it keeps. A single distinct frame shows no motion at all: ok only
    when ``f_max == 0``. (For a low-pass policy the test reads "not blurred away".)"""
    if not math.isfinite(f_max) or f_max < 0:
        raise ValueError(f"f_max ({f_max}) must be a finite number >= 0")
    sp = frame_spacing(setting, num_frames)
    if sp.distinct < 2:
        return f_max == 0
    return sp.max_gap * f_max <= 0.5 + 1e-9


# --------------------------------------------------------------------------------- clips


@dataclass(frozen=True)
class ClipSpectrum:
    video_path: str
    label: str
    num_frames: int
    f_dom: float  # cycles/frame; NaN when static
    f_max: float  # cycles/frame; 0 when static
    k_safe: int
    motion_rms: float  # pixels
    static: bool
    resolution: float  # window spread, cycles/frame (subtracted from f_max if correct_window)
    threshold: float  # grey levels
    freqs: np.ndarray = field(repr=False)
    power: np.ndarray = field(repr=False)

    def row(self) -> dict[str, Any]:
        """The scalar fields (for tables and JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("freqs", "power")}


def clip_spectrum(
    frames: np.ndarray,
    options: SpectrumOptions = SpectrumOptions(),
    *,
    video_path: str = "",
    label: str = "",
) -> ClipSpectrum:
    """Spectrum, ``f_dom``, ``f_max`` and ``k_safe`` of one clip's frames."""
    sig = motion_signals(frames, options)
    f = sig.values.shape[-1]
    freqs, power = power_spectrum(sig.values, pad=options.pad)
    resolution = window_resolution(f, pad=options.pad, energy=options.energy)
    rms = sig.rms
    static = rms < options.min_motion
    if static:
        f_dom, f_max = math.nan, 0.0
    else:
        f_dom = dominant_frequency(freqs, power)
        f_max = bandwidth(freqs, power, options.energy)
        if options.correct_window:
            f_max = max(f_dom, f_max - resolution)
    return ClipSpectrum(
        video_path=video_path, label=label, num_frames=f, f_dom=f_dom, f_max=f_max,
        k_safe=safe_stride(f_max, f), motion_rms=rms, static=static, resolution=resolution,
        threshold=sig.threshold, freqs=freqs, power=power,
    )


@dataclass(frozen=True)
class SpectrumResult:
    clips: list[ClipSpectrum]
    failed: list[tuple[str, str]]  # (video_path, reason): counted and reported, never dropped silently
    options: SpectrumOptions
    manifest: str | None = None

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([c.row() for c in self.clips])


def analyze_clips(
    records: Sequence[ClipRecord],
    options: SpectrumOptions = SpectrumOptions(),
    *,
    progress: Callable[[int, int], None] | None = None,
    manifest: str | None = None,
) -> SpectrumResult:
    """:func:`clip_spectrum` of every record. A clip that cannot be decoded (or is too short)
    is listed in ``failed`` with the reason; all clips failing is an error."""
    if not records:
        raise ValueError(f"no clips to analyse{f' in {manifest}' if manifest else ''}")
    clips: list[ClipSpectrum] = []
    failed: list[tuple[str, str]] = []
    for i, rec in enumerate(records, start=1):
        try:
            frames = read_video(rec.video_path)
            if len(frames) < MIN_FRAMES:
                raise ValueError(f"{len(frames)} frames, a spectrum needs >= {MIN_FRAMES}")
            clips.append(clip_spectrum(frames, options, video_path=str(rec.video_path), label=rec.label))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            log.warning("spectrum: skipping %s: %s", rec.video_path, reason)
            failed.append((str(rec.video_path), reason))
        if progress is not None:
            progress(i, len(records))
    if not clips:
        path, reason = failed[0]
        raise ValueError(f"no clip{f' of {manifest}' if manifest else ''} could be analysed "
                         f"({len(failed)} failed, e.g. {path}: {reason})")
    return SpectrumResult(clips, failed, options, manifest)


def analyze_manifest(
    manifest: str | os.PathLike,
    options: SpectrumOptions = SpectrumOptions(),
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SpectrumResult:
    """:func:`analyze_clips` on a manifest (``ManifestError`` names a missing or empty one)."""
    records = read_manifest(manifest)
    if limit is not None:
        records = records[:limit]
    return analyze_clips(records, options, progress=progress, manifest=str(manifest))


def known_frequencies(manifest: str | os.PathLike) -> dict[str, float | None]:
    """Each class's generator frequency from the ``synth.json`` beside ``manifest`` (or one
    or two folders up), ``{}`` when the data is not synthetic. Signed (rotation direction)."""
    import json

    start = Path(manifest).resolve().parent
    for folder in (start, start.parent, start.parent.parent):
        meta_path = folder / "synth.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("ignoring %s: %s", meta_path, exc)
                return {}
            if meta.get("format") != "inforates-synth":
                return {}
            return {c["name"]: c.get("frequency") for c in meta.get("classes", [])}
    return {}


# ----------------------------------------------------------------------------- per class


CLASS_COLUMNS = ["label", "clips", "static_clips", "num_frames", "f_dom", "f_max", "k_safe",
                 "motion_rms", "f_true", "k_nyquist"]


def nyquist_stride(frequency: float | None) -> int | None:
    """``floor(1 / (2 |f|))`` for a known frequency; None when there is none."""
    if frequency is None or not math.isfinite(frequency) or frequency == 0:
        return None
    return max(1, math.floor(1 / (2 * abs(frequency)) + 1e-9))


def class_table(result: SpectrumResult, true_frequency: dict[str, float | None] | None = None) -> pd.DataFrame:
    """Per class: clip count and medians of ``f_dom`` (over moving clips), ``f_max``,
    ``k_safe``; with ``true_frequency`` also ``|f_true|`` and its Nyquist stride."""
    df = result.table()
    truth = true_frequency or {}
    rows = []
    for label, g in df.groupby("label", sort=True):
        moving = g[~g.static]
        f_true = truth.get(label)
        rows.append({
            "label": label,
            "clips": len(g),
            "static_clips": int(g.static.sum()),
            "num_frames": int(g.num_frames.median()),
            "f_dom": float(moving.f_dom.median()) if len(moving) else math.nan,
            "f_max": float(g.f_max.median()),
            "k_safe": int(math.floor(g.k_safe.median())),
            "motion_rms": float(g.motion_rms.median()),
            "f_true": abs(f_true) if f_true is not None else math.nan,
            "k_nyquist": nyquist_stride(f_true),
        })
    return pd.DataFrame(rows, columns=CLASS_COLUMNS)


def class_curves(result: SpectrumResult) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per class, the mean of its clips' spectra, each normalised to unit non-DC power, on a
    common grid (clips may differ in length). Static clips are left out."""
    grid = np.linspace(0.0, 0.5, GRID_POINTS)
    by_label: dict[str, list[np.ndarray]] = {}
    for c in result.clips:
        if c.static or not c.power.sum() > 0:
            continue
        dens = np.interp(grid, c.freqs, c.power / c.power.sum())
        by_label.setdefault(c.label, []).append(dens / dens.sum())
    return grid, {k: np.mean(v, axis=0) for k, v in sorted(by_label.items())}


# ---------------------------------------------------------------------- sweep comparison

_ALIASES = {
    "class": "label", "class_name": "label", "label_name": "label", "name": "label",
    "acc": "accuracy", "top1": "accuracy", "top1_accuracy": "accuracy", "accuracy_top1": "accuracy",
    "coverage_pct": "coverage", "coverage_percent": "coverage", "k": "stride",
}
ACCURACY_COLUMNS = ("coverage", "stride", "label", "accuracy")


@dataclass(frozen=True)
class ClassAccuracy:
    """Per-class accuracy per (coverage, stride) of a sweep, and how its frames were chosen."""

    table: pd.DataFrame  # coverage, stride, label, accuracy
    source: Path
    frames_per_clip: int | None  # from results.csv beside it; None when unknown
    policy: str | None


def read_class_accuracy(source: str | os.PathLike, *, policy: str | None = None) -> ClassAccuracy:
    """Read per-class accuracy from a sweep folder (its ``per_class.csv``) or a CSV file.

    Needs columns ``coverage, stride, label, accuracy`` (case-insensitive; ``class`` for
    ``label``, ``acc``/``top1`` for ``accuracy``, or ``correct`` and ``total`` accepted);
    accuracies above 1 are read as percentages. A ``policy`` column with several policies
    needs ``policy``. ``frames_per_clip``/``policy`` come from a ``results.csv`` beside it.
    """
    src = Path(source)
    if src.is_dir():
        path = src / PER_CLASS_CSV
        if not path.is_file():
            raise FileNotFoundError(f"no {PER_CLASS_CSV} in {src} (pass a sweep results folder or the CSV itself)")
    elif src.is_file():
        path = src
    else:
        raise FileNotFoundError(f"sweep results not found: {src}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable CSV: {exc}".splitlines()[0]) from None
    df = df.rename(columns=lambda c: _ALIASES.get(str(c).strip().lower(), str(c).strip().lower()))
    if "accuracy" not in df.columns and {"correct", "total"} <= set(df.columns):
        df["accuracy"] = pd.to_numeric(df["correct"], errors="coerce") / pd.to_numeric(df["total"], errors="coerce")
    missing = [c for c in ACCURACY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)} (has: {', '.join(map(str, df.columns))}); "
                         f"expected {','.join(ACCURACY_COLUMNS)}")
    if df.empty:
        raise ValueError(f"{path} has no rows")
    if "policy" in df.columns:
        policies = sorted(df["policy"].dropna().astype(str).unique())
        if policy is not None:
            df = df[df["policy"].astype(str) == policy]
            if df.empty:
                raise ValueError(f"{path} has no rows of policy {policy!r} (has: {', '.join(policies)})")
        elif len(policies) > 1:
            raise ValueError(f"{path} mixes policies {', '.join(policies)}; choose one")
        elif policies:
            policy = policies[0]
    out = pd.DataFrame({"label": df["label"].astype(str)})
    for col in ("coverage", "stride", "accuracy"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna()
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise ValueError(f"{path} line {line}: {col} ({df[col].iloc[line - 2]!r}) is not a number")
        out[col] = values.to_numpy()
    if (out.stride != out.stride.round()).any() or (out.stride < 1).any():
        raise ValueError(f"{path}: stride values must be integers >= 1")
    out["stride"] = out.stride.astype(int)
    if out.accuracy.max() > 1:
        if out.accuracy.max() > 100:
            raise ValueError(f"{path}: accuracy ({out.accuracy.max()}) must be a fraction or a percentage")
        log.info("%s: accuracies above 1, read as percentages", path)
        out["accuracy"] = out.accuracy / 100
    dup = out.duplicated(["coverage", "stride", "label"])
    if dup.any():
        r = out[dup].iloc[0]
        raise ValueError(f"{path} has several rows for coverage {r.coverage:g}, stride {r.stride}, class {r.label}")
    frames_per_clip, results_policy = _sweep_setup(path.parent / RESULTS_CSV)
    return ClassAccuracy(out[["coverage", "stride", "label", "accuracy"]].reset_index(drop=True), path,
                         frames_per_clip, policy or results_policy)


def _sweep_setup(results_csv: Path) -> tuple[int | None, str | None]:
    if not results_csv.is_file():
        return None, None
    try:
        df = pd.read_csv(results_csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None, None
    t = df["frames_per_clip"].dropna().unique() if "frames_per_clip" in df.columns else []
    p = df["policy"].dropna().unique() if "policy" in df.columns else []
    return (int(t[0]) if len(t) == 1 else None), (str(p[0]) if len(p) == 1 else None)


def observed_failing_stride(
    accuracy: pd.DataFrame, label: str, *, coverage: float = 100.0, drop: float = 0.5
) -> tuple[int | None, float, str]:
    """First stride (at ``coverage``) where ``label``'s accuracy falls below ``drop`` times
    its accuracy at the smallest stride. Returns ``(stride or None, baseline, note)``."""
    g = accuracy[(accuracy.label == label) & np.isclose(accuracy.coverage, coverage)].sort_values("stride")
    if g.empty:
        return None, math.nan, f"no rows at coverage {coverage:g}"
    base = float(g.accuracy.iloc[0])
    if not base > 0:
        return None, base, f"accuracy 0 at stride {int(g.stride.iloc[0])}: nothing to lose"
    for s, a in zip(g.stride, g.accuracy):
        if a < drop * base:
            return int(s), base, ""
    return None, base, f"no drop up to stride {int(g.stride.iloc[-1])}"


COMPARISON_COLUMNS = ["label", "coverage", "frames_per_clip", "policy", "f_max", "k_safe", "k_nyquist",
                      "predicted_fail_stride", "observed_fail_stride", "baseline_accuracy", "verdict", "note"]


def compare_with_sweep(
    classes: pd.DataFrame,
    accuracy: ClassAccuracy,
    *,
    coverage: float | None = None,
    frames_per_clip: int | None = None,
    policy: str | None = None,
    drop: float = 0.5,
) -> pd.DataFrame:
    """Predicted vs observed failing stride per class, on the sweep's own strides.

    predicted: first stride of the sweep (at ``coverage``, default 100 or the largest the
    sweep has) where :func:`predicted_ok` fails for the class's median ``f_max``, with the
    sweep's ``T`` and policy; observed: :func:`observed_failing_stride`. ``verdict``:
    ``agree``, ``conservative`` (predicted to fail earlier than it did) or ``missed``
    (failed before the spectrum said it would: not aliasing-limited, or a weak baseline).
    """
    if not 0 < drop < 1:
        raise ValueError(f"drop ({drop}) must be in (0, 1)")
    acc = accuracy.table
    coverages = sorted(acc.coverage.unique())
    if coverage is None:
        coverage = 100.0 if any(np.isclose(coverages, 100.0)) else float(coverages[-1])
    elif not any(np.isclose(coverages, coverage)):
        raise ValueError(f"coverage ({coverage:g}) is not in the sweep (has: {', '.join(f'{c:g}' for c in coverages)})")
    t = frames_per_clip or accuracy.frames_per_clip
    if t is None:
        t = Sampling().frames_per_clip
        log.info("frames per clip of the sweep unknown: assuming T = %d", t)
    pol = policy or accuracy.policy or Sampling().policy
    strides = sorted(acc[np.isclose(acc.coverage, coverage)].stride.unique())
    rows = []
    sweep_labels = set(acc.label)
    for r in classes.itertuples(index=False):
        predicted = None
        for s in strides:
            if not predicted_ok(Sampling(coverage=coverage, stride=int(s), frames_per_clip=t, policy=pol),
                                float(r.f_max), num_frames=int(r.num_frames)):
                predicted = int(s)
                break
        if r.label in sweep_labels:
            observed, base, note = observed_failing_stride(acc, r.label, coverage=coverage, drop=drop)
        else:
            observed, base, note = None, math.nan, "class not in the sweep"
        rows.append({
            "label": r.label, "coverage": coverage, "frames_per_clip": t, "policy": pol,
            "f_max": r.f_max, "k_safe": r.k_safe, "k_nyquist": r.k_nyquist,
            "predicted_fail_stride": predicted, "observed_fail_stride": observed,
            "baseline_accuracy": base, "verdict": _verdict(predicted, observed, base), "note": note,
        })
    unmatched = sorted(sweep_labels - set(classes.label))
    if unmatched:
        log.warning("sweep classes without clips in the manifest: %s", ", ".join(unmatched))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _verdict(predicted: int | None, observed: int | None, base: float) -> str:
    if not base > 0:
        return "n/a"
    if predicted == observed:
        return "agree"
    if observed is None or (predicted is not None and predicted < observed):
        return "conservative"
    return "missed"


# ---------------------------------------------------------------------------- output


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Table rows for JSON: NaN -> None, numpy scalars -> Python."""
    out = []
    for rec in df.to_dict(orient="records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, (np.integer,)):
                v = int(v)
            elif isinstance(v, (np.floating, float)):
                v = None if not math.isfinite(float(v)) else float(v)
            elif v is pd.NA:
                v = None
            clean[k] = v
        out.append(clean)
    return out


def plot_spectra(result: SpectrumResult, classes: pd.DataFrame, path: str | os.PathLike) -> Path:
    """One panel per class: its clips' normalised spectra (thin), their mean (thick), median
    ``f_dom``/``f_max`` and, where known, the true frequency."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    labels = list(classes.label)
    cols = min(3, len(labels))
    nrows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False, sharex=True)
    grid, curves = class_curves(result)
    for ax, r in zip(axes.flat, classes.itertuples(index=False)):
        for c in result.clips:
            if c.label == r.label and not c.static and c.power.sum() > 0:
                dens = np.interp(grid, c.freqs, c.power / c.power.sum())
                ax.plot(grid, dens / dens.sum(), color="0.75", lw=0.6)
        if r.label in curves:
            ax.plot(grid, curves[r.label], color="C0", lw=2, label="mean")
        if math.isfinite(r.f_dom):
            ax.axvline(r.f_dom, color="C1", ls="--", lw=1, label=f"f_dom {r.f_dom:.3f}")
        if r.f_max > 0:
            ax.axvline(r.f_max, color="C3", ls=":", lw=1.5, label=f"f_max {r.f_max:.3f} (k_safe {r.k_safe})")
        if math.isfinite(r.f_true):
            ax.axvline(r.f_true, color="C2", lw=1, label=f"true {r.f_true:.3f}")
        title = r.label + (f"  ({r.static_clips}/{r.clips} static)" if r.static_clips else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 0.5)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no motion above noise", transform=ax.transAxes, ha="center", fontsize=8)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("cycles per frame")
    fig.suptitle("Temporal power spectra of the motion signals, per class", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_strides(classes: pd.DataFrame, comparison: pd.DataFrame | None, path: str | os.PathLike) -> Path:
    """Per class: predicted safe stride ``k_safe``, the true Nyquist stride where known, and,
    with a sweep, predicted and observed failing strides (hollow marker: no failure seen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    labels = list(classes.label)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(labels) + 2), 3.8))
    static = (classes.static_clips == classes.clips).to_numpy()
    k = classes.k_safe.to_numpy(dtype=float)
    ax.bar(x[~static] - 0.2, k[~static], width=0.4, color="C0", alpha=0.7, label="k_safe (spectrum)")
    if static.any():  # k_safe = clip length: nothing moves, the spectrum does not bound the stride
        ax.bar(x[static] - 0.2, k[static], width=0.4, color="C0", alpha=0.25, hatch="//",
               label="static: k_safe = clip length")
    nyq = pd.to_numeric(classes.k_nyquist, errors="coerce")
    ax.scatter(x[nyq.notna()] - 0.2, nyq[nyq.notna()], marker="_", s=300, color="k", label="Nyquist of true f")
    top = float(classes.k_safe.max())
    title = "Predicted safe stride per class"
    if comparison is not None and not comparison.empty:
        title = "Predicted safe stride vs observed failing stride"
        cmp = comparison.set_index("label").reindex(labels)
        grid_max = 2.0 * max(float(pd.to_numeric(cmp[c], errors="coerce").max(skipna=True) or 1)
                             for c in ("predicted_fail_stride", "observed_fail_stride"))
        grid_max = max(grid_max, 2.0)
        for col, dx, colour, name in (("predicted_fail_stride", 0.1, "C3", "predicted failing stride"),
                                      ("observed_fail_stride", 0.3, "C2", "observed failing stride")):
            v = pd.to_numeric(cmp[col], errors="coerce").to_numpy(dtype=float)
            seen = np.isfinite(v)
            ax.scatter(x[seen] + dx, v[seen], color=colour, marker="o", zorder=3, label=name)
            if (~seen).any():
                ax.scatter(x[~seen] + dx, np.full(int((~seen).sum()), grid_max), facecolors="none",
                           edgecolors=colour, marker="^", zorder=3, label=f"{name}: none in the grid")
        top = max(top, grid_max)
    ax.set_yscale("log", base=2)
    ax.set_ylim(0.8, top * 1.6)
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("frames between samples")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    import io

    import matplotlib.pyplot as plt

    from inforates._io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def write_outputs(
    result: SpectrumResult,
    classes: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    comparison: pd.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write tables (CSV), ``spectrum.json`` (options, provenance, tables, class curves) and
    the two figures into ``out_dir``; returns the paths."""
    import json

    from inforates._io import atomic_write_text
    from inforates.provenance import git_sha, versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    atomic_write_text(out / "spectrum_clips.csv", result.table().to_csv(index=False))
    atomic_write_text(out / "spectrum_classes.csv", classes.to_csv(index=False))
    files += [out / "spectrum_clips.csv", out / "spectrum_classes.csv"]
    if comparison is not None:
        atomic_write_text(out / "spectrum_vs_sweep.csv", comparison.to_csv(index=False))
        files.append(out / "spectrum_vs_sweep.csv")
    grid, curves = class_curves(result)
    doc = {
        "manifest": result.manifest,
        "options": asdict(result.options),
        "git_sha": git_sha(),
        "versions": versions(),
        **(extra or {}),
        "classes": json_records(classes),
        "comparison": json_records(comparison) if comparison is not None else None,
        "failed": [{"video_path": p, "reason": r} for p, r in result.failed],
        "curves": {"freqs": grid.round(6).tolist(), **{k: v.round(8).tolist() for k, v in curves.items()}},
    }
    atomic_write_text(out / "spectrum.json", json.dumps(doc, indent=1) + "\n")
    files.append(out / "spectrum.json")
    files.append(plot_spectra(result, classes, out / "spectra.png"))
    files.append(plot_strides(classes, comparison, out / "strides.png"))
    return files
