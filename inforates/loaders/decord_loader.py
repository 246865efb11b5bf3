"""``decord``: decord's frame-indexed ``get_batch``, decoding only the selected frames.

decord seeks to the keyframe before each requested frame and decodes forward, so on
intra-only clips (MJPEG) it decodes exactly the distinct frames a setting needs; on
inter-coded clips the GOP bounds the extra work. One decoder thread per clip
(``num_threads=1``); the loader's pool runs ``options.num_threads`` clips at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import decord
import numpy as np

from inforates.loaders._base import LOADERS
from inforates.loaders._reference import DecodeError, ReferenceLoader


def read_frames(path: Path, indices: Sequence[int]) -> np.ndarray:
    reader = decord.VideoReader(str(path), num_threads=1)
    if indices and indices[-1] >= len(reader):
        raise DecodeError(f"decord reads {len(reader)} frames, frame {indices[-1]} requested")
    return reader.get_batch(list(indices)).asnumpy()


@LOADERS.register("decord")
class DecordLoader(ReferenceLoader):
    name = "decord"
    decode_errors = (DecodeError, decord.DECORDError)

    def decode(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        return read_frames(path, indices)
