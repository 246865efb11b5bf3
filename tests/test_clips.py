"""Cutting a UCF-101-like tree into fixed-length clips: counts, frames, codecs, resume, failures.

Truth comes from the sources themselves: every source frame stamps its own index (mod 256,
see ``inforates.data.stamp``), so clip ``k`` of a source must hold stamps
``50k .. 50k + 49`` -- whatever codec, size or number of workers built it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from inforates.data.clips import ClipBuildSummary, build_clips
from inforates.data.stamp import MODULUS, draw_stamp, read_stamp, read_stamps
from inforates.data.video_io import CODECS, codec_of_file, read_video, write_video

FRAMES = 50
W, H = 64, 48

# rel path -> (frames, source codec, fps); class names from UCF-101.
SOURCES = {
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi": (107, "mjpeg", 25),  # 2 clips, 7 dropped
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi": (23, "mjpeg", 25),  # too short: 0 clips
    "Archery/v_Archery_g01_c01.avi": (50, "mjpeg", 30),  # exactly 1 clip
    "Archery/v_Archery_g02_c01.webm": (100, "vp9", 30),  # 2 clips, vp9 source
    "Basketball/v_Basketball_g01_c01.mp4": (107, "h264", 24),  # 2 clips, h264 source
    "Basketball/v_Basketball_g01_c02.avi": (300, "mjpeg", 25),  # 6 clips, stamps wrap at 256
}


def stamped_source(n: int, *, width: int = W, height: int = H):
    """``n`` frames: a moving gradient below the stamp band of each frame's index."""
    x = np.arange(width, dtype=np.int32)[None, :, None]
    y = np.arange(height, dtype=np.int32)[:, None, None]
    for i in range(n):
        frame = ((x * 3 + y * 2 + i * 5) % 160 + 48).astype(np.uint8).repeat(3, axis=2)
        yield draw_stamp(frame, i)


def write_source(path: Path, n: int, codec: str, fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, stamped_source(n), fps=fps, codec=codec)
    return path


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ucf") / "videos"
    for rel, (n, codec, fps) in SOURCES.items():
        write_source(root / rel, n, codec, fps)
    return root


