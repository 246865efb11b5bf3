"""``torchcodec``: PyTorch's FFmpeg-based decoder, frame-indexed ``get_frames_at``.

Registered only where ``torchcodec`` imports. Its PyPI wheel (0.17) links
``libtorch_cuda.so`` and ``libcudart.so.13`` and loads FFmpeg 4-7 shared libraries from
the system, so it does not load beside the CPU build of torch or without a system FFmpeg;
on those machines the benchmarks compare DALI with the other peers only. One FFmpeg thread
per clip; the loader's pool runs ``options.num_threads`` clips at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torchcodec.decoders import VideoDecoder

from inforates.loaders._base import LOADERS
from inforates.loaders._reference import DecodeError, ReferenceLoader


def read_frames(path: Path, indices: Sequence[int]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 RGB at sorted, distinct ``indices``."""
    decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact")
    available = decoder.metadata.num_frames
    if indices and available is not None and indices[-1] >= available:
        raise DecodeError(f"torchcodec reads {available} frames, frame {indices[-1]} requested")
    return decoder.get_frames_at(indices=list(indices)).data.numpy()


@LOADERS.register("torchcodec")
class TorchCodecLoader(ReferenceLoader):
    name = "torchcodec"
    decode_errors = (DecodeError, RuntimeError, ValueError)

    def decode(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        return read_frames(path, indices)
