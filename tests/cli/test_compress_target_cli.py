"""``convpress compress ARCH --target-ratio R --max-drop D``: the planned run from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

import convpress as cp
from convpress.cli import compress as compress_cli


def test_compress_to_a_target_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "l.cpz"
    argv = ["lenet-300-100", "-o", str(out), "--train-epochs", "1", "--prune-epochs", "1", "--quant-epochs", "1"]
    assert compress_cli.main([*argv, "--target-ratio", "8", "--max-drop", "50", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "plan: fc1" in text and "target 8× within 50.0 points: met" in text
    dense = sum(t.numel() * t.element_size() for t in cp.load(out).values())
    assert dense / out.stat().st_size >= 8.0
    assert cp.read_info(out).arch == "lenet-300-100"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--target-ratio", "1"], "greater than 1"),
        (["--target-ratio", "0.5"], "greater than 1"),
        (["--target-ratio", "20", "--max-drop", "-1"], "non-negative"),
        (["--max-drop", "-0.5"], "non-negative"),
        (["--target-ratio", "20", "--max-attempts", "0"], "max attempts"),
        (["--target-ratio", "20", "--prune", "0.9"], "drop --prune"),
        (["--target-ratio", "20", "--fc-bits", "4", "--recipe", "lenet-300-100"], "drop --recipe, --fc-bits"),
        (["--target-ratio", "20", "--schedule", "sparse-vd"], "sparse-vd learns each layer's sparsity itself"),
    ],
)
def test_impossible_targets_exit_2_before_work(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str) -> None:
    out = tmp_path / "x.cpz"
    assert compress_cli.main(["lenet-300-100", "-o", str(out), "--train-epochs", "50", "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
