"""``convpress bench data-distillation --only segmentation --quick``: the segmentation task runs, renders and names its checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convpress.bench.data_distillation import readme_summary
from convpress.cli import bench as bench_cli


def test_the_segmentation_part_runs_and_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, md = tmp_path / "dd.json", tmp_path / "dd.md"
    assert bench_cli.main(["data-distillation", "--only", "segmentation", "--quick", "--json", str(out), "--markdown", str(md)]) == 0
    result = json.loads(out.read_text())
    assert "runs" not in result and result["segmentation"]["summary"]["seeds"] == 1
    run = result["segmentation"]["runs"][0]
    assert (run["labelled"], run["unlabelled"]) == (8, 32)  # 10% of the pool, 90% unlabelled
    assert 0 < run["pseudo_labels"]["multi"]["kept_fraction"] <= 1 and run["pseudo_labels"]["multi"]["accuracy_kept"] is not None
    names = [c["name"] for c in result["checks"]]
    assert any(n.startswith("segmentation demo, 10% labels: Data Distillation student") for n in names)
    text = md.read_text()
    assert "### Segmentation demonstration set" in text and "### Digits" not in text
    assert readme_summary(result).startswith("Segmentation (ShuffleSeg")


def test_an_unknown_part_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert bench_cli.main(["data-distillation", "--only", "boxes", "--json", str(out)]) == 2
    assert "has parts digits, segmentation, not 'boxes'" in capsys.readouterr().err
    assert not out.exists()
