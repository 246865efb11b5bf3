"""What one frame costs by its position in the clip: DALI's video decoder against PyAV.

Each benchmark decodes the single frame at ``position`` from every clip of a set, one
thread each (DALI: a one-thread pipeline over the clips as one batch; PyAV: the
``pyav`` loader's frame reader, clip after clip). A decoder that seeks pays about the
same at every position on intra-only clips, and at most a GOP of frames on inter-coded
ones; a decoder that walks from the first frame pays in proportion to the position.
``compare.py`` reports each position's cost relative to position 0 of the same decoder.

Measured with DALI 2.4's CPU decoder: the cost grows linearly with the position on MJPEG
and on VP9 alike, with or without its frame index (``build_index``), in AVI, MKV, MOV,
WebM and MP4 containers: it walks from frame 0 to the requested one. That is why DALI's
margin over PyAV is smallest at settings whose few frames lie far apart (coverage 100,
stride 16: frames 0, 16, 32 and 48).
"""

from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from inforates.data.stamp import read_stamp
from inforates.loaders.pyav import read_frames

from bench_common import NUM_FRAMES, ROUNDS

POSITIONS = (0, 12, 24, NUM_FRAMES - 2)


@pipeline_def
def _one_frame(files: list[str], position: int):
    encoded, _ = fn.readers.file(files=files)
    return fn.decoders.video(encoded, frames=[position], device="cpu")


class _DaliFrames:
    def __init__(self, files: list[str], position: int) -> None:
        self.pipe = _one_frame(files=files, position=position, batch_size=len(files), num_threads=1,
                               device_id=None, prefetch_queue_depth=1, exec_async=False, exec_pipelined=False)
        self.pipe.build()

    def __call__(self) -> list[np.ndarray]:
        (out,) = self.pipe.run()
        return [out.at(i)[0] for i in range(len(out))]


def _pyav_frames(files: list[str], position: int):
    def call() -> list[np.ndarray]:
        return [read_frames(f, [position])[0] for f in files]

    return call


DECODERS = {"dali": _DaliFrames, "pyav": _pyav_frames}


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("decoder", list(DECODERS))
def test_frame_at_position(benchmark, clips, decoder, position):
    files = [str(r.video_path) for r in clips.records]
    call = DECODERS[decoder](files, position)
    benchmark.group = f"decode position {clips.id}"
    benchmark.extra_info.update(
        suite="decode", loader=decoder, codec=clips.codec, gop=clips.gop, position=position,
        clips=len(files), num_threads=1,
    )
    assert [read_stamp(f) for f in call()] == [position] * len(files)  # the right frame, checked untimed
    frames = benchmark.pedantic(call, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert [read_stamp(f) for f in frames] == [position] * len(files)
