"""Temporal spectra: closed forms on pure sinusoids, the synthetic classes' known rates, the
Nyquist relation to sampling, the sweep comparison on hand-made tables, and the CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from inforates.commands.spectrum import spectrum
from inforates.data.manifest import read_manifest, write_manifest
from inforates.data.synth import SYNTH_CLASSES
from inforates.sampling import Sampling
from inforates.spectrum import (
    SpectrumOptions,
    analysis_top,
    analyze_clips,
    analyze_manifest,
    bandwidth,
    class_table,
    clip_spectrum,
    compare_with_sweep,
    dominant_frequency,
    frame_spacing,
    known_frequencies,
    power_spectrum,
    predicted_ok,
    read_class_accuracy,
    safe_stride,
    window_resolution,
)

N = 50
RESOLUTION = 1 / N  # frequency resolution of a 50-frame clip: the tolerance on f_dom
MOVING = ["OscillateSlow", "OscillateFast", "RotateClockwise"]
CLASSES = [*MOVING, "FlashEarly"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """16 synthetic clips (4 per class) of 50 frames, 64 x 64, and a manifest of all of them."""
    from inforates.data.splits import build_manifest
    from inforates.data.synth import generate

    root = tmp_path_factory.mktemp("spectrum")
    s = generate(root, classes=CLASSES, groups=2, clips_per_group=2, test_groups=1, num_frames=N, size=64)
    rows = []
    for split in ("trainlist01.txt", "testlist01.txt"):
        built = build_manifest(s.clips_dir, s.split_dir / split)
        rows += [{k: r[k] for k in ("video_path", "label", "label_id", "num_frames")} for r in built.rows]
    write_manifest(root / "all.csv", rows)
    return root / "all.csv"


@pytest.fixture(scope="module")
def tiny_result(tiny):
    return analyze_manifest(tiny)


# --------------------------------------------------------------------------- closed forms


def _tone(f0: float, n: int, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * f0 * np.arange(n) + phase)


@pytest.mark.parametrize("f0", [1 / 48, 1 / 30, 1 / 18, 0.2])
@pytest.mark.parametrize("n", [50, 200])
def test_power_spectrum_matches_direct_dtft(f0, n):
    """The FFT path against the DTFT summed by hand (independent oracle): Hann-windowed,
    window-weighted mean removed, power |sum_t w_t (x_t - mu) e^{-2 pi i f t}|^2."""
    x = _tone(f0, n)
    freqs, power = power_spectrum(x, pad=8)
    w = np.sin(np.pi * (np.arange(n) + 1) / (n + 1)) ** 2  # Hann without its zero end points
    mu = (w * x).sum() / w.sum()
    t = np.arange(n)
    for f in (freqs[3], f0, 0.25):
        k = int(np.argmin(np.abs(freqs - f)))
        direct = abs(np.sum(w * (x - mu) * np.exp(-2j * np.pi * freqs[k] * t))) ** 2
        assert power[k] == pytest.approx(direct, rel=1e-9, abs=1e-9)
    assert power[0] == 0.0
    # Parseval on the zero-padded transform: sum over all n_fft bins = n_fft * sum of squares.
    n_fft = 2 * (len(freqs) - 1)
    full = 2 * power.sum() - power[-1]
    assert full == pytest.approx(n_fft * np.sum((w * (x - mu)) ** 2), rel=1e-9)


@pytest.mark.parametrize("f0", [1 / 30, 1 / 18, 0.1, 0.2])
def test_pure_tone_bandwidth_and_safe_stride(f0):
    """A pure tone: f_dom = f0 to the grid step; f0 <= f_max <= f0 + 1.1/n (the Hann window
    spreads a tone over ~+-1/n); with the window's spread removed, f_max = f_dom; k_safe is
    the closed form floor(1 / (2 f_max))."""
    n = 200
    freqs, power = power_spectrum(_tone(f0, n), pad=8)
    step = freqs[1]
    f_dom = dominant_frequency(freqs, power)
    assert abs(f_dom - f0) <= step
    f_max = bandwidth(freqs, power, 0.95)
    assert f0 - step <= f_max <= f0 + 1.1 / n
    assert safe_stride(f_max) == math.floor(1 / (2 * f_max))
    res = window_resolution(n, pad=8)
    assert res == pytest.approx(0.98 / n, abs=step)
    assert max(f_dom, f_max - res) == pytest.approx(f0, abs=step)


def test_aliased_tone_has_the_folded_frequency():
    """Decimating 1/18 cycles/frame by k: below Nyquist (k = 7) the samples show 7/18 cycles per
    sample; above (k = 16) they show |16/18 - 1| = 2/18, the alias the module doc describes."""
    x = _tone(1 / 18, 18 * 120)
    for k, expected in ((7, 7 / 18), (16, 2 / 18)):
        freqs, power = power_spectrum(x[::k], pad=8)
        assert dominant_frequency(freqs, power) == pytest.approx(expected, abs=freqs[1])
    assert predicted_ok(Sampling(coverage=100, stride=7, frames_per_clip=1000, policy="all"), 1 / 18, num_frames=18 * 120)
    assert not predicted_ok(Sampling(coverage=100, stride=16, frames_per_clip=1000, policy="all"), 1 / 18, num_frames=18 * 120)


def test_bandwidth_and_dominant_on_a_hand_made_spectrum():
    freqs = np.array([0.0, 0.1, 0.2, 0.3, 0.4])
    power = np.array([1000.0, 10.0, 80.0, 5.0, 5.0])  # DC is ignored; non-DC total 100
    assert dominant_frequency(freqs, power) == 0.2
    assert bandwidth(freqs, power, 0.95) == 0.3  # 10 + 80 + 5 = 95 %
    assert bandwidth(freqs, power, 0.90) == 0.2
    assert bandwidth(freqs, np.array([3.0, 0, 0, 0, 0]), 0.95) == 0.0
    assert math.isnan(dominant_frequency(freqs, np.zeros(5)))


@pytest.mark.parametrize(
    ("f_max", "num_frames", "expected"),
    [(1 / 18, None, 9), (1 / 30, None, 15), (1 / 48, None, 24), (0.074, None, 6), (0.5, None, 1),
     (0.49, None, 1), (0.0, 50, 50), (0.001, 50, 50)],
)
def test_safe_stride(f_max, num_frames, expected):
    assert safe_stride(f_max, num_frames) == expected


def test_safe_stride_errors():
    with pytest.raises(ValueError, match=re.escape("f_max (-0.1) must be a finite number >= 0")):
        safe_stride(-0.1)
    with pytest.raises(ValueError, match="needs num_frames"):
        safe_stride(0.0)


def test_spectrum_options_errors():
    with pytest.raises(ValueError, match=re.escape("signal ('z') must be one of: x, y, area")):
        SpectrumOptions(signals=("x", "z"))
    with pytest.raises(ValueError, match=re.escape("energy (1.5) must be in (0, 1)")):
        SpectrumOptions(energy=1.5)
    with pytest.raises(ValueError, match="too short"):
        power_spectrum(np.zeros(3))


# ------------------------------------------------------------------- relation to sampling

# N = 50, T = 8, policy fixed, coverage 100 (the module doc's table).
SPACING = [(1, (0, 7, 14, 21, 28, 35, 42, 49), 7), (2, (0, 6, 12, 20, 26, 34, 40, 48), 8),
           (8, (0, 0, 8, 16, 24, 32, 40, 48), 8), (16, (0, 0, 0, 16, 16, 32, 32, 48), 16)]


@pytest.mark.parametrize(("stride", "indices", "max_gap"), SPACING)
def test_frame_spacing_is_max_of_stride_and_keep_over_t(stride, indices, max_gap):
    sp = frame_spacing(Sampling(coverage=100, stride=stride, frames_per_clip=8), N)
    assert sp.indices == indices and sp.max_gap == max_gap
    assert sp.max_gap >= max(stride, N / 8)
    assert predicted_ok(Sampling(coverage=100, stride=stride, frames_per_clip=8), 1 / 18, num_frames=N) == (max_gap <= 9)


def test_predicted_ok_single_frame():
    one = Sampling(coverage=10, stride=16, frames_per_clip=8)  # keep 5: frame 0 only
    assert frame_spacing(one, N).distinct == 1
    assert predicted_ok(one, 0.0, num_frames=N)
    assert not predicted_ok(one, 0.01, num_frames=N)


# ------------------------------------------------------------------ the synthetic classes


def test_stamp_band_is_left_out(make_stamped_clip):
    """A flat picture whose stamp changes every frame (through MJPEG, which smears the
    stamp to the end of its 8-row block) has no motion."""
    from inforates.data.video_io import read_video

    frames = read_video(make_stamped_clip("flat_spectrum", num_frames=N, colour=(90, 120, 60)))
    assert analysis_top(64, 64) == 8 and analysis_top(112, 112) == 16
    c = clip_spectrum(frames)
    assert c.static and c.motion_rms == 0.0 and c.f_max == 0.0 and c.k_safe == N


@pytest.mark.parametrize("name", MOVING)
def test_dominant_frequency_recovers_the_generator(tiny_result, name):
    """|f_dom - |f_true|| <= 1/50 cycles/frame for every clip (rotation: |1/30| rev/frame)."""
    f_true = abs(SYNTH_CLASSES.get(name).frequency)
    clips = [c for c in tiny_result.clips if c.label == name]
    assert len(clips) == 4
    for c in clips:
        assert not c.static
        assert abs(c.f_dom - f_true) <= RESOLUTION, (c.video_path, c.f_dom, f_true)
        assert c.f_max >= c.f_dom


def test_oscillate_fast_safe_stride_is_below_nyquist(tiny_result, tiny):
    """Nyquist for 1/18 is 9 frames; k_safe must not exceed it (aliasing at 16 is the class's
    known failure), and with the window's spread removed it lands on 8 or 9."""
    fast = [c for c in tiny_result.clips if c.label == "OscillateFast"]
    assert all(c.k_safe < 16 and c.k_safe <= 9 for c in fast)
    corrected = analyze_clips([r for r in read_manifest(tiny) if r.label == "OscillateFast"],
                              SpectrumOptions(correct_window=True))
    assert all(c.k_safe in (8, 9) for c in corrected.clips)


