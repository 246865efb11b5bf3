"""What every loader delivers, so DALI and the reference loaders are interchangeable.

A loader turns manifest records and one :class:`~inforates.sampling.Sampling` setting into
batches of ``(B, T, C, H, W)`` float32 tensors normalised with the model's mean/std, plus
labels. Clips it cannot read are skipped and recorded in :attr:`ClipLoader.skipped` with
the reason; they are never silently dropped.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from inforates.data.manifest import ClipRecord
from inforates.registry import Registry
from inforates.sampling import Sampling


class LoaderError(ValueError):
    """A loader cannot run on these clips (e.g. a codec its backend cannot decode, or every
    clip skipped); the one-line message names the clip and the remedy."""


@dataclass(frozen=True)
class Batch:
    video: torch.Tensor  # (B, T, C, H, W) float32, normalised
    labels: torch.Tensor  # (B,) int64
    rows: tuple[int, ...]  # index of each sample in the loader's record list


@dataclass(frozen=True)
class SkippedClip:
    row: int
    path: Path
    reason: str


@dataclass(frozen=True)
class LoaderOptions:
    batch_size: int = 8
    image_size: int = 224
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)  # in [0, 1] units
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    device: str = "cpu"  # "cpu" or "gpu"
    num_threads: int = 2
    shard_id: int = 0
    num_shards: int = 1
    shuffle: bool = False
    seed: int = 0


class ClipLoader(abc.ABC):
    """One pass over ``records`` per iteration (an epoch)."""

    name: str = "base"

    def __init__(self, records: Sequence[ClipRecord], sampling: Sampling, options: LoaderOptions) -> None:
        self.records = list(records)
        self.sampling = sampling
        self.options = options
        self.skipped: list[SkippedClip] = []

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Batch]: ...

    @property
    @abc.abstractmethod
    def num_samples(self) -> int:
        """Real (unpadded, unskipped) samples this shard delivers per epoch."""

    def close(self) -> None:
        """Release pipelines/threads; safe to call twice."""


LOADERS: Registry[type[ClipLoader]] = Registry("loader")
