"""Sparse variational dropout: training that learns which weights a model can do without.

Molchanov, Ashukha and Vetrov, "Variational Dropout Sparsifies Deep Neural Networks" (ICML 2017).
Every weight ``w`` gets a Gaussian posterior ``N(theta, sigma^2)`` with its own dropout rate
``alpha = sigma^2 / theta^2``. Training maximises the variational lower bound: the data term
(``loss_fn``) plus ``KL(q(w) || p(w)) / N`` under the log-uniform prior, whose only minimum over
``alpha`` alone is at ``alpha -> infinity``. Weights the data does not defend drift to a large
``alpha``; those with ``log alpha > threshold`` (3 in the paper, dropout rate above 95%) are removed.
The paper reports LeNet-5 at 0.36% of its weights and LeNet-300-100 at 1.6%, with no loss of
accuracy, where magnitude pruning keeps 8%.

The removed weights become ordinary :func:`~convpress.compress.prune.prune_` masks, so what
follows is Deep Compression's usual path: :func:`~convpress.compress.quantize.quantize_`,
:func:`~convpress.compress.finetune.finetune` and :func:`~convpress.compress.files.save`.

Written here because no maintained PyTorch library provides it as an in-place transform on any
``nn.Module`` (the authors' code is Theano/Lasagne; ``torchbnn`` and ``blitz`` replace the layers
with their own classes). The implementation adds one parameter ``vd_log_sigma2`` per weight tensor
and a forward hook applying the local reparameterisation trick (Kingma et al. 2015), so the model's
own classes and forward stay as they are, DDP and checkpoints see the new parameters, and both are
removed when training ends.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from convpress.compress.finetune import finetune
from convpress.compress.prune import apply_masks_, resolve_layers
from convpress.compress.state import Shared, WeightLayer, compression_of
from convpress.core.errors import ConfigError

__all__ = ["SparseVD", "sparse_vd_", "log_alpha", "kl_divergence"]

#: the name of the parameter each trained layer carries during training
_PARAM = "vd_log_sigma2"
# Molchanov et al.'s fit of -KL(q || log-uniform prior) as a function of log alpha (eq. 14)
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695


@dataclass(frozen=True)
class SparseVD:
    """Settings of :func:`sparse_vd_`.

    Attributes:
        epochs: passes over the training data (the paper trains LeNets for 200 from a dense net).
        lr: Adam learning rate.
        threshold: weights with ``log alpha`` above it are removed (3.0: dropout rate above 95%).
        kl_weight: scale of the KL term (1.0 is the variational bound; larger prunes more).
        warmup: fraction of training over which the KL weight rises linearly from 0.
        init_log_sigma2: initial ``log sigma^2`` of every weight (small: training starts as the
            dense model).
    """

    epochs: int = 100
    lr: float = 1e-3
    threshold: float = 3.0
    kl_weight: float = 1.0
    warmup: float = 0.3
    init_log_sigma2: float = -10.0

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError(f"SparseVD epochs must be an integer >= 1, got {self.epochs!r}")
        for name in ("lr", "kl_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"SparseVD {name} must be a positive number, got {v!r}")
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1):
            raise ConfigError(f"SparseVD warmup must be in [0, 1), got {self.warmup!r}")
        for name in ("threshold", "init_log_sigma2"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ConfigError(f"SparseVD {name} must be a finite number, got {v!r}")


def log_alpha(module: nn.Module) -> torch.Tensor:
    """``log alpha = log sigma^2 - log theta^2`` of a layer under training, clipped to [-10, 10]; shape of its weight."""
    log_sigma2: torch.Tensor = getattr(module, _PARAM)
    weight: torch.Tensor = module.weight  # type: ignore[assignment]
    return (log_sigma2 - torch.log(weight**2 + 1e-8)).clamp(-10.0, 10.0)


def kl_divergence(model: nn.Module) -> torch.Tensor:
    """Sum over every weight under training of the approximate ``KL(q(w) || p(w))`` (a scalar)."""
    total = torch.zeros(())
    for m in model.modules():
        if hasattr(m, _PARAM):
            la = log_alpha(m)
            neg_kl = _K1 * torch.sigmoid(_K2 + _K3 * la) - 0.5 * F.softplus(-la) - _K1
            total = total - neg_kl.sum()
    return total


def _noise_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Local reparameterisation: add the pre-activation noise ``N(0, x^2 * sigma^2)`` in training mode."""
    if not module.training:
        return output
    x = inputs[0]
    sigma2 = torch.exp(getattr(module, _PARAM))
    if isinstance(module, nn.Linear):
        var = F.linear(x * x, sigma2)  # (N, out)
    else:
        conv: Callable[..., torch.Tensor] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[sigma2.dim() - 2]
        c = cast(nn.modules.conv._ConvNd, module)
        var = conv(x * x, sigma2, None, c.stride, c.padding, c.dilation, c.groups)  # (N, out, ...)
    return output + torch.sqrt(var + 1e-8) * torch.randn_like(output)


