"""``convpress bench segmentation`` in quick mode (the real run is in benchmarks/results/segmentation.json)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    from convpress.bench import BENCHMARKS
    from convpress.bench.segmentation import run, to_markdown, write_figures

    assert BENCHMARKS.get("segmentation").run is run
    result = run(quick=True)
    names = [c["name"] for c in result["checks"]]
    assert len(names) == 5 and any("LR-ASPP at 640x360" in n for n in names) and any("lost by acceleration" in n for n in names)
    for model in ("shuffleseg", "lraspp-mbv3"):
        row = result["models"][model]
        assert len(row["confusion"]) == 11 and sum(map(sum, row["confusion"])) > 0 and set(row["iou"]) == set(result["classes"])
    assert set(result["speed"]["seconds"]) == {"shuffleseg", "lraspp-mbv3", "fcn-resnet50"}
    acc = result["accelerated"]
    assert acc["macs"][1] < acc["macs"][0] and acc["onnx_max_error"] < 1e-3  # channels removed, exported faithfully
    assert "Real-time segmentation" in to_markdown(result)
    (png,) = write_figures(result, tmp_path / "seg.json")
    assert png.stat().st_size > 1000
