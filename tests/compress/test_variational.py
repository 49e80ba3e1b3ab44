"""Sparse variational dropout: the noise, the KL term, what it prunes, and the pipeline schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import convpress as cp
from convpress.compress.state import Pruned, compression_of, dense_state_dict
from convpress.compress.variational import _PARAM, _noise_hook, kl_divergence, log_alpha
from convpress.core.errors import ConfigError


def _relevant_two_of_twenty(n: int = 512, seed: int = 0) -> DataLoader:
    """Regression whose target depends on inputs 0 and 1 only; the other 18 are noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = 2.0 * x[:, :1] - 1.5 * x[:, 1:2] + 0.05 * torch.randn(n, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=g)


def test_it_keeps_the_inputs_that_matter_and_drops_the_rest() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 1))
    loader = _relevant_two_of_twenty()
    cp.finetune(model, loader, F.mse_loss, 20, 1e-2, progress=False)  # dense start, as the paper does
    dense = model[0].weight.detach().clone()
    assert (dense[0, 2:].abs() > 0).all()  # least squares gives every noise input some weight
    sparsity = cp.sparse_vd_(model, loader, F.mse_loss, cp.SparseVD(epochs=60, lr=1e-2), progress=False)
    w = model[0].weight.detach()
    assert (w[0, :2] != 0).all()
    assert (w[0, 2:] == 0).all()
    assert sparsity == {"0": pytest.approx(18 / 20)}
    assert isinstance(compression_of(model[0], "weight"), Pruned)  # an ordinary prune_ mask: it persists
    assert not hasattr(model[0], _PARAM)  # the training parameter is gone
    assert not model[0]._forward_hooks


@pytest.mark.parametrize(
    "layer",
    [nn.Linear(6, 4), nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, dilation=2, groups=2), nn.Conv1d(2, 3, 5)],
    ids=["linear", "conv2d-stride", "conv2d-dilated-grouped", "conv1d"],
)
def test_the_local_reparameterisation_has_the_variance_of_sampled_weights(layer: nn.Module) -> None:
    torch.manual_seed(0)
    x = torch.randn((1, 6) if isinstance(layer, nn.Linear) else (1, layer.in_channels, *(9,) * (layer.weight.dim() - 2)))
    log_sigma2 = torch.randn_like(layer.weight) - 3.0
    layer.register_parameter(_PARAM, nn.Parameter(log_sigma2))
    layer.train()
    with torch.no_grad():
        mean = _forward_without_noise(layer, x)
        noisy = torch.stack([_noise_hook(layer, (x,), mean) for _ in range(4000)])
        # the reference: sample whole weight tensors and run the layer with each
        theta = layer.weight.detach().clone()
        sampled = []
        for _ in range(4000):
            layer.weight.copy_(theta + torch.exp(0.5 * log_sigma2) * torch.randn_like(theta))
            sampled.append(_forward_without_noise(layer, x))
        layer.weight.copy_(theta)
    expected = torch.stack(sampled)
    # Monte Carlo with 4,000 draws: means within 5 standard errors, variances within 15%
    z = (noisy.mean(0) - mean) / (expected.var(0) / 4000).sqrt()
    assert z.abs().max() < 5
    ratio = noisy.var(0) / expected.var(0)
    assert ratio.min() > 0.85 and ratio.max() < 1.15


def _forward_without_noise(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    layer.eval()
    out = layer(x)
    layer.train()
    return out


def test_the_kl_term_vanishes_for_dropped_weights_and_grows_for_kept_ones() -> None:
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, 1.0]]))
    layer.register_parameter(_PARAM, nn.Parameter(torch.tensor([[-8.0, 0.0, 8.0]])))  # log alpha = log sigma^2 here
    model = nn.Sequential(layer)
    per_weight = []
    for la in (-8.0, 0.0, 8.0):
        with torch.no_grad():
            layer.vd_log_sigma2.fill_(la)
        per_weight.append(float(kl_divergence(model).detach()) / 3)
    assert per_weight[0] > per_weight[1] > per_weight[2] >= 0
    assert per_weight[2] < 1e-3  # alpha -> infinity: the prior's only minimum
    assert log_alpha(layer).shape == layer.weight.shape


def test_the_pipeline_schedule_writes_a_file_that_loads_bit_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 1))
    loader = _relevant_two_of_twenty()
    cp.finetune(model, loader, F.mse_loss, 10, 1e-2, progress=False)
    cfg = cp.DeepCompressionConfig(schedule="sparse-vd", prune_epochs=20, prune_lr=1e-2, linear_bits=4, quant_epochs=1)
    report = cp.deep_compress(
        model, cfg, train_loader=loader, loss_fn=F.mse_loss, evaluate=lambda m: 0.0, out_path=tmp_path / "m.cpz", progress=False
    )
    assert report.sparsity["0"] > 0.5  # most first-layer weights see only noise inputs
    loaded = cp.load(tmp_path / "m.cpz")
    for k, v in dense_state_dict(model).items():
        assert torch.equal(loaded[k], v)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"kl_weight": float("nan")}, "kl_weight"),
        ({"warmup": 1.0}, "warmup"),
        ({"threshold": float("inf")}, "threshold"),
    ],
)
def test_bad_settings_are_refused(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cp.SparseVD(**kw)  # type: ignore[arg-type]


def test_a_model_without_weight_layers_or_already_quantized_is_refused() -> None:
    loader = _relevant_two_of_twenty(64)
    with pytest.raises(ConfigError, match="no Linear or convolution"):
        cp.sparse_vd_(nn.Sequential(nn.ReLU()), loader, F.mse_loss, progress=False)
    model = nn.Sequential(nn.Linear(20, 1))
    cp.quantize_(model, 2)
    with pytest.raises(ConfigError, match="already weight-shared"):
        cp.sparse_vd_(model, loader, F.mse_loss, progress=False)


def test_apply_masks_checks_its_masks() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="bool tensor of shape"):
        cp.apply_masks_(model, {"0": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="unknown"):
        cp.apply_masks_(model, {"nope": torch.ones(2, 4, dtype=torch.bool)})
    mask = torch.tensor([[True, False, True, False], [False, True, True, True]])
    cp.apply_masks_(model, {"0": mask})
    assert torch.equal(model[0].weight != 0, mask)


def test_a_target_ratio_with_the_learned_schedule_is_refused_before_any_work() -> None:
    model = nn.Sequential(nn.Linear(20, 1))
    cfg = cp.DeepCompressionConfig(schedule="sparse-vd")
    with pytest.raises(ConfigError, match="sparse-vd"):
        cp.deep_compress(model, cfg, train_loader=_relevant_two_of_twenty(64), loss_fn=F.mse_loss, evaluate=lambda m: 0.0, target_ratio=10)


def test_a_convolution_with_other_padding_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"))
    data = DataLoader(TensorDataset(torch.randn(8, 1, 5, 5), torch.randn(8, 2, 5, 5)), batch_size=4)
    with pytest.raises(ConfigError, match="reflect"):
        cp.sparse_vd_(model, data, F.mse_loss, progress=False)
