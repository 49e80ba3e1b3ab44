"""``convpress bench NAME --only PART``: one part of a benchmark, refused by name for unknown parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from convpress.bench.deep_compression import PARTS, to_markdown
from convpress.cli import bench as bench_cli


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["deep-compression", "--only", "nope"], "has parts recipes, one-call, records, beyond, not 'nope'"),
        (["layers", "--only", "one-call"], "has no parts"),
    ],
)
def test_unknown_parts_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    out = tmp_path / "r.json"
    assert bench_cli.main([*argv, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_result_with_one_part_renders() -> None:
    assert PARTS == ("recipes", "one-call", "records", "beyond")
    check = {"name": "one call: ratio", "value": 61.0, "target": 60.0, "passed": True}
    run = {
        "seed": 0,
        "train_seconds": 1.0,
        "seconds": 2.0,
        "dense_accuracy": 94.0,
        "loaded_accuracy": 93.5,
        "drop": 0.5,
        "dense_bytes": 100,
        "file_bytes": 10,
        "ratio": 10.0,
        "attempts": [],
        "layers": [],
    }
    env = {"date": "today", "cpu_count": 2, "convpress": "0"}
    one = {"protocol": "p", "environment": env, "widths": [4, 2], "target_ratio": 60.0, "max_drop": 1.0, "torch_threads": 1, "runs": [run]}
    md = to_markdown({"quick": False, "one_call": one, "checks": [check]})
    assert "MLP 4-2" in md and "94.00% → 93.50%" in md and "LeNet recipes" not in md
