"""Fused GPU preprocessing of decoded clips: frame gather, temporal anti-aliasing,
normalisation and the ``(B, F, H, W, C) uint8 -> (B, T, C, H, W) float32`` layout change.

Shipped as ``inforates.kernels`` (the repository's top-level ``kernels/`` folder). The
folder deliberately has no ``__init__.py``: run from the repository root (``python -m``
puts it first on ``sys.path``), a regular package there would hide Hugging Face's
``kernels`` package, which ``transformers`` imports. Without one, the folder is at most
a namespace portion, and an installed regular package always wins over it.

The frame indices come from :func:`inforates.sampling.select_frames`; these kernels only
read the frames they are given::

    from inforates.kernels.ops import antialias_decimate, normalize_gather
    from inforates.sampling import select_frames

    sel = select_frames(num_frames=50, coverage=100, stride=4, frames_per_clip=8)
    x = normalize_gather(video, sel.indices, mean, std)                 # plain decimation
    y = antialias_decimate(video, sel.indices, 4, mean, std, window="gaussian")

Each operation has a Triton kernel (:mod:`._triton`) and a plain-PyTorch reference
(:mod:`.reference`) of the same maths. CUDA tensors use Triton when it is installed; CPU
tensors use the reference, or Triton's interpreter when ``TRITON_INTERPRET=1`` is set (how
CI runs the Triton code without a GPU). Without Triton everything runs on the reference.
Triton and reference agree within :data:`TOLERANCE` (``atol = rtol = 1e-5``).
"""

from ._dispatch import TOLERANCE, antialias_decimate, normalize_gather, triton_available

__all__ = ["TOLERANCE", "antialias_decimate", "normalize_gather", "triton_available"]
