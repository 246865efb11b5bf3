"""Loaders: manifest records + a sampling setting -> normalised ``(B, T, C, H, W)`` batches."""

from inforates.loaders._base import LOADERS, Batch, ClipLoader, LoaderOptions, SkippedClip

__all__ = ["LOADERS", "Batch", "ClipLoader", "LoaderOptions", "SkippedClip"]
