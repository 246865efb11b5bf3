"""A machine-readable stamp of each frame's own index, drawn into the frame itself.

The stamp is a band across the top of the frame: a white and a black reference cell, then
``BITS`` cells, one per bit of the index (most significant first; white = 1). Cells are
``width / CELLS`` pixels wide, so the stamp survives lossy codecs and down-scaling to
half size; :func:`read_stamp` samples the middle of each cell relative to the frame's
width and thresholds halfway between the two reference cells, so it reads decoded uint8
frames and normalised float frames alike::

    index 5 = 0b00000101
    +--+--+--+--+--+--+--+--+--+--+
    |##|  |  |  |  |  |  |##|  |##|   <- top band, one cell high
    +--+--+--+--+--+--+--+--+--+--+
     W  B  ---------- 8 bits -----
    |          picture ...         |
"""

from __future__ import annotations

import numpy as np

BITS = 8
CELLS = BITS + 2
MODULUS = 1 << BITS


def band_height(width: int) -> int:
    """Rows the stamp occupies at the top of a frame ``width`` pixels wide."""
    return width // CELLS


def draw_stamp(frame: np.ndarray, index: int) -> np.ndarray:
    """Draw ``index % 256`` into the top band of an ``(H, W, 3)`` uint8 frame, in place."""
    h, w = frame.shape[:2]
    cell = band_height(w)
    if cell < 3 or h < 3 * cell:
        raise ValueError(
            f"frame of {w}x{h} is too small for the frame-index stamp (need width >= {3 * CELLS})"
        )
    value = index % MODULUS
    levels = [255, 0] + [255 if (value >> (BITS - 1 - b)) & 1 else 0 for b in range(BITS)]
    for i, level in enumerate(levels):
        frame[:cell, i * w // CELLS : (i + 1) * w // CELLS] = level
    return frame


def read_stamp(frame: np.ndarray) -> int:
    """Index stamped in an ``(H, W, C)`` or ``(C, H, W)`` frame, at any scale and value range."""
    arr = np.asarray(frame, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)
    gray = arr.mean(axis=-1) if arr.ndim == 3 else arr
    width = gray.shape[1]
    cell = width / CELLS
    row = int(cell / 2)
    centres = [gray[row, int((i + 0.5) * cell)] for i in range(CELLS)]
    white, black = centres[0], centres[1]
    if white <= black:
        raise ValueError("no frame-index stamp found (reference cells not white/black)")
    threshold = (white + black) / 2
    value = 0
    for c in centres[2:]:
        value = (value << 1) | int(c > threshold)
    return value


def read_stamps(frames: np.ndarray) -> list[int]:
    """Stamps of a sequence of frames ``(T, ...)``."""
    return [read_stamp(f) for f in frames]
