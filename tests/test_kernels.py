"""inforates.kernels: reference vs a plain NumPy oracle, Triton (interpreter) vs reference,
the anti-aliasing property, argument validation and packaging.

The Triton checks run Triton's interpreter on CPU tensors. ``triton.jit`` fixes a kernel's
mode (interpreted or compiled) when it decorates it; inforates.kernels builds one kernel
per mode on demand and picks by ``TRITON_INTERPRET`` at call time, so the ``interpreter``
fixture only sets the variable for the test (no global side effect, no import-order
constraint), and every such test asserts from the dispatcher's log that Triton ran. One
subprocess test also runs the CI way: the variable set before anything is imported.
"""

from __future__ import annotations

import cmath
import importlib.util
import logging
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from inforates.kernels.ops import TOLERANCE, antialias_decimate, normalize_gather, triton_available
from inforates.sampling import select_frames

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

needs_triton = pytest.mark.skipif(
    not triton_available(),
    reason="triton is not importable (pip install triton==3.9.0); Triton checks skipped",
)


def random_video(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


# ---------------------------------------------------------------- NumPy oracle
# Written from the spec, independently of inforates.kernels.reference.


def box_window(stride: int) -> tuple[list[int], list[float]]:
    lo = -((stride - 1) // 2)
    hi = math.ceil((stride - 1) / 2)
    offsets = list(range(lo, hi + 1))
    return offsets, [1.0 / stride] * len(offsets)


def gaussian_window(stride: int, sigma: float | None) -> tuple[list[int], list[float]]:
    if sigma is None:
        sigma = stride / 2 if stride > 1 else 0.0
    r = math.ceil(3 * sigma)
    if r == 0:
        return [0], [1.0]
    offsets = list(range(-r, r + 1))
    raw = [math.exp(-d * d / (2 * sigma * sigma)) for d in offsets]
    return offsets, [w / sum(raw) for w in raw]


def oracle(video, indices, mean, std, window=([0], [1.0])) -> np.ndarray:
    offsets, weights = window
    v = video.numpy().astype(np.float64)
    batch, num_frames, height, width, channels = v.shape
    idx = np.asarray(indices)
    if idx.ndim == 1:
        idx = np.stack([idx] * batch)
    out = np.zeros((batch, idx.shape[1], channels, height, width))
    for b in range(batch):
        for t in range(idx.shape[1]):
            acc = np.zeros((height, width, channels))
            for d, w in zip(offsets, weights):
                f = min(max(int(idx[b, t]) + d, 0), num_frames - 1)
                acc += w * np.take(v[b], f, axis=0)
            for c in range(channels):
                out[b, t, c] = (acc[:, :, c] / 255.0 - mean[c]) / std[c]
    return out


def assert_close_np(actual: torch.Tensor, expected: np.ndarray) -> None:
    assert actual.dtype == torch.float32
    assert tuple(actual.shape) == expected.shape
    np.testing.assert_allclose(actual.numpy(), expected, **TOLERANCE)


# ---------------------------------------------------------------- reference vs oracle

ORACLE_CASES = [
    # (B, F, H, W, C), indices
    ((2, 9, 4, 6, 3), [0, 4, 8]),
    ((2, 9, 5, 7, 3), [[8, 0, 3], [1, 1, 7]]),
    ((1, 3, 3, 2, 3), [2]),
    ((3, 12, 2, 3, 1), [0, 2, 5, 11]),
]


@pytest.mark.parametrize("shape, indices", ORACLE_CASES)
def test_reference_normalize_gather_matches_numpy(shape, indices):
    video = random_video(shape)
    mean, std = MEAN[: shape[-1]], STD[: shape[-1]]
    out = normalize_gather(video, indices, mean, std, backend="reference")
    assert_close_np(out, oracle(video, indices, mean, std))


@pytest.mark.parametrize("shape, indices", ORACLE_CASES)
@pytest.mark.parametrize("stride", [1, 2, 3, 4, 13])
@pytest.mark.parametrize("window", ["box", "gaussian"])
def test_reference_antialias_matches_numpy(shape, indices, stride, window):
    video = random_video(shape, seed=stride)
    mean, std = MEAN[: shape[-1]], STD[: shape[-1]]
    out = antialias_decimate(video, indices, stride, mean, std, window=window, backend="reference")
    taps = box_window(stride) if window == "box" else gaussian_window(stride, None)
    assert_close_np(out, oracle(video, indices, mean, std, taps))


@pytest.mark.parametrize("stride, sigma", [(1, 0.5), (2, 0.0), (4, 0.9), (3, 2.5)])
def test_reference_gaussian_explicit_sigma_matches_numpy(stride, sigma):
    video = random_video((2, 10, 3, 4, 3))
    indices = [[0, 5, 9], [9, 9, 1]]
    out = antialias_decimate(
        video, indices, stride, MEAN, STD, window="gaussian", sigma=sigma, backend="reference"
    )
    assert_close_np(out, oracle(video, indices, MEAN, STD, gaussian_window(stride, sigma)))


def test_reference_accepts_tensor_stats_and_frame_selection():
    video = random_video((2, 20, 3, 3, 3))
    sel = select_frames(num_frames=20, coverage=50, stride=3, frames_per_clip=8)
    out = normalize_gather(video, sel.indices, torch.tensor(MEAN), torch.tensor(STD))
    assert_close_np(out, oracle(video, list(sel.indices), MEAN, STD))


def test_stride_one_is_normalize_gather_exactly():
    video = random_video((2, 7, 5, 7, 3))
    indices = [[0, 6, 3], [2, 2, 5]]
    plain = normalize_gather(video, indices, MEAN, STD, backend="reference")
    for window in ("box", "gaussian"):
        same = antialias_decimate(video, indices, 1, MEAN, STD, window=window, backend="reference")
        assert torch.equal(same, plain), window
    blurred = antialias_decimate(
        video, indices, 1, MEAN, STD, window="gaussian", sigma=0.5, backend="reference"
    )
    assert not torch.equal(blurred, plain)


# ---------------------------------------------------------------- Triton (interpreter) vs reference


@pytest.fixture
def interpreter(monkeypatch, caplog):
    """Run Triton under its interpreter for this test; yields a check that it really ran."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    caplog.set_level(logging.DEBUG, logger="inforates.kernels")

    def ran_triton(op: str) -> None:
        messages = [r.getMessage() for r in caplog.records if r.name == "inforates.kernels"]
        assert f"{op}: triton (interpreter) on cpu" in messages, messages
        caplog.clear()

    return ran_triton


def _noncontiguous(shape: tuple[int, ...], device: str = "cpu") -> torch.Tensor:
    """``shape`` (B, F, H, W, C) as a permuted, sliced view: no dimension has its natural stride."""
    b, f, h, w, c = shape
    base = random_video((b, h + 1, c, 2 * w, f), seed=7).to(device)  # stored as (B, H, C, W, F)
    view = base[:, 1:, :, ::2, :].permute(0, 4, 1, 3, 2)
    assert tuple(view.shape) == shape and not view.is_contiguous()
    return view


# (name, video, indices)
TRITON_CASES = [
    ("T=1", random_video((2, 6, 4, 4, 3)), [3]),
    ("odd H=5 W=7", random_video((2, 6, 5, 7, 3)), [[0, 2, 5], [4, 1, 1]]),
    ("ends 0 and F-1", random_video((1, 5, 3, 5, 3)), [0, 4, 0, 4]),
    ("F=4, less than stride 7", random_video((2, 4, 3, 3, 3)), [[0, 3], [3, 0]]),
    ("non-contiguous", _noncontiguous((2, 6, 5, 7, 3)), [[5, 0, 2], [1, 3, 5]]),
    ("1-D shared", random_video((3, 8, 2, 3, 3)), torch.tensor([7, 1, 4])),
    ("2-D per sample", random_video((3, 8, 2, 3, 3)), torch.tensor([[0, 7], [3, 3], [6, 1]])),
    ("C=1", random_video((2, 6, 3, 2, 1)), [[1, 5], [0, 2]]),
    ("int32 indices, 2 pixel blocks", random_video((1, 3, 33, 33, 3)), torch.tensor([2, 0], dtype=torch.int32)),
]
OPS = [
    # (name, stride, window, sigma)
    ("gather", None, None, None),
    ("box s=1", 1, "box", None),
    ("box s=4", 4, "box", None),
    ("box s=7", 7, "box", None),
    ("gaussian s=3", 3, "gaussian", None),
    ("gaussian s=2 sigma=0.7", 2, "gaussian", 0.7),
]


def _run(op, video, indices, backend):
    _, stride, window, sigma = op
    channels = video.shape[-1]
    mean, std = MEAN[:channels], STD[:channels]
    if stride is None:
        return normalize_gather(video, indices, mean, std, backend=backend)
    return antialias_decimate(
        video, indices, stride, mean, std, window=window, sigma=sigma, backend=backend
    )


@needs_triton
@pytest.mark.parametrize("op", OPS, ids=[o[0] for o in OPS])
@pytest.mark.parametrize("case", TRITON_CASES, ids=[c[0] for c in TRITON_CASES])
def test_triton_matches_reference(interpreter, case, op):
    _, video, indices = case
    expected = _run(op, video, indices, "reference")
    got = _run(op, video, indices, "auto")
    interpreter("normalize_gather" if op[1] is None else "antialias_decimate")
    assert got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got, expected, **TOLERANCE)


@needs_triton
def test_triton_stride_one_is_normalize_gather_exactly(interpreter):
    video = _noncontiguous((2, 6, 5, 7, 3))
    indices = [[0, 5, 2], [3, 3, 1]]
    plain = normalize_gather(video, indices, MEAN, STD, backend="triton")
    for window in ("box", "gaussian"):
        same = antialias_decimate(video, indices, 1, MEAN, STD, window=window, backend="triton")
        assert torch.equal(same, plain), window
    interpreter("antialias_decimate")


@needs_triton
def test_cpu_without_interpreter_uses_reference(monkeypatch, caplog):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    caplog.set_level(logging.DEBUG, logger="inforates.kernels")
    video = random_video((1, 4, 2, 2, 3))
    normalize_gather(video, [1], MEAN, STD)
    assert "normalize_gather: reference on cpu (cpu tensor and TRITON_INTERPRET is not set)" in caplog.messages
    with pytest.raises(RuntimeError, match=re.escape("backend 'triton' cannot run here")):
        normalize_gather(video, [1], MEAN, STD, backend="triton")


@needs_triton
def test_triton_interpreter_set_before_import_in_fresh_process():
    """The CI way: TRITON_INTERPRET=1 in the environment before anything imports triton."""
    code = textwrap.dedent(
        """
        import logging
        logging.basicConfig(level=logging.DEBUG, format="%(name)s|%(message)s")
        import torch
        from inforates.kernels.ops import TOLERANCE, antialias_decimate
        video = torch.randint(0, 256, (2, 9, 3, 5, 3), dtype=torch.uint8)
        args = (video, [[0, 4, 8], [8, 8, 1]], 4, (0.5,) * 3, (0.25,) * 3)
        ref = antialias_decimate(*args, window="gaussian", backend="reference")
        got = antialias_decimate(*args, window="gaussian")
        torch.testing.assert_close(got, ref, **TOLERANCE)
        """
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "inforates.kernels|antialias_decimate: triton (interpreter) on cpu" in proc.stderr


def test_without_triton_everything_runs_on_the_reference():
    code = textwrap.dedent(
        """
        import logging, sys
        sys.modules["triton"] = None  # makes "import triton" raise ImportError
        logging.basicConfig(level=logging.DEBUG, format="%(name)s|%(message)s")
        import torch
        import inforates.kernels.ops as k
        assert not k.triton_available()
        out = k.normalize_gather(torch.zeros((1, 2, 2, 2, 3), dtype=torch.uint8), [1], (0,) * 3, (1,) * 3)
        assert out.shape == (1, 1, 3, 2, 2)
        """
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "inforates.kernels|normalize_gather: reference on cpu (triton is not installed)" in proc.stderr


# ---------------------------------------------------------------- real GPU (compiled Triton)


@pytest.mark.needs_cuda  # tests/conftest.py skips it without CUDA
@needs_triton
@pytest.mark.parametrize("op", OPS, ids=[o[0] for o in OPS])
def test_cuda_triton_matches_reference(monkeypatch, op):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # compiled, not interpreted
    video = _noncontiguous((2, 6, 5, 7, 3), device="cuda")
    indices = torch.tensor([[5, 0, 2], [1, 3, 5]], device="cuda")
    expected = _run(op, video, indices, "reference")
    got = _run(op, video, indices, "triton")
    assert got.is_cuda
    torch.testing.assert_close(got, expected, **TOLERANCE)


@pytest.mark.needs_cuda  # tests/conftest.py skips it without CUDA
@needs_triton
def test_cuda_triton_realistic_shape(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    video = random_video((2, 16, 224, 224, 3)).cuda()
    sel = select_frames(num_frames=16, coverage=100, stride=2, frames_per_clip=8)
    for window in ("box", "gaussian"):
        expected = antialias_decimate(video, sel.indices, 2, MEAN, STD, window=window, backend="reference")
        got = antialias_decimate(video, sel.indices, 2, MEAN, STD, window=window, backend="triton")
        torch.testing.assert_close(got, expected, **TOLERANCE)


# ---------------------------------------------------------------- anti-aliasing property

STRIDE = 4
NUM_OUT = 75  # output samples; the middle 60 (a whole number of both periods below) are measured
MEASURED = slice(5, 65)


def one_pixel_signal(period: float) -> torch.Tensor:
    """(1, F, 1, 1, 1) uint8: 127.5 + 100 cos(2 pi f / period), F = STRIDE * NUM_OUT."""
    f = np.arange(STRIDE * NUM_OUT)
    x = np.round(127.5 + 100 * np.cos(2 * np.pi * f / period + 0.3)).astype(np.uint8)
    return torch.from_numpy(x).reshape(1, -1, 1, 1, 1)


def amplitude(y: np.ndarray, cycles_per_sample: float) -> float:
    y = y - y.mean()
    k = np.arange(len(y))
    return float(2 * abs(np.sum(y * np.exp(-2j * np.pi * cycles_per_sample * k))) / len(y))


def gain(window: tuple[list[int], list[float]], cycles_per_frame: float) -> float:
    offsets, weights = window
    return abs(sum(w * cmath.exp(-2j * math.pi * cycles_per_frame * d) for d, w in zip(offsets, weights)))


def decimated(video, window, backend):
    sel = select_frames(num_frames=video.shape[1], coverage=100, stride=STRIDE, policy="all")
    assert len(sel.indices) == NUM_OUT
    if window is None:
        out = normalize_gather(video, sel.indices, (0.0,), (1.0,), backend=backend)
    else:
        out = antialias_decimate(video, sel.indices, STRIDE, (0.0,), (1.0,), window=window, backend=backend)
    return out.reshape(-1).numpy()[MEASURED] * 255.0


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
@pytest.mark.parametrize("window", ["box", "gaussian"])
def test_antialiasing_attenuates_aliased_motion(monkeypatch, backend, window):
    if backend == "triton":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    taps = box_window(STRIDE) if window == "box" else gaussian_window(STRIDE, None)

    # Period 3 frames is above the new Nyquist (period 2 * STRIDE = 8): kept every 4th
    # frame it reappears as a period-3-sample wave (4/3 cycles/frame folds to 1/3).
    fast = one_pixel_signal(3)
    plain = amplitude(decimated(fast, None, backend), 1 / 3)
    filtered = amplitude(decimated(fast, window, backend), 1 / 3)
    assert plain == pytest.approx(100, rel=0.02)  # plain decimation keeps the alias at full strength
    bound = gain(taps, 1 / 3) + 0.01  # the window's response at 1/3 cycles/frame, + rounding to uint8
    # box: |H| = 0.25; gaussian (sigma 2): |H| ~ 1.5e-4
    assert bound < 0.3
    assert filtered / plain < bound

    # Period 40 frames is well below Nyquist: it comes out as period 10 samples, nearly unchanged.
    slow = one_pixel_signal(40)
    kept = amplitude(decimated(slow, window, backend), STRIDE / 40) / amplitude(
        decimated(slow, None, backend), STRIDE / 40
    )
    assert kept == pytest.approx(gain(taps, 1 / 40), abs=0.01)  # box 0.985, gaussian 0.952
    assert kept > 0.9


# ---------------------------------------------------------------- validation


def _video() -> torch.Tensor:
    return random_video((2, 5, 3, 3, 3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: normalize_gather(_video().float(), [0], MEAN, STD), "video dtype (torch.float32) must be torch.uint8"),
        (lambda: normalize_gather(_video()[0], [0], MEAN, STD), "video shape ((5, 3, 3, 3)) must be (B, F, H, W, C)"),
        (lambda: normalize_gather(_video().numpy(), [0], MEAN, STD), "video (ndarray) must be a torch.Tensor"),
        (lambda: normalize_gather(_video(), [0, 5], MEAN, STD), "index (5) must be in [0, 4] for a video of 5 frames"),
        (lambda: normalize_gather(_video(), [[0], [-1]], MEAN, STD), "index (-1) must be in [0, 4]"),
        (lambda: normalize_gather(_video(), [[[0]]], MEAN, STD), "indices shape ((1, 1, 1)) must be (T,) or (B, T)"),
        (lambda: normalize_gather(_video(), [[0], [1], [2]], MEAN, STD), "indices batch (3) must equal the video batch (2)"),
        (lambda: normalize_gather(_video(), [], MEAN, STD), "indices shape ((2, 0)) must hold at least one frame"),
        (lambda: normalize_gather(_video(), [0.5], MEAN, STD), "indices dtype (float64) must be an integer type"),
        (lambda: normalize_gather(_video(), torch.tensor([True]), MEAN, STD), "indices dtype (torch.bool) must be an integer type"),
        (lambda: normalize_gather(_video(), [0], (0.5, 0.5), STD), "mean ([0.5, 0.5]) must hold one value per channel (C = 3)"),
        (lambda: normalize_gather(_video(), [0], MEAN, (0.2, 0.0, 0.2)), "std ([0.2, 0.0, 0.2]) must be > 0"),
        (lambda: normalize_gather(_video(), [0], MEAN, STD, backend="cuda"), "backend ('cuda') must be one of: auto, triton, reference"),
        (lambda: antialias_decimate(_video(), [0], 0, MEAN, STD), "stride (0) must be an integer >= 1"),
        (lambda: antialias_decimate(_video(), [0], 2, MEAN, STD, window="hann"), "window ('hann') must be one of: box, gaussian"),
        (lambda: antialias_decimate(_video(), [0], 2, MEAN, STD, window="box", sigma=1.0), "sigma (1.0) only applies to window 'gaussian'"),
        (lambda: antialias_decimate(_video(), [0], 2, MEAN, STD, window="gaussian", sigma=-1.0), "sigma (-1.0) must be a finite number >= 0"),
    ],
)
def test_bad_arguments_name_the_value(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# ---------------------------------------------------------------- packaging


def test_kernels_ship_inside_inforates():
    import inforates.kernels.ops

    assert inforates.kernels.ops.__name__ == "inforates.kernels.ops"
    assert inforates.kernels.ops.normalize_gather is normalize_gather


OURS = Path(importlib.util.find_spec("inforates.kernels.ops").origin).resolve().parent
REPO = Path(__file__).resolve().parents[1]


def test_repo_root_on_sys_path_does_not_shadow_hf_kernels():
    """``python -m`` from the checkout puts its root first on sys.path; the kernels/ folder
    (no __init__.py) must not hide the ``kernels`` package transformers imports."""
    code = "import transformers.modeling_utils, inforates.kernels.ops; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (REPO / "kernels" / "__init__.py").exists()


def _not_our_folder(origin: str | None) -> bool:
    """None (not installed) or another package, e.g. Hugging Face's in site-packages (which
    may itself sit inside the checkout, in .venv/)."""
    return origin is None or OURS not in Path(origin).resolve().parents


def test_installed_top_level_kernels_is_not_this_folder(tmp_path):
    """What an installed environment resolves ``kernels`` to (run from outside the checkout)."""
    code = "import importlib.util as u; s = u.find_spec('kernels'); print(s.origin if s else '')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    origin = proc.stdout.strip() or None
    assert _not_our_folder(origin), f"top-level 'kernels' resolves to {origin}"


def test_top_level_kernels_is_not_this_folder_in_this_process():
    spec = importlib.util.find_spec("kernels")
    origin = spec.origin if spec else None
    assert _not_our_folder(origin), (
        f"top-level 'kernels' resolves to {origin}: the checkout root is on sys.path "
        "(e.g. 'python -m pytest' run from it), so the folder shadows Hugging Face's 'kernels' "
        "and transformers' imports of it fail; kernels/ must stay without __init__.py"
    )
