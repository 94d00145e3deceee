"""Extraction across processes, GPUs and machines with torchrun (torch.distributed).

Every rank plans the same batches, takes its share balanced by audio length, and writes its own
part files (`r{rank}-*.h5`) into the cache's parts folder; rank 0 keeps the index and, when all
ranks are done, consolidates one cache sorted by id, so the result does not depend on the number
of ranks. Why parts rather than a virtual dataset over shards: a part is committed by an atomic
rename, so each rank resumes on its own and a rank that dies harms nobody's finished work; the
single plain file at the end is what stage two reads fastest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from emi_features.cache.writer import CacheWriter
from emi_features.core.devices import resolve_device


@dataclass
class Ranks:
    """This process's place in the run: rank, world size and device (one GPU per rank)."""

    rank: int
    world_size: int
    device: torch.device

    @classmethod
    def from_environment(cls, device: str) -> Ranks:
        """A single process, or under torchrun (WORLD_SIZE > 1): join the process group with
        nccl on GPUs or gloo on CPUs, and take the GPU LOCAL_RANK."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls(0, 1, resolve_device(device))
        on_gpu = device.startswith("cuda")
        if on_gpu:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        resolved = resolve_device(device)
        if on_gpu:
            torch.cuda.set_device(resolved)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if on_gpu else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), resolved)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}" if self.distributed else "process"

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, value: float) -> float:
        if not self.distributed:
            return value
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=self._collective_device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    @property
    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def map_threads(self, function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """Map an I/O-bound function (header probes) over items with a few threads."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(function, items))

    def open_writer(self, factory: Callable[..., CacheWriter]) -> CacheWriter:
        """Rank 0 opens (and, with --overwrite, clears) the cache first; the others follow."""
        if not self.distributed:
            return factory()
        prefix = f"r{self.rank:03d}-"
        writer = factory(prefix=prefix) if self.rank == 0 else None
        dist.barrier()
        if writer is None:
            writer = factory(prefix=prefix, keeps_index=False)
        return writer

    def finish(self, writer: CacheWriter) -> tuple[int, dict[str, str]]:
        """Wait for every rank's parts, then rank 0 consolidates. Returns (clips, skipped)."""
        self.barrier()
        result: tuple[int, dict[str, str]] = (0, {})
        if self.rank == 0:
            result = writer.finish()
        self.barrier()
        return result

    def close(self) -> None:
        """Leave the process group (after the last collective)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
