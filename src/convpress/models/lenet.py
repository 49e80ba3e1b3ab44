"""LeNet-300-100 and LeNet-5, the two MNIST networks of the Deep Compression paper.

LeNet-5 follows Caffe's version used by Han et al. (conv 20 -> conv 50 -> fc 500 -> fc 10,
431K parameters); we add ReLUs after the convolutions, which changes no parameter count.
"""

from __future__ import annotations

import torch
from torch import nn

from convpress.models import register_model

__all__ = ["LeNet300100", "LeNet5"]


class LeNet300100(nn.Module):
    """Fully connected 784-300-100-10 network (266,610 parameters).

    Input (N, 1, 28, 28) or (N, 784); output logits (N, num_classes).
    """

    def __init__(self, *, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (N, 784)
        x = torch.relu(self.fc1(x))  # (N, 300)
        x = torch.relu(self.fc2(x))  # (N, 100)
        return self.fc3(x)  # (N, C)


class LeNet5(nn.Module):
    """Caffe's LeNet-5: conv5x5(20) - pool - conv5x5(50) - pool - fc(500) - fc(10); 431,080 parameters.

    Input (N, 1, 28, 28); output logits (N, num_classes).
    """

    def __init__(self, *, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # (N, 20, 12, 12)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # (N, 50, 4, 4)
        x = torch.relu(self.fc1(x.flatten(1)))  # (N, 500)
        return self.fc2(x)  # (N, C)


@register_model("lenet-300-100", task="mnist")
def lenet_300_100(*, num_classes: int = 10) -> LeNet300100:
    """LeNet-300-100 (Deep Compression, Table 2)."""
    return LeNet300100(num_classes=num_classes)


@register_model("lenet-5", task="mnist")
def lenet_5(*, num_classes: int = 10) -> LeNet5:
    """Caffe LeNet-5 (Deep Compression, Table 3)."""
    return LeNet5(num_classes=num_classes)
