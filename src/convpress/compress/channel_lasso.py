"""Channel pruning by LASSO selection and least-squares reconstruction (He, Zhang, Sun, ICCV 2017).

For a producer convolution P whose output channels feed exactly one plain convolution C (through
BatchNorm/activations only), we sample C's input patches X and original outputs Y on calibration
data, choose the input channels of C that best reconstruct Y with a LASSO regression on the
per-channel contributions, remove the other channels from P (and its BatchNorm) through
Torch-Pruning's dependency graph, and refit C's weights by least squares on the kept channels.
Written here because neither Torch-Pruning nor PyTorch provides this criterion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from convpress.compress.channel_layers import customized_pruners
from convpress.layers.padding import pixel_padding

__all__ = ["lasso_prune_", "select_channels"]


def select_channels(contrib: np.ndarray, target: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the ``keep`` channels that enter the LASSO path first (most useful first).

    Args:
        contrib: (rows, C) contribution of each channel to the flattened target.
        target: (rows,) flattened original outputs.
        keep: channels to keep.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path

    top = float(np.abs(contrib.T @ target).max()) / max(len(target), 1)
    grid = np.geomspace(top, top * 1e-4, 60) if top > 0 else np.array([1e-8])
    with warnings.catch_warnings():
        # the smallest alphas may stop short of full convergence; only the order in which
        # channels enter the path is used, which is settled long before
        warnings.simplefilter("ignore", ConvergenceWarning)
        alphas, coefs, _ = lasso_path(contrib, target, alphas=grid)
    active = np.abs(coefs) > 1e-10  # (C, n_alphas), alphas descending
    first = np.where(active.any(axis=1), active.argmax(axis=1), len(alphas))  # earliest index active
    # ties (same entry point) broken by the final coefficient size
    order = np.lexsort((-np.abs(coefs[:, -1]), first))
    return np.sort(order[:keep])


def _consumer(dg: Any, producer: nn.Module) -> tuple[nn.Conv2d | None, str]:
    """The single plain conv whose input channels are the producer's outputs, or a reason why not."""
    import torch_pruning as tp

    group = dg.get_pruning_group(producer, tp.prune_conv_out_channels, idxs=[0])
    consumers = []
    for dep, _idxs in group:
        target = dep.target.module
        op = getattr(dep.handler, "__name__", "")
        if target is producer:
            continue
        if op == "prune_in_channels" and isinstance(target, (nn.modules.conv._ConvNd, nn.Linear)):
            consumers.append(target)
        elif (
            isinstance(target, (nn.modules.conv._ConvNd, nn.Linear))
            or "Concat" in type(target).__name__
            or "Split" in type(target).__name__
        ):
            # another layer's outputs are tied to these channels (residual sum, concatenation)
            return None, "its channels are coupled to another layer (residual sum, concatenation or grouped conv)"
        # BatchNorm and element-wise operations simply follow the producer's channels
    if len(consumers) != 1:
        return None, f"its channels feed {len(consumers)} layers; LASSO reconstruction needs exactly one"
    c = consumers[0]
    if not isinstance(c, nn.Conv2d) or c.groups != 1:
        return None, "the next layer is not a plain (ungrouped) 2-D convolution"
    if pixel_padding(c) is None:
        return None, "the next convolution pads unevenly ('same' around an even kernel), which patch sampling cannot repeat"
    return c, ""


@torch.no_grad()
def _sample(model: nn.Module, conv: nn.Conv2d, batches: Iterable[Any], samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(patches (n, Cin, k*k), outputs (n, Cout)) at random output positions of ``conv``."""
    grabbed: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda _m, inp, _o: grabbed.append(inp[0].detach()))
    xs = []
    g = torch.Generator().manual_seed(seed)
    padding = pixel_padding(conv)
    assert padding is not None, "_consumer skips convolutions with uneven padding"
    try:
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            grabbed.clear()
            model(inputs)
            x = grabbed[0]
            cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)  # (B, Cin*k*k, L)
            b, d, length = cols.shape
            idx = torch.randint(0, length, (b, max(1, samples // 50)), generator=g)
            xs.append(torch.gather(cols, 2, idx.unsqueeze(1).expand(b, d, idx.shape[1])).permute(0, 2, 1).reshape(-1, d))
            if sum(t.shape[0] for t in xs) >= samples:
                break
    finally:
        hook.remove()
    patches = torch.cat(xs)[:samples].double()  # (n, Cin*k*k)
    cin = conv.in_channels
    w = conv.weight.detach().double().reshape(conv.out_channels, -1)  # (Cout, Cin*k*k)
    return patches.reshape(patches.shape[0], cin, -1), patches @ w.T


def lasso_prune_(
    model: nn.Module,
    example_inputs: Any,
    plan: dict[str, float] | float,
    calibration: Iterable[Any],
    *,
    ignored: set[nn.Module],
    samples: int = 4000,
    seed: int = 0,
) -> dict[str, str]:
    """Prune producer convs by LASSO reconstruction of their consumers; returns skipped layers with reasons."""
    import torch_pruning as tp

    batches = list(calibration)
    skipped: dict[str, str] = {}
    producers = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    dg = None
    for name, producer in producers.items():
        amount = plan.get(name, 0.0) if isinstance(plan, dict) else plan
        if amount == 0 or producer in ignored:
            continue
        if dg is None:  # (re)built lazily: only a pruned group changes the graph
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, customized_pruners=customized_pruners(model))
        consumer, reason = _consumer(dg, producer)
        if consumer is None:
            skipped[name] = reason
            continue
        channels = producer.out_channels
        keep = channels - int(round(amount * channels))
        patches, y = _sample(model, consumer, batches, samples, seed)  # (n, Cin, kk), (n, Cout)
        w = consumer.weight.detach().double().reshape(consumer.out_channels, channels, -1)  # (Cout, Cin, kk)
        # contribution of input channel c to the outputs, flattened; the selection problem uses
        # at most 64 random output channels and ~3M matrix entries to stay fast (the refit uses all)
        outs = torch.randperm(consumer.out_channels, generator=torch.Generator().manual_seed(seed))[:64]
        rows = min(patches.shape[0], max(100, 3_000_000 // (len(outs) * channels)))
        contrib = torch.einsum("nck,ock->noc", patches[:rows], w[outs]).reshape(-1, channels).numpy()
        keep_idx = select_channels(contrib, y[:rows, outs].reshape(-1).numpy(), keep)
        remove = sorted(set(range(channels)) - set(keep_idx.tolist()))
        # least-squares refit of the consumer on the kept channels (small ridge for stability)
        xs = patches[:, keep_idx, :].reshape(patches.shape[0], -1)  # (n, keep*kk)
        gram = xs.T @ xs + 1e-6 * torch.eye(xs.shape[1], dtype=xs.dtype)
        refit = torch.linalg.solve(gram, xs.T @ y)  # (keep*kk, Cout)
        group = dg.get_pruning_group(producer, tp.prune_conv_out_channels, idxs=remove)
        if not dg.check_pruning_group(group):
            skipped[name] = "Torch-Pruning refused the channel group"
            continue
        group.prune()
        dg = None
        k = consumer.kernel_size
        consumer.weight.data = refit.T.reshape(consumer.out_channels, keep, *k).to(consumer.weight.dtype).contiguous()
    return skipped