def test_flash_clips_are_static_and_class_table(tiny_result, tiny):
    truth = known_frequencies(tiny)
    assert truth["OscillateFast"] == pytest.approx(1 / 18) and truth["FlashEarly"] is None
    table = class_table(tiny_result, truth).set_index("label")
    assert table.loc["FlashEarly", "static_clips"] == 4 and table.loc["FlashEarly", "k_safe"] == N
    assert table.loc["OscillateFast", "k_nyquist"] == 9 and table.loc["RotateClockwise", "k_nyquist"] == 15
    for name in MOVING:
        assert abs(table.loc[name, "f_dom"] - table.loc[name, "f_true"]) <= RESOLUTION
        assert table.loc[name, "k_safe"] <= table.loc[name, "k_nyquist"]


def test_area_signal_sees_the_flash(tiny):
    flash = [r for r in read_manifest(tiny) if r.label == "FlashEarly"]
    res = analyze_clips(flash, SpectrumOptions(signals=("x", "y", "area")))
    assert all(not c.static and c.k_safe <= 8 for c in res.clips)  # an 8-frame pulse is broadband


def test_undecodable_clip_is_counted_not_dropped(tiny, tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video" * 50)
    records = read_manifest(tiny)[:1]
    write_manifest(tmp_path / "m.csv", [{"video_path": bad, "label": "X", "label_id": 0, "num_frames": N},
                                        {"video_path": records[0].video_path, "label": records[0].label,
                                         "label_id": 0, "num_frames": N}])
    res = analyze_manifest(tmp_path / "m.csv")
    assert len(res.clips) == 1 and len(res.failed) == 1 and res.failed[0][0] == str(bad)


# ------------------------------------------------------------------------- sweep compare

HAND_MADE = """Class,Coverage,Stride,acc
OscillateFast,100,1,90
OscillateFast,100,2,90
OscillateFast,100,4,85
OscillateFast,100,8,80
OscillateFast,100,16,20
Rotate,100,1,100
Rotate,100,2,100
Rotate,100,4,100
Rotate,100,8,90
Rotate,100,16,10
Flash,100,1,100
Flash,100,2,100
Flash,100,4,100
Flash,100,8,100
Flash,100,16,30
Never,100,1,0
Never,100,16,0
OscillateFast,50,1,10
"""


def _classes() -> pd.DataFrame:
    # f_max 1/18: k_safe 9; f_max 0.074: k_safe 6 (windowed estimate); f_max 0: static.
    return pd.DataFrame({"label": ["OscillateFast", "Rotate", "Flash", "Never"],
                         "num_frames": [N] * 4, "f_max": [1 / 18, 0.074, 0.0, 0.01],
                         "k_safe": [9, 6, N, N], "k_nyquist": [9, 15, None, None]})


def test_read_class_accuracy_is_tolerant(tmp_path):
    p = tmp_path / "acc.csv"
    p.write_text(HAND_MADE)
    acc = read_class_accuracy(p)
    assert list(acc.table.columns) == ["coverage", "stride", "label", "accuracy"]
    assert acc.table.accuracy.max() == 1.0  # percentages read as such
    assert acc.frames_per_clip is None
    # A sweep folder: per_class.csv with correct/total only, T and policy from results.csv.
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "per_class.csv").write_text("setting,coverage,stride,label,label_id,correct,total\nc100_s1,100,1,A,0,3,4\n")
    (d / "results.csv").write_text("setting,coverage,stride,policy,frames_per_clip\nc100_s1,100,1,fixed,16\n")
    acc = read_class_accuracy(d)
    assert acc.table.accuracy.tolist() == [0.75] and acc.frames_per_clip == 16 and acc.policy == "fixed"


