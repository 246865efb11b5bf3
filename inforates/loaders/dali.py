"""The DALI loader: manifest clips -> decoded, resized, normalised ``(B, T, C, S, S)`` batches.

One pipeline per loader, built on the first epoch and reset for the next::

    readers.file(rows as labels, sharded, padded) -> decoders.video(frames=...)
        -> resize(shorter side = S) -> crop_mirror_normalize(S x S, FCHW, float)
        -> DALIGenericIterator(reader_name, LastBatchPolicy.PARTIAL)

Which frames are decoded comes only from :meth:`Sampling.select`. Offsets ``start`` and
``center`` give one constant index list; ``random`` adds a per-sample offset drawn inside
the pipeline to the offset-0 selection, which is exactly what :func:`select_frames` does::

    N = 10, coverage = 50 (keep 5), stride = 2, policy all
    offset-0 indices   0 2 4            random offset o in [0, N - keep] = [0, 5]
    o = 3           -> 3 5 7

Clips are checked before the pipeline is built (:func:`~inforates.loaders.probe.probe_clip`):
missing, empty, unreadable, stream-less or too-short clips are skipped and recorded in
:attr:`DaliLoader.skipped`; a codec the chosen backend cannot decode is an error, since
skipping it would silently drop a whole dataset. A clip that passes the probe but fails
to decode inside DALI is found while iterating, recorded, and the epoch carries on.

Sharding: DALI's reader splits the probed clips (the same list on every shard) into
shards of ``[n*i//k, n*(i+1)//k)`` positions, pads the last batch and the iterator drops
the padding, so every clip is delivered by exactly one shard once per epoch. Shards stick
to their clips across epochs (``stick_to_shard``), so :attr:`num_samples` is fixed. With
``shuffle`` the reader first permutes the whole list with a seed of its own, fixed and
identical on every shard, so a shard holds scattered rows rather than a contiguous run
(a manifest sorted by class still gives each shard every class); it then reshuffles
within the shard each epoch. DALI keeps shards in lockstep by handing a shard shorter than
its peers a final all-padding batch; the loader drops it, so shards may yield one batch
fewer than their peers (DDP training over uneven shards needs ``Join``/equal shard sizes).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from inforates.data.manifest import ClipRecord
from inforates.data.video_io import CODECS, cpu_decodable
from inforates.loaders._base import LOADERS, Batch, ClipLoader, LoaderError, LoaderOptions, SkippedClip
from inforates.loaders.probe import probe_clip
from inforates.sampling import Sampling

log = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = ("auto", "cpu", "gpu")

# FFmpeg codec names DALI's "mixed" (NVDEC) video decoder reads. The CPU backend's list is
# the codec registry's ``dali_cpu`` flag (VP8, VP9, MJPEG).
GPU_DECODABLE = frozenset({"mjpeg", "vp8", "vp9", "h264", "hevc", "av1", "mpeg4"})

REENCODE_HINT = "re-encode with `inforates-bench data build-clips --codec mjpeg` (or --codec vp9)"

_READER = "Reader"
_OUTPUTS = ["video", "row"]


def resolve_device(device: str) -> str:
    """``auto`` -> ``gpu`` when CUDA is available, else ``cpu``; ``cpu``/``gpu`` pass through."""
    if device not in DEVICES:
        raise ValueError(f"device ({device!r}) must be one of: {', '.join(DEVICES)}")
    if device == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return device


def shard_bounds(num_clips: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """``[start, end)`` positions DALI's reader gives shard ``shard_id`` of ``num_shards``.

    Positions in the reader's list: the file list itself, or its shuffled copy with
    ``random_shuffle``.
    """
    return num_clips * shard_id // num_shards, num_clips * (shard_id + 1) // num_shards


@dataclasses.dataclass(frozen=True)
class _FramePlan:
    """Indices to decode: ``indices`` plus a per-sample offset in ``[0, max_offset]``."""

    indices: tuple[int, ...]
    max_offset: int  # 0 unless the offset policy is random
    # Policy antialias: DALI decodes the covered window (``indices``), then the kernel
    # filters with a box of ``filter_stride`` frames and picks ``gather`` (window-relative).
    gather: tuple[int, ...] | None = None
    filter_stride: int = 1
    # Policies with repeated frames (fixed, T > candidates): DALI decodes each distinct
    # frame once (``indices``); ``expand`` maps the T outputs onto them. Decoding the
    # repeats cost up to 5x throughput on settings that keep few frames (measured). The
    # repeats are made inside the pipeline (``sequence_rearrange``, after normalising):
    # indexing the output tensor in torch instead took ~5 ms per batch of 8, its threads
    # contending with DALI's (measured: 0.6 -> 1.2 k clips/s at coverage 50, stride 4).
    expand: tuple[int, ...] | None = None

    @property
    def frames_per_clip(self) -> int:
        return len(self.gather if self.gather is not None else self.expand if self.expand is not None else self.indices)

    @property
    def frames_needed(self) -> int:
        return max(self.indices) + self.max_offset + 1


def _frame_plan(sampling: Sampling, num_frames: int) -> _FramePlan:
    random = sampling.offset == "random"
    sel = (dataclasses.replace(sampling, offset="start") if random else sampling).select(num_frames)
    max_offset = num_frames - sel.keep if random else 0
    if sampling.policy == "antialias":
        gather = tuple(i - sel.offset for i in sel.indices)
        return _FramePlan(sel.window, max_offset, gather=gather, filter_stride=sel.filter_stride)
    distinct = sorted(set(sel.indices))
    if len(distinct) == len(sel.indices):
        return _FramePlan(sel.indices, max_offset)
    expand = tuple(distinct.index(i) for i in sel.indices)
    return _FramePlan(tuple(distinct), max_offset, expand=expand)


def _common_num_frames(records: Sequence[ClipRecord]) -> int:
    first = records[0]
    for rec in records[1:]:
        if rec.num_frames != first.num_frames:
            raise ValueError(
                "the DALI loader needs fixed-length clips (one num_frames for all records), but "
                f"{first.video_path} has {first.num_frames} frames and {rec.video_path} has {rec.num_frames}"
            )
    return first.num_frames


def _check_options(options: LoaderOptions) -> None:
    for name in ("batch_size", "image_size", "num_threads", "num_shards"):
        value = getattr(options, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} ({value!r}) must be an integer >= 1")
    if not 0 <= options.shard_id < options.num_shards:
        raise ValueError(f"shard_id ({options.shard_id}) must be in [0, num_shards={options.num_shards})")
    for name in ("mean", "std"):
        if len(getattr(options, name)) != 3:
            raise ValueError(f"{name} ({getattr(options, name)!r}) must have 3 values (R, G, B)")


def _seed(*parts: int) -> int:
    """A 31-bit DALI seed derived from ``parts`` (user seed, shard, epoch)."""
    entropy = [int(p) % (1 << 64) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


def dali_error_summary(exc: BaseException) -> str:
    """The informative line of a DALI error (its first lines only say "Critical error")."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if "encountered:" in lines:
        rest = lines[lines.index("encountered:") + 1 :]
        if rest:
            return rest[0]
    for ln in lines:
        if not ln.startswith(("Critical error", "Error in", "which was used", "File ")):
            return ln
    return lines[0] if lines else type(exc).__name__


