"""Worker for test_distributed: trains LeNet-300-100 with gradual pruning, N processes or one.

Usage: python _ddp_worker.py OUT.pt   (under torchrun for N processes)
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, Subset

import convpress as cp
from convpress.core.distributed import init_from_env, is_main, shard_loader
from convpress.data.mnist import load_mnist


def main(out: str) -> None:
    torch.set_num_threads(1)
    distributed = init_from_env()
    torch.manual_seed(0)
    model = cp.create_model("lenet-300-100")
    data = Subset(load_mnist("train"), range(512))
    loader = DataLoader(data, batch_size=64)
    if not distributed:  # the same global batches, in the same order, in one process
        loader = shard_loader(loader, seed=3, world_size=1, rank=0)
    cp.finetune(model, loader, torch.nn.functional.cross_entropy, 2, 1e-3, pruning=cp.AGP(0.8, every=3), seed=3, progress=False)
    if is_main():
        torch.save(cp.dense_state_dict(model), out)


if __name__ == "__main__":
    main(sys.argv[1])
