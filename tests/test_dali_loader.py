"""The DALI loader delivers exactly the frames the sampler chose, once per clip per epoch.

Truth comes from the clips themselves: every frame stamps its own index (see
``inforates.data.stamp``), and the stamps survive decoding, resizing and normalisation.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from inforates.data.manifest import ClipRecord
from inforates.data.stamp import read_stamp
from inforates.loaders import LOADERS, Batch, DaliLoader, LoaderError, LoaderOptions, resolve_device
from inforates.loaders.dali import shard_bounds
from inforates.sampling import Sampling

N = 50  # frames per fixture clip

SETTINGS = [(100, 1), (50, 2), (25, 4), (10, 1), (100, 16)]
SAMPLINGS = [
    *(Sampling(coverage=c, stride=s, frames_per_clip=8, policy="fixed") for c, s in SETTINGS),
    *(Sampling(coverage=c, stride=s, policy="all") for c, s in SETTINGS),
    Sampling(coverage=50, stride=2, policy="fixed", offset="center"),
    Sampling(coverage=25, stride=3, policy="all", offset="center"),
]
CODECS_CPU = ["mjpeg", "vp9", "vp8"]


def _id(s: Sampling) -> str:
    return f"c{s.coverage:g}-s{s.stride}-{s.policy}-{s.offset}"


def _opts(**kw) -> LoaderOptions:
    return LoaderOptions(**{"batch_size": 3, "image_size": 64, "num_threads": 2, **kw})


def _epoch(loader: DaliLoader) -> list[Batch]:
    return list(loader)


def _stamps(batches: list[Batch]) -> dict[int, list[int]]:
    """row -> stamps of its frames (moved to the CPU)."""
    out: dict[int, list[int]] = {}
    for b in batches:
        video = b.video.cpu().numpy()
        for row, clip in zip(b.rows, video):
            out[row] = [read_stamp(frame) for frame in clip]
    return out


def _rows(batches: list[Batch]) -> list[int]:
    return [r for b in batches for r in b.rows]


# -- frames -------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS_CPU)
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=_id)
def test_delivers_selected_frames(stamped_clips, codec, sampling):
    records = stamped_clips.records(codec, 3)
    loader = DaliLoader(records, sampling, _opts(batch_size=2))
    expected = list(sampling.select(N).indices)
    stamps = _stamps(_epoch(loader))
    assert sorted(stamps) == [0, 1, 2]
    for row, got in stamps.items():
        assert got == expected, f"row {row}"
    assert loader.frames_per_clip == len(expected)
    loader.close()


@pytest.mark.parametrize("codec", CODECS_CPU)
def test_random_offset_is_a_valid_shift_of_the_selection(stamped_clips, codec):
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8, offset="random")
    base = dataclasses.replace(sampling, offset="start").select(N)
    slack = N - base.keep
    records = stamped_clips.records(codec)
    loader = DaliLoader(records, sampling, _opts(seed=7))
    offsets = []
    for _ in range(2):
        for row, got in _stamps(_epoch(loader)).items():
            o = got[0] - base.indices[0]
            assert 0 <= o <= slack, f"row {row}: offset {o}"
            assert got == [i + o for i in base.indices], f"row {row}"
            offsets.append(o)
    assert len(set(offsets)) > 1, offsets


def test_random_offsets_follow_the_seed(stamped_clips):
    sampling = Sampling(coverage=20, stride=1, frames_per_clip=4, offset="random")
    records = stamped_clips.records("mjpeg")

    def offsets(seed):
        batches = _epoch(DaliLoader(records, sampling, _opts(seed=seed)))
        return {row: s[0] for row, s in _stamps(batches).items()}

    assert offsets(3) == offsets(3)
    assert offsets(3) != offsets(4)


def test_stamps_survive_downscaling(stamped_clips):
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8)
    loader = DaliLoader(stamped_clips.records("mjpeg"), sampling, _opts(image_size=32))
    batches = _epoch(loader)
    assert batches[0].video.shape[-2:] == (32, 32)
    expected = list(sampling.select(N).indices)
    assert all(got == expected for got in _stamps(batches).values())


# -- batches ------------------------------------------------------------------------------


def test_batch_shapes_dtypes_labels_and_partial_last_batch(stamped_clips):
    records = stamped_clips.records("mjpeg")  # 7 clips
    loader = DaliLoader(records, Sampling(coverage=100, stride=1, frames_per_clip=8), _opts(batch_size=3))
    assert loader.num_samples == 7
    batches = _epoch(loader)
    assert [len(b.rows) for b in batches] == [3, 3, 1]
    for b in batches:
        assert b.video.shape == (len(b.rows), 8, 3, 64, 64)
        assert b.video.dtype == torch.float32
        assert b.labels.dtype == torch.int64
        assert b.labels.tolist() == [records[r].label_id for r in b.rows]
    assert sorted(_rows(batches)) == list(range(7))


def test_normalisation_matches_mean_and_std(stamped_clips):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    record = ClipRecord(stamped_clips.constant, "flat", 0, N)
    loader = DaliLoader([record], Sampling(frames_per_clip=4), _opts(mean=mean, std=std))
    (batch,) = _epoch(loader)
    picture = batch.video[0, :, :, 32:, :]  # (T, C, H, W) below the stamp band
    expected = (torch.tensor(stamped_clips.constant_rgb) / 255 - torch.tensor(mean)) / torch.tensor(std)
    got = picture.mean(dim=(0, 2, 3))
    tolerance = 3 / 255 / torch.tensor(std)  # MJPEG and YUV 4:2:0 are lossy by ~2/255
    assert torch.all((got - expected).abs() <= tolerance), (got, expected)
    assert picture.std(dim=(0, 2, 3)).max() < 0.05  # flat, not a smear of the stamp


# -- sharding -----------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("num_shards", [2, 3])
def test_shards_deliver_every_clip_exactly_once(stamped_clips, num_shards, shuffle):
    records = stamped_clips.records("mjpeg")  # 7 clips, batch 3: shards of unequal length
    sampling = Sampling(coverage=25, stride=4, frames_per_clip=2)
    loaders = [
        DaliLoader(records, sampling, _opts(batch_size=3, shard_id=i, num_shards=num_shards, shuffle=shuffle))
        for i in range(num_shards)
    ]
    assert sum(ld.num_samples for ld in loaders) == 7
    for epoch in range(2):
        delivered = []
        for i, loader in enumerate(loaders):
            rows = _rows(_epoch(loader))
            assert sorted(rows) == list(loader.rows), (epoch, i)
            assert len(rows) == loader.num_samples
            if not shuffle:  # contiguous shards; with shuffle DALI permutes the list first
                assert loader.rows == tuple(range(*shard_bounds(7, i, num_shards)))
            delivered += rows
        assert Counter(delivered) == Counter(range(7)), epoch


def test_shuffle_reorders_each_epoch(stamped_clips):
    records = stamped_clips.records("mjpeg")
    loader = DaliLoader(records, Sampling(coverage=10, frames_per_clip=1), _opts(batch_size=7, shuffle=True))
    orders = [tuple(_rows(_epoch(loader))) for _ in range(3)]
    assert all(sorted(o) == list(range(7)) for o in orders)
    assert len(set(orders)) > 1, orders


def test_abandoned_epoch_is_followed_by_a_full_one(stamped_clips):
    records = stamped_clips.records("mjpeg")
    loader = DaliLoader(records, Sampling(coverage=10, frames_per_clip=1), _opts(batch_size=2))
    first = next(iter(loader))
    assert len(first.rows) == 2
    assert sorted(_rows(_epoch(loader))) == list(range(7))
    assert sorted(_rows(_epoch(loader))) == list(range(7))
    loader.close()
    loader.close()


# -- bad clips ----------------------------------------------------------------------------


def _bad_clips(stamped_clips, tmp_path: Path, make_stamped_clip) -> dict[str, Path]:
    good = stamped_clips.paths["mjpeg"][0]
    data = good.read_bytes()
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.3)])
    short = make_stamped_clip("short_30_frames", 30)  # the manifest will claim 50
    return {
        "empty": empty,
        "garbage": garbage,
        "truncated": truncated,
        "missing": tmp_path / "missing.avi",
        "short": short,
    }


def test_unreadable_clips_are_skipped_with_reasons(stamped_clips, tmp_path, make_stamped_clip, caplog):
    good = stamped_clips.records("mjpeg", 4)
    bad = _bad_clips(stamped_clips, tmp_path, make_stamped_clip)
    records = good[:2] + [ClipRecord(p, "class0", 0, N) for p in bad.values()] + good[2:]
    with caplog.at_level("WARNING", logger="inforates.loaders.dali"):
        loader = DaliLoader(records, Sampling(coverage=100, stride=1, frames_per_clip=8), _opts())
    reasons = {Path(s.path).name: s.reason for s in loader.skipped}
    assert set(reasons) == {p.name for p in bad.values()}
    assert reasons["empty.avi"] == "file is empty (0 bytes)"
    assert reasons["missing.avi"] == "file not found"
    assert reasons["garbage.avi"].startswith("not a readable video container")
    assert re.fullmatch(r"has \d+ readable frames, needs 50", reasons["truncated.avi"])
    assert reasons["short_30_frames.avi"] == "has 30 readable frames, needs 50"
    assert [s.row for s in loader.skipped] == [2, 3, 4, 5, 6]
    assert len([r for r in caplog.records if "skipping clip" in r.getMessage()]) == 5
    good_rows = [0, 1, 7, 8]
    assert loader.num_samples == 4 and list(loader.rows) == good_rows
    stamps = _stamps(_epoch(loader))
    assert sorted(stamps) == good_rows
    assert all(s == list(Sampling(frames_per_clip=8).select(N).indices) for s in stamps.values())


def test_all_clips_skipped_is_an_error(stamped_clips, tmp_path, make_stamped_clip):
    bad = _bad_clips(stamped_clips, tmp_path, make_stamped_clip)
    records = [ClipRecord(p, "class0", 0, N) for p in bad.values()]
    with pytest.raises(LoaderError, match=r"all 5 clips were skipped"):
        DaliLoader(records, Sampling(), _opts())


def _corrupt_payload(src: Path, dst: Path, packet: int) -> Path:
    """Copy MJPEG-in-AVI ``src`` with one frame's JPEG replaced by noise: demuxes, fails to decode.

    An AVI packet's ``pos`` is its chunk header (4-byte id, 4-byte size); the JPEG follows.
    """
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet]
    data = bytearray(src.read_bytes())
    noise = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    data[pos + 8 : pos + 8 + size] = noise
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(("num_shards", "shuffle"), [(1, False), (2, False), (2, True), (3, True)])
def test_clip_failing_inside_dali_is_skipped_and_the_epoch_completes(
    stamped_clips, tmp_path, num_shards, shuffle
):
    records = stamped_clips.records("mjpeg")
    corrupt = _corrupt_payload(records[4].video_path, tmp_path / "corrupt.avi", packet=0)
    records[4] = dataclasses.replace(records[4], video_path=corrupt)
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8)
    expected = list(sampling.select(N).indices)
    loaders = [
        DaliLoader(records, sampling, _opts(batch_size=2, shard_id=i, num_shards=num_shards, shuffle=shuffle))
        for i in range(num_shards)
    ]
    assert sum(ld.num_samples for ld in loaders) == 7  # the probe cannot see the damage
    for epoch in range(2):  # epoch 0 finds the culprit; epoch 1 runs without it
        delivered = []
        for loader in loaders:
            batches = _epoch(loader)
            assert all(len(b.rows) <= 2 for b in batches)
            stamps = _stamps(batches)
            assert all(s == expected for s in stamps.values())
            delivered += _rows(batches)
        assert Counter(delivered) == Counter([0, 1, 2, 3, 5, 6]), epoch
    skipped = [s for ld in loaders for s in ld.skipped]
    assert [(s.row, s.path) for s in skipped] == [(4, corrupt)]
    assert skipped[0].reason.startswith("DALI decode failed: ")
    assert "\n" not in skipped[0].reason
    assert sum(ld.num_samples for ld in loaders) == 6


def test_codec_the_cpu_decoder_cannot_read_is_an_error(stamped_clips):
    records = stamped_clips.records("mjpeg", 2) + [
        ClipRecord(p, "class0", 0, N) for p in stamped_clips.paths["h264"]
    ]
    h264 = stamped_clips.paths["h264"][0]
    expected = f"{h264}: codec h264 cannot be decoded by DALI's CPU video decoder"
    with pytest.raises(LoaderError, match=re.escape(expected)) as info:
        DaliLoader(records, Sampling(), _opts(device="cpu"))
    message = str(info.value)
    assert "\n" not in message
    assert "inforates-bench data build-clips --codec mjpeg" in message and "device gpu" in message


def test_mixed_clip_lengths_are_an_error(stamped_clips):
    records = stamped_clips.records("mjpeg", 2)
    records[1] = dataclasses.replace(records[1], num_frames=40)
    with pytest.raises(ValueError, match="fixed-length clips") as info:
        DaliLoader(records, Sampling(), _opts())
    assert str(records[0].video_path) in str(info.value) and str(records[1].video_path) in str(info.value)


# -- options and devices ------------------------------------------------------------------


def test_registered_as_dali():
    assert LOADERS.get("dali") is DaliLoader


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("gpu") == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "gpu"
    with pytest.raises(ValueError, match=re.escape("device ('cuda') must be one of: auto, cpu, gpu")):
        resolve_device("cuda")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(batch_size=0), "batch_size (0) must be an integer >= 1"),
        (dict(num_shards=2, shard_id=2), "shard_id (2) must be in [0, num_shards=2)"),
        (dict(device="tpu"), "device ('tpu') must be one of: auto, cpu, gpu"),
    ],
)
def test_bad_options_are_named(stamped_clips, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DaliLoader(stamped_clips.records("mjpeg", 1), Sampling(), _opts(**options))


def test_gpu_without_cuda_is_an_error(stamped_clips, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LoaderError, match="device 'gpu' needs CUDA"):
        DaliLoader(stamped_clips.records("mjpeg", 1), Sampling(), _opts(device="gpu"))


@pytest.mark.needs_cuda
@pytest.mark.parametrize("codec", ["mjpeg", "vp9", "h264"])
def test_gpu_delivers_selected_frames(stamped_clips, codec):
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8)
    records = [ClipRecord(p, "class0", 0, N) for p in stamped_clips.paths[codec]]
    loader = DaliLoader(records, sampling, _opts(device="gpu", batch_size=2))
    batches = _epoch(loader)
    assert all(b.video.is_cuda and b.video.dtype == torch.float32 for b in batches)
    expected = list(sampling.select(N).indices)
    stamps = _stamps(batches)
    assert sorted(stamps) == list(range(len(records)))
    assert all(s == expected for s in stamps.values())


def test_epoch_abandoned_during_recovery_records_the_culprit_once(stamped_clips, tmp_path):
    records = stamped_clips.records("mjpeg")
    corrupt = _corrupt_payload(records[1].video_path, tmp_path / "corrupt.avi", packet=0)
    records[1] = dataclasses.replace(records[1], video_path=corrupt)
    loader = DaliLoader(records, Sampling(coverage=10, frames_per_clip=2), _opts(batch_size=2))
    epoch = iter(loader)
    assert next(epoch).rows == (0, 2)  # the first batch already went through recovery
    del epoch
    for _ in range(2):
        assert sorted(_rows(_epoch(loader))) == [0, 2, 3, 4, 5, 6]
    assert [(s.row, s.path) for s in loader.skipped] == [(1, corrupt)]
    assert loader.num_samples == 6


# ---------------------------------------------------------------- policy antialias


def _plain_average_oracle(frames_u8, gather, stride, mean, std):
    """Independent oracle: numpy mean over the box i-(s-1)//2 .. i+s//2 (edges clamped)."""
    f = frames_u8.astype(np.float64) / 255.0  # (F, H, W, C)
    out = []
    for i in gather:
        taps = [min(max(j, 0), len(f) - 1) for j in range(i - (stride - 1) // 2, i + stride // 2 + 1)]
        avg = f[taps].mean(axis=0)
        out.append(((avg - np.array(mean)) / np.array(std)).transpose(2, 0, 1))
    return np.stack(out)


@pytest.mark.parametrize("coverage,stride", [(100, 1), (50, 2), (100, 16)])
def test_antialias_policy_filters_the_covered_window(stamped_clips, coverage, stride):
    from inforates.data.video_io import read_video

    records = stamped_clips.records("mjpeg", 3)
    sampling = Sampling(coverage=coverage, stride=stride, frames_per_clip=8, policy="antialias")
    sel = sampling.select(records[0].num_frames)
    mean, std = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
    loader = DaliLoader(records, sampling, LoaderOptions(batch_size=3, image_size=64, mean=mean, std=std))
    (batch,) = list(loader)
    assert batch.video.shape == (3, 8, 3, 64, 64) and batch.video.dtype == torch.float32
    for i, row in enumerate(batch.rows):
        window = read_video(records[row].video_path)[list(sel.window)]
        want = _plain_average_oracle(window, [j - sel.offset for j in sel.indices], sel.filter_stride, mean, std)
        got = batch.video[i].numpy()
        # DALI's and PyAV's JPEG decoders differ by a few levels: compare in pixel units.
        assert np.abs((got - want) * 0.225 * 255).mean() < 2.0
    loader.close()