@pytest.mark.parametrize(
    ("text", "message"),
    [("coverage,stride,label\n100,1,A\n", "lacks column(s) accuracy"),
     ("coverage,stride,label,accuracy\n100,1,A,0.5\n100,1,A,0.6\n", "several rows for coverage 100, stride 1, class A"),
     ("coverage,stride,label,accuracy\n100,x,A,0.5\n", "line 2: stride ('x') is not a number"),
     ("coverage,stride,label,accuracy\n", "has no rows")],
)
def test_read_class_accuracy_errors(tmp_path, text, message):
    p = tmp_path / "acc.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        read_class_accuracy(p)


def test_read_class_accuracy_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"no per_class.csv in {tmp_path}")):
        read_class_accuracy(tmp_path)


def test_compare_with_sweep_on_a_hand_made_table(tmp_path):
    p = tmp_path / "acc.csv"
    p.write_text(HAND_MADE)
    cmp = compare_with_sweep(_classes(), read_class_accuracy(p)).set_index("label")
    assert (cmp.coverage == 100).all() and (cmp.frames_per_clip == 8).all()
    # 1/18 at T = 8: gaps 7, 8, 8, 8, 16 -> first failure at 16, as observed.
    assert cmp.loc["OscillateFast", ["predicted_fail_stride", "observed_fail_stride", "verdict"]].tolist() == [16, 16, "agree"]
    # k_safe 6 < the 7-frame gap of stride 1: predicted to fail at once; observed at 16.
    assert cmp.loc["Rotate", ["predicted_fail_stride", "observed_fail_stride", "verdict"]].tolist() == [1, 16, "conservative"]
    # Nothing moves, yet stride 16 misses the flash: not an aliasing failure.
    assert pd.isna(cmp.loc["Flash", "predicted_fail_stride"]) and cmp.loc["Flash", "verdict"] == "missed"
    assert cmp.loc["Never", "verdict"] == "n/a"
    at50 = compare_with_sweep(_classes(), read_class_accuracy(p), coverage=50).set_index("label")
    assert at50.loc["Rotate", "note"] == "no rows at coverage 50"
    with pytest.raises(ValueError, match=re.escape("coverage (25) is not in the sweep (has: 50, 100)")):
        compare_with_sweep(_classes(), read_class_accuracy(p), coverage=25)