def _layers(model: nn.Module, names: Iterable[str] | None) -> dict[str, WeightLayer]:
    layers = resolve_layers(model, None if names is None else dict.fromkeys(names, 0), None, what="sparse_vd_")
    out: dict[str, WeightLayer] = {}
    for n, m in layers.items():
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            continue  # their noise would need a transposed variance convolution; kept dense
        if isinstance(compression_of(m, "weight"), Shared):
            raise ConfigError(f"layer {n!r} is already weight-shared; run sparse_vd_ before quantize_")
        if getattr(m, "padding_mode", "zeros") != "zeros":
            raise ConfigError(f"sparse_vd_ supports zero-padded convolutions only; layer {n!r} pads with {m.padding_mode!r}")
        out[n] = m
    if not out:
        raise ConfigError("sparse_vd_: the model has no Linear or convolution layers to train")
    return out


def _dataset_size(loader: Iterable[Any]) -> int:
    dataset = getattr(loader, "dataset", None)
    if isinstance(dataset, Sized):
        return len(dataset)
    return sum(len(batch[0]) for batch in loader)


def sparse_vd_(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: SparseVD | None = None,
    *,
    layers: Iterable[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train ``model`` with sparse variational dropout, then prune the weights it learned to drop.

    Args:
        model: any module; its Linear and (non-transposed) convolution layers are trained and pruned.
            Start from a trained dense model (as the paper does): training from scratch works
            too but needs more epochs.
        loader: ``(inputs, targets)`` batches; its dataset size ``N`` scales the KL term (``KL / N``
            beside the mean loss of a batch).
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``, a mean over the batch (e.g.
            ``F.cross_entropy``: the negative log-likelihood of the bound).
        cfg: the :class:`SparseVD` settings (defaults if ``None``).
        layers: names of the layers to sparsify (default: all).
        checkpoint: file of the training state, resumed if it exists (see ``finetune``).
        progress: draw a progress bar.

    Returns:
        ``{layer_name: sparsity}``, the fraction of each layer's weights removed. The model keeps
        its posterior means ``theta`` as weights, masked as :func:`prune_` masks them.

    Raises:
        ConfigError: bad settings, a model without weight layers, or weight-shared layers.
        InputError: if training diverges (NaN loss).
    """
    cfg = cfg or SparseVD()
    chosen = _layers(model, layers)
    n = _dataset_size(loader)
    if n < 1:
        raise ConfigError("sparse_vd_: the loader yields no samples")
    hooks = []
    for m in chosen.values():
        w = m.weight
        m.register_parameter(_PARAM, nn.Parameter(torch.full_like(w.detach(), cfg.init_log_sigma2)))
        hooks.append(m.register_forward_hook(_noise_hook))

    def penalty(done: float) -> torch.Tensor:
        ramp = min(1.0, done / cfg.warmup) if cfg.warmup > 0 else 1.0
        return (cfg.kl_weight * ramp / n) * kl_divergence(model)

    try:
        finetune(
            model,
            loader,
            loss_fn,
            cfg.epochs,
            cfg.lr,
            penalty=penalty,
            checkpoint=checkpoint,
            progress=progress,
            description="sparse variational dropout",
        )
        with torch.no_grad():
            masks = {name: log_alpha(m) < cfg.threshold for name, m in chosen.items()}
    finally:
        for h in hooks:
            h.remove()
        for m in chosen.values():
            delattr(m, _PARAM)
    apply_masks_(model, masks)
    return {name: 1.0 - float(mask.sum()) / mask.numel() for name, mask in masks.items()}
