"""``convpress seg train | apply`` as a user runs them, and every bad input named in issue 20."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers.seg import write_pair

from convpress.cli.main import main

TRAIN = ["--width", "0.25", "--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "24", "32", "--no-progress"]


def _folder(root: Path, n: int = 5, **first: object) -> Path:
    for k in range(n):
        write_pair(root / "images" / f"im{k}.png", root / "masks" / f"im{k}.png", seed=k, **(first if k == 0 else {}))  # type: ignore[arg-type]
    return root


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_train_then_apply_writes_mask_and_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _folder(tmp_path / "data")
    weights = tmp_path / "seg.safetensors"
    assert main(["seg", "train", "--data", str(data), "--out", str(weights), "--work-dir", str(tmp_path / "work"), *TRAIN]) == 0
    assert weights.is_file() and (tmp_path / "work" / "checkpoint.ckpt").is_file()
    assert "validation mIoU" in capsys.readouterr().out
    out = tmp_path / "mask.png"
    assert main(["seg", "apply", str(weights), str(data / "images" / "im4.png"), "-o", str(out)]) == 0
    with Image.open(out) as m:
        assert m.mode == "P" and m.size == (32, 24)
        assert set(np.unique(np.array(m)).tolist()) <= {0, 1, 2}  # three classes found in the masks
    with Image.open(tmp_path / "mask-overlay.png") as o:
        assert o.mode == "RGB" and o.size == (32, 24)
    capsys.readouterr()
    assert main(["seg", "apply", str(weights), str(data / "images" / "im4.png"), "-o", str(out)]) == 2
    assert "already exists" in _error(capsys)


@pytest.mark.parametrize(
    ("first", "message"),
    [
        ({"mask_size": (20, 32)}, "is 32x20 but its image"),
        ({"labels": (0, 1, 9)}, "holds label 9, outside the 3 classes"),
    ],
)
def test_bad_masks_exit_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: dict[str, object], message: str
) -> None:
    data = _folder(tmp_path / "data", **first)
    out = tmp_path / "seg.safetensors"
    assert (
        main(["seg", "train", "--data", str(data), "--num-classes", "3", "--out", str(out), "--work-dir", str(tmp_path / "w"), *TRAIN]) == 2
    )
    assert message in _error(capsys)
    assert not out.exists() and not (tmp_path / "w").exists()


def test_empty_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    assert main(["seg", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o.safetensors"), *TRAIN]) == 2
    assert "holds no folder image/mask pairs" in _error(capsys)


def test_class_count_other_than_the_checkpoints_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import convpress as cp
    from convpress.seg.weights import save_segmenter

    init = save_segmenter(
        cp.create_model("shuffleseg", num_classes=5, width=0.25),
        tmp_path / "five.safetensors",
        model_name="shuffleseg",
        model_kwargs={"num_classes": 5, "width": 0.25},
        classes=[str(c) for c in range(5)],
    )
    data = _folder(tmp_path / "data")
    out = tmp_path / "o.safetensors"
    assert main(["seg", "train", "--data", str(data), "--init", str(init), "--out", str(out), *TRAIN]) == 2
    assert "has 5 classes but the data has 3" in _error(capsys)
    assert not out.exists()
    assert main(["seg", "train", "--data", "demo", "--num-classes", "4", "--out", str(out), *TRAIN]) == 2
    assert "the demo set has 11 classes" in _error(capsys)


@pytest.mark.slow
def test_train_runs_under_torchrun_and_only_rank_0_writes(tmp_path: Path) -> None:
    """Two CPU processes (gloo) each train on half of every batch; the weights load and are finite."""
    import os
    import subprocess
    import sys

    import torch

    import convpress as cp
    from convpress.seg.weights import load_segmenter

    data = _folder(tmp_path / "data")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(Path(cp.__file__).parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("WORLD_SIZE", None)
    out = tmp_path / "seg.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531", "-m", "convpress"]
    args = ["seg", "train", "--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / "w"), *TRAIN, "--batch", "4"]
    r = subprocess.run([*cmd, *args], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(f"wrote {out}") == 1 and r.stdout.count("validation mIoU") == 1  # rank 0 alone prints
    model, info = load_segmenter(out)
    assert info["num_classes"] == 3 and all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
