"""``convpress compress --unlabelled DIR``: Data Distillation in the retraining, as a user runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.cli import compress as compress_cli
from convpress.data.images import write_image
from convpress.data.mnist import load_mnist


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 held-out digits as PNG files (white on black, 28 x 28), no labels."""
    root = tmp_path_factory.mktemp("digits")
    x, _ = load_mnist("test").tensors
    for i in range(30):
        write_image(root / f"{i:02d}.png", x[i * 33].expand(3, -1, -1))
    return root


def test_compress_with_unlabelled_digits_pseudo_labels_them(tmp_path: Path, digit_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "l.cpz"
    quick = "--train-epochs 1 --prune 0.8 --prune-epochs 1 --quant-epochs 1 --batch-size 256 --no-progress".split()
    assert compress_cli.main(["lenet-300-100", "-o", str(out), *quick, "--unlabelled", str(digit_folder)]) == 0
    printed = capsys.readouterr().out
    kept = re.search(r"pseudo-labelled (\d+) of 30 unlabelled images", printed)
    assert kept is not None and 20 <= int(kept.group(1)) <= 27  # at most 90% kept, per class
    assert cp.load_model(out)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


@pytest.mark.parametrize("folder, match", [("empty", "contains no images"), ("missing", "is not a folder")])
def test_an_empty_or_missing_unlabelled_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], folder: str, match: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    out = tmp_path / "x.cpz"
    argv = ["lenet-300-100", "-o", str(out), "--train-epochs", "50", "--unlabelled", str(tmp_path / folder), "--no-progress"]
    assert compress_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "--unlabelled" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
