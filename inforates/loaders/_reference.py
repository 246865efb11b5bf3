"""What the reference loaders share: probing, sharding, a thread pool, resize and normalise.

The reference loaders (``seed``, ``decord``, ``pyav``) exist to be compared with DALI, so
they deliver exactly what :class:`~inforates.loaders.dali.DaliLoader` delivers and differ
only in how frames are decoded::

    probe_clip (skip bad clips)  ->  shard  ->  thread pool, one clip per task:
        decode the selected frames (backend)  ->  resize shorter side to S (OpenCV)
        ->  centre crop S x S  ->  (x / 255 - mean) / std, (T, C, S, S) float32
    ->  batches of ``batch_size`` clips in shard order (a short last batch)

Frames come from :meth:`Sampling.select` only. ``offset="random"`` draws one window per
clip with a generator seeded by ``(seed, shard, epoch)``; the offsets are valid shifts of
the selection, like DALI's, but not DALI's draws.

Same semantics as DALI: a shard is ``[n*i//k, n*(i+1)//k)`` of the probed rows (after a
permutation seeded by ``seed`` alone, identical on every shard, when ``shuffle``), so each
clip is delivered by exactly one shard once per epoch; with ``shuffle`` the order within a
shard changes every epoch. A clip that passes the probe but fails to decode is recorded in
:attr:`~inforates.loaders.ClipLoader.skipped` and the epoch carries on without it.

Thread budget: ``options.num_threads`` pool workers, each decoding with one codec thread
(OpenCV's own thread pool is set to one thread, process-wide, when a loader is built), so
``num_threads`` means the same CPU budget as DALI's ``num_threads``.

Resize (:func:`resize_shorter_crop`): DALI's filter, so the tensors match: OpenCV bilinear
to enlarge, DALI's antialiased triangle filter to shrink. The seed keeps its own OpenCV
resize (:func:`cv2_resize_shorter_crop`, ``INTER_AREA`` to shrink). Measured against DALI
on the stamped 64x64 test clips (noise below the stamp, MJPEG): no resize, max 21/255,
mean 0.9/255 (the JPEG decoders' chroma upsampling differs); see
``tests/test_reference_loaders.py`` for the tolerances per resize.
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures as cf
import logging
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch

from inforates.data.manifest import ClipRecord
from inforates.data.video_io import CODECS
from inforates.loaders._base import Batch, ClipLoader, LoaderError, LoaderOptions, SkippedClip
from inforates.loaders.dali import _check_options, _common_num_frames, _frame_plan, resolve_device, shard_bounds
from inforates.loaders.probe import probe_clip
from inforates.sampling import Sampling

log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """A backend could not return the requested frames of a clip that passed the probe."""


def intra_only(codec_name: str) -> bool:
    """Whether every frame of a stream FFmpeg calls ``codec_name`` is a keyframe."""
    return any(codec_name in c.decoded_names and c.intra_only for c in map(CODECS.get, CODECS))


def _shrink_weights(n_in: int, n_out: int, first: int, count: int) -> np.ndarray:
    """``(count, n_in)`` weights of DALI's antialiased linear filter for output pixels
    ``first .. first + count - 1`` of a ``n_in -> n_out`` shrink: a triangle ``n_in / n_out``
    input pixels wide on each side of the output pixel's centre, clamped at the edges."""
    scale = n_in / n_out
    centres = (np.arange(first, first + count) + 0.5) * scale - 0.5
    w = np.clip(1 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / scale, 0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_shorter_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 -> ``(F, size, size, 3)`` uint8: shorter side to ``size``, centre crop.

    The geometry and filter of DALI's ``resize(resize_shorter=size)`` (linear, antialiased)
    + ``crop_mirror_normalize(crop=(size, size))``: the longer side becomes
    ``round(long * size / short)``, the crop is centred (a half-pixel anchor rounds up). Enlarging is OpenCV's bilinear
    ``INTER_LINEAR``; shrinking applies DALI's triangle filter as two small matrix products
    for the cropped output pixels only (OpenCV's ``INTER_AREA`` box filter differs from it
    by up to 70/255 on fine detail).
    """
    f, h, w = frames.shape[:3]
    if h == w == size:
        return frames
    new_h, new_w = (size, round(w * size / h)) if h <= w else (round(h * size / w), size)
    top, left = (new_h - size + 1) // 2, (new_w - size + 1) // 2  # DALI rounds half up
    if min(h, w) < size:
        frames = np.stack([cv2.resize(fr, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for fr in frames])
        return frames[:, top : top + size, left : left + size]
    if min(h, w) == size:
        return frames[:, top : top + size, left : left + size]
    rows = _shrink_weights(h, new_h, top, size)  # (size, H)
    cols = _shrink_weights(w, new_w, left, size)  # (size, W)
    x = frames.astype(np.float32).transpose(0, 3, 1, 2)  # (F, 3, H, W)
    out = rows @ x @ cols.T  # (F, 3, size, size)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def cv2_resize_shorter_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """The seed's resize: OpenCV per frame (``INTER_AREA`` to shrink, ``INTER_LINEAR`` to
    enlarge), shorter side to ``size``, centre crop; same geometry as :func:`resize_shorter_crop`."""
    f, h, w = frames.shape[:3]
    new_h, new_w = (size, round(w * size / h)) if h <= w else (round(h * size / w), size)
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(fr, (new_w, new_h), interpolation=interp) for fr in frames])
    top, left = (new_h - size + 1) // 2, (new_w - size + 1) // 2  # DALI rounds half up
    return frames[:, top : top + size, left : left + size]


class Normaliser:
    """``(F, S, S, 3)`` uint8 -> ``(F, 3, S, S)`` float32, ``(x / 255 - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.shift = np.asarray(mean, np.float32) * 255
        self.scale = 1 / (np.asarray(std, np.float32) * 255)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = (frames.astype(np.float32) - self.shift) * self.scale
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


class ReferenceLoader(ClipLoader):
    """Base of the thread-pool loaders; subclasses implement :meth:`decode`.

    Not re-entrant: one epoch (one ``iter()``) at a time; an abandoned epoch is fine.
    """

    name = "reference"
    #: Exceptions of the backend that mean "this clip does not decode" (recorded, skipped).
    decode_errors: tuple[type[BaseException], ...] = (DecodeError,)

    def __init__(self, records: Sequence[ClipRecord], sampling: Sampling, options: LoaderOptions) -> None:
        super().__init__(records, sampling, options)
        _check_options(options)
        if not self.records:
            raise LoaderError(f"the {self.name} loader got no clips to load")
        self.device = resolve_device(options.device)
        if self.device == "gpu" and not torch.cuda.is_available():
            raise LoaderError("device 'gpu' needs CUDA, but torch.cuda.is_available() is False; use device cpu")
        cv2.setNumThreads(1)  # the pool is the thread budget; see the module docstring
        self.num_frames = _common_num_frames(self.records)
        self._selection = sampling.select(self.num_frames) if sampling.offset != "random" else None
        self._frames_needed = _frame_plan(sampling, self.num_frames).frames_needed
        self._label_ids = torch.tensor([r.label_id for r in self.records], dtype=torch.int64)
        self._normalise = Normaliser(options.mean, options.std)
        readable = self._probe()
        start, end = shard_bounds(len(readable), options.shard_id, options.num_shards)
        if options.shuffle:
            order = np.random.default_rng([options.seed % (1 << 64)]).permutation(readable).tolist()
            self._members = sorted(order[start:end])
        else:
            self._members = readable[start:end]
        self._failed: set[int] = set()
        self._pool: cf.ThreadPoolExecutor | None = None
        self._epoch = 0

    # -- what the loader will deliver ------------------------------------------------------

    @property
    def num_samples(self) -> int:
        return len(self._members) - len(self._failed)

    @property
    def rows(self) -> tuple[int, ...]:
        """Record rows this shard delivers each epoch, in manifest order."""
        return tuple(r for r in self._members if r not in self._failed)

    @property
    def frames_per_clip(self) -> int:
        return self.sampling.select(self.num_frames, rng=np.random.default_rng(0)).frames_used

    # -- probing ---------------------------------------------------------------------------

    def decodable(self, codec: str) -> bool:
        """Whether the backend reads ``codec`` (FFmpeg-based backends read every codec)."""
        return True

    def _probe(self) -> list[int]:
        readable: list[int] = []
        for row, rec in enumerate(self.records):
            probe = probe_clip(rec.video_path, frames_needed=self._frames_needed)
            if not probe.ok:
                self._skip(row, rec.video_path, probe.problem or "unreadable")
            elif not self.decodable(probe.codec or ""):
                raise LoaderError(f"{rec.video_path}: codec {probe.codec} cannot be decoded by the {self.name} loader")
            else:
                readable.append(row)
        if not readable:
            first = self.skipped[0]
            raise LoaderError(f"all {len(self.records)} clips were skipped (first: {first.path}: {first.reason})")
        return readable

    def _skip(self, row: int, path: Path, reason: str) -> None:
        self.skipped.append(SkippedClip(row=row, path=Path(path), reason=reason))
        log.warning("skipping clip %s (row %d): %s", path, row, reason)

    # -- one clip --------------------------------------------------------------------------

    @abc.abstractmethod
    def decode(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        """``(len(indices), H, W, 3)`` uint8 RGB frames at ``indices`` (sorted, distinct)."""

    def frames(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        """``(T, S, S, 3)`` uint8 for ``indices`` (repeats allowed): decode and resize each
        distinct frame once, then repeat."""
        distinct, inverse = np.unique(np.asarray(indices), return_inverse=True)
        decoded = self.decode(path, distinct.tolist())
        if len(decoded) != len(distinct):
            raise DecodeError(f"got {len(decoded)} frames, asked for {len(distinct)}")
        return resize_shorter_crop(decoded, self.options.image_size)[inverse]

    def _load(self, row: int, indices: tuple[int, ...]) -> np.ndarray:
        return self._normalise(self.frames(self.records[row].video_path, indices))

    # -- iteration -------------------------------------------------------------------------

    def _indices(self, rng: np.random.Generator) -> tuple[int, ...]:
        if self._selection is not None:
            return self._selection.indices
        return self.sampling.select(self.num_frames, rng=rng).indices

    def __iter__(self) -> Iterator[Batch]:
        opts = self.options
        epoch_rng = np.random.default_rng([opts.seed % (1 << 64), opts.shard_id, self._epoch])
        self._epoch += 1
        order = list(self.rows)
        if opts.shuffle:
            epoch_rng.shuffle(order)
        if not order:
            return
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(opts.num_threads, thread_name_prefix=f"inforates-{self.name}")
        window = opts.num_threads + 2 * opts.batch_size  # clips in flight: a bounded prefetch
        pending: collections.deque[tuple[int, cf.Future]] = collections.deque()
        todo = iter(order)
        clips: list[np.ndarray] = []
        rows: list[int] = []
        try:
            while True:
                while len(pending) < window:
                    row = next(todo, None)
                    if row is None:
                        break
                    pending.append((row, self._pool.submit(self._load, row, self._indices(epoch_rng))))
                if not pending:
                    break
                row, future = pending.popleft()
                try:
                    clips.append(future.result())
                except self.decode_errors as exc:
                    self._failed.add(row)
                    self._skip(row, self.records[row].video_path, f"{self.name} decode failed: {_first_line(exc)}")
                    continue
                rows.append(row)
                if len(rows) == opts.batch_size:
                    yield self._batch(clips, rows)
                    clips, rows = [], []
            if rows:
                yield self._batch(clips, rows)
        finally:
            for _, future in pending:
                future.cancel()
        if self.num_samples == 0:
            raise LoaderError(
                f"the {self.name} loader could not decode any clip of shard {opts.shard_id} "
                f"(last: {self.skipped[-1].path}: {self.skipped[-1].reason})"
            )

    def _batch(self, clips: list[np.ndarray], rows: list[int]) -> Batch:
        video = torch.from_numpy(np.stack(clips))
        labels = self._label_ids[rows]
        if self.device == "gpu":
            video, labels = video.to("cuda", non_blocking=True), labels.to("cuda")
        return Batch(video=video, labels=labels, rows=tuple(rows))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