def expected_clips(codec: str = "mjpeg") -> dict[str, list[str]]:
    """Clip paths (relative to out_dir) each source must give."""
    ext = CODECS.get(codec).extension
    out = {}
    for rel, (n, _, _) in SOURCES.items():
        stem = rel.rsplit(".", 1)[0]
        out[rel] = [f"{stem}_seg{k:02d}{ext}" for k in range(n // FRAMES)]
    return out


def clip_files(out: Path) -> list[str]:
    """Every file under the class folders (clips and anything else left there)."""
    return sorted(
        str(p.relative_to(out)) for d in out.iterdir() if d.is_dir() and d.name != ".done" for p in d.iterdir()
    )


def digests(out: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((out / rel).read_bytes()).hexdigest() for rel in clip_files(out)}


def partial_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".partial." in p.name or p.name.endswith(".tmp")]


def seg_stamps(seg: int, indices=range(FRAMES)) -> list[int]:
    return [(seg * FRAMES + i) % MODULUS for i in indices]


# --- what a build produces -----------------------------------------------------------------


def test_clip_counts_frames_and_stamps(ucf_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    seen = []
    summary = build_clips(ucf_tree, out, frames=FRAMES, progress=lambda *a: seen.append(a))

    expected = expected_clips()
    all_clips = sorted(c for clips in expected.values() for c in clips)
    assert clip_files(out) == all_clips
    for clips in expected.values():
        for seg, rel in enumerate(clips):
            video = read_video(out / rel)
            assert video.shape == (FRAMES, H, W, 3), rel
            assert read_stamps(video) == seg_stamps(seg), rel

    total = sum(n for n, _, _ in SOURCES.values())
    assert summary.ok and summary.failures == [] and summary.failed == 0
    assert (summary.videos, summary.processed, summary.reused) == (6, 6, 0)
    assert summary.clips == summary.new_clips == len(all_clips) == 13
    assert summary.frames == 13 * FRAMES
    assert summary.dropped_tail_frames == total - 13 * FRAMES == 7 + 23 + 0 + 0 + 7 + 0
    assert summary.too_short == [("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c02.avi", 23)]
    assert summary.bytes == sum((out / c).stat().st_size for c in all_clips)
    # one progress call per source, in the calling process, ending with the totals
    assert [a[:2] for a in seen] == [(i, 6) for i in range(1, 7)]
    assert seen[-1][2] == 13

    written = json.loads((out / "build_summary.json").read_text())
    assert written["clips"] == 13 and written["ok"] is True and written["dropped_tail_frames"] == 37
    assert (out / "failures.csv").read_text() == "source,reason\n"
    record = json.loads((out / ".done/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.json").read_text())
    assert record["segments"] == 2 and record["dropped_tail_frames"] == 7
    assert partial_files(out) == []


@pytest.mark.parametrize("codec", ["mjpeg", "vp9", "vp8"])
def test_output_codec(ucf_tree: Path, tmp_path: Path, codec: str) -> None:
    out = tmp_path / "clips"
    summary = build_clips(ucf_tree, out, frames=FRAMES, codec=codec, gop=10)
    assert summary.ok and summary.clips == 13
    expected = expected_clips(codec)
    assert clip_files(out) == sorted(c for clips in expected.values() for c in clips)
    for rel in expected["Basketball/v_Basketball_g01_c02.avi"]:
        assert codec_of_file(out / rel) == codec
    for seg, rel in enumerate(expected["Archery/v_Archery_g02_c01.webm"]):
        assert read_stamps(read_video(out / rel)) == seg_stamps(seg)


def test_size_rescales_shorter_side(ucf_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    build_clips(ucf_tree, out, frames=FRAMES, size=32)
    for seg, rel in enumerate(expected_clips()["Basketball/v_Basketball_g01_c01.mp4"]):
        video = read_video(out / rel)
        # 64x48 -> shorter side 32, longer 64 * 32 / 48 = 42.7 -> nearest even, 42
        assert video.shape == (FRAMES, 32, 42, 3)
        assert read_stamps(video) == seg_stamps(seg)


def test_portrait_and_odd_sources(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    # A portrait source scaled by its shorter side (the width); an odd-sized one cropped even.
    (root / "Biking").mkdir(parents=True)
    write_video(root / "Biking/v_Biking_g01_c01.webm", stamped_source(50, width=48, height=64), codec="vp9")
    write_video(root / "Biking/v_Biking_g01_c02.webm", stamped_source(50, width=65, height=49), codec="vp9")
    out = tmp_path / "clips"
    build_clips(root, out, frames=FRAMES, size=32, codec="vp9")
    portrait = read_video(out / "Biking/v_Biking_g01_c01_seg00.webm")
    assert portrait.shape == (FRAMES, 42, 32, 3)
    assert read_stamps(portrait) == seg_stamps(0)
    build_clips(root, tmp_path / "full", frames=FRAMES, codec="vp9")
    assert read_video(tmp_path / "full/Biking/v_Biking_g01_c02_seg00.webm").shape == (FRAMES, 48, 64, 3)


def test_frame_rate_is_kept(ucf_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    build_clips(ucf_tree, out, frames=FRAMES)
    for rel, clips in expected_clips().items():
        fps = SOURCES[rel][2]
        for clip in clips:
            with av.open(str(out / clip)) as c:
                assert c.streams.video[0].average_rate == Fraction(fps), clip


def test_two_workers_give_the_same_clips(ucf_tree: Path, tmp_path: Path) -> None:
    one = build_clips(ucf_tree, tmp_path / "one", frames=FRAMES, workers=1)
    seen = []
    two = build_clips(ucf_tree, tmp_path / "two", frames=FRAMES, workers=2, progress=lambda *a: seen.append(a))
    assert digests(tmp_path / "one") == digests(tmp_path / "two")  # MJPEG encoding is deterministic
    for field in ("videos", "processed", "reused", "failed", "clips", "frames", "dropped_tail_frames", "bytes"):
        assert getattr(one, field) == getattr(two, field), field
    assert one.too_short == two.too_short
    assert [a[:2] for a in seen] == [(i, 6) for i in range(1, 7)] and seen[-1][2] == 13


# --- resuming ---------------------------------------------------------------------------------


def test_rebuild_reuses_everything(ucf_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    first = build_clips(ucf_tree, out, frames=FRAMES)
    before = {p: (out / p).stat().st_mtime_ns for p in clip_files(out)}
    again = build_clips(ucf_tree, out, frames=FRAMES, workers=2)
    assert (again.processed, again.reused, again.new_clips) == (0, 6, 0)
    assert (again.clips, again.frames, again.bytes, again.too_short) == (
        first.clips, first.frames, first.bytes, first.too_short
    )
    assert {p: (out / p).stat().st_mtime_ns for p in clip_files(out)} == before


@pytest.mark.parametrize("delete_record", [True, False], ids=["record-and-clip", "clip-only"])
def test_resume_redoes_only_the_incomplete_source(ucf_tree: Path, tmp_path: Path, delete_record: bool) -> None:
    out = tmp_path / "clips"
    build_clips(ucf_tree, out, frames=FRAMES)
    reference = digests(out)
    before = {p: (out / p).stat().st_mtime_ns for p in clip_files(out)}

    victim = "Basketball/v_Basketball_g01_c02"
    if delete_record:
        (out / f".done/{victim}.json").unlink()
    (out / f"{victim}_seg03.avi").unlink()
    stale = [
        out / "Archery/.v_Archery_g01_c01_seg00.partial.avi",  # a killed write_video
        out / ".done/Archery/.v_Archery_g01_c01.json.abc123.tmp",  # a killed record write
        out / ".build_summary.json.xyz.tmp",
    ]
    for p in stale:
        p.write_bytes(b"half a file")

    summary = build_clips(ucf_tree, out, frames=FRAMES)
    assert (summary.processed, summary.reused, summary.new_clips) == (1, 5, 6)
    assert summary.stale_removed == 3 and partial_files(out) == []
    assert digests(out) == reference  # same clip set, no duplicates, same bytes
    after = {p: (out / p).stat().st_mtime_ns for p in clip_files(out)}
    redone = sorted(p for p in after if after[p] != before.get(p))
    assert redone == [f"{victim}_seg{k:02d}.avi" for k in range(6)]


def test_changed_source_is_redone(ucf_tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    shutil.copytree(ucf_tree, root)
    out = tmp_path / "clips"
    build_clips(root, out, frames=FRAMES)
    # the source is replaced by a shorter one: its stale 6th clip must not survive
    write_source(root / "Basketball/v_Basketball_g01_c02.avi", 120, "mjpeg", 25)
    summary = build_clips(root, out, frames=FRAMES)
    assert (summary.processed, summary.reused) == (1, 5)
    assert [p for p in clip_files(out) if "Basketball_g01_c02" in p] == [
        "Basketball/v_Basketball_g01_c02_seg00.avi", "Basketball/v_Basketball_g01_c02_seg01.avi"
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_build_resumes_to_the_same_clips(ucf_tree: Path, tmp_path: Path, workers: int) -> None:
    build_clips(ucf_tree, tmp_path / "reference", frames=FRAMES)
    reference = digests(tmp_path / "reference")

    def interrupt_after_one(done: int, total: int, clips: int) -> None:
        if done == 1:
            raise KeyboardInterrupt

    out = tmp_path / "clips"
    with pytest.raises(KeyboardInterrupt):
        build_clips(ucf_tree, out, frames=FRAMES, workers=workers, progress=interrupt_after_one)
    records = list((out / ".done").glob("*/*.json"))
    assert 1 <= len(records) < 6  # in-flight sources finish, queued ones do not start
    summary = build_clips(ucf_tree, out, frames=FRAMES, workers=workers)
    assert summary.reused == len(records) and summary.processed == 6 - len(records)
    assert digests(out) == reference
    assert partial_files(out) == []


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find worker processes")
def test_killed_build_resumes_and_leaves_no_orphans(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    for c in range(6):  # enough work that the kill lands mid-build
        write_source(root / f"Class{c}/v_Class{c}_g01_c01.avi", 400, "mjpeg", 25)
    build_clips(root, tmp_path / "reference", frames=FRAMES)
    reference = digests(tmp_path / "reference")

    out = tmp_path / "clips"
    code = textwrap.dedent(
        f"""
        from inforates.data.clips import build_clips
        build_clips({str(root)!r}, {str(out)!r}, frames={FRAMES}, workers=2)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*/*_seg*.avi")):
            assert proc.poll() is None, "the build ended before any clip appeared"
            assert time.monotonic() < deadline, "no clip appeared within 60 s"
            time.sleep(0.005)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert workers, "the build had no worker processes"
    assert len(list((out / ".done").glob("*/*.json"))) < 6, "the kill came too late to test resuming"

    deadline = time.monotonic() + 10  # orphaned workers notice their parent is gone
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_alive, workers)), "pool workers outlived the killed build"

    summary = build_clips(root, out, frames=FRAMES, workers=2)
    assert summary.ok and summary.clips == 6 * 8
    assert digests(out) == reference
    assert partial_files(out) == []


# --- failures ------------------------------------------------------------------------------------


def write_audio_only(path: Path) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)


def test_corrupt_sources_are_reported_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    good = write_source(root / "Archery/v_Archery_g01_c01.avi", 107, "mjpeg", 25)
    long = write_source(tmp_path / "long.avi", 300, "mjpeg", 25)
    data, long_data = good.read_bytes(), long.read_bytes()
    bad = root / "Bowling"
    bad.mkdir()
    (bad / "v_Bowling_g01_c01.avi").write_bytes(b"")
    (bad / "v_Bowling_g01_c02.avi").write_bytes(np.random.default_rng(0).bytes(20_000))
    (bad / "v_Bowling_g01_c03.avi").write_bytes(data[: int(len(data) * 0.3)])  # < 1 clip left
    (bad / "v_Bowling_g01_c04.avi").write_bytes(long_data[: int(len(long_data) * 0.6)])  # 3 clips left
    write_audio_only(bad / "v_Bowling_g01_c05.mkv")

    out = tmp_path / "clips"
    summary = build_clips(root, out, frames=FRAMES)

    assert not summary.ok
    assert (summary.videos, summary.processed, summary.failed) == (6, 2, 4)
    reasons = dict(summary.failures)
    assert reasons["Bowling/v_Bowling_g01_c01.avi"] == "empty file (0 bytes)"
    assert "InvalidDataError" in reasons["Bowling/v_Bowling_g01_c02.avi"]
    assert re.fullmatch(r"truncated: decoded \d+ of the 107 frames its container declares",
                        reasons["Bowling/v_Bowling_g01_c03.avi"])
    assert reasons["Bowling/v_Bowling_g01_c05.mkv"] == "no video stream"
    with open(out / "failures.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["source"], r["reason"]) for r in rows] == summary.failures
    assert all("\n" not in r["reason"] for r in rows)
    assert json.loads((out / "build_summary.json").read_text())["ok"] is False

    # a source truncated after 3 full clips keeps them, with the reason on record
    assert [rel for rel, _ in summary.truncated] == ["Bowling/v_Bowling_g01_c04.avi"]
    kept = sorted(p for p in clip_files(out) if "Bowling" in p)
    assert kept == [f"Bowling/v_Bowling_g01_c04_seg{k:02d}.avi" for k in range(3)]
    for seg, rel in enumerate(kept):
        assert read_stamps(read_video(out / rel)) == seg_stamps(seg)
    # the healthy source is unaffected
    assert [p for p in clip_files(out) if "Archery" in p] == [
        "Archery/v_Archery_g01_c01_seg00.avi", "Archery/v_Archery_g01_c01_seg01.avi"
    ]

    # failed sources are retried (and reported again) by the next build
    again = build_clips(root, out, frames=FRAMES)
    assert (again.reused, again.processed, again.failed) == (2, 0, 4)
    assert again.failures == summary.failures


def test_colliding_stems_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    write_source(root / "Archery/v_Archery_g01_c01.avi", 50, "mjpeg", 25)
    write_source(root / "Archery/v_Archery_g01_c01.webm", 50, "vp9", 25)
    summary = build_clips(root, tmp_path / "clips", frames=FRAMES)
    assert summary.clips == 1
    assert summary.failures == [
        ("Archery/v_Archery_g01_c01.webm", "clip names collide with Archery/v_Archery_g01_c01.avi")
    ]


# --- validation ----------------------------------------------------------------------------------


def _bad_calls(root: Path, empty: Path, out: Path):
    return [
        (dict(video_root=root / "missing"), f"video_root ({root / 'missing'}) is not an existing folder"),
        (dict(video_root=empty), f"no videos found under video_root ({empty})"),
        (dict(frames=0), "frames (0) must be an integer >= 1"),
        (dict(frames=2.5), "frames (2.5) must be an integer >= 1"),
        (dict(codec="h265"), "unknown codec 'h265'; choose from: h264, mjpeg, vp8, vp9"),
        (dict(size=8), "size (8) must be an integer >= 16"),
        (dict(size=33), "size (33) must be even"),
        (dict(workers=0), "workers (0) must be an integer >= 1"),
        (dict(gop=0), "gop (0) must be an integer >= 1"),
        (dict(out_dir=root / "clips"), f"out_dir ({root / 'clips'}) must not be inside video_root ({root})"),
    ]


def test_invalid_arguments_name_the_bad_value(ucf_tree: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "Archery").mkdir(parents=True)
    (empty / "Archery/notes.txt").write_text("not a video")
    out = tmp_path / "clips"
    for overrides, message in _bad_calls(ucf_tree, empty, out):
        kwargs = {"video_root": ucf_tree, "out_dir": out, **overrides}
        with pytest.raises(ValueError, match=re.escape(message)):
            build_clips(kwargs.pop("video_root"), kwargs.pop("out_dir"), **kwargs)
    assert not out.exists()  # nothing written for a refused call


def test_out_dir_built_with_other_settings_is_refused(ucf_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "clips"
    build_clips(ucf_tree, out, frames=FRAMES)
    with pytest.raises(ValueError, match=re.escape("holds clips built with frames=50 (now 25)")):
        build_clips(ucf_tree, out, frames=25)


def test_summary_ok_follows_failed() -> None:
    assert ClipBuildSummary(failed=0).ok and not ClipBuildSummary(failed=1).ok


# --- DALI round trip -----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["mjpeg", "vp9", "vp8"])
def test_clips_decode_through_dali_cpu(ucf_tree: Path, tmp_path: Path, codec: str) -> None:
    dali = pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn

    root = tmp_path / "videos"
    rel = "Basketball/v_Basketball_g01_c02.avi"  # 300 frames: 6 clips, stamps wrap past 255
    (root / "Basketball").mkdir(parents=True)
    shutil.copy(ucf_tree / rel, root / rel)
    out = tmp_path / "clips"
    build_clips(root, out, frames=FRAMES, codec=codec, gop=12)
    files = [str(out / c) for c in expected_clips(codec)[rel]]
    picks = [0, 7, 49]

    @dali.pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode(paths):
        encoded, _ = fn.readers.file(files=paths)
        return fn.decoders.video(encoded, device="cpu", frames=picks)

    pipe = decode(paths=files)
    pipe.build()
    for seg in range(len(files)):
        (video,) = pipe.run()
        frames = np.asarray(video.as_tensor())[0]
        assert frames.shape == (len(picks), H, W, 3)
        assert [read_stamp(f) for f in frames] == seg_stamps(seg, picks), files[seg]
