from inforates.loaders._base import LOADERS, Batch, ClipLoader, LoaderError, LoaderOptions, SkippedClip
from inforates.loaders.dali import DaliLoader, resolve_device  # registers LOADERS "dali"
from inforates.loaders.probe import ClipProbe, probe_clip

__all__ = [
    "LOADERS",
    "Batch",
    "ClipLoader",
    "ClipProbe",
    "DaliLoader",
    "LoaderError",
    "LoaderOptions",
    "SkippedClip",
    "probe_clip",
    "resolve_device",
]