def _reader(*, files: list[str], rows: list[int], shard_id: int, num_shards: int, shuffle: bool):
    """The file reader both pipelines share; ``labels`` carry the manifest row of each file.

    ``stick_to_shard`` keeps each rank's clips fixed across epochs (DALI's default rotates
    shards, so per-epoch counts would change); ``pad_last_batch`` with the iterator's
    ``LastBatchPolicy.PARTIAL`` delivers every clip exactly once.
    """
    return fn.readers.file(
        files=files,
        labels=rows,
        shard_id=shard_id,
        num_shards=num_shards,
        stick_to_shard=True,
        pad_last_batch=True,
        random_shuffle=shuffle,
        name=_READER,
    )


@pipeline_def
def _rows_pipeline(*, rows: list[int], files: list[str], shard_id: int, num_shards: int, shuffle: bool):
    """The reader alone, as :func:`_clip_pipeline` configures it: which rows a shard gets."""
    _, row = _reader(files=files, rows=rows, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle)
    return row


@pipeline_def
def _clip_pipeline(
    *,
    files: list[str],
    rows: list[int],
    shard_id: int,
    num_shards: int,
    shuffle: bool,
    plan: _FramePlan,
    decoder_device: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    normalize: bool = True,
):
    encoded, row = _reader(files=files, rows=rows, shard_id=shard_id, num_shards=num_shards, shuffle=shuffle)
    if plan.max_offset > 0:
        # random.choice(n) is uniform on {0..n-1}; random.uniform with an integer dtype
        # rounds a continuous draw, so it would reach n and favour the interior values.
        offset = fn.random.choice(plan.max_offset + 1)
        frames = fn.constant(idata=list(plan.indices), dtype=types.INT32) + offset
    else:
        frames = list(plan.indices)
    video = fn.decoders.video(encoded, frames=frames, device=decoder_device)
    op_device = "gpu" if decoder_device == "mixed" else "cpu"
    video = fn.resize(video, resize_shorter=image_size, device=op_device)
    if not normalize:  # uint8 FHWC for the anti-aliasing kernel, which normalises itself
        return fn.crop(video, crop=(image_size, image_size), device=op_device), row
    video = fn.crop_mirror_normalize(
        video,
        crop=(image_size, image_size),
        mean=[m * 255 for m in mean],
        std=[s * 255 for s in std],
        output_layout="FCHW",
        dtype=types.FLOAT,
        device=op_device,
    )
    if plan.expand is not None:  # repeats made in the graph, after the per-frame work
        video = fn.sequence_rearrange(video, new_order=list(plan.expand), device=op_device)
    return video, row


