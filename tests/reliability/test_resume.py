"""Interrupted training resumes from its last checkpoint; fixed seeds give identical files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.core.checkpoint import load_checkpoint

ARGS = [
    "lenet-300-100",
    "--train-epochs",
    "2",
    "--prune",
    "0.9",
    "--schedule",
    "agp",
    "--prune-epochs",
    "20",
    "--quant-epochs",
    "2",
    "--no-progress",
]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(cp.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _compress(out: Path, work: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "convpress", "compress", *ARGS, "-o", str(out)]
    if work is not None:
        cmd += ["--work-dir", str(work)]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _epochs_done(path: Path) -> int:
    return int(load_checkpoint(path, "finetune")["epochs_done"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The file of one uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "reference.cpz"
    run = _compress(out)
    assert run.wait(timeout=300) == 0
    return out.read_bytes()


def test_killed_compress_resumes_and_matches_an_uninterrupted_run(tmp_path: Path, reference: bytes) -> None:
    work, out = tmp_path / "work", tmp_path / "resumed.cpz"
    victim = _compress(out, work)
    ckpt = work / "prune-agp.ckpt"
    deadline = time.monotonic() + 240
    while not (ckpt.exists() and _epochs_done(ckpt) >= 2):
        assert victim.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not out.exists()
    done = _epochs_done(ckpt)
    assert 2 <= done < 20  # killed mid-way through gradual pruning
    resumed = _compress(out, work)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    # resuming restored weights, masks, optimiser, schedule and data order exactly
    assert out.read_bytes() == reference


def test_fixed_seeds_give_byte_identical_files(tmp_path: Path, reference: bytes) -> None:
    run = _compress(tmp_path / "again.cpz")
    assert run.wait(timeout=300) == 0
    assert (tmp_path / "again.cpz").read_bytes() == reference


def test_a_checkpoint_from_another_run_or_a_damaged_one_is_refused(tmp_path: Path) -> None:
    data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
    ckpt = tmp_path / "c.ckpt"
    cp.finetune(nn.Linear(3, 2), data, nn.functional.cross_entropy, 2, 1e-2, checkpoint=ckpt, progress=False)
    with pytest.raises(cp.ConfigError, match="different training run"):
        cp.finetune(nn.Linear(3, 2), data, nn.functional.cross_entropy, 2, 1e-1, checkpoint=ckpt, progress=False)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(cp.FileFormatError, match="truncated"):
        cp.finetune(nn.Linear(3, 2), data, nn.functional.cross_entropy, 2, 1e-2, checkpoint=ckpt, progress=False)


def test_finished_checkpoint_restores_final_weights_without_training(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    cp.finetune(a, data, nn.functional.cross_entropy, 3, 1e-2, checkpoint=tmp_path / "c.ckpt", progress=False)
    res = cp.finetune(b, data, nn.functional.cross_entropy, 3, 1e-2, checkpoint=tmp_path / "c.ckpt", progress=False)
    assert len(res.epoch_losses) == 3
    assert torch.equal(a.weight, b.weight)
