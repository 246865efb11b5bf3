"""The one definition of coverage and stride.

Every stage that needs to know which frames a setting keeps (loaders, evaluation, FLOPs,
the CLI) calls :func:`select_frames`; nothing else computes frame indices.

A clip has ``N`` frames. **Coverage** ``c`` (percent) keeps ``keep = max(1, floor(N*c/100))``
consecutive frames starting at ``offset``; **stride** ``s`` keeps every ``s``-th of those::

    N = 20, coverage = 50, stride = 3, offset = start (0)

    frame       0 1 2 3 4 5 6 7 8 9 | 10 ... 19
    covered     k k k k k k k k k k |  .  ...  .     keep = floor(20 * 50 / 100) = 10
    candidate   x . . x . . x . . x |                range(0, 10, 3) = 0 3 6 9

The frames handed to the model depend on the *policy*:

- ``fixed`` (default): always ``T`` frames, ``candidates[linspace(0, len-1, T).astype(int)]``.
  With fewer than ``T`` candidates frames repeat (``T = 8`` above gives ``0 0 0 3 3 6 6 9``),
  so compute is constant across settings.
- ``all``: every candidate; ``T`` varies with the setting, and so does compute.
- ``antialias``: the same ``T`` frames as ``fixed``, but each is the average of the
  covered frames around it (filter, then decimate), so motion faster than the sampling
  rate is blurred instead of aliased. The loader decodes the whole covered window
  (:attr:`FrameSelection.window`) and ``inforates.kernels`` filters it with a box of
  :attr:`FrameSelection.filter_stride` frames::

      N = 20, coverage 100, stride 1, T = 4 -> indices 0 6 12 19, filter_stride 6
      output 0 = mean of frames  0  0  0  1  2  3    (box i-2 .. i+3; edges repeat)
      output 1 = mean of frames  4  5  6  7  8  9
      output 2 = mean of frames 10 11 12 13 14 15
      output 3 = mean of frames 17 18 19 19 19 19
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Policy = Literal["fixed", "all", "antialias"]
OffsetPolicy = Literal["start", "center", "random"]

POLICIES: tuple[str, ...] = get_args(Policy)
OFFSET_POLICIES: tuple[str, ...] = get_args(OffsetPolicy)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} ({value!r}) must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name} ({value}) must be an integer >= {minimum}")
    return int(value)


def check_coverage(coverage: object) -> float:
    """Return ``coverage`` as a float, or raise ``ValueError`` naming the bad value."""
    if isinstance(coverage, bool) or not isinstance(coverage, numbers.Real):
        raise ValueError(f"coverage ({coverage!r}) must be a number in (0, 100]")
    if not math.isfinite(coverage) or not 0 < coverage <= 100:
        raise ValueError(f"coverage ({coverage}) must be in (0, 100]")
    return float(coverage)


def check_stride(stride: object) -> int:
    return _check_int("stride", stride, 1)


def check_policy(policy: object) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy ({policy!r}) must be one of: {', '.join(POLICIES)}")
    return str(policy)


def check_offset_policy(offset: object) -> str:
    if offset not in OFFSET_POLICIES:
        raise ValueError(f"offset ({offset!r}) must be one of: {', '.join(OFFSET_POLICIES)}")
    return str(offset)


def kept_frames(num_frames: int, coverage: float) -> int:
    """``keep = max(1, floor(N * coverage / 100))``: how many consecutive frames coverage keeps."""
    num_frames = _check_int("num_frames", num_frames, 1)
    coverage = check_coverage(coverage)
    return max(1, math.floor(num_frames * coverage / 100))


def window_offset(
    num_frames: int,
    keep: int,
    offset: OffsetPolicy,
    rng: np.random.Generator | None = None,
) -> int:
    """First frame of the covered window for an offset policy."""
    offset = check_offset_policy(offset)
    slack = num_frames - keep
    if offset == "start":
        return 0
    if offset == "center":
        return slack // 2
    if rng is None:
        raise ValueError("offset 'random' needs an rng (numpy.random.Generator)")
    return int(rng.integers(0, slack + 1))


@dataclass(frozen=True)
class FrameSelection:
    """Which frames one setting hands to the model, and what a user needs to judge it."""

    num_frames: int
    coverage: float
    stride: int
    policy: str
    offset: int
    keep: int
    candidates: tuple[int, ...]
    indices: tuple[int, ...]

    @property
    def frames_used(self) -> int:
        """Frames the model receives (``T``), repeats included."""
        return len(self.indices)

    @property
    def distinct_frames(self) -> int:
        return len(set(self.indices))

    @property
    def window(self) -> tuple[int, ...]:
        """Every covered frame, ``offset .. offset + keep - 1``: what ``antialias`` decodes."""
        return tuple(range(self.offset, self.offset + self.keep))

    @property
    def filter_stride(self) -> int:
        """The decimation factor the selection applies: the mean spacing of its distinct
        frames (e.g. 7 for ``0 7 14 .. 49``), rounded; the box width ``antialias`` uses."""
        distinct = sorted(set(self.indices))
        if len(distinct) < 2:
            return max(1, self.keep)
        return max(1, round((distinct[-1] - distinct[0]) / (len(distinct) - 1)))

    @property
    def decoded_frames(self) -> int:
        """Distinct frames a loader must decode for this selection."""
        return self.keep if self.policy == "antialias" else self.distinct_frames

    @property
    def span_frames(self) -> int:
        """Frames from the first used to the last used, inclusive."""
        return self.indices[-1] - self.indices[0] + 1

    def span_seconds(self, fps: float) -> float:
        return self.span_frames / fps

    def effective_fps(self, fps: float) -> float:
        """Distinct frames per second of the span they cover."""
        return self.distinct_frames / self.span_seconds(fps)

    def stats(self, fps: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "num_frames": self.num_frames,
            "coverage": self.coverage,
            "stride": self.stride,
            "policy": self.policy,
            "offset": self.offset,
            "keep": self.keep,
            "candidates": len(self.candidates),
            "frames_used": self.frames_used,
            "distinct_frames": self.distinct_frames,
            "span_frames": self.span_frames,
        }
        if fps is not None:
            out["fps"] = fps
            out["span_seconds"] = self.span_seconds(fps)
            out["effective_fps"] = self.effective_fps(fps)
        return out


def select_frames(
    *,
    num_frames: int,
    coverage: float,
    stride: int,
    frames_per_clip: int | None = 8,
    policy: Policy = "fixed",
    offset: OffsetPolicy = "start",
    rng: np.random.Generator | None = None,
) -> FrameSelection:
    """Frame indices for one clip and one (coverage, stride) setting.

    ``frames_per_clip`` (``T``) is required for policies ``fixed`` and ``antialias`` and
    ignored by ``all``.
    """
    num_frames = _check_int("num_frames", num_frames, 1)
    coverage = check_coverage(coverage)
    stride = check_stride(stride)
    policy = check_policy(policy)
    keep = kept_frames(num_frames, coverage)
    start = window_offset(num_frames, keep, offset, rng)
    candidates = tuple(range(start, start + keep, stride))
    if policy in ("fixed", "antialias"):
        t = _check_int("frames_per_clip", frames_per_clip, 1)
        picks = np.linspace(0, len(candidates) - 1, t).astype(int)
        indices = tuple(candidates[i] for i in picks)
    else:
        indices = candidates
    return FrameSelection(
        num_frames=num_frames,
        coverage=coverage,
        stride=stride,
        policy=policy,
        offset=start,
        keep=keep,
        candidates=candidates,
        indices=indices,
    )


def frames_per_clip_for(
    *, num_frames: int, coverage: float, stride: int, frames_per_clip: int, policy: Policy
) -> int:
    """``T`` the model receives for a setting (constant for ``fixed``; varies for ``all``)."""
    return select_frames(
        num_frames=num_frames,
        coverage=coverage,
        stride=stride,
        frames_per_clip=frames_per_clip,
        policy=policy,
    ).frames_used


@dataclass(frozen=True)
class Sampling:
    """One sampling setting, as loaders and evaluation receive it."""

    coverage: float = 100.0
    stride: int = 1
    frames_per_clip: int = 8
    policy: Policy = "fixed"
    offset: OffsetPolicy = "start"

    def __post_init__(self) -> None:
        object.__setattr__(self, "coverage", check_coverage(self.coverage))
        object.__setattr__(self, "stride", check_stride(self.stride))
        _check_int("frames_per_clip", self.frames_per_clip, 1)
        check_policy(self.policy)
        check_offset_policy(self.offset)

    def select(self, num_frames: int, rng: np.random.Generator | None = None) -> FrameSelection:
        return select_frames(
            num_frames=num_frames,
            coverage=self.coverage,
            stride=self.stride,
            frames_per_clip=self.frames_per_clip,
            policy=self.policy,
            offset=self.offset,
            rng=rng,
        )
