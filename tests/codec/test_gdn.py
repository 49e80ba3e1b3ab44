"""GDN/IGDN against a naive per-pixel reference, gradients in float64, non-negativity."""

from __future__ import annotations

import torch

from convpress.codec.gdn import GDN, IGDN, gdn, lower_bound


def expected_gdn(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for n in range(b):
        for i in range(c):
            norm = beta[i] + sum(gamma[i, j] * x[n, j] ** 2 for j in range(c))
            out[n, i] = x[n, i] * torch.sqrt(norm) if inverse else x[n, i] / torch.sqrt(norm)
    return out


def test_gdn_matches_naive_reference() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    beta = torch.rand(5, dtype=torch.float64) + 0.5
    gamma = torch.rand(5, 5, dtype=torch.float64) * 0.2
    for inverse in (False, True):
        torch.testing.assert_close(gdn(x, beta, gamma, inverse=inverse), expected_gdn(x, beta, gamma, inverse), rtol=1e-12, atol=1e-12)


def test_layers_use_reparametrized_nonnegative_parameters() -> None:
    torch.manual_seed(0)
    layer = GDN(4)
    beta, gamma = layer.effective()
    torch.testing.assert_close(beta, torch.ones(4), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gamma, 0.1 * torch.eye(4), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        layer.beta.fill_(-3.0)
        layer.gamma.fill_(-3.0)
    beta, gamma = layer.effective()
    assert (beta >= 1e-6 - 1e-9).all() and (gamma >= -1e-9).all()
    x = torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(layer(x), expected_gdn(x, beta, gamma, False))
    inv = IGDN(4)
    torch.testing.assert_close(inv(x), expected_gdn(x, *inv.effective(), True))


def test_gradcheck_float64() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    beta = (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_()
    gamma = (torch.rand(3, 3, dtype=torch.float64) * 0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, g: gdn(a, b, g), (x, beta, gamma))
    assert torch.autograd.gradcheck(lambda a, b, g: gdn(a, b, g, inverse=True), (x, beta, gamma))


def test_lower_bound_passes_gradients_that_push_up() -> None:
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    y = lower_bound(x, 0.5)
    assert y.tolist() == [0.5, 2.0]
    (-y.sum()).backward()  # descent increases y: the clamped element must receive the gradient
    assert x.grad.tolist() == [-1.0, -1.0]
    x.grad = None
    lower_bound(x, 0.5).sum().backward()  # descent would push the clamped element further down
    assert x.grad.tolist() == [0.0, 1.0]
