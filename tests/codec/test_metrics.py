"""PSNR, MS-SSIM and BD-rate against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from convpress.codec.metrics import bd_rate, ms_ssim, ms_ssim_db, psnr


def test_psnr_and_ms_ssim_basics() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert psnr(a, a) == float("inf")
    assert abs(psnr(a, b) - 10 * math.log10(255**2 / (1 / a.size))) < 1e-9
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ms_ssim(a, noisy) < ms_ssim(a, b) <= 1.0
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        ms_ssim(a[:100], a[:100])
    # the smallest side that works is 176 (five scales of an 11-pixel window); 168 used to pass the
    # check and fail inside the filtering
    big = rng.integers(0, 256, (176, 176, 3), dtype=np.uint8)
    assert ms_ssim(big, big) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 176 pixels"):
        ms_ssim(big[:175], big[:175])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_scaled_curve_is_the_scale(method: str) -> None:
    q = [30.0, 32.0, 34.0, 36.0, 38.0]
    r = [0.2, 0.35, 0.6, 1.0, 1.7]
    assert bd_rate(r, q, [0.8 * x for x in r], q, method=method) == pytest.approx(-20.0, abs=1e-6)
    assert bd_rate(r, q, r, q, method=method) == pytest.approx(0.0, abs=1e-9)
    # a curve shifted by 1 dB at the same rates: rate saving is the anchor's rate ratio at +1 dB
    assert bd_rate(r, q, r, [x + 1 for x in q], method=method) < -10
    assert math.isnan(bd_rate(r, q, r, [x + 100 for x in q], method=method))


def test_bd_rate_over_part_of_the_interval_sees_where_a_codec_wins() -> None:
    q = [30.0, 32.0, 34.0, 36.0, 38.0]
    r = [0.2, 0.35, 0.6, 1.0, 1.7]
    # 30% fewer bits at the low qualities, 10% more at the high ones
    t = [x * f for x, f in zip(r, [0.7, 0.7, 0.7 * 0.5 + 1.1 * 0.5, 1.1, 1.1], strict=True)]
    lower = bd_rate(r, q, t, q, part=(0.0, 0.5))
    upper = bd_rate(r, q, t, q, part=(0.5, 1.0))
    assert lower < -15 and upper > 0
    whole = bd_rate(r, q, t, q)
    assert min(lower, upper) < whole < max(lower, upper)
    # a constant saving is the same over any part
    assert bd_rate(r, q, [0.8 * x for x in r], q, part=(0.25, 0.5)) == pytest.approx(-20.0, abs=1e-6)
    with pytest.raises(ValueError, match="part"):
        bd_rate(r, q, t, q, part=(0.5, 0.5))
