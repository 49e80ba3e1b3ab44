"""Data-parallel training across processes with PyTorch DDP (``torchrun``), CPU or GPU.

Run any training command under ``torchrun --nproc_per_node N``; :func:`init_from_env` joins
the process group that torchrun describes in the environment (gloo backend on CPU). Each
process then sees ``1/N`` of every global batch (:func:`shard_loader`, built on
``DistributedSampler``, for DataLoader-driven training; :func:`batch_share` for trainers that
draw every global batch from a seeded generator and slice it), gradients are averaged by DDP
(:func:`data_parallel`), and only rank 0 writes files and prints.

The global batch order does not depend on the number of processes: a single process given
``shard_loader(..., world=1)`` sees exactly the batches that N processes see together, which is
how the tests check that N-process training equals single-process training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from convpress.core.errors import ConfigError

__all__ = ["init_from_env", "world", "is_main", "shard_loader", "barrier", "batch_share", "data_parallel", "sum_over_processes"]


def init_from_env() -> bool:
    """Join the process group described by torchrun's environment; True when running distributed.

    Does nothing (False) for a plain single process. Uses gloo on CPU and nccl on GPU.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) outside a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (the process that writes files and prints)."""
    return world()[0] == 0


def barrier() -> None:
    """Wait for every process (no-op outside a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def batch_share(batch: int) -> tuple[int, int]:
    """Join torchrun's process group (if any) and return (rank, world_size) for a global batch of ``batch``.

    Process ``rank`` trains on ``global_batch[rank::world_size]``.

    Raises:
        ConfigError: if ``batch`` is not a multiple of the number of processes.
    """
    init_from_env()
    rank, size = world()
    if batch % size:
        raise ConfigError(f"batch {batch} is not divisible by the {size} torchrun processes; use a multiple of {size}")
    return rank, size


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` wrapped in DistributedDataParallel inside a process group (gradients averaged), else ``model``."""
    if world()[1] == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model)


def sum_over_processes(values: Sequence[float]) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64; ``values`` itself outside a process group)."""
    if world()[1] == 1:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t)  # sum
    return t.tolist()


def shard_loader(loader: Any, *, seed: int = 0, world_size: int | None = None, rank: int | None = None) -> DataLoader[Any]:
    """A loader giving this process its share of every global batch of ``loader``.

    The global batch size stays ``loader.batch_size``; each of the N processes gets
    ``batch_size / N`` samples of it. Call ``sampler.set_epoch(epoch)`` each epoch (finetune does).

    Raises:
        ConfigError: if ``loader`` is not a DataLoader over a dataset, or its batch size is not a
            multiple of the number of processes.
    """
    from torch.utils.data.distributed import DistributedSampler

    r, n = world()
    rank = r if rank is None else rank
    world_size = n if world_size is None else world_size
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise ConfigError("distributed training needs a torch DataLoader with a batch size")
    if loader.batch_size % world_size:
        raise ConfigError(f"global batch size {loader.batch_size} is not divisible by {world_size} processes")
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // world_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        drop_last=loader.drop_last,
    )
