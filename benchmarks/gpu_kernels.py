"""Time inforates.kernels on a CUDA GPU: Triton vs the PyTorch reference.

    python benchmarks/gpu_kernels.py results/gpu_kernels.json [--iters 50 --warmup 10]

Not a pytest file (no ``test_`` prefix): it needs a GPU and minutes, and it writes a JSON
of its own. Without CUDA (or without Triton) it says so on stderr, writes nothing and exits 0.

Shapes: B=8 clips of F in {16, 50} decoded 224x224 RGB frames, T in {8, 16} frames kept
with stride in {1, 2, 4, 8} (indices from :func:`inforates.sampling.select_frames`,
coverage 100, policy ``fixed``); operations normalize_gather, antialias box and gaussian.
Each call is timed end to end as a user sees it, argument checks included (the index
range check costs one device sync per call, for both backends alike).

``gb_per_s`` counts the bytes the fused pass must move: ``taps`` uint8 reads of every
output pixel plus one float32 write, ``B*T*H*W*C * (taps + 4)``, over the time per call.
Each result also records the largest difference between the two backends.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SHAPES = [(8, 16, 224, 224, 3), (8, 50, 224, 224, 3)]  # (B, F, H, W, C)
FRAMES_OUT = (8, 16)
STRIDES = (1, 2, 4, 8)
OPS = ("normalize_gather", "antialias_box", "antialias_gaussian")


def _time_ms(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e3


def run(iters: int, warmup: int) -> dict:
    import triton

    from inforates.kernels.ops import antialias_decimate, normalize_gather
    from inforates.kernels.reference import window_taps
    from inforates.sampling import select_frames

    results = []
    gen = torch.Generator(device="cuda").manual_seed(0)
    for shape in SHAPES:
        batch, num_frames, height, width, channels = shape
        video = torch.randint(0, 256, shape, dtype=torch.uint8, device="cuda", generator=gen)
        for frames_out in FRAMES_OUT:
            for stride in STRIDES:
                sel = select_frames(
                    num_frames=num_frames, coverage=100, stride=stride, frames_per_clip=frames_out
                )
                indices = torch.tensor(sel.indices, device="cuda")
                for op in OPS:
                    if op == "normalize_gather":
                        taps = 1

                        def call(backend, indices=indices):
                            return normalize_gather(video, indices, MEAN, STD, backend=backend)

                    else:
                        window = op.removeprefix("antialias_")
                        taps = len(window_taps(stride, window).weights)

                        def call(backend, indices=indices, stride=stride, window=window):
                            return antialias_decimate(
                                video, indices, stride, MEAN, STD, window=window, backend=backend
                            )

                    diff = (call("triton") - call("reference")).abs().max().item()
                    moved = batch * frames_out * height * width * channels * (taps + 4)
                    row = {
                        "op": op,
                        "B": batch,
                        "F": num_frames,
                        "H": height,
                        "W": width,
                        "C": channels,
                        "T": frames_out,
                        "stride": stride,
                        "taps": taps,
                        "indices": list(sel.indices),
                        "max_abs_diff": diff,
                    }
                    for backend in ("triton", "reference"):
                        ms = _time_ms(lambda b=backend: call(b), iters, warmup)
                        row[f"{backend}_ms"] = ms
                        row[f"{backend}_gb_per_s"] = moved / (ms * 1e-3) / 1e9
                    row["speedup"] = row["reference_ms"] / row["triton_ms"]
                    results.append(row)
    return {
        "device": torch.cuda.get_device_name(),
        "capability": list(torch.cuda.get_device_capability()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "iters": iters,
        "warmup": warmup,
        "timing": "perf_counter around `iters` calls, torch.cuda.synchronize() before and after",
        "gb_per_s_counts": "B*T*H*W*C * (taps uint8 reads + 4 bytes float32 write)",
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="JSON file to write")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("gpu_kernels: no CUDA device; nothing timed, nothing written", file=sys.stderr)
        return 0
    from inforates.kernels.ops import triton_available

    if not triton_available():
        print("gpu_kernels: triton is not installed; nothing timed, nothing written", file=sys.stderr)
        return 0
    report = run(args.iters, args.warmup)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"gpu_kernels: {len(report['results'])} results on {report['device']} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
