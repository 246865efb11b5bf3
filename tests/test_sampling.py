"""The sampling core against an independent oracle (the seed's formula) and its validation."""

import itertools
import math
import re

import numpy as np
import pytest

from inforates.sampling import Sampling, kept_frames, select_frames


def seed_formula(n, coverage, stride, t):
    """The seed's selection, written out independently: first `keep` frames, every
    `stride`-th, then T of them by linspace (repeating when there are fewer)."""
    keep = max(1, int(math.floor(n * coverage / 100.0)))
    cand = list(range(0, keep, stride))
    pick = np.linspace(0, len(cand) - 1, t).astype(int)
    return [cand[i] for i in pick], cand


GRID = list(
    itertools.product(
        [1, 2, 7, 16, 50, 51, 300],  # N
        [1, 10, 25, 33, 50, 75, 99.5, 100],  # coverage
        [1, 2, 3, 4, 8, 16],  # stride
        [1, 4, 8, 16],  # T
    )
)


@pytest.mark.parametrize("n,coverage,stride,t", GRID)
def test_fixed_policy_equals_seed_formula(n, coverage, stride, t):
    expected, cand = seed_formula(n, coverage, stride, t)
    sel = select_frames(num_frames=n, coverage=coverage, stride=stride, frames_per_clip=t)
    assert list(sel.indices) == expected
    assert list(sel.candidates) == cand
    assert sel.frames_used == t
    assert sel.distinct_frames == len(set(expected))


@pytest.mark.parametrize("n,coverage,stride", [(50, 50, 2), (50, 25, 4), (50, 100, 1), (7, 10, 3)])
def test_all_policy_is_every_candidate(n, coverage, stride):
    _, cand = seed_formula(n, coverage, stride, 1)
    sel = select_frames(num_frames=n, coverage=coverage, stride=stride, policy="all")
    assert list(sel.indices) == cand
    assert sel.frames_used == len(cand) == sel.distinct_frames


def test_worked_example_from_docstring():
    sel = select_frames(num_frames=20, coverage=50, stride=3, frames_per_clip=8)
    assert sel.keep == 10
    assert sel.candidates == (0, 3, 6, 9)
    assert sel.indices == (0, 0, 0, 3, 3, 6, 6, 9)


def test_offsets():
    center = select_frames(num_frames=50, coverage=50, stride=2, policy="all", offset="center")
    assert center.offset == 12 and center.indices[0] == 12 and center.indices[-1] == 36
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        sel = select_frames(num_frames=50, coverage=50, stride=2, policy="all", offset="random", rng=rng)
        assert 0 <= sel.offset <= 25
        base = select_frames(num_frames=50, coverage=50, stride=2, policy="all")
        assert [i - sel.offset for i in sel.indices] == list(base.indices)
        seen.add(sel.offset)
    assert len(seen) > 15  # the whole range is used
    full = select_frames(num_frames=50, coverage=100, stride=1, offset="random", rng=rng)
    assert full.offset == 0


def test_statistics():
    sel = select_frames(num_frames=50, coverage=25, stride=4, frames_per_clip=8)
    # keep 12 -> candidates 0 4 8 -> T=8 repeats them
    assert sel.candidates == (0, 4, 8)
    s = sel.stats(fps=25.0)
    assert s["distinct_frames"] == 3 and s["frames_used"] == 8
    assert s["span_frames"] == 9
    assert s["span_seconds"] == pytest.approx(9 / 25)
    assert s["effective_fps"] == pytest.approx(3 / (9 / 25))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(coverage=0), "coverage (0) must be in (0, 100]"),
        (dict(coverage=150), "coverage (150) must be in (0, 100]"),
        (dict(coverage=-5), "coverage (-5) must be in (0, 100]"),
        (dict(coverage=float("nan")), "coverage (nan) must be in (0, 100]"),
        (dict(coverage="abc"), "coverage ('abc') must be a number in (0, 100]"),
        (dict(coverage=True), "coverage (True) must be a number"),
        (dict(stride=0), "stride (0) must be an integer >= 1"),
        (dict(stride=2.5), "stride (2.5) must be an integer >= 1"),
        (dict(stride=2.0), "stride (2.0) must be an integer >= 1"),
        (dict(num_frames=0), "num_frames (0) must be an integer >= 1"),
        (dict(num_frames=10.5), "num_frames (10.5) must be an integer >= 1"),
        (dict(frames_per_clip=0), "frames_per_clip (0) must be an integer >= 1"),
        (dict(policy="some"), "policy ('some') must be one of: fixed, all"),
        (dict(offset="end"), "offset ('end') must be one of: start, center, random"),
        (dict(offset="random"), "offset 'random' needs an rng"),
    ],
)
def test_invalid_input_names_the_value(kwargs, message):
    args = dict(num_frames=50, coverage=50, stride=2, frames_per_clip=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        select_frames(**args)


def test_sampling_dataclass_validates_and_selects():
    with pytest.raises(ValueError, match=re.escape("stride (0)")):
        Sampling(stride=0)
    s = Sampling(coverage=50, stride=2, frames_per_clip=8)
    assert s.select(50) == select_frames(num_frames=50, coverage=50, stride=2, frames_per_clip=8)


def test_kept_frames_boundaries():
    assert kept_frames(50, 1) == 1  # floor(0.5) -> max(1, 0)
    assert kept_frames(50, 100) == 50
    assert kept_frames(3, 50) == 1
