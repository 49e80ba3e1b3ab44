"""``convpress seg train --unlabelled DIR`` (Data Distillation) as a user runs it, and its bad input (issue 21)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.helpers.seg import write_pair

import convpress as cp
from convpress.cli.main import main
from convpress.seg.weights import load_segmenter, save_segmenter

TRAIN = ["--width", "0.25", "--epochs", "1", "--steps", "2", "--batch", "2", "--crop", "24", "32", "--no-progress"]


def _folders(root: Path) -> tuple[Path, Path]:
    """A labelled images/ + masks/ folder (3 classes) and a folder of unlabelled images in a subfolder."""
    for k in range(5):
        write_pair(root / "data" / "images" / f"im{k}.png", root / "data" / "masks" / f"im{k}.png", seed=k)
    for k in range(3):
        write_pair(root / "unl" / "street" / f"u{k}.png", root / "unused" / f"u{k}.png", seed=10 + k, size=(20 + 4 * k, 32))
    return root / "data", root / "unl"


def test_train_with_unlabelled_images_trains_a_teacher_then_the_student_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, unl = _folders(tmp_path)
    out, work = tmp_path / "seg.safetensors", tmp_path / "work"
    argv = ["seg", "train", "--data", str(data), "--out", str(out), "--work-dir", str(work), *TRAIN]
    argv += ["--unlabelled", str(unl), "--confidence", "0.34", "--ratio", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "teacher (labelled data only): validation mIoU" in printed
    assert "of the pixels of 3 unlabelled images" in printed and "student started from teacher" in printed
    assert (work / "teacher" / "checkpoint.ckpt").is_file() and (work / "student" / "checkpoint.ckpt").is_file()
    model, info = load_segmenter(out)
    assert info["num_classes"] == 3
    first = {k: v.clone() for k, v in model.state_dict().items()}
    assert main([*argv, "--force"]) == 0  # a rerun resumes both trainings and writes the same weights
    again, _ = load_segmenter(out)
    assert all(bool((v == again.state_dict()[k]).all()) for k, v in first.items())


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("problem", ["empty", "unreadable", "teacher classes", "teacher without unlabelled"])
def test_bad_unlabelled_input_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    data, unl = _folders(tmp_path)
    out, work = tmp_path / "seg.safetensors", tmp_path / "work"
    extra = ["--unlabelled", str(unl)]
    if problem == "empty":
        shutil.rmtree(unl)
        (unl / "notes").mkdir(parents=True)
        (unl / "notes" / "readme.txt").write_text("no images")
        match = "--unlabelled: " + str(unl) + " contains no images"
    elif problem == "unreadable":
        (unl / "street" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        match = "broken.png is not a readable image"
    else:
        teacher = tmp_path / "teacher.safetensors"
        model = cp.create_model("shuffleseg", num_classes=5, width=0.25)
        save_segmenter(
            model, teacher, model_name="shuffleseg", model_kwargs={"num_classes": 5, "width": 0.25}, classes=[str(c) for c in range(5)]
        )
        extra = ["--teacher", str(teacher)] + (extra if problem == "teacher classes" else [])
        match = "predicts 5 classes but the data has 3" if problem == "teacher classes" else "give --unlabelled DIR too"
    argv = ["seg", "train", "--data", str(data), "--out", str(out), "--work-dir", str(work), *TRAIN, *extra]
    assert main(argv) == 2
    assert match in _error(capsys)
    assert not out.exists() and not work.exists()
