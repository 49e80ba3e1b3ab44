"""apply_network with networks that are not CANs: whole-image runs, tiling refused, memory estimates they declare."""

from __future__ import annotations

import pytest
import torch

from convpress.core.errors import ConfigError, InputError
from convpress.fip.apply import apply_network, estimate_memory
from convpress.models import create_model


def test_a_pyramid_network_runs_on_the_whole_image() -> None:
    model = create_model("lap-remap")
    x = torch.rand(3, 37, 50)
    out = apply_network(model, x)
    assert out.shape == x.shape and out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, model(x[None])[0].clamp(0, 1), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="needs at least 16x16"):
        apply_network(model, torch.rand(3, 12, 50))


def test_tiling_any_network_but_a_guided_filter_can_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"^a LaplacianRemapNet network needs the whole image at once and cannot be tiled"):
        apply_network(create_model("lap-remap"), torch.rand(3, 40, 40), tile_rows=8)
    with pytest.raises(ConfigError, match=r"^a plain CAN \(it normalises with whole-image statistics\) .*cannot be tiled"):
        apply_network(create_model("can24"), torch.rand(3, 40, 40), tile_rows=8)


def test_a_whole_image_network_declares_its_memory_and_is_refused_when_it_cannot_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model("lap-remap")
    small, big = estimate_memory(model, 100, 100), estimate_memory(model, 2000, 2000)
    assert big - small == (2000 * 2000 - 100 * 100) * (3 * 3 * 4 + model.bytes_per_pixel)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "250M")
    with pytest.raises(
        ConfigError, match=r"^applying a LaplacianRemapNet network \(it cannot be tiled\) to a 2000x1500 image .*use a smaller image"
    ):
        apply_network(model, torch.rand(3, 1500, 2000))
