"""``convpress bench fip`` in quick mode, on a temporary weights folder (the real run is in benchmarks/results)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_quick_bench_reports_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import convpress.fip.weights as weights
    from convpress.bench import BENCHMARKS
    from convpress.bench.fip import readme_summary, run, to_markdown
    from convpress.fip.operators import operator_names
    from convpress.models import create_model

    assert BENCHMARKS.get("fip").run is run and BENCHMARKS.get("fip").readme_summary is readme_summary
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    weights.save_network(create_model("gf-can24"), tmp_path / "tvl1.safetensors", model_name="gf-can24", operator="tvl1")
    result = run(quick=True)
    rows = {r["operator"]: r for r in result["operators"]}
    assert set(rows) == set(operator_names())  # all ten are measured, with or without a network
    row = rows["tvl1"]
    assert row["network"] and row["reference_s"] > 0 and row["network_s"] > 0 and 0 < row["ssim"] <= 1
    # an untrained network is about the identity: it scores what the untouched input scores
    assert row["psnr"] == pytest.approx(row["input_psnr"], abs=1.5)
    assert row["gain_db"] == pytest.approx(row["psnr"] - row["input_psnr"])
    assert all(p["gain_db"] == pytest.approx(p["psnr"] - p["input_psnr"]) for p in row["photos"])
    assert not rows["rtv"]["network"] and "psnr" not in rows["rtv"] and rows["rtv"]["input_psnr"] > 0
    # pencil drawing moves a photo far more than TV denoising does
    assert rows["pencil"]["input_psnr"] < rows["tvl1"]["input_psnr"] - 5
    assert [g["model"] for g in result["growth"]] == ["can24", "gf-can24"]
    assert all(g["large_mp"] / g["small_mp"] == pytest.approx(4, rel=0.05) for g in result["growth"])
    checks = {c["name"]: c for c in result["checks"]}
    assert not checks["tvl1 gain over the input"]["passed"]  # the identity gains nothing
    assert checks["operators with a shipped network"]["value"] == "1 of 10" and not checks["operators with a shipped network"]["passed"]
    assert checks["rtv gain over the input"]["value"] == "no network" and not checks["mean PSNR over the ten operators"]["passed"]
    assert not checks["test photos never trained on"]["passed"]  # quick runs use two photos
    assert "tvl1 speed-up at 1 MP" in checks and "rtv speed-up at 1 MP" not in checks
    md = to_markdown(result)
    assert "| tvl1 | gf-can24 |" in md and "| rtv | none yet |" in md and "4 MP ÷ 1 MP" in md
    summary = readme_summary(result)
    assert "TVL1 " not in summary and f"tvl1 {row['psnr']:.1f} dB against {row['input_psnr']:.1f} dB" in summary
    assert "No network ships yet for" in summary and "rtv" in summary


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


def test_references_are_kept_in_the_work_dir_per_operator_and_photo(tmp_path: Path) -> None:
    import torch

    from convpress.bench.fip import _reference
    from convpress.fip.apply import run_reference

    a, b = (
        torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(1)),
        torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(2)),
    )
    ref_a, s_a = _reference("tvl1", a, tmp_path)
    assert torch.equal(ref_a, run_reference("tvl1", a)) and s_a > 0
    assert len(list((tmp_path / "fip-references" / "tvl1").glob("*.npz"))) == 1
    again, s_again = _reference("tvl1", a, tmp_path)  # reused: the same pixels and the time measured the first time
    assert torch.equal(again, ref_a) and s_again == s_a
    ref_b, _ = _reference("tvl1", b, tmp_path)  # another photo is another entry, never the first one's output
    assert torch.equal(ref_b, run_reference("tvl1", b))
    ref_rof, _ = _reference("rof", a, tmp_path)
    assert torch.equal(ref_rof, run_reference("rof", a))
    assert len(list((tmp_path / "fip-references").rglob("*.npz"))) == 3


def test_a_fixed_operator_does_not_reuse_its_old_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import torch

    from convpress.bench import fip as bench_fip
    from convpress.fip.operators import get_operator

    a = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(1))
    bench_fip._reference("tvl1", a, tmp_path)
    fixed = dataclasses.replace(get_operator("tvl1"), version=2)
    monkeypatch.setattr(bench_fip, "get_operator", lambda name: fixed)
    bench_fip._reference("tvl1", a, tmp_path)  # another key: computed again, beside the old entry
    assert len(list((tmp_path / "fip-references" / "tvl1").glob("*.npz"))) == 2
