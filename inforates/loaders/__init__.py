import importlib.util

from inforates.loaders._base import LOADERS, Batch, ClipLoader, LoaderError, LoaderOptions, SkippedClip
from inforates.loaders.dali import DaliLoader, resolve_device  # registers LOADERS "dali"
from inforates.loaders.probe import ClipProbe, probe_clip

# Reference loaders, compared with DALI by the benchmarks (registered "pyav", "seed" and
# "decord" where decord has a wheel: x86_64, and "torchcodec" where it loads: its PyPI wheel
# needs CUDA libraries and a system FFmpeg, so not beside the CPU build of torch).
from inforates.loaders.pyav import PyAVLoader

if importlib.util.find_spec("decord") is not None:
    from inforates.loaders.decord_loader import DecordLoader
    from inforates.loaders.seed import SeedLoader
else:
    for _name in ("decord", "seed"):
        LOADERS.mark_unavailable(_name, "decord is not installed (it has wheels for x86_64 only)")

try:
    from inforates.loaders.torchcodec_loader import TorchCodecLoader
except ImportError as exc:  # not installed, or a dependency of it is missing
    LOADERS.mark_unavailable("torchcodec", f"torchcodec cannot be imported ({exc})")
except (OSError, RuntimeError) as exc:  # installed, but its native libraries do not load
    LOADERS.mark_unavailable("torchcodec", f"torchcodec does not load ({str(exc).strip().splitlines()[0]})")

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
