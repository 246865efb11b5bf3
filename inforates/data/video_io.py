"""Writing videos, and the codecs inforates knows how to write and who can decode them.

DALI's CPU video decoder reads VP8, VP9 and MJPEG only; H.264/HEVC/AV1/MPEG-4 need its
GPU ("mixed", NVDEC) backend. The codec registry records that, so a loader can refuse a
clip it cannot decode with a message that names the codec and the remedy.

Trade-off when choosing a clip codec for strided sampling: intra-only MJPEG seeks any
frame at the cost of one JPEG decode but is large on disk; inter-coded codecs (VP8/VP9,
H.264) are small but must decode from the last keyframe, so the GOP (keyframe interval)
bounds the work for sparse frame selections.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from inforates._io import temp_path_for
from inforates.registry import Registry


@dataclass(frozen=True)
class Codec:
    name: str
    encoder: str  # PyAV/FFmpeg encoder name
    extension: str
    pix_fmt: str
    decoded_names: tuple[str, ...]  # codec names FFmpeg reports when reading such a file
    dali_cpu: bool  # DALI's CPU backend can decode it
    intra_only: bool
    options: dict[str, str] = field(default_factory=dict)


CODECS: Registry[Codec] = Registry("codec")
for _c in (
    Codec("mjpeg", "mjpeg", ".avi", "yuvj420p", ("mjpeg",), True, True, {"q:v": "3"}),
    Codec("vp9", "libvpx-vp9", ".webm", "yuv420p", ("vp9",), True, False,
          {"crf": "20", "b:v": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}),
    Codec("vp8", "libvpx", ".webm", "yuv420p", ("vp8",), True, False,
          {"crf": "10", "b:v": "2M", "deadline": "realtime", "cpu-used": "8"}),
    Codec("h264", "libx264", ".mp4", "yuv420p", ("h264",), False, False,
          {"crf": "18", "preset": "veryfast"}),
):
    CODECS.add(_c.name, _c)


def codec_of_file(path: str | os.PathLike) -> str:
    """FFmpeg's name for the video codec of ``path`` (e.g. ``vp9``, ``mjpeg``, ``h264``)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        return container.streams.video[0].codec_context.name


def cpu_decodable(codec_name: str) -> bool:
    """Whether DALI's CPU backend decodes streams FFmpeg calls ``codec_name``."""
    return any(codec_name in c.decoded_names and c.dali_cpu for c in map(CODECS.get, CODECS))


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 25.0,
    codec: str = "mjpeg",
    gop: int | None = None,
) -> int:
    """Encode ``(H, W, 3)`` uint8 RGB frames to ``path``; returns the number of frames.

    Written to a temporary sibling and renamed, so a killed writer never leaves a
    half-written file under the final name.
    """
    spec = CODECS.get(codec)
    final = Path(path)
    tmp = temp_path_for(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with av.open(str(tmp), "w") as out:
            stream = None
            for frame in frames:
                if stream is None:
                    h, w = frame.shape[:2]
                    stream = out.add_stream(spec.encoder, rate=_rate(fps), options=dict(spec.options))
                    stream.width, stream.height, stream.pix_fmt = w, h, spec.pix_fmt
                    if gop is not None:
                        stream.codec_context.gop_size = int(gop)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in stream.encode(vf):
                    out.mux(packet)
                count += 1
            if stream is None:
                raise ValueError(f"no frames to write to {final}")
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Every frame of ``path`` as ``(F, H, W, 3)`` uint8 RGB (reference decoder: PyAV)."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no decodable frames")
    return np.stack(frames)
