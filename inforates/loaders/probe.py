"""A cheap look at a clip before a loader commits to it: container, codec, frame count.

:func:`probe_clip` opens the file with PyAV, reads the video stream's codec and counts
demuxed packets (one per frame for the codecs inforates writes) **without decoding**, so a
manifest of thousands of clips is checked in seconds. It never raises for a bad clip; it
says what is wrong in :attr:`ClipProbe.problem`, which loaders record as the skip reason::

    probe_clip("ok.avi", frames_needed=50)       -> codec='mjpeg', frames=50, problem=None
    probe_clip("empty.avi")                      -> problem='file is empty (0 bytes)'
    probe_clip("cut.avi", frames_needed=50)      -> frames=6, problem='has 6 readable frames, needs 50'

What it cannot see: a payload that demuxes but does not decode. Loaders handle that while
decoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class ClipProbe:
    path: Path
    codec: str | None = None  # FFmpeg's name for the video codec ("mjpeg", "vp9", "h264", ...)
    frames: int = 0  # complete video packets counted (stops early once frames_needed is reached)
    problem: str | None = None  # why the clip cannot be loaded; None when it looks fine

    @property
    def ok(self) -> bool:
        return self.problem is None


def probe_clip(path: str | os.PathLike, *, frames_needed: int | None = None) -> ClipProbe:
    """Open ``path``, read its video codec and count packets up to ``frames_needed``.

    ``frames_needed`` is the largest frame index a loader will ask for plus one; a clip
    with fewer complete packets gets a ``problem``. Packets flagged corrupt (a file cut
    off inside a frame) and empty packets do not count.
    """
    p = Path(path)
    if not p.exists():
        return ClipProbe(p, problem="file not found")
    if not p.is_file():
        return ClipProbe(p, problem="not a regular file")
    if p.stat().st_size == 0:
        return ClipProbe(p, problem="file is empty (0 bytes)")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, OSError) as exc:
        return ClipProbe(p, problem=f"not a readable video container ({_first_line(exc)})")
    with container:
        if not container.streams.video:
            return ClipProbe(p, problem="no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        frames = 0
        try:
            for packet in container.demux(stream):
                if packet.size > 0 and not packet.is_corrupt:
                    frames += 1
                    if frames_needed is not None and frames >= frames_needed:
                        break
        except (av.error.FFmpegError, OSError):
            pass  # a damaged tail: the packets counted so far are what is readable
    problem = None
    if frames == 0:
        problem = "no readable video frames"
    elif frames_needed is not None and frames < frames_needed:
        problem = f"has {frames} readable frames, needs {frames_needed}"
    return ClipProbe(p, codec=codec, frames=frames, problem=problem)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
