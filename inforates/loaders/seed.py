"""``seed``: the loader this project started from, kept as the baseline DALI must beat.

Per clip: decord decodes **every** frame, numpy slices out the frames the setting selects,
OpenCV resizes each selected frame (repeats included), a thread pool of
``options.num_threads`` workers feeds batches. Its decode cost is the whole clip whatever
the coverage or stride, which is what the frame-indexed loaders avoid::

    N = 10, coverage 30, stride 1 -> indices 0 1 2
    seed decodes     0 1 2 3 4 5 6 7 8 9   (10 frames)
    decord/pyav/dali 0 1 2                 (3 frames; on inter-coded clips up to the GOP)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import decord
import numpy as np

from inforates.loaders._base import LOADERS
from inforates.loaders._reference import DecodeError, ReferenceLoader, cv2_resize_shorter_crop


@LOADERS.register("seed")
class SeedLoader(ReferenceLoader):
    name = "seed"
    decode_errors = (DecodeError, decord.DECORDError)

    def decode(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        reader = decord.VideoReader(str(path), num_threads=1)
        every = reader.get_batch(list(range(len(reader)))).asnumpy()  # the whole clip
        if indices and indices[-1] >= len(every):
            raise DecodeError(f"decord read {len(every)} frames, frame {indices[-1]} requested")
        return every[list(indices)]

    def frames(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        # The seed slices first and resizes every selected frame, repeats included.
        every = self.decode(path, list(range(self.num_frames)))
        return cv2_resize_shorter_crop(every[list(indices)], self.options.image_size)
