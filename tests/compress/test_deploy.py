"""convpress.for_cpu: BatchNorm folded, channels-last, same outputs as the trained network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import convpress as cp
from convpress.compress.deploy import CPUDeployed, count_batchnorm, fold_batchnorm
from convpress.models.shuffleseg import shuffleseg


def _calibrated(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """``model`` in eval mode with BatchNorm statistics of a few random batches (not the identity defaults)."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(*shape) * 2 - 0.5)
    return model.eval()


class _Untraceable(nn.Module):
    """Conv-BN pairs in a Sequential behind data-dependent control flow (torch.fx cannot trace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if bool(y.sum() > 0) else -y


@pytest.mark.parametrize(
    "make, shape, bn_left",
    [
        (lambda: shuffleseg(num_classes=5), (2, 3, 64, 96), 0),  # pairs in Sequentials: the model's forward stays
        (lambda: resnet18(num_classes=7), (2, 3, 64, 64), 0),  # bn1 after conv1 as attributes: folded on the fx graph
        (_Untraceable, (2, 3, 16, 16), 0),
    ],
)
def test_for_cpu_gives_the_same_outputs_without_batchnorm(make, shape, bn_left) -> None:
    model = _calibrated(make(), shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = cp.for_cpu(model)
    assert isinstance(deployed, CPUDeployed) and not deployed.training
    assert count_batchnorm(model) > 0 and count_batchnorm(deployed) == bn_left
    x = torch.rand(*shape)
    with torch.no_grad():
        want, got = model(x), deployed(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    if got.ndim == 4:
        assert got.is_contiguous()  # NCHW for the caller, whatever the network ran in
    for k, v in model.state_dict().items():  # the trained network is not changed
        assert torch.equal(v, before[k]), k


def test_fold_keeps_a_batchnorm_whose_convolution_output_is_used_twice() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    model = _calibrated(Shared(), (2, 3, 8, 8))
    folded = fold_batchnorm(model)
    assert count_batchnorm(folded) == 1  # folding would change the un-normalised use of y
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_deployed_shuffleseg_runs_channels_last_inside() -> None:
    model = _calibrated(shuffleseg(num_classes=3), (1, 3, 64, 64))
    deployed = cp.for_cpu(model)
    seen: list[bool] = []
    conv = deployed.model.encoder.to16[1].depthwise[0]  # the channel shuffle feeds it
    hook = conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        deployed(torch.rand(1, 3, 64, 64))
    hook.remove()
    assert seen == [True]  # after the channel shuffle too: no NCHW round trip
