"""``convpress accelerate`` and ``convpress export`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import convpress as cp
from convpress.cli import accelerate as accelerate_cli
from convpress.cli import export as export_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "r18.pt"
    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), path)
    return path


def test_accelerate_prunes_factorizes_distils_and_exports(
    tmp_path: Path, checkpoint: Path, tiny_image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, onnx = tmp_path / "fast.cpz", tmp_path / "fast.onnx"
    argv = [
        "resnet18",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(tiny_image_folder),
        "--image-size",
        "48",
        "--channels",
        "0.5",
        "--lowrank",
        "0.9",
        "--epochs",
        "1",
        "--onnx",
        str(onnx),
        "--int8",
        "dynamic",
        "-o",
        str(out),
        "--no-progress",
    ]
    assert accelerate_cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "before and after" in text and "onnxruntime matches PyTorch" in text and "skipped fc: output layer" in text
    model = cp.load_model(out)
    assert model.bn1.num_features == 32 and isinstance(model.conv1, torch.nn.Sequential)
    assert model(torch.zeros(1, 3, 48, 48)).shape == (1, 2)
    assert (tmp_path / "fast.int8-dynamic.onnx").stat().st_size > 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ([], "at least one method"),
        (["--channels", "1.0"], "channels"),
        (["--channels", "0.99"], "would leave none"),
        (["--lowrank", "1.5"], "energy"),
        (["--units", "1.0"], "--units must be in"),
        (["--units", "-0.1"], "--units must be in"),
        (["--channels", "0.5", "--int8", "static"], "--int8 needs --onnx"),
        (["--channels", "0.5", "--sparsity-epochs", "2"], "criterion bn"),
        # issue 22: refused before any training (the model is built untrained to check names)
        (["--channels", "nosuch=0.5"], "does not have: nosuch"),
        (["--channels", "layer1.0.conv=0.5"], "did you mean layer1.0.conv"),
        (["--channels", "0.5", "--lr", "0"], "--lr must be a positive number"),
        (["--channels", "0.5", "--lr", "nan"], "--lr must be a positive number"),
        (["--channels", "0.5", "--bn-l1", "-1"], "--bn-l1 must be a non-negative number"),
    ],
)
def test_accelerate_refuses_bad_settings(
    tmp_path: Path, checkpoint: Path, tiny_image_folder: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str
) -> None:
    out = tmp_path / "x.cpz"
    argv = [
        "resnet18",
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(tiny_image_folder),
        "--image-size",
        "48",
        "-o",
        str(out),
        "--no-progress",
        *extra,
    ]
    assert accelerate_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not out.exists()


def test_export_checks_and_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = cp.create_model("lenet-5")
    cp.save(m, tmp_path / "l.cpz", arch="lenet-5")
    assert export_cli.main([str(tmp_path / "l.cpz"), "-o", str(tmp_path / "l.onnx"), "--input-shape", "1,1,28,28", "--int8", "static"]) == 0
    assert "matches PyTorch" in capsys.readouterr().out
    assert (tmp_path / "l.int8-static.onnx").exists()
    assert export_cli.main([str(tmp_path / "l.cpz"), "-o", str(tmp_path / "l.onnx"), "--input-shape", "1,1,28,28"]) == 2
    assert "--force" in capsys.readouterr().err
    assert export_cli.main([str(tmp_path / "l.cpz"), "-o", str(tmp_path / "k.onnx"), "--input-shape", "1,3,5,5"]) == 2
    assert "does not accept inputs" in capsys.readouterr().err
    cp.save(m, tmp_path / "noarch.cpz")
    assert export_cli.main([str(tmp_path / "noarch.cpz"), "-o", str(tmp_path / "n.onnx")]) == 2
    assert "without an architecture" in capsys.readouterr().err
