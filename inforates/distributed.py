"""Process-group helpers shared by training and distributed evaluation.

Rank and world size come from the environment ``torchrun`` sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``);
without it everything runs as one process and every helper here is a no-op, so library
code calls them unconditionally::

    info = dist_env()                      # DistInfo(rank=0, world_size=1, ...) alone
    init(info, timeout_s=600)              # NCCL on CUDA, gloo on CPU; no-op for world 1
    total = all_reduce_sum([correct, n])   # counts, never means (STYLE 11)
    shutdown()

Every collective is bounded by the ``timeout`` given to ``init_process_group``, so a rank
that dies or hangs makes its peers fail with an error instead of waiting forever.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistError(ValueError):
    """The launch environment is inconsistent (e.g. RANK set without WORLD_SIZE)."""


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistError(f"environment variable {name} ({raw!r}) must be an integer") from None


def dist_env() -> DistInfo:
    """Rank/world from torchrun's environment; a single process when it is absent."""
    present = [k for k in _ENV_KEYS if os.environ.get(k)]
    if present and "WORLD_SIZE" not in present:
        raise DistError(f"{', '.join(present)} set but WORLD_SIZE is not; launch with torchrun")
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank if world > 1 else 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world < 1:
        raise DistError(f"WORLD_SIZE ({world}) must be >= 1")
    if not 0 <= rank < world:
        raise DistError(f"RANK ({rank}) must be in [0, WORLD_SIZE={world})")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(info: DistInfo, *, device: torch.device, timeout_s: float = 600.0) -> None:
    """Join the process group (env:// rendezvous from torchrun); no-op for one process.

    ``timeout_s`` bounds every collective: a peer that crashed or hangs turns into an
    error on the others after that long (NCCL: with async error handling, on by default).
    """
    if not info.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs = {}
    if device.type == "cuda":
        kwargs["device_id"] = device  # eager NCCL init: a missing peer fails here, not later
    dist.init_process_group(
        backend=backend_for(device),
        init_method="env://",
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        **kwargs,
    )
    log.debug("rank %d/%d joined (%s)", info.rank, info.world_size, dist.get_backend())


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def _device() -> torch.device:
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(values: Sequence[float], op: str = "sum", dtype: torch.dtype = torch.float64) -> list[float]:
    """Reduce a few numbers over all ranks (``op``: sum, max or min); identity alone."""
    if not is_initialized():
        return [float(v) for v in values]
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    if op not in ops:
        raise ValueError(f"op ({op!r}) must be one of: {', '.join(ops)}")
    t = torch.tensor(list(values), dtype=dtype, device=_device())
    dist.all_reduce(t, op=ops[op])
    return t.cpu().tolist()


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Sum counts over ranks (float64: exact for integers below 2**53)."""
    return all_reduce(values, "sum")


def all_gather_tensor(t: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of ``t`` (same shape and dtype on all ranks), on the CPU."""
    if not is_initialized():
        return [t.detach().cpu()]
    src = t.detach().to(_device())
    out = [torch.empty_like(src) for _ in range(dist.get_world_size())]
    dist.all_gather(out, src)
    return [o.cpu() for o in out]


def broadcast_tensor(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``t`` on every rank (``t`` must have the same shape everywhere)."""
    if not is_initialized():
        return t
    buf = t.detach().to(_device()).clone()
    dist.broadcast(buf, src=src)
    return buf.to(t.device)
