"""The unrolled L0 smoother (gf-l0): it is the operator's solver, learns lam and the penalties, and tiles exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convpress.fip.apply import apply_network, estimate_memory
from convpress.fip.operators.smoothing import l0_smooth
from convpress.models import create_model
from convpress.models.l0net import L0GuidedFilterNet, fft_size_below, l0_betas, l0_unrolled


def _blocks(seed: int, h: int = 37, w: int = 50) -> np.ndarray:
    """(H, W, 3) float32: flat rectangles plus noise, the image L0 smoothing is made for."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 0.3, np.float32)
    img[5:20, 8:30] = rng.random(3)
    img[22:, 25:] = rng.random(3)
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)


def test_the_papers_schedule_doubles_beta_from_two_lambda_to_beta_max() -> None:
    betas = l0_betas(0.02)
    assert len(betas) == 22 and betas[0] == pytest.approx(0.04) and betas[-1] < 1e5 <= 2 * betas[-1]
    assert all(b2 == pytest.approx(2 * b1) for b1, b2 in zip(betas, betas[1:], strict=False))


@pytest.mark.parametrize("seed", [0, 1])
def test_unrolled_solver_with_the_papers_schedule_is_the_operator(seed: int) -> None:
    img = _blocks(seed) if seed else np.random.default_rng(seed).random((29, 41, 3)).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    out = l0_unrolled(x, 0.02, torch.tensor(l0_betas(0.02), dtype=torch.float64))
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), l0_smooth(img), atol=1e-6)


def test_a_network_starts_as_the_operator_at_low_resolution() -> None:
    model = create_model("gf-l0").eval()
    assert isinstance(model, L0GuidedFilterNet)
    x = torch.from_numpy(_blocks(2)).permute(2, 0, 1)[None]
    with torch.no_grad():
        got = model.low_res_output(x)  # the correcting CAN starts as the identity
    want = l0_unrolled(x.double(), 0.02, torch.tensor(l0_betas(0.02), dtype=torch.float64)).float()
    torch.testing.assert_close(got, want, atol=2e-4, rtol=0)


def test_training_keeps_the_hard_threshold_forward_and_learns_lambda_and_the_penalties() -> None:
    torch.manual_seed(0)
    model = create_model("gf-l0", iterations=8)
    x = torch.from_numpy(_blocks(3)).permute(2, 0, 1)[None]
    model.eval()
    with torch.no_grad():
        hard = model(x)
    model.train()
    out = model(x)
    torch.testing.assert_close(out, hard, atol=1e-5, rtol=0)  # straight-through: same forward pass
    ((out - x) ** 2).mean().backward()
    assert model.log_lam.grad is not None and model.log_betas.grad is not None
    assert torch.isfinite(model.log_lam.grad) and model.log_lam.grad != 0
    assert torch.isfinite(model.log_betas.grad).all() and (model.log_betas.grad != 0).any()


def test_fewer_iterations_keep_the_end_of_the_schedule() -> None:
    model = create_model("gf-l0", iterations=10)
    torch.testing.assert_close(model.log_betas.exp(), torch.tensor(l0_betas(0.02)[-10:]), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="iterations"):
        create_model("gf-l0", iterations=0)


def test_the_low_resolution_copy_has_fast_fft_sizes() -> None:
    assert [fft_size_below(n) for n in (1, 7, 17, 257, 408, 612)] == [1, 6, 16, 256, 405, 600]
    model = create_model("gf-l0")
    assert model.low_size(816, 1224) == (405, 600)  # half size, rounded down to 2^a 3^b 5^c


def test_tiling_stays_exact_and_the_solver_counts_in_the_memory_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = create_model("gf-l0")
    photo = torch.from_numpy(_blocks(4, 90, 70)).permute(2, 0, 1).contiguous()
    torch.testing.assert_close(apply_network(model, photo, tile_rows=13), apply_network(model, photo), atol=1e-6, rtol=0)
    lh, lw = model.low_size(900, 700)
    with_solver = estimate_memory(model, 900, 700)
    monkeypatch.setattr(L0GuidedFilterNet, "low_res_bytes_per_pixel", 0)
    assert with_solver - estimate_memory(model, 900, 700) == lh * lw * 12 * 3 * 4
