import importlib.util

from inforates.loaders._base import LOADERS, Batch, ClipLoader, LoaderError, LoaderOptions, SkippedClip
from inforates.loaders.dali import DaliLoader, resolve_device  # registers LOADERS "dali"
from inforates.loaders.probe import ClipProbe, probe_clip

# Reference loaders, compared with DALI by the benchmarks (registered "pyav", and "seed" and
# "decord" where decord has a wheel: x86_64). torchcodec is not among them: its PyPI wheel
# needs CUDA libraries and a system FFmpeg, so it does not load on the CPU machines we target.
from inforates.loaders.pyav import PyAVLoader

if importlib.util.find_spec("decord") is not None:
    from inforates.loaders.decord_loader import DecordLoader
    from inforates.loaders.seed import SeedLoader

__all__ = [
    "LOADERS",
    "Batch",
    "ClipLoader",
    "ClipProbe",
    "DaliLoader",
    "DecordLoader",
    "LoaderError",
    "LoaderOptions",
    "PyAVLoader",
    "SeedLoader",
    "SkippedClip",
    "probe_clip",
    "resolve_device",
]