@LOADERS.register("dali")
class DaliLoader(ClipLoader):
    """NVIDIA DALI loader; ``options.device`` picks the CPU decoder or the GPU (NVDEC) one.

    Not re-entrant: run one epoch (one ``iter()``) at a time. Abandoning an epoch part-way
    is fine; the next ``iter()`` starts a fresh epoch on a rebuilt pipeline.
    """

    name = "dali"

    def __init__(self, records: Sequence[ClipRecord], sampling: Sampling, options: LoaderOptions) -> None:
        super().__init__(records, sampling, options)
        _check_options(options)
        if not self.records:
            raise LoaderError("the DALI loader got no clips to load")
        self.device = resolve_device(options.device)
        if self.device == "gpu" and not torch.cuda.is_available():
            raise LoaderError(
                "device 'gpu' needs CUDA, but torch.cuda.is_available() is False; use device cpu"
            )
        self.num_frames = _common_num_frames(self.records)
        self._plan = _frame_plan(sampling, self.num_frames)
        self._label_ids = torch.tensor([r.label_id for r in self.records], dtype=torch.int64)
        self._readable = self._probe()  # identical on every shard: the list DALI shards
        start, end = shard_bounds(len(self._readable), options.shard_id, options.num_shards)
        self._shard_size = end - start
        self._members: list[int] | None = None  # this shard's rows, found when first needed
        self._failed: set[int] = set()  # rows of this shard DALI failed to decode
        self._pinned = False  # True once a decode failure forced an explicit per-shard file list
        self._pipe: Pipeline | None = None
        self._iterator: DALIGenericIterator | None = None
        self._epoch = 0
        self._epoch_open = False

    # -- what the loader will deliver ------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return self._shard_size - len(self._failed)

    @property
    def rows(self) -> tuple[int, ...]:
        """Record rows this shard delivers each epoch, in manifest order.

        With ``shuffle`` on several shards this runs DALI's reader once over the shard
        (file reads, no decoding) to learn which rows it holds.
        """
        return tuple(r for r in self._shard_members() if r not in self._failed)

    @property
    def frames_per_clip(self) -> int:
        """``T`` of every delivered clip."""
        return self._plan.frames_per_clip

    def _shard_members(self) -> list[int]:
        if self._members is None:
            opts = self.options
            if opts.shuffle and opts.num_shards > 1:
                self._members = self._read_members()
            else:
                start, end = shard_bounds(len(self._readable), opts.shard_id, opts.num_shards)
                self._members = self._readable[start:end]
        return self._members

    def _read_members(self) -> list[int]:
        opts = self.options
        pipe = _rows_pipeline(
            rows=self._readable,
            files=[str(self.records[r].video_path) for r in self._readable],
            shard_id=opts.shard_id,
            num_shards=opts.num_shards,
            shuffle=True,
            batch_size=opts.batch_size,
            num_threads=1,
            device_id=None,
            seed=_seed(opts.seed, opts.shard_id),
        )
        pipe.build()
        iterator = DALIGenericIterator(
            [pipe],
            ["row"],
            reader_name=_READER,
            last_batch_policy=LastBatchPolicy.PARTIAL,
            prepare_first_batch=False,
        )
        members = sorted(r for out in iterator for r in out[0]["row"].reshape(-1).tolist())
        if len(members) != self._shard_size:
            raise RuntimeError(
                f"DALI's reader gave shard {opts.shard_id} {len(members)} clips, expected {self._shard_size}"
            )
        return members

    # -- probing ---------------------------------------------------------------------------

    def _decodable(self) -> Callable[[str], bool]:
        return cpu_decodable if self.device == "cpu" else GPU_DECODABLE.__contains__

    def _probe(self) -> list[int]:
        decodable = self._decodable()
        readable: list[int] = []
        undecodable: list[tuple[Path, str]] = []
        for row, rec in enumerate(self.records):
            probe = probe_clip(rec.video_path, frames_needed=self._plan.frames_needed)
            if not probe.ok:
                self._skip(row, rec.video_path, probe.problem or "unreadable")
            elif not decodable(probe.codec or ""):
                undecodable.append((rec.video_path, probe.codec or "unknown"))
            else:
                readable.append(row)
        if undecodable:
            raise LoaderError(self._codec_message(undecodable))
        if not readable:
            first = self.skipped[0]
            raise LoaderError(
                f"all {len(self.records)} clips were skipped (first: {first.path}: {first.reason})"
            )
        return readable

    def _codec_message(self, undecodable: list[tuple[Path, str]]) -> str:
        path, codec = undecodable[0]
        more = f" (and {len(undecodable) - 1} more clip(s))" if len(undecodable) > 1 else ""
        if self.device == "cpu":
            readable = sorted({n for c in map(CODECS.get, CODECS) if c.dali_cpu for n in c.decoded_names})
            return (
                f"{path}{more}: codec {codec} cannot be decoded by DALI's CPU video decoder "
                f"(it reads {', '.join(readable)}); {REENCODE_HINT}, or run on a GPU with device gpu"
            )
        return (
            f"{path}{more}: codec {codec} cannot be decoded by DALI's GPU video decoder "
            f"(it reads {', '.join(sorted(GPU_DECODABLE))}); {REENCODE_HINT}"
        )

    def _skip(self, row: int, path: Path, reason: str) -> None:
        self.skipped.append(SkippedClip(row=row, path=Path(path), reason=reason))
        log.warning("skipping clip %s (row %d): %s", path, row, reason)

    # -- pipelines -------------------------------------------------------------------------

    def _make_iterator(
        self,
        rows: Sequence[int],
        *,
        shard_id: int,
        num_shards: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        prefetch: int = 2,
    ) -> tuple[Pipeline, DALIGenericIterator]:
        gpu = self.device == "gpu"
        pipe = _clip_pipeline(
            files=[str(self.records[r].video_path) for r in rows],
            rows=list(rows),
            shard_id=shard_id,
            num_shards=num_shards,
            shuffle=shuffle,
            plan=self._plan,
            decoder_device="mixed" if gpu else "cpu",
            image_size=self.options.image_size,
            mean=self.options.mean,
            std=self.options.std,
            normalize=self._plan.gather is None,
            batch_size=batch_size,
            num_threads=self.options.num_threads,
            device_id=torch.cuda.current_device() if gpu else None,
            seed=seed,
            prefetch_queue_depth=prefetch,
        )
        pipe.build()
        iterator = DALIGenericIterator(
            [pipe],
            _OUTPUTS,
            reader_name=_READER,
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=False,
            prepare_first_batch=False,
        )
        return pipe, iterator

    def _build(self) -> None:
        self._release()
        opts = self.options
        if self._pinned:
            rows, shard_id, num_shards = list(self.rows), 0, 1
        else:
            rows, shard_id, num_shards = self._readable, opts.shard_id, opts.num_shards
        self._pipe, self._iterator = self._make_iterator(
            rows,
            shard_id=shard_id,
            num_shards=num_shards,
            batch_size=opts.batch_size,
            shuffle=opts.shuffle,
            seed=_seed(opts.seed, opts.shard_id, self._epoch),
        )

    def _release(self) -> None:
        # Dropping the last references shuts the DALI pipeline (and its threads) down.
        self._iterator = None
        self._pipe = None

    def close(self) -> None:
        self._release()
        self._epoch_open = False

    # -- iteration -------------------------------------------------------------------------

    def _to_batch(self, out: dict[str, torch.Tensor]) -> Batch:
        video = out["video"]
        if self._plan.gather is not None:
            from inforates.kernels.ops import antialias_decimate

            video = antialias_decimate(
                video, self._plan.gather, self._plan.filter_stride, self.options.mean, self.options.std
            )
        row_ids = out["row"].reshape(-1).to(device="cpu", dtype=torch.int64)
        labels = self._label_ids[row_ids].to(video.device)
        return Batch(video=video, labels=labels, rows=tuple(row_ids.tolist()))

    def __iter__(self) -> Iterator[Batch]:
        if self.num_samples == 0:
            return
        if self._iterator is None or self._epoch_open:
            self._build()  # first epoch, after a decode failure, or the last epoch was abandoned
        else:
            self._iterator.reset()
        epoch = self._epoch
        self._epoch += 1
        self._epoch_open = True
        delivered: set[int] = set()
        while True:
            try:
                out = next(self._iterator)
            except StopIteration:
                break
            except RuntimeError as exc:  # DALI's decode failures; the pipeline is dead after one
                self._release()
                self._pinned = True  # from now on: this shard's rows as an explicit list, minus culprits
                remaining = [r for r in self.rows if r not in delivered]
                log.warning(
                    "DALI failed mid-epoch (%s); decoding the %d undelivered clips one at a time",
                    dali_error_summary(exc),
                    len(remaining),
                )
                yield from self._recover(remaining, epoch)
                break
            batch = self._to_batch(out[0])
            if not batch.rows:  # a shard shorter than its peers gets an all-padding batch
                continue
            delivered.update(batch.rows)
            yield batch
        self._epoch_open = False

    def _recover(self, remaining: list[int], epoch: int) -> Iterator[Batch]:
        """Deliver ``remaining`` through batch-1 pipelines, skipping each clip DALI fails on."""
        opts = self.options
        todo = list(remaining)
        if opts.shuffle:
            np.random.default_rng([opts.seed % (1 << 64), opts.shard_id, epoch]).shuffle(todo)
        pending: list[Batch] = []
        attempt = 0
        while todo:
            attempt += 1
            iterator = self._make_iterator(
                todo,
                shard_id=0,
                num_shards=1,
                batch_size=1,
                shuffle=False,
                seed=_seed(opts.seed, opts.shard_id, epoch, attempt),
                prefetch=1,
            )[1]
            done = 0  # samples of todo delivered; batch 1, no shuffle: sample k is todo[k]
            while True:
                try:
                    out = next(iterator)
                except StopIteration:
                    todo = []
                    break
                except RuntimeError as exc:
                    culprit = todo[done]
                    self._failed.add(culprit)
                    reason = f"DALI decode failed: {dali_error_summary(exc)}"
                    self._skip(culprit, self.records[culprit].video_path, reason)
                    todo = todo[done + 1 :]
                    break
                pending.append(self._to_batch(out[0]))
                done += 1
                if len(pending) == opts.batch_size:
                    yield _concat(pending)
                    pending = []
            del iterator
        if pending:
            yield _concat(pending)
        if self.num_samples == 0:
            raise LoaderError(
                f"DALI could not decode any clip of shard {opts.shard_id} "
                f"(last: {self.skipped[-1].path}: {self.skipped[-1].reason})"
            )


def _concat(batches: list[Batch]) -> Batch:
    return Batch(
        video=torch.cat([b.video for b in batches]),
        labels=torch.cat([b.labels for b in batches]),
        rows=tuple(r for b in batches for r in b.rows),
    )
