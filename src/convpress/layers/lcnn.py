"""LCNN: lookup-based convolution (Bagherinezhad et al., CVPR 2017).

Every k x k x Cin filter is built from a small shared dictionary of Cin-vectors: at each kernel
position it is a sparse combination (``sparsity`` atoms) of the ``dictionary_size`` atoms. Then
the convolution needs only ``dictionary_size`` 1 x 1 dot products per input pixel (the lookup
table) and a sparse combination of table entries, instead of Cin·Cout·k² multiplies. Training
keeps dense coefficients and uses the top-|s| ones per position (gradients pass straight
through to the kept ones), so dictionary and coefficients train end to end.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LookupConv2d"]


class LookupConv2d(nn.Module):
    """Lookup-based convolution; input (N, Cin, H, W), output (N, Cout, H', W').

    Args:
        dictionary_size: m atoms (Cin-vectors).
        sparsity: atoms per kernel position (s <= m).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        dictionary_size: int = 16,
        sparsity: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not 1 <= sparsity <= dictionary_size:
            raise ValueError(f"sparsity must be in [1, dictionary_size={dictionary_size}], got {sparsity}")
        self.k, self.stride = kernel_size, stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.sparsity = sparsity
        self.dictionary = nn.Parameter(torch.randn(dictionary_size, in_channels) / in_channels**0.5)  # (m, Cin)
        self.coefficients = nn.Parameter(
            torch.randn(out_channels, kernel_size, kernel_size, dictionary_size) / (kernel_size * sparsity**0.5)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def sparse_coefficients(self) -> torch.Tensor:
        """(Cout, k, k, m) coefficients with all but the top-|s| per position zeroed."""
        c = self.coefficients
        top = c.abs().topk(self.sparsity, dim=-1).indices
        keep = torch.zeros_like(c, dtype=torch.bool).scatter_(-1, top, True)
        return torch.where(keep, c, torch.zeros((), dtype=c.dtype, device=c.device))

    def weight(self) -> torch.Tensor:
        """The equivalent dense conv weight (Cout, Cin, k, k)."""
        return torch.einsum("oyxm,mc->ocyx", self.sparse_coefficients(), self.dictionary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training/reference path: one dense conv with the reconstructed weight."""
        return F.conv2d(x, self.weight(), self.bias, stride=self.stride, padding=self.padding)

    def lookup_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference path: the lookup table (1 x 1 conv onto the dictionary), then the sparse combination."""
        table = F.conv2d(x, self.dictionary[:, :, None, None])  # (N, m, H, W): every atom · every pixel
        coeff = self.sparse_coefficients().permute(0, 3, 1, 2)  # (Cout, m, k, k), s nonzeros per position
        return F.conv2d(table, coeff, self.bias, stride=self.stride, padding=self.padding)
