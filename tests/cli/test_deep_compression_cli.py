"""The Deep Compression commands as a user runs them: demo, compress, inspect, decompress."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.cli import compress as compress_cli
from convpress.cli import decompress as decompress_cli
from convpress.cli import demo as demo_cli
from convpress.cli import inspect as inspect_cli
from convpress.cli.main import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert demo_cli.main(["--quick", "--out-dir", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_loadable_files_and_summary(demo_dir: Path) -> None:
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert set(summary) == {"lenet-300-100", "lenet-5"}
    for name, rep in summary.items():
        path = demo_dir / f"{name}.cpz"
        assert rep["totals"]["final"] == path.stat().st_size
        assert rep["bit_exact"] is True
        assert {"p", "pq", "pqh", "final"} <= set(rep["ratios"])
        state = cp.load(path)
        model = cp.create_model(name)
        model.load_state_dict(state)


def test_demo_refuses_to_overwrite_without_force(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (demo_dir / "lenet-5.cpz").read_bytes()
    assert demo_cli.main(["--quick", "--out-dir", str(demo_dir), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert (demo_dir / "lenet-5.cpz").read_bytes() == before


def test_inspect_prints_a_row_per_tensor(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_cli.main([str(demo_dir / "lenet-5.cpz")]) == 0
    out = capsys.readouterr().out
    for name in ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "whole file"):
        assert name in out
    assert inspect_cli.main([str(demo_dir / "lenet-5.cpz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file_bytes"] == (demo_dir / "lenet-5.cpz").stat().st_size
    assert info["arch"] == "lenet-5"


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_decompress_writes_a_dense_state_dict(demo_dir: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"model{suffix}"
    assert decompress_cli.main([str(demo_dir / "lenet-5.cpz"), "-o", str(out)]) == 0
    if suffix == ".pt":
        state = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(out))
    expected = cp.load(demo_dir / "lenet-5.cpz")
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)


def test_decompress_never_overwrites_silently(demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"mine")
    assert decompress_cli.main([str(demo_dir / "lenet-5.cpz"), "-o", str(out)]) == 2
    assert out.read_bytes() == b"mine"
    assert "--force" in capsys.readouterr().err
    assert decompress_cli.main([str(demo_dir / "lenet-5.cpz"), "-o", str(out), "--force"]) == 0
    # the input itself is never a valid output, even with --force
    src = tmp_path / "copy.cpz"
    src.write_bytes((demo_dir / "lenet-5.cpz").read_bytes())
    assert decompress_cli.main([str(src), "-o", str(src), "--force"]) == 2
    assert cp.load(src)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "no such file"), (b"", "not a convpress model file"), (b"hello world, not a model" * 3, "not a convpress model file")],
)
@pytest.mark.parametrize("command", ["inspect", "decompress"])
def test_bad_files_get_one_clear_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, content: bytes | None, match: str
) -> None:
    path = tmp_path / "bad.cpz"
    if content is not None:
        path.write_bytes(content)
    argv = [command, str(path)] + (["-o", str(tmp_path / "o.pt")] if command == "decompress" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.pt").exists()


def test_truncated_and_flipped_files_are_refused_by_the_cli(demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = (demo_dir / "lenet-300-100.cpz").read_bytes()
    bad = tmp_path / "t.cpz"
    bad.write_bytes(data[: len(data) // 2])
    assert main(["inspect", str(bad)]) == 2
    assert "truncated" in capsys.readouterr().err
    flipped = bytearray(data)
    flipped[len(data) - 10] ^= 0x40
    bad.write_bytes(bytes(flipped))
    assert main(["decompress", str(bad), "-o", str(tmp_path / "o.pt")]) == 2
    assert "checksum" in capsys.readouterr().err


# ----------------------------------------------------------------------------- compress


def test_compress_lenet_from_scratch_on_bundled_mnist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "l.cpz"
    argv = [
        "lenet-300-100",
        "-o",
        str(out),
        "--train-epochs",
        "1",
        "--prune",
        "0.9",
        "--prune-epochs",
        "1",
        "--quant-epochs",
        "1",
        "--fc-bits",
        "4",
        "--coder",
        "huffman",
        "--no-progress",
    ]
    assert compress_cli.main(argv) == 0
    info = cp.read_info(out)
    assert info.coder == "huffman" and info.arch == "lenet-300-100"
    assert cp.load_model(out)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert {t.name: t.value_bits for t in info.tensors if t.kind == "shared"}["fc1.weight"] == 4
    assert "validation accuracy" in capsys.readouterr().out


def test_compress_with_the_sparse_variational_dropout_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vd.cpz"
    argv = ["lenet-300-100", "--recipe", "lenet-300-100-vd", "-o", str(out), "--train-epochs", "2", "--prune-epochs", "4"]
    assert compress_cli.main([*argv, "--quant-epochs", "1", "--no-progress"]) == 0
    info = cp.read_info(out)
    kept = {t.name: t.kept / t.numel for t in info.tensors if t.name.endswith(".weight")}
    # no sparsity was given: training learned it, and it removes most of the first layer
    assert kept["fc1.weight"] < 0.5
    assert cp.load_model(out)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert "validation accuracy" in capsys.readouterr().out


def test_compress_a_torchvision_model_with_user_checkpoint_and_image_folder(tmp_path: Path, tiny_image_folder: Path) -> None:
    import torchvision

    data = tiny_image_folder
    torch.manual_seed(0)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": torchvision.models.squeezenet1_1(num_classes=2).state_dict()}, ckpt)
    out = tmp_path / "sq.cpz"
    argv = [
        "squeezenet1_1",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(data),
        "--image-size",
        "48",
        "-o",
        str(out),
        "--prune",
        "0.5",
        "--prune-epochs",
        "1",
        "--quant-epochs",
        "1",
        "--no-progress",
    ]
    assert compress_cli.main(argv) == 0
    state = cp.load(out)
    model = torchvision.models.squeezenet1_1(num_classes=2)
    model.load_state_dict(state)
    assert cp.read_info(out).metadata["num_classes"] == 2


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--prune", "1.0"], "pruning amount"),
        (["--prune", "fc1=0.5,fc9=0.5"], "'fc9'"),
        (["--prune", "lots"], "cannot read --prune"),
        (["--fc-bits", "0"], "bits"),
        (["--bits", "fc1=40"], "bits"),
        (["--index-bits", "99"], "index_bits"),
        (["--recipe", "lenet-5"], "recipe lenet-5 is for lenet-5"),
        (["--recipe", "nope"], "unknown recipe"),
        (["--checkpoint", "missing.pt"], "no such file"),
    ],
)
def test_compress_refuses_impossible_settings_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str
) -> None:
    out = tmp_path / "x.cpz"
    assert compress_cli.main(["lenet-300-100", "-o", str(out), "--train-epochs", "50", "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert not out.exists()


def test_compress_refuses_bad_checkpoints_and_unknown_archs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.cpz"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert compress_cli.main(["lenet-5", "--checkpoint", str(bad), "-o", str(out)]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pt"
    torch.save(cp.create_model("lenet-300-100").state_dict(), wrong)
    assert compress_cli.main(["lenet-5", "--checkpoint", str(wrong), "-o", str(out)]) == 2
    assert "does not fit architecture lenet-5" in capsys.readouterr().err
    assert compress_cli.main(["no-such-net", "--data", str(tmp_path), "-o", str(out)]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    assert compress_cli.main(["resnet18", "-o", str(out)]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert not out.exists()
