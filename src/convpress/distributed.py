"""Data-parallel training across processes with PyTorch DDP (``torchrun``), CPU or GPU.

Run any training command under ``torchrun --nproc_per_node N``; :func:`init_from_env` joins
the process group that torchrun describes in the environment (gloo backend on CPU). Each
process then sees ``1/N`` of every global batch (:func:`shard_loader`, built on
``DistributedSampler``), gradients are averaged by DDP, and only rank 0 writes files and prints.

The global batch order does not depend on the number of processes: a single process given
``shard_loader(..., world=1)`` sees exactly the batches that N processes see together, which is
how the tests check that N-process training equals single-process training.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader

from convpress.errors import ConfigError

__all__ = ["init_from_env", "world", "is_main", "shard_loader", "barrier"]


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


def shard_loader(loader: Any, *, seed: int = 0, world_size: int | None = None, rank: int | None = None) -> DataLoader:
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
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False)
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size // world_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, drop_last=loader.drop_last,
    )
