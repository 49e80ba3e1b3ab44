"""Compression state as parametrizations: pruned entries exactly +0.0, shared weights tied to the
codebook, index widths, bias parametrizations, and the plain state of dense_state_dict / strip_."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from convpress.compress.state import (
    Pruned,
    Shared,
    compressed_tensors,
    compression_of,
    dense_state_dict,
    parametrization_list,
    strip_,
)


def test_pruned_entries_are_positive_zero_and_masks_of_any_dtype_work() -> None:
    w = -torch.rand(3, 4) - 0.5  # all negative: a multiplied mask would leave -0.0
    mask = torch.tensor([[1, 0, 1, 0]] * 3, dtype=torch.float32)
    p = Pruned(mask)
    assert p.mask.dtype == torch.bool
    out = p(w)
    assert torch.equal(out[:, 0], w[:, 0]) and (out[:, 1] == 0).all()
    assert not torch.signbit(out[:, 1]).any()  # +0.0, bit for bit
    assert p(w.double()).dtype == torch.float64 and p(w.half()).dtype == torch.float16


@pytest.mark.parametrize(("k", "dtype"), [(2, torch.uint8), (256, torch.uint8), (257, torch.int32)])
def test_shared_index_is_as_narrow_as_the_codebook_allows(k: int, dtype: torch.dtype) -> None:
    index = torch.arange(k).reshape(1, k)
    s = Shared(torch.linspace(-1, 1, k), index, torch.ones(1, k, dtype=torch.int64))
    assert s.index.dtype == dtype and s.mask.dtype == torch.bool
    assert torch.equal(s(torch.empty(0)), torch.linspace(-1, 1, k).reshape(1, k))  # index k - 1 did not wrap


def test_shared_weights_stay_tied_to_the_codebook_and_unused_centroids_get_zero_gradient() -> None:
    conv = nn.Conv2d(2, 2, 1, bias=False)
    index = torch.tensor([0, 1, 1, 0]).reshape(2, 2, 1, 1)  # centroid 2 is unused
    mask = torch.tensor([True, True, False, True]).reshape(2, 2, 1, 1)
    parametrize.register_parametrization(conv, "weight", Shared(torch.tensor([-0.5, 0.25, 1.0]), index, mask), unsafe=True)
    shared = compression_of(conv)
    assert isinstance(shared, Shared)
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        conv(torch.randn(4, 2, 3, 3)).pow(2).sum().backward()
        assert shared.codebook.grad is not None and shared.codebook.grad[2] == 0
        opt.step()
    w = conv.weight.detach().flatten()
    assert torch.equal(w, torch.where(mask.flatten(), shared.codebook.detach()[index.flatten()], torch.zeros(())))
    assert not torch.signbit(w[2])
    assert shared.codebook.grad.dtype == torch.float32


def _bias_shared() -> nn.Module:
    """A model whose top-level Linear has a pruned weight and a weight-shared bias, plus a non-persistent buffer."""
    torch.manual_seed(0)
    fc = nn.Linear(3, 2)
    fc.register_buffer("scratch", torch.ones(1), persistent=False)
    fc.register_buffer("kept", torch.full((1,), 7.0))
    parametrize.register_parametrization(fc, "weight", Pruned(torch.tensor([[True, False, True]] * 2)))
    parametrize.register_parametrization(fc, "bias", Shared(torch.tensor([0.5, -2.0]), torch.tensor([1, 0]), torch.ones(2)), unsafe=True)
    return fc


def test_a_bias_has_its_own_parametrization_and_a_root_module_plain_keys() -> None:
    fc = _bias_shared()
    assert isinstance(compression_of(fc, "bias"), Shared) and isinstance(compression_of(fc), Pruned)
    assert parametrization_list(fc) is fc.parametrizations["weight"]
    assert parametrization_list(fc, "bias") is fc.parametrizations["bias"]
    tensors = compressed_tensors(fc)
    assert {k: (name, type(p)) for k, (_m, name, p) in tensors.items()} == {"weight": ("weight", Pruned), "bias": ("bias", Shared)}
    nested = compressed_tensors(nn.Sequential(_bias_shared()))
    assert sorted(nested) == ["0.bias", "0.weight"]


def test_dense_state_dict_is_the_plain_state_and_strip_bakes_it_in() -> None:
    fc = _bias_shared()
    dense = dense_state_dict(fc)
    assert sorted(dense) == ["bias", "kept", "weight"]  # no masks, codebooks, originals or non-persistent buffers
    assert torch.equal(dense["bias"], torch.tensor([-2.0, 0.5]))
    assert (dense["weight"][:, 1] == 0).all() and not torch.signbit(dense["weight"][:, 1]).any()
    assert sorted(dense_state_dict(nn.Sequential(fc))) == ["0.bias", "0.kept", "0.weight"]
    twin = copy.deepcopy(fc)  # deep copies share the generated class: stripping one must not break the other
    plain = strip_(fc)
    assert plain is fc and not parametrize.is_parametrized(fc)
    assert fc.state_dict().keys() == dense.keys()
    assert all(torch.equal(fc.state_dict()[k], v) for k, v in dense.items())
    assert torch.equal(twin.weight, dense["weight"]) and compressed_tensors(twin).keys() == {"weight", "bias"}
