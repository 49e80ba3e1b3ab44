"""Training under torchrun (2 CPU processes, gloo) equals single-process training on the same global batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.distributed import shard_loader

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(cp.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    return env


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    single, multi = tmp_path / "single.pt", tmp_path / "multi.pt"
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, env=_env(), timeout=300)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", str(WORKER), str(multi)],
        check=True, env=_env(), timeout=300, capture_output=True,
    )
    a, b = torch.load(single, weights_only=True), torch.load(multi, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert (a["fc1.weight"] == 0).float().mean() == pytest.approx(0.8, abs=0.01)  # pruning ran, identically
    assert torch.equal(a["fc1.weight"] == 0, b["fc1.weight"] == 0)


def test_shard_loader_refuses_what_it_cannot_split() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.zeros(10, 1))
    with pytest.raises(cp.ConfigError, match="divisible"):
        shard_loader(DataLoader(ds, batch_size=5), world_size=2, rank=0)
    with pytest.raises(cp.ConfigError, match="DataLoader"):
        shard_loader([1, 2, 3], world_size=2, rank=0)
