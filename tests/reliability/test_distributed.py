"""Training under torchrun (2 CPU processes, gloo) equals single-process training on the same global batches.

``finetune`` is driven by a worker script; ``codec train`` and ``fip train`` through their CLI
(``python -m convpress`` once, then under ``torchrun -m convpress``), so the tests also check
that only rank 0 prints and writes.

How equal is "equal": the processes compute the same loss on the same images; only the order of
floating-point sums differs (two shard gradients averaged by DDP instead of one batch sum). Adam
divides every gradient coordinate by its own running magnitude, so a weight moves by about
``lr`` per step whatever the size of its gradient: where the gradient is real, rounding noise
does not change the step (most weights come out bit-identical), but a weight whose gradient is
zero in exact arithmetic (the output does not depend on it) follows the sign of rounding noise
and may drift by up to about ``lr`` per step in either run. So each test checks (1) the logged
losses to 1e-5 relative (an epoch's mean loss includes steps taken after updates, so that drift
enters it: 2.1e-6 measured for fip with torch 2.14.1, where a first step's loss agrees to 1e-7;
a sharding or averaging mistake shows as 1e-3 or more), (2) 99% of the weights to 1e-6, (3) every weight within the Adam bound
``2 * lr * steps``, and (4) the two trained networks' outputs on a held-out photo to 1e-4
(0.03 of an 8-bit level). Adam also makes the weights blind to a global scale of the gradient,
which is why (1) checks the loss values themselves.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.core.distributed import shard_loader

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(cp.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    env["OMP_NUM_THREADS"] = "1"  # as torchrun sets it for each process
    return env


def _cli_once_and_under_torchrun(tmp_path: Path, port: int, args: Callable[[Path], list[str]]) -> tuple[Path, Path, str]:
    """Run ``convpress ARGS`` in one process and under ``torchrun --nproc_per_node 2``.

    ``args(folder)`` gives the command line writing into ``folder``. Returns the two folders and
    the standard output of the 2-process run.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    runs = {
        one: [sys.executable, "-m", "convpress"],
        two: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), "-m", "convpress"],
    }
    out = ""
    for folder, launcher in runs.items():
        folder.mkdir()
        r = subprocess.run([*launcher, *args(folder)], env=_env(), timeout=300, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        out = r.stdout
    return one, two, out


def _check_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], *, lr: float, steps: int) -> float:
    """Checks (2) and (3) of the module docstring; returns the largest difference."""
    assert a.keys() == b.keys()
    diffs = torch.cat([(a[k].detach().float() - b[k].detach().float()).abs().flatten() for k in a])
    assert float((diffs <= 1e-6).float().mean()) >= 0.99
    assert float(diffs.max()) <= 2 * lr * steps
    print(f"{float((diffs <= 1e-6).float().mean()):.4%} of {diffs.numel()} weights within 1e-6")
    return float(diffs.max())


def _check_history(a: list[dict[str, float]], b: list[dict[str, float]], keys: tuple[str, ...]) -> None:
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b, strict=True):
        for k in keys:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5), k


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    single, multi = tmp_path / "single.pt", tmp_path / "multi.pt"
    subprocess.run([sys.executable, str(WORKER), str(single)], check=True, env=_env(), timeout=300)
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", str(WORKER), str(multi)],
        check=True,
        env=_env(),
        timeout=300,
        capture_output=True,
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


