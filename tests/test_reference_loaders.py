"""The reference loaders (seed, decord, pyav) deliver what the DALI loader delivers.

Same frames (read from the stamps each frame carries), same rows, labels and batch shapes,
values close to DALI's (different JPEG decoders and resamplers), same skipping of bad clips
and the same exactly-once sharding.
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
from inforates.loaders import LOADERS, Batch, DaliLoader, LoaderError, LoaderOptions
from inforates.loaders._reference import resize_shorter_crop
from inforates.sampling import Sampling

N = 50
REFERENCE = ["seed", "decord", "pyav", *(["torchcodec"] if "torchcodec" in LOADERS else [])]
SAMPLINGS = [
    Sampling(coverage=100, stride=1, frames_per_clip=8),
    Sampling(coverage=25, stride=4, frames_per_clip=8),  # fewer candidates than T: repeats
    Sampling(coverage=10, stride=1, frames_per_clip=8, offset="center"),
    Sampling(coverage=100, stride=16, policy="all"),
    Sampling(coverage=50, stride=3, policy="all", offset="center"),
]
# Largest and mean |difference| from DALI's output, in 0..255 pixel units, on these noisy
# stamped MJPEG clips. The JPEG decoders' chroma upsampling differs (no resize: max 21,
# mean 0.9). The seed shrinks with OpenCV's INTER_AREA box filter, not DALI's triangle
# (64 -> 32: max 47, mean 4.2), so it gets a looser mean bound when shrinking.
MAX_DIFF, MEAN_DIFF, SEED_SHRINK_MEAN_DIFF = 64, 3.0, 6.0


def _id(s: Sampling) -> str:
    return f"c{s.coverage:g}-s{s.stride}-{s.policy}-{s.offset}"


def _opts(**kw) -> LoaderOptions:
    return LoaderOptions(**{"batch_size": 3, "image_size": 64, "num_threads": 2, **kw})


def _stamps(batches: list[Batch]) -> dict[int, list[int]]:
    return {row: [read_stamp(f) for f in clip] for b in batches for row, clip in zip(b.rows, b.video.numpy())}


def _rows(batches: list[Batch]) -> list[int]:
    return [r for b in batches for r in b.rows]


def _video(batches: list[Batch]) -> torch.Tensor:
    return torch.cat([b.video for b in batches])


@pytest.mark.parametrize("codec", ["mjpeg", "vp9", "h264"])
@pytest.mark.parametrize("sampling", SAMPLINGS, ids=_id)
@pytest.mark.parametrize("name", REFERENCE)
def test_delivers_selected_frames(stamped_clips, name, codec, sampling):
    records = stamped_clips.records(codec, 2)  # one h264 clip in the fixture
    loader = LOADERS.get(name)(records, sampling, _opts(batch_size=2))
    expected = list(sampling.select(N).indices)
    stamps = _stamps(list(loader))
    assert sorted(stamps) == list(range(len(records)))
    assert all(got == expected for got in stamps.values()), stamps
    assert loader.frames_per_clip == len(expected)
    loader.close()


@pytest.mark.parametrize("name", REFERENCE)
def test_random_offset_is_a_valid_shift_that_follows_the_seed(stamped_clips, name):
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8, offset="random")
    base = dataclasses.replace(sampling, offset="start").select(N)
    records = stamped_clips.records("mjpeg")

    def offsets(seed: int) -> list[int]:
        out = []
        for row, got in sorted(_stamps(list(LOADERS.get(name)(records, sampling, _opts(seed=seed)))).items()):
            o = got[0] - base.indices[0]
            assert 0 <= o <= N - base.keep and got == [i + o for i in base.indices], (row, got)
            out.append(o)
        return out

    assert offsets(3) == offsets(3)
    assert len(set(offsets(3) + offsets(4))) > 1


@pytest.mark.parametrize("name", REFERENCE)
def test_batches_rows_labels_like_dali(stamped_clips, name):
    records = stamped_clips.records("mjpeg")  # 7 clips, batch 3
    sampling = Sampling(coverage=100, stride=1, frames_per_clip=8)
    loader = LOADERS.get(name)(records, sampling, _opts())
    dali = list(DaliLoader(records, sampling, _opts()))
    batches = list(loader)
    assert loader.num_samples == 7 and loader.rows == tuple(range(7))
    assert [b.rows for b in batches] == [b.rows for b in dali] == [(0, 1, 2), (3, 4, 5), (6,)]
    for b in batches:
        assert b.video.shape == (len(b.rows), 8, 3, 64, 64) and b.video.dtype == torch.float32
        assert b.labels.dtype == torch.int64 and b.labels.tolist() == [records[r].label_id for r in b.rows]


@pytest.mark.parametrize("image_size", [64, 32, 96])
@pytest.mark.parametrize("name", REFERENCE)
def test_values_close_to_dali(stamped_clips, name, image_size):
    records = stamped_clips.records("mjpeg", 3)
    sampling = Sampling(coverage=50, stride=2, frames_per_clip=8)
    opts = _opts(image_size=image_size, mean=(0.45, 0.4, 0.35), std=(0.225, 0.25, 0.2))
    ours, dali = _video(list(LOADERS.get(name)(records, sampling, opts))), _video(list(DaliLoader(records, sampling, opts)))
    assert ours.shape == dali.shape == (3, 8, 3, image_size, image_size)
    diff = (ours - dali).abs() * torch.tensor(opts.std).view(1, 1, 3, 1, 1) * 255
    mean_bound = SEED_SHRINK_MEAN_DIFF if name == "seed" and image_size < 64 else MEAN_DIFF
    assert diff.max() <= MAX_DIFF and diff.mean() <= mean_bound, (float(diff.max()), float(diff.mean()))


def test_resize_geometry_matches_dali_shorter_side_and_centre_crop():
    frames = np.zeros((1, 64, 96, 3), np.uint8)
    frames[..., :] = (np.arange(96) * 2).astype(np.uint8)[None, None, :, None]
    assert resize_shorter_crop(frames, 64)[0, 0, :, 0].tolist() == list(range(32, 160, 2))  # crop 16..80
    assert resize_shorter_crop(frames[:, :, :95], 64)[0, 0, 0, 0] == 32  # anchor 15.5 rounds up, as DALI's
    assert resize_shorter_crop(frames, 32).shape == (1, 32, 32, 3)
    assert resize_shorter_crop(frames, 100).shape == (1, 100, 100, 3)


@pytest.mark.parametrize(("shape", "size"), [((2, 64, 64, 3), 32), ((2, 64, 96, 3), 48), ((2, 120, 160, 3), 50), ((2, 64, 64, 3), 100)])
def test_resize_matches_dali_resize_on_noise(shape, size):
    from nvidia.dali import fn, pipeline_def, types

    frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [frames], layout="FHWC", batch=True)
        x = fn.resize(x, resize_shorter=size)
        return fn.crop_mirror_normalize(x, crop=(size, size), output_layout="FHWC", dtype=types.UINT8)

    p = pipe()
    p.build()
    dali = np.array(p.run()[0][0]).astype(float)
    diff = np.abs(resize_shorter_crop(frames, size).astype(float) - dali)
    assert diff.mean() < 3 and np.percentile(diff, 99) <= 16, (diff.mean(), np.percentile(diff, 99))


@pytest.mark.parametrize("name", REFERENCE)
def test_normalisation_matches_mean_and_std(stamped_clips, name):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = LOADERS.get(name)([ClipRecord(stamped_clips.constant, "flat", 0, N)], Sampling(frames_per_clip=4), _opts(mean=mean, std=std))
    (batch,) = list(loader)
    picture = batch.video[0, :, :, 32:, :]
    expected = (torch.tensor(stamped_clips.constant_rgb) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.all((picture.mean(dim=(0, 2, 3)) - expected).abs() <= 3 / 255 / torch.tensor(std))


# -- sharding -----------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("num_shards", [2, 3])
@pytest.mark.parametrize("name", ["pyav", "decord"])
def test_shards_deliver_every_clip_exactly_once(stamped_clips, name, num_shards, shuffle):
    records = stamped_clips.records("mjpeg")
    sampling = Sampling(coverage=25, stride=4, frames_per_clip=2)
    loaders = [
        LOADERS.get(name)(records, sampling, _opts(shard_id=i, num_shards=num_shards, shuffle=shuffle))
        for i in range(num_shards)
    ]
    assert sum(ld.num_samples for ld in loaders) == 7
    if not shuffle:  # the same contiguous shards as DALI
        assert [ld.rows for ld in loaders] == [DaliLoader(records, sampling, _opts(shard_id=i, num_shards=num_shards)).rows for i in range(num_shards)]
    orders = []
    for epoch in range(2):
        delivered = []
        for loader in loaders:
            rows = _rows(list(loader))
            assert sorted(rows) == list(loader.rows)
            delivered += rows
            orders.append(tuple(rows))
        assert Counter(delivered) == Counter(range(7)), epoch
    if shuffle:
        assert orders[:num_shards] != orders[num_shards:]  # reshuffled within shards


def test_abandoned_epoch_is_followed_by_a_full_one(stamped_clips):
    loader = LOADERS.get("pyav")(stamped_clips.records("mjpeg"), Sampling(coverage=10, frames_per_clip=1), _opts(batch_size=2))
    assert len(next(iter(loader)).rows) == 2
    assert sorted(_rows(list(loader))) == list(range(7))
    loader.close()
    loader.close()


# -- bad clips ----------------------------------------------------------------------------


def _bad_clips(good: Path, tmp_path: Path, make_stamped_clip) -> list[Path]:
    data = good.read_bytes()
    (tmp_path / "empty.avi").write_bytes(b"")
    (tmp_path / "garbage.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (tmp_path / "truncated.avi").write_bytes(data[: int(len(data) * 0.3)])
    short = make_stamped_clip("short_30_frames", 30)
    return [tmp_path / n for n in ("empty.avi", "garbage.avi", "truncated.avi", "missing.avi")] + [short]


@pytest.mark.parametrize("name", REFERENCE)
def test_unreadable_clips_are_skipped_like_dali(stamped_clips, tmp_path, make_stamped_clip, name):
    good = stamped_clips.records("mjpeg", 4)
    bad = _bad_clips(good[0].video_path, tmp_path, make_stamped_clip)
    records = good[:2] + [ClipRecord(p, "class0", 0, N) for p in bad] + good[2:]
    sampling = Sampling(frames_per_clip=8)
    loader = LOADERS.get(name)(records, sampling, _opts())
    dali = DaliLoader(records, sampling, _opts())
    assert [(s.row, s.path, s.reason) for s in loader.skipped] == [(s.row, s.path, s.reason) for s in dali.skipped]
    assert [s.row for s in loader.skipped] == [2, 3, 4, 5, 6]
    stamps = _stamps(list(loader))
    assert sorted(stamps) == [0, 1, 7, 8] and all(s == list(sampling.select(N).indices) for s in stamps.values())


def test_all_clips_skipped_is_an_error(stamped_clips, tmp_path, make_stamped_clip):
    bad = _bad_clips(stamped_clips.paths["mjpeg"][0], tmp_path, make_stamped_clip)
    with pytest.raises(LoaderError, match=re.escape("all 5 clips were skipped")):
        LOADERS.get("pyav")([ClipRecord(p, "class0", 0, N) for p in bad], Sampling(), _opts())


def _corrupt_payload(src: Path, dst: Path, packet: int) -> Path:
    """MJPEG-in-AVI ``src`` with one frame's JPEG replaced by noise: demuxes, fails to decode."""
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[packet]
    data = bytearray(src.read_bytes())
    data[pos + 8 : pos + 8 + size] = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def test_clip_failing_to_decode_is_skipped_and_the_epoch_completes(stamped_clips, tmp_path):
    records = stamped_clips.records("mjpeg")
    records[4] = dataclasses.replace(records[4], video_path=_corrupt_payload(records[4].video_path, tmp_path / "c.avi", 0))
    loader = LOADERS.get("pyav")(records, Sampling(coverage=50, stride=2, frames_per_clip=8), _opts(batch_size=2))
    assert loader.num_samples == 7  # the probe cannot see the damage
    for _ in range(2):
        assert sorted(_rows(list(loader))) == [0, 1, 2, 3, 5, 6]
    assert [(s.row, s.path) for s in loader.skipped] == [(4, tmp_path / "c.avi")]
    assert loader.skipped[0].reason.startswith("pyav decode failed: ") and "\n" not in loader.skipped[0].reason
    assert loader.num_samples == 6 and loader.rows == (0, 1, 2, 3, 5, 6)


# -- registry and options -----------------------------------------------------------------


def test_registered_beside_dali():
    assert {"dali", "seed", "decord", "pyav"} <= set(LOADERS.names())
    assert all(LOADERS.get(n).name == n for n in REFERENCE)


def test_bad_options_are_named(stamped_clips):
    with pytest.raises(ValueError, match=re.escape("batch_size (0) must be an integer >= 1")):
        LOADERS.get("seed")(stamped_clips.records("mjpeg", 1), Sampling(), _opts(batch_size=0))
    with pytest.raises(LoaderError, match="got no clips"):
        LOADERS.get("pyav")([], Sampling(), _opts())
