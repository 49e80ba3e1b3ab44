"""``convpress bench fip`` in quick mode, on a temporary weights folder (the real run is in benchmarks/results)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_quick_bench_reports_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import convpress.fip.weights as weights
    from convpress.bench import BENCHMARKS
    from convpress.bench.fip import readme_summary, run, to_markdown
    from convpress.models import create_model

    assert BENCHMARKS.get("fip").run is run and BENCHMARKS.get("fip").readme_summary is readme_summary
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
    summary = readme_summary(result)
    assert "TVL1 " not in summary and f"tvl1 {row['speedup']:.1f}× faster at {row['psnr']:.1f} dB" in summary


def test_readme_summaries_are_rendered_between_markers() -> None:
    """benchmarks/make_benchmarks_md.py rewrites only what lies between a section's markers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mbm", Path(__file__).parents[2] / "benchmarks" / "make_benchmarks_md.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = "a\n<!-- bench:fip -->\nold\n<!-- /bench:fip -->\nb\n"
    assert (
        mod.replace_between(text, "<!-- bench:fip -->", "<!-- /bench:fip -->", "new ")
        == "a\n<!-- bench:fip -->\nnew\n<!-- /bench:fip -->\nb\n"
    )
    assert mod.replace_between("no markers", "<!-- bench:fip -->", "<!-- /bench:fip -->", "new") == "no markers"
