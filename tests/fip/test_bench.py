"""``convpress bench fip`` in quick mode, on a temporary weights folder (the real run is in benchmarks/results)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_quick_bench_reports_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import convpress.fip.weights as weights
    from convpress.bench import BENCHMARKS
    from convpress.bench.fip import run, to_markdown
    from convpress.models import create_model

    assert BENCHMARKS["fip"] == "convpress.bench.fip"
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights.save_network(create_model("gf-can24"), tmp_path / "tvl1.safetensors", model_name="gf-can24", operator="tvl1")
    result = run(quick=True)
    (row,) = result["operators"]
    assert row["operator"] == "tvl1" and row["reference_s"] > 0 and row["network_s"] > 0
    assert 15 < row["psnr"] < 60 and 0 < row["ssim"] <= 1  # an untrained network is about the identity
    assert [g["model"] for g in result["growth"]] == ["can24", "gf-can24"]
    assert all(g["large_mp"] / g["small_mp"] == pytest.approx(4, rel=0.05) for g in result["growth"])
    assert {c["name"] for c in result["checks"]} == {"tvl1 PSNR", "tvl1 speed-up"}
    md = to_markdown(result)
    assert "| tvl1 | gf-can24 |" in md and "4 MP ÷ 1 MP" in md