# --------------------------------------------------------------------------------- CLI


def test_help():
    res = CliRunner().invoke(spectrum, ["--help"])
    assert res.exit_code == 0 and "Usage:" in res.output


def test_cli_json_per_class_with_sweep(tiny, tmp_path):
    acc = tmp_path / "per_class.csv"
    acc.write_text("coverage,stride,label,accuracy\n" + "".join(
        f"100,{s},{label},{a}\n" for label in CLASSES for s, a in zip((1, 2, 4, 8, 16), (0.9, 0.9, 0.9, 0.9, 0.1))))
    res = CliRunner().invoke(spectrum, ["--manifest", str(tiny), "--per-class", "--sweep", str(tmp_path),
                                        "--out", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    classes = {c["label"]: c for c in doc["classes"]}
    assert set(classes) == set(CLASSES) and doc["clips_analysed"] == 16 and doc["failed"] == []
    assert classes["OscillateFast"]["k_safe"] <= 9 and classes["FlashEarly"]["f_dom"] is None
    verdicts = {c["label"]: c["verdict"] for c in doc["comparison"]}
    assert verdicts["FlashEarly"] == "missed" and verdicts["OscillateSlow"] in ("agree", "conservative")
    names = {Path(f).name for f in doc["files"]}
    assert {"spectrum_classes.csv", "spectrum_vs_sweep.csv", "spectrum.json", "spectra.png", "strides.png"} <= names
    assert (tmp_path / "out" / "spectra.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_per_clip_table(tiny):
    res = CliRunner().invoke(spectrum, ["--manifest", str(tiny), "--limit", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].split()[:4] == ["video_path", "label", "f_dom", "f_max"]
    assert len(res.stdout.splitlines()) == 3


@pytest.mark.parametrize("case", ["missing", "empty", "no_sweep"])
def test_cli_errors_are_one_line(tiny, tmp_path, case):
    args = ["--manifest", str(tmp_path / "nope.csv")]
    expected = f"manifest not found: {tmp_path / 'nope.csv'}"
    if case == "empty":
        (tmp_path / "empty.csv").write_text("video_path,label,label_id,num_frames\n")
        args, expected = ["--manifest", str(tmp_path / "empty.csv")], "has no rows"
    elif case == "no_sweep":
        args, expected = ["--manifest", str(tiny), "--sweep", str(tmp_path)], f"no per_class.csv in {tmp_path}"
    res = CliRunner().invoke(spectrum, args)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], res.output
