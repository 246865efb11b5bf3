"""``pyav``: PyAV (FFmpeg) decoding only as far as the selected frames need.

- Intra-only codecs (MJPEG): packet ``i`` is frame ``i``, so only the packets of selected
  frames are decoded; the rest are demuxed and dropped.
- Inter-coded codecs (VP8/VP9/H.264): frames are decoded in order (each depends on the
  previous ones since the last keyframe) and decoding stops after the last selected frame;
  only selected frames are converted to RGB.

One codec thread per clip; the loader's pool runs ``options.num_threads`` clips at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import av
import numpy as np

from inforates.loaders._base import LOADERS
from inforates.loaders._reference import DecodeError, ReferenceLoader, intra_only


def read_frames(path: Path, indices: Sequence[int]) -> np.ndarray:
    """``(len(indices), H, W, 3)`` uint8 RGB at sorted, distinct ``indices``."""
    wanted = set(indices)
    last = indices[-1]
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        if intra_only(stream.codec_context.name):
            i = 0
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_corrupt:
                    continue  # flush packets; the probe does not count corrupt ones either
                if i in wanted:
                    out += [f.to_ndarray(format="rgb24") for f in packet.decode()]
                if i >= last:
                    break
                i += 1
        else:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out.append(frame.to_ndarray(format="rgb24"))
                if i >= last:
                    break
    if len(out) != len(indices):
        raise DecodeError(f"PyAV decoded {len(out)} of {len(indices)} requested frames")
    return np.stack(out)


@LOADERS.register("pyav")
class PyAVLoader(ReferenceLoader):
    name = "pyav"
    decode_errors = (DecodeError, av.error.FFmpegError)

    def decode(self, path: Path, indices: Sequence[int]) -> np.ndarray:
        return read_frames(path, indices)
