"""The prepared GPU check: model step per T, the Triton kernels, and DALI's NVDEC decoder.

    python benchmarks/gpu_check.py results/gpu_check.json [--quick]

One script to run when a GPU is lent, in one go, within a few minutes. Sections:

``model``   forward (inference, bf16 autocast) and train step (AdamW, bf16 autocast) of each
            preset at T in ``--frames`` (the model is built with ``num_frames = T``, as
            TimeSformer needs), batch ``--batch``: ms per step, clips/s, peak memory, fvcore
            GFLOPs per clip and the achieved TFLOP/s (forward multiply-adds x 2 / time).
``kernels`` ``benchmarks/gpu_kernels.py`` (Triton vs the PyTorch reference), needs Triton.
``decode``  where DALI is installed: the DALI loader with the mixed (NVDEC) decoder on
            generated stamped H.264 clips, with 1..``--pipelines`` pipelines side by side
            (each a shard of the clips, each in its own thread), so several NVDEC engines
            work at once; aggregate clips/s per pipeline count and setting. Every delivered
            clip's stamps are checked against the sampler before anything is timed.

A section that cannot run here (no Triton, no DALI) is recorded with the reason and the
others still run. Without CUDA the script writes nothing and exits 0, unless
``--allow-cpu`` (used by the tests: the same code on the CPU, tiny sizes, DALI's CPU
decoder on MJPEG clips) is given. Results carry the machine and versions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

HERE = Path(__file__).resolve().parent
LABELS = [f"class{i}" for i in range(8)]
DEFAULT_SETTINGS = ((100, 1), (25, 4), (10, 16))


@dataclass(frozen=True)
class Plan:
    device: str
    presets: tuple[str, ...]
    frames: tuple[int, ...]
    batch: int
    iters: int
    warmup: int
    pipelines: tuple[int, ...]
    clips: int
    clip_size: tuple[int, int]  # (width, height) of the generated clips; square, so the
    # centre crop keeps the whole stamp band
    image_size: int
    codec: str
    settings: tuple[tuple[int, int], ...]
    threads_per_pipeline: int
    kernel_iters: int


def full_plan() -> Plan:
    return Plan(device="cuda", presets=("timesformer-base", "timesformer-tiny"), frames=(4, 8, 16, 32), batch=16,
                iters=20, warmup=5, pipelines=(1, 2, 4, 7), clips=112, clip_size=(256, 256), image_size=224,
                codec="h264", settings=DEFAULT_SETTINGS, threads_per_pipeline=2, kernel_iters=30)


def quick_plan() -> Plan:
    return Plan(device="cuda", presets=("timesformer-base",), frames=(8, 16), batch=8, iters=10, warmup=3,
                pipelines=(1, 4), clips=56, clip_size=(256, 256), image_size=224, codec="h264",
                settings=((100, 1), (10, 16)), threads_per_pipeline=2, kernel_iters=10)


def cpu_plan() -> Plan:
    """The smoke test's plan: every code path, on the CPU, in seconds."""
    return Plan(device="cpu", presets=("timesformer-tiny",), frames=(4, 8), batch=2, iters=2, warmup=1,
                pipelines=(1, 2), clips=6, clip_size=(64, 64), image_size=32, codec="mjpeg",
                settings=((100, 1), (50, 4)), threads_per_pipeline=1, kernel_iters=1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_ms(step: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters * 1e3


# -- model ---------------------------------------------------------------------------------


def _model_row(plan: Plan, preset: str, frames: int) -> dict[str, Any]:
    """One preset at one T; its model, optimizer and inputs are freed when it returns."""
    from inforates.flops import count_flops
    from inforates.models import MODELS, build_model

    device = torch.device(plan.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    size = MODELS.get(preset).image_size
    model = build_model(preset, label_names=LABELS, num_frames=frames, seed=0)
    gflops = count_flops(model, frames=frames, image_size=size).gflops_per_view
    model = model.to(device)
    video = torch.randn(plan.batch, frames, 3, size, size, device=device)
    labels = torch.arange(plan.batch, device=device) % len(LABELS)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    model.eval()

    def forward() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return model(video)

    fwd_ms = _time_ms(forward, device, plan.iters, plan.warmup)
    out = forward()
    if out.shape != (plan.batch, len(LABELS)) or not torch.isfinite(out.float()).all():
        raise RuntimeError(f"{preset} T={frames}: bad forward output {tuple(out.shape)}")

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(video), labels)
        loss.backward()
        optimizer.step()
        return loss

    train_ms = _time_ms(train_step, device, plan.iters, plan.warmup)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "preset": preset, "frames": frames, "image_size": size, "batch": plan.batch,
        "dtype": "bf16 autocast" if device.type == "cuda" else "float32",
        "gflops_per_clip": gflops,
        "forward_ms": fwd_ms, "forward_clips_per_s": plan.batch / fwd_ms * 1e3,
        "forward_tflops_per_s": 2 * gflops * plan.batch / fwd_ms,  # GMACs -> FLOPs, ms -> s: 1e9*2/1e3/1e12
        "train_ms": train_ms, "train_clips_per_s": plan.batch / train_ms * 1e3,
        "peak_memory_mib": peak,
    }


def model_section(plan: Plan, log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for preset in plan.presets:
        for frames in plan.frames:
            row = _model_row(plan, preset, frames)
            rows.append(row)
            log(f"model {preset} T={frames}: forward {row['forward_clips_per_s']:.1f} clips/s "
                f"({row['forward_tflops_per_s']:.1f} TFLOP/s), train {row['train_clips_per_s']:.1f} clips/s")
            if plan.device == "cuda":
                torch.cuda.empty_cache()
    return rows


# -- kernels -------------------------------------------------------------------------------


def kernels_section(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    from inforates.kernels.ops import triton_available

    if plan.device != "cuda":
        return {"skipped": "the kernels are timed on CUDA only"}
    if not triton_available():
        return {"skipped": "triton is not installed"}
    report = _sibling("gpu_kernels").run(plan.kernel_iters, max(1, plan.kernel_iters // 5))
    best = max(report["results"], key=lambda r: r["speedup"])
    log(f"kernels: {len(report['results'])} cases, best Triton speedup {best['speedup']:.2f}x ({best['op']})")
    return report


# -- decode --------------------------------------------------------------------------------


def _sibling(name: str):
    """A module of this folder (``benchmarks/`` is not a package), loaded by its path."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def make_clips(root: Path, plan: Plan, num_frames: int = 50) -> list:
    from inforates.data.manifest import ClipRecord
    from inforates.data.video_io import CODECS, write_video

    ext = CODECS.get(plan.codec).extension
    records = []
    for i in range(plan.clips):
        path = root / f"clip{i:04d}{ext}"
        frames = _sibling("bench_common").smooth_stamped_frames(i, num_frames, *plan.clip_size)
        write_video(path, frames, codec=plan.codec)
        records.append(ClipRecord(path, LABELS[i % len(LABELS)], i % len(LABELS), num_frames))
    return records


def _run_pipelines(loaders: Sequence, epochs: int) -> tuple[float, int]:
    """Run every loader for ``epochs`` epochs at once, one thread each: (seconds, clips)."""
    counts = [0] * len(loaders)
    errors: list[BaseException] = []
    start_line = threading.Barrier(len(loaders) + 1)

    def work(i: int) -> None:
        try:
            start_line.wait()
            for _ in range(epochs):
                for batch in loaders[i]:
                    counts[i] += len(batch.rows)
            if torch.cuda.is_available() and loaders[i].options.device == "gpu":
                torch.cuda.synchronize()
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(loaders))]
    for t in threads:
        t.start()
    start_line.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return seconds, sum(counts)


def decode_section(plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    try:
        from inforates.loaders import DaliLoader, LoaderOptions
    except ImportError as exc:
        return {"skipped": f"DALI is not installed ({exc})"}
    from inforates.data.stamp import read_stamp
    from inforates.sampling import Sampling

    dali_device = "gpu" if plan.device == "cuda" else "cpu"
    rows = []
    with tempfile.TemporaryDirectory(prefix="inforates-gpu-check-") as tmp:
        t0 = time.perf_counter()
        records = make_clips(Path(tmp), plan)
        log(f"decode: {len(records)} {plan.codec} clips of {plan.clip_size[0]}x{plan.clip_size[1]} "
            f"written in {time.perf_counter() - t0:.1f} s")
        for coverage, stride in plan.settings:
            sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=8, policy="fixed")
            expected = list(sampling.select(records[0].num_frames).indices)
            single = None
            for count in plan.pipelines:
                loaders = [
                    DaliLoader(records, sampling, LoaderOptions(
                        batch_size=8, image_size=plan.image_size, device=dali_device,
                        num_threads=plan.threads_per_pipeline, shard_id=i, num_shards=count))
                    for i in range(count)
                ]
                try:
                    delivered = []
                    for loader in loaders:  # warm-up epoch, checked: every clip once, right frames
                        for batch in loader:
                            delivered += list(batch.rows)
                            video = batch.video.float().cpu().numpy()
                            bad = [r for r, clip in zip(batch.rows, video) if [read_stamp(f) for f in clip] != expected]
                            if bad:
                                raise RuntimeError(f"decode: rows {bad} did not deliver frames {expected}")
                    if sorted(delivered) != list(range(len(records))):
                        raise RuntimeError(f"decode: {len(delivered)} clips delivered, {len(records)} expected")
                    seconds, clips = _run_pipelines(loaders, epochs=2)
                finally:
                    for loader in loaders:
                        loader.close()
                rate = clips / seconds
                single = single or rate
                rows.append({
                    "coverage": coverage, "stride": stride, "pipelines": count, "clips_per_s": rate,
                    "frames_per_s": rate * len(expected), "vs_one_pipeline": rate / single,
                    "clips": clips, "seconds": seconds,
                })
                log(f"decode c{coverage} s{stride}: {count} pipeline(s) {rate:.1f} clips/s ({rate / single:.2f}x one)")
    return {"decoder": "mixed (NVDEC)" if dali_device == "gpu" else "cpu", "codec": plan.codec,
            "clip_size": list(plan.clip_size), "image_size": plan.image_size,
            "threads_per_pipeline": plan.threads_per_pipeline, "results": rows}


# -- driver --------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[Plan, Callable[[str], None]], Any]] = {
    "model": model_section, "kernels": kernels_section, "decode": decode_section,
}


def machine(plan: Plan) -> dict[str, Any]:
    from inforates.provenance import cpu_name, git_sha, versions

    info: dict[str, Any] = {"versions": versions(), "git_sha": git_sha(), "cpu": cpu_name(),
                            "python": platform.python_version(), "device": plan.device}
    if plan.device == "cuda":
        info.update(gpu=torch.cuda.get_device_name(), capability=list(torch.cuda.get_device_capability()),
                    cuda=torch.version.cuda, gpu_count=torch.cuda.device_count())
    return info


def run(plan: Plan, sections: Sequence[str], log: Callable[[str], None]) -> dict[str, Any]:
    report: dict[str, Any] = {"plan": asdict(plan), "machine": machine(plan), "sections": {}}
    for name in sections:
        t0 = time.perf_counter()
        try:
            result = SECTIONS[name](plan, log)
        except Exception as exc:  # one failing section must not lose the others' numbers
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}"}
        report["sections"][name] = {"seconds": time.perf_counter() - t0, "result": result}
        log(f"{name}: done in {time.perf_counter() - t0:.1f} s")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="JSON file to write")
    parser.add_argument("--quick", action="store_true", help="fewer presets, T, pipelines and settings")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma list of: " + ", ".join(SECTIONS))
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU at tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")

    if torch.cuda.is_available():
        plan = quick_plan() if args.quick else full_plan()
    elif args.allow_cpu:
        plan = cpu_plan()
    else:
        print("gpu_check: no CUDA device; nothing timed, nothing written", file=sys.stderr)
        return 0

    def log(line: str) -> None:
        print(f"gpu_check: {line}", file=sys.stderr, flush=True)

    report = run(plan, sections, log)
    from inforates._io import atomic_write_text

    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    failed = [n for n, s in report["sections"].items() if isinstance(s["result"], dict) and "error" in s["result"]]
    log(f"wrote {args.output}" + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
