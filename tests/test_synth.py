"""The synthetic dataset: layout, split files, determinism, resume, and that the class
signal is temporal at the advertised rates (measured from the pixels, not from the code)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from inforates.data import stamp
from inforates.data.splits import build_manifest, count_frames
from inforates.data.synth import (
    MIN_SIZE,
    SYNTH_CLASSES,
    SynthClass,
    flash_window,
    generate,
    layout,
)
from inforates.data.video_io import read_video, write_video

SMALL = dict(
    classes=["OscillateFast", "FlashLate"], groups=2, clips_per_group=1, test_groups=1, num_frames=24, size=48
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return generate(out, **SMALL), out


# ------------------------------------------------------------------------- oracles


def _motion(frames: np.ndarray, threshold: float = 30.0) -> np.ndarray:
    """(F, H, W) weight of what differs from the static background, stamp band excluded."""
    gray = frames.astype(np.float64).mean(axis=-1)
    diff = np.abs(gray - np.median(gray, axis=0, keepdims=True))
    diff[:, : stamp.band_height(frames.shape[2]) + 1] = 0.0  # the stamp changes every frame
    return np.where(diff > threshold, diff, 0.0)


def _centroids(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = _motion(frames)
    total = w.sum(axis=(1, 2))
    assert (total > 0).all(), "the dot was not found in some frame"
    ys, xs = np.arange(w.shape[1]), np.arange(w.shape[2])
    return (w.sum(axis=1) * xs).sum(axis=1) / total, (w.sum(axis=2) * ys).sum(axis=1) / total


def _peak_frequency(signal: np.ndarray) -> float:
    """Dominant frequency (cycles/sample) of a real signal: windowed, zero-padded FFT."""
    x = (signal - signal.mean()) * np.hanning(len(signal))
    spectrum = np.abs(np.fft.rfft(x, n=1 << 14))
    return float(np.fft.rfftfreq(1 << 14)[np.argmax(spectrum)])


def _render(name: str, seed: int, num_frames: int, size: int = 64) -> np.ndarray:
    return SYNTH_CLASSES.get(name).render(np.random.default_rng(seed), num_frames, size)


# ------------------------------------------------------------------------ registry


def test_registry_has_the_six_classes_with_known_rates():
    expected = {
        "OscillateSlow": 1 / 48,
        "OscillateFast": 1 / 18,
        "RotateClockwise": 1 / 30,
        "RotateCounterClockwise": -1 / 30,
        "FlashEarly": None,
        "FlashLate": None,
    }
    assert set(SYNTH_CLASSES.names()) == set(expected)
    for name, freq in expected.items():
        cls = SYNTH_CLASSES.get(name)
        assert cls.name == name and cls.description
        assert cls.frequency == (pytest.approx(freq) if freq is not None else None)
    with pytest.raises(ValueError, match=re.escape("synthetic class 'FlashLate' is already registered")):
        SYNTH_CLASSES.add("FlashLate", SynthClass("FlashLate", "dup", None, lambda r, n, s: None))


@pytest.mark.parametrize("name", ["OscillateSlow", "OscillateFast", "RotateClockwise",
                                  "RotateCounterClockwise", "FlashEarly", "FlashLate"])
@pytest.mark.parametrize("num_frames,size", [(50, 64), (7, MIN_SIZE), (33, 96)])
def test_render_shape_stamps_and_band_kept_clear(name, num_frames, size):
    frames = _render(name, 3, num_frames, size)
    assert frames.shape == (num_frames, size, size, 3) and frames.dtype == np.uint8
    assert stamp.read_stamps(frames) == list(range(num_frames))
    np.testing.assert_array_equal(frames, _render(name, 3, num_frames, size))  # pure in rng
    # Rows between the stamp band and the objects' top only ever hold background + noise.
    band, top = stamp.band_height(size), layout(size).top
    strip = frames[:, band:top].astype(int)
    assert np.abs(strip - np.median(strip, axis=0)).max() <= 8


def test_render_differs_between_seeds():
    assert not np.array_equal(_render("OscillateSlow", 1, 10), _render("OscillateSlow", 2, 10))


# ---------------------------------------------------------------- temporal content


@pytest.mark.parametrize("name,period", [("OscillateSlow", 48), ("OscillateFast", 18)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oscillation_frequency_measured_from_pixels(name, period, seed):
    frames = _render(name, seed, 192)
    xs, ys = _centroids(frames)
    assert _peak_frequency(xs) == pytest.approx(1 / period, rel=0.05)
    assert np.ptp(ys) < 1.0  # horizontal motion only
    assert np.ptp(xs) > 10  # and a visible swing


def test_oscillate_fast_aliases_at_stride_16_but_not_7():
    xs, _ = _centroids(_render("OscillateFast", 5, 1000))
    assert _peak_frequency(xs[::7]) == pytest.approx(7 / 18, rel=0.05)
    assert _peak_frequency(xs[::16]) == pytest.approx(2 / 18, rel=0.05)  # 16/18 folds to 2/18


@pytest.mark.parametrize("name,rev", [("RotateClockwise", 1 / 30), ("RotateCounterClockwise", -1 / 30)])
@pytest.mark.parametrize("seed", [0, 7])
def test_rotation_direction_and_rate(name, rev, seed):
    xs, ys = _centroids(_render(name, seed, 60))  # two whole turns: the mean is the centre
    angle = np.unwrap(np.arctan2(ys - ys.mean(), xs - xs.mean()))  # y down: + is clockwise
    rate = np.polyfit(np.arange(60), angle, 1)[0] / (2 * math.pi)
    assert rate == pytest.approx(rev, rel=0.05)
    # Sampled 16 frames apart the turn per sample (16/30 rev) looks like -14/30: reversed.
    step = np.angle(np.exp(1j * np.diff(angle[::16]))) / (2 * math.pi)
    assert np.sign(step).tolist() == [-np.sign(rev)] * 3
    assert step == pytest.approx(np.full(3, -np.sign(rev) * 14 / 30), abs=0.03)


def _flash_frames(frames: np.ndarray, side: int) -> list[int]:
    return [t for t, w in enumerate(_motion(frames, 40.0)) if (w > 0).sum() >= side * side // 2]


@pytest.mark.parametrize("name,first,last", [("FlashEarly", 2, 10), ("FlashLate", 32, 40)])
def test_flash_windows_at_50_frames(name, first, last):
    # round(0.04*50)=2, round(0.2*50)=10; round(0.64*50)=32, round(0.8*50)=40; 8 frames on.
    starts = set()
    for seed in range(16):
        on = _flash_frames(_render(name, seed, 50), layout(64).square_side)
        assert len(on) == 8 and on == list(range(on[0], on[0] + 8)), on
        assert first <= on[0] <= last
        starts.add(on[0])
    assert len(starts) >= 4  # the start is drawn, not fixed


@pytest.mark.parametrize("num_frames,early,late", [
    (50, (2, 10, 8), (32, 40, 8)),
    (20, (1, 4, 3), (13, 16, 3)),
    (100, (4, 20, 16), (64, 80, 16)),
])
def test_flash_window_scales_with_clip_length(num_frames, early, late):
    assert flash_window(num_frames, SYNTH_CLASSES.get("FlashEarly").flash_starts) == early
    assert flash_window(num_frames, SYNTH_CLASSES.get("FlashLate").flash_starts) == late


@pytest.mark.parametrize("num_frames", range(1, 60))
def test_flash_window_always_fits(num_frames):
    for name in ("FlashEarly", "FlashLate"):
        lo, hi, duration = flash_window(num_frames, SYNTH_CLASSES.get(name).flash_starts)
        assert 0 <= lo <= hi and hi + duration <= num_frames and duration >= 1


def test_single_frame_dot_looks_the_same_in_every_class():
    """Outside the flash, one frame shows one dot of the same size whatever the class."""
    top = layout(64).top
    areas = {}
    for name in SYNTH_CLASSES.names():
        frame = _render(name, 11, 50)[-1 if name == "FlashEarly" else 0, top:]
        gray = frame.astype(float).mean(axis=-1)
        areas[name] = int((gray - np.median(gray) > 40).sum())
    assert min(areas.values()) > 20 and max(areas.values()) <= 1.3 * min(areas.values()), areas


# ---------------------------------------------------------------------- generate()


def test_layout_and_metadata(small):
    summary, out = small
    assert (summary.videos, summary.written, summary.reused) == (4, 4, 0)
    assert (summary.train, summary.test) == (2, 2)
    assert summary.clips_dir == out / "UCF-101" and summary.split_dir == out / "ucfTrainTestlist"
    files = sorted(p.relative_to(out / "UCF-101").as_posix() for p in (out / "UCF-101").rglob("*"))
    assert files == [
        "FlashLate", "FlashLate/v_FlashLate_g01_c01.avi", "FlashLate/v_FlashLate_g02_c01.avi",
        "OscillateFast", "OscillateFast/v_OscillateFast_g01_c01.avi", "OscillateFast/v_OscillateFast_g02_c01.avi",
    ]
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 0 and meta["num_frames"] == 24 and meta["size"] == 48 and meta["codec"] == "mjpeg"
    assert [c["name"] for c in meta["classes"]] == ["FlashLate", "OscillateFast"]
    assert meta["classes"][1]["frequency"] == pytest.approx(1 / 18)
    assert meta["classes"][0]["flash_window"] == list(flash_window(24, (0.64, 0.8)))


def test_split_files_are_ucf_format_with_crlf(small):
    _, out = small
    lists = out / "ucfTrainTestlist"
    assert (lists / "classInd.txt").read_bytes() == b"1 FlashLate\r\n2 OscillateFast\r\n"
    assert (lists / "trainlist01.txt").read_bytes() == (
        b"FlashLate/v_FlashLate_g02_c01.avi 1\r\nOscillateFast/v_OscillateFast_g02_c01.avi 2\r\n"
    )
    assert (lists / "testlist01.txt").read_bytes() == (
        b"FlashLate/v_FlashLate_g01_c01.avi\r\nOscillateFast/v_OscillateFast_g01_c01.avi\r\n"
    )


def test_videos_decode_to_stamped_frames(small):
    _, out = small
    for path in sorted((out / "UCF-101").rglob("*.avi")):
        frames = read_video(path)
        assert frames.shape == (24, 48, 48, 3)
        assert stamp.read_stamps(frames) == list(range(24)), path


def test_split_lists_feed_build_manifest(small):
    _, out = small
    build = build_manifest(out / "UCF-101", out / "ucfTrainTestlist" / "trainlist01.txt")
    assert [(r["label"], r["label_id"], r["num_frames"]) for r in build.rows] == [
        ("FlashLate", 0, 24), ("OscillateFast", 1, 24),
    ]
    assert not build.missing


def test_same_seed_same_pixels_other_seed_other_pixels(small, tmp_path):
    _, out = small
    rel = "UCF-101/OscillateFast/v_OscillateFast_g01_c01.avi"
    opts = {**SMALL, "classes": ["OscillateFast"]}
    generate(tmp_path / "same", **opts)
    generate(tmp_path / "other", **opts, seed=1)
    reference = read_video(out / rel)
    np.testing.assert_array_equal(read_video(tmp_path / "same" / rel), reference)
    assert not np.array_equal(read_video(tmp_path / "other" / rel), reference)
    # Another clip of the same class and seed is a different video.
    assert not np.array_equal(read_video(out / rel.replace("g01", "g02")), reference)


def test_process_pool_matches_single_process(small, tmp_path):
    _, out = small
    seen = []
    summary = generate(tmp_path, **SMALL, workers=2, progress=lambda d, t: seen.append((d, t)))
    assert summary.written == 4 and seen[-1] == (4, 4) and seen[0] == (0, 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    for path in sorted((out / "UCF-101").rglob("*.avi")):
        np.testing.assert_array_equal(read_video(tmp_path / path.relative_to(out)), read_video(path))


def test_resume_renders_only_missing_or_short_videos(tmp_path):
    first = generate(tmp_path, **SMALL)
    assert (first.written, first.reused) == (4, 0)
    again = generate(tmp_path, **SMALL)
    assert (again.written, again.reused) == (0, 4)

    gone = tmp_path / "UCF-101/FlashLate/v_FlashLate_g01_c01.avi"
    short = tmp_path / "UCF-101/OscillateFast/v_OscillateFast_g02_c01.avi"
    gone.unlink()
    write_video(short, np.zeros((3, 48, 48, 3), np.uint8))
    (tmp_path / "UCF-101/FlashLate/v_FlashLate_g02_c01.avi").write_bytes(b"not a video")
    fixed = generate(tmp_path, **SMALL)
    assert (fixed.written, fixed.reused) == (3, 1)
    assert count_frames(gone) == 24 and count_frames(short) == 24


def test_resume_refuses_other_pixel_settings(tmp_path):
    generate(tmp_path, **SMALL)
    with pytest.raises(ValueError, match=re.escape("made with seed=0 (asked 1)")):
        generate(tmp_path, **SMALL, seed=1)
    with pytest.raises(ValueError, match=re.escape("size=48 (asked 64)")):
        generate(tmp_path, **{**SMALL, "size": 64})
    more = generate(tmp_path, **{**SMALL, "groups": 3})  # more groups: same pixels, more videos
    assert (more.written, more.reused) == (2, 4)


def test_vp9_lists_name_webm_files(tmp_path):
    summary = generate(tmp_path, **{**SMALL, "classes": ["FlashEarly"]}, codec="vp9")
    lines = (summary.split_dir / "trainlist01.txt").read_text().splitlines()
    assert lines == ["FlashEarly/v_FlashEarly_g02_c01.webm 1"]
    video = summary.clips_dir / "FlashEarly" / "v_FlashEarly_g02_c01.webm"
    assert count_frames(video) == 24
    assert stamp.read_stamps(read_video(video)) == list(range(24))
    assert generate(tmp_path, **{**SMALL, "classes": ["FlashEarly"]}, codec="vp9").written == 0


_NAMES = ", ".join(SYNTH_CLASSES.names())


@pytest.mark.parametrize("kwargs,message", [
    ({"size": 20}, f"size (20) must be an integer >= {MIN_SIZE} so the frame-index stamp fits"),
    ({"size": 63}, "size (63) must be even"),
    ({"num_frames": 0}, "num_frames (0) must be an integer >= 1"),
    ({"groups": 2, "test_groups": 2}, "test_groups (2) must be < groups (2)"),
    ({"groups": 0}, "groups (0) must be an integer >= 1"),
    ({"clips_per_group": 0}, "clips_per_group (0) must be an integer >= 1"),
    ({"classes": ["Nope"]}, f"unknown synthetic class 'Nope'; choose from: {_NAMES}"),
    ({"classes": "FlashLate"}, "classes ('FlashLate') must be a list of class names"),
    ({"classes": []}, "classes ([]) must name at least one class"),
    ({"classes": ["FlashLate", "FlashLate"]}, "lists a class twice"),
    ({"codec": "xvid"}, "unknown codec 'xvid'; choose from: "),
    ({"fps": 0}, "fps (0) must be a positive number"),
    ({"seed": -1}, "seed (-1) must be an integer >= 0"),
    ({"workers": 0}, "workers (0) must be an integer >= 1"),
])
def test_generate_validates_before_writing(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        generate(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