@pytest.fixture(scope="module")
def fip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tvl1 pairs of three 72x96 crops of bundled photos at long sides 64 and 96 (as tests/fip/test_train.py)."""
    import numpy as np

    from convpress.data.photos import bundled_photo
    from convpress.fip.pairs import build_pairs

    images = [
        (n, np.ascontiguousarray(bundled_photo(n).permute(1, 2, 0).numpy()[100:172, 100:196]))
        for n in ("astronaut", "chelsea", "immunohistochemistry")
    ]
    root = tmp_path_factory.mktemp("pairs")
    build_pairs(images, "tvl1", root, sizes=(64, 96))
    return root


def test_fip_train_on_two_processes_matches_one_process(tmp_path: Path, fip_cache: Path) -> None:
    """gf-can24, 2 epochs of 3 steps of 4 crops. Its CAN normalises each image with its own
    statistics (instance norm), so the shards compute exactly the loss terms of the whole batch.
    The guided filter's output does not change when a constant is added to the guidance, so the
    last guidance bias has zero gradient in exact arithmetic: the Adam-noise case of the module
    docstring (it differs by about 5e-4 while the CAN weights agree to about 1e-8)."""
    from convpress.core.checkpoint import load_checkpoint
    from convpress.data.photos import bundled_photo
    from convpress.fip.weights import load_network

    lr, steps = 1e-3, 2 * 3
    one, two, out = _cli_once_and_under_torchrun(
        tmp_path,
        29531,
        lambda d: [
            "fip",
            "train",
            "--operator",
            "tvl1",
            "--cache",
            str(fip_cache),
            "--out",
            str(d / "w.safetensors"),
            "--work-dir",
            str(d / "work"),
            "--epochs",
            "2",
            "--steps",
            "3",
            "--batch",
            "4",
            "--crops",
            "40",
            "56",
            "--lr",
            str(lr),
            "--threads",
            "1",
            "--no-progress",
        ],
    )
    assert len(re.findall(r"^wrote ", out, re.M)) == 1 and len(re.findall(r"^epoch 2:", out, re.M)) == 1  # rank 0 only
    a, b = (load_checkpoint(d / "work" / "checkpoint.ckpt", "fip-train") for d in (one, two))
    _check_history(a["records"]["history"], b["records"]["history"], ("loss", "val_psnr"))
    (net_a, _), (net_b, _) = load_network(one / "w.safetensors"), load_network(two / "w.safetensors")
    diff = _check_weights(net_a.state_dict(), net_b.state_dict(), lr=lr, steps=steps)
    x = bundled_photo("chelsea")[None]  # never a training photo
    with torch.no_grad():
        assert torch.allclose(net_a(x), net_b(x), rtol=0, atol=1e-4)
    print(f"fip: largest weight difference {diff:.1e}")


def test_codec_train_on_two_processes_matches_one_process(tmp_path: Path) -> None:
    """hyperprior N=M=8, 4 steps of 4 crops of 64 pixels. Each image's quantization noise comes from
    its own generator, seeded by (seed, step, index in the global batch), so a shard gets the noise
    its images get in one process. The GDN gammas of the synthesis receive gradients near zero at
    this early stage: the Adam-noise case of the module docstring (about 5e-6)."""
    import cv2
    import numpy as np

    from convpress.codec.weights import load_weights
    from convpress.core.checkpoint import load_checkpoint
    from convpress.data.photos import bundled_photo

    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8))
    lr, steps = 1e-3, 4
    one, two, out = _cli_once_and_under_torchrun(
        tmp_path,
        29533,
        lambda d: [
            "codec",
            "train",
            "--work-dir",
            str(d / "work"),
            "--quality",
            "3",
            "--out",
            str(d / "q3.safetensors"),
            "--hidden-channels",
            "8",
            "--latent-channels",
            "8",
            "--steps",
            str(steps),
            "--batch",
            "4",
            "--crop",
            "64",
            "--lr",
            str(lr),
            "--no-debian",
            "--images",
            str(folder),
            "--threads",
            "1",
            "--checkpoint-every",
            "2",
        ],
    )
    assert len(re.findall(r"^wrote ", out, re.M)) == 1  # rank 0 only
    a, b = (load_checkpoint(d / "work" / "checkpoint.ckpt", "codec-train") for d in (one, two))
    _check_history(a["records"]["history"], b["records"]["history"], ("loss", "bpp", "psnr"))
    (net_a, _), (net_b, _) = load_weights(one / "q3.safetensors"), load_weights(two / "q3.safetensors")
    diff = _check_weights(dict(net_a.named_parameters()), dict(net_b.named_parameters()), lr=lr, steps=steps)
    x = bundled_photo("chelsea")[None, :, :256, :384]  # never a training photo
    with torch.no_grad():
        ra, rb = net_a(x), net_b(x)
    assert torch.allclose(ra["x_hat"], rb["x_hat"], rtol=0, atol=1e-4)
    for k in ra["likelihoods"]:
        assert torch.allclose(ra["likelihoods"][k], rb["likelihoods"][k], rtol=1e-5, atol=1e-7), k
    print(f"codec: largest weight difference {diff:.1e}")


def test_fip_and_codec_train_refuse_a_batch_the_processes_cannot_share(monkeypatch: pytest.MonkeyPatch, fip_cache: Path) -> None:
    import convpress.core.distributed as distributed
    from convpress.codec.train import CodecTrainConfig as CodecConfig
    from convpress.codec.train import train_codec
    from convpress.fip.pairs import load_pairs
    from convpress.fip.train import FipTrainConfig, train

    monkeypatch.setattr(distributed, "world", lambda: (0, 2))  # as under torchrun --nproc_per_node 2
    with pytest.raises(cp.ConfigError, match="batch 3 is not divisible by the 2 torchrun processes"):
        train(load_pairs(fip_cache, "tvl1"), FipTrainConfig(operator="tvl1", batch=3))
    with pytest.raises(cp.ConfigError, match="batch 3 is not divisible by the 2 torchrun processes"):
        train_codec(CodecConfig(n=8, m=8, batch=3, crop=64), [torch.rand(3, 64, 64)], progress=False)
