"""Hostile but realistic use of the command line (issue 22): each defect gives one error line, exit 2, no input changed."""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.cli.main import main
from convpress.core.container import FLAG_ZLIB, pack_container, split_container


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _deepen(data: bytes, depth: int = 100_000) -> bytes:
    """A container file whose JSON header gets a field nested ``depth`` lists deep, checksums valid."""
    version, flags, header, sections = split_container(data)
    text = (zlib.decompress(header) if flags & FLAG_ZLIB else header).decode()
    head = json.loads(text)
    deep = json.dumps(head)[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    raw = deep.encode()
    return pack_container(data[:8], version, zlib.compress(raw) if flags & FLAG_ZLIB else raw, sections, flags=flags)


@pytest.fixture(scope="module")
def cpz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cpz")
    torch.manual_seed(0)
    model = cp.create_model("lenet-300-100")
    cp.prune_(model, 0.9)
    cp.save(model, tmp / "m.cpz", arch="lenet-300-100")
    return tmp / "m.cpz"


def test_deeply_nested_headers_give_one_line_in_every_command(cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "deep.cpz"
    bad.write_bytes(_deepen(cpz.read_bytes()))
    before = _sha(bad)
    for argv in (
        ["inspect", str(bad)],
        ["decompress", str(bad), "-o", str(tmp_path / "x.pt")],
        ["analyze", str(bad)],
        ["export", str(bad), "-o", str(tmp_path / "x.onnx"), "--input-shape", "1,1,28,28"],
    ):
        assert main(argv) == 2, argv
        assert "nests deeper than" in _one_error_line(capsys), argv
    assert _sha(bad) == before and sorted(p.name for p in tmp_path.iterdir()) == ["deep.cpz"]


def test_legacy_cpi_with_a_deeply_nested_header_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from convpress.codec.bitstream import encode_image
    from convpress.codec.weights import available_qualities, pretrained

    q = available_qualities()[0]
    model, meta = pretrained(q)
    data = encode_image(torch.rand(3, 40, 50), model, quality=q, weights_id=meta["weights_id"], version=2)
    bad = tmp_path / "deep.cpi"
    bad.write_bytes(_deepen(data))
    for argv in (["codec", "decode", str(bad), str(tmp_path / "x.png")], ["codec", "info", str(bad)]):
        assert main(argv) == 2, argv
        assert "nests deeper than" in _one_error_line(capsys), argv
    assert not (tmp_path / "x.png").exists()


def test_codec_encode_with_force_replaces_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # defect 1 of issue 22: --force was not passed to the writer, so replacing a file crashed
    import numpy as np
    from PIL import Image

    from convpress.codec.weights import available_qualities

    png = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(png)
    out = tmp_path / "a.cpi"
    out.write_bytes(b"old")
    q = str(available_qualities()[0])
    assert main(["codec", "encode", str(png), str(out), "-q", q]) == 2
    assert "already exists" in _one_error_line(capsys) and out.read_bytes() == b"old"
    assert main(["codec", "encode", str(png), str(out), "-q", q, "--force"]) == 0
    assert out.read_bytes()[:4] == b"\x89CPI"


def test_no_output_replaces_an_input_or_another_output(cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # defect 2 of issue 22: analyze --json MODEL.cpz --force replaced the model; accelerate and
    # export could write two outputs onto one path
    model = tmp_path / "m.cpz"
    model.write_bytes(cpz.read_bytes())
    before = _sha(model)
    for flag in ("--json", "--erf-png"):
        assert main(["analyze", str(model), flag, str(model), "--force"]) == 2
        assert "same file as input" in _one_error_line(capsys)
    assert main(["analyze", str(model), "--json", str(tmp_path / "a.out"), "--erf-png", str(tmp_path / "a.out")]) == 2
    assert "two outputs are the same file" in _one_error_line(capsys)
    assert main(["export", str(model), "-o", str(tmp_path / "e.onnx"), "--input-shape", "1,1,28,28", "--int8", "dynamic"]) == 0
    capsys.readouterr()
    assert _sha(model) == before


def test_a_read_only_destination_is_refused_before_any_work(cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # defect 3 of issue 22 (the folder case; a real read-only mount needs root and is tested where possible)
    import os
    import stat

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode: a real read-only file system is needed
            pytest.skip("running as root: directory permissions do not stop writes (see the tmpfs test)")
        assert main(["decompress", str(cpz), "-o", str(ro / "x.pt")]) == 2
        assert "cannot write to" in _one_error_line(capsys)
    finally:
        ro.chmod(stat.S_IRWXU)


@contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``path`` with ``options`` (skips the test without root or mount)."""
    import os
    import subprocess

    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_read_only_file_system_is_refused_before_any_work(cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    with _tmpfs(tmp_path / "rofs", "ro,size=1m") as mnt:
        import numpy as np
        from PIL import Image

        from convpress.codec.weights import available_qualities

        png = tmp_path / "p.png"
        Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)).save(png)
        q = str(available_qualities()[0])
        assert main(["codec", "encode", str(png), str(tmp_path / "p.cpi"), "-q", q]) == 0
        capsys.readouterr()
        for argv in (
            ["decompress", str(cpz), "-o", str(mnt / "x.pt")],
            ["analyze", str(cpz), "--json", str(mnt / "a.json")],
            ["export", str(cpz), "-o", str(mnt / "e.onnx"), "--input-shape", "1,1,28,28"],
            ["codec", "encode", str(png), str(mnt / "p.cpi"), "-q", q],
            ["codec", "decode", str(tmp_path / "p.cpi"), str(mnt / "p.png")],
            ["fip", "apply", str(png), str(mnt / "f.png"), "--operator", "rof"],
            ["compress", "lenet-300-100", "--out", str(mnt / "c.cpz")],
        ):
            assert main(argv) == 2, argv
            err = _one_error_line(capsys)
            assert "cannot write to" in err and "Read-only file system" in err, err
        assert os.listdir(mnt) == []


def test_a_full_disk_gives_one_line_and_leaves_no_debris(cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    with _tmpfs(tmp_path / "full", "size=64k") as mnt:
        assert main(["decompress", str(cpz), "-o", str(mnt / "x.pt")]) == 2  # 1 MB of tensors into 64 KB
        err = _one_error_line(capsys)
        assert "No space left" in err, err
        assert os.listdir(mnt) == []  # the atomic writer removed its temporary file
        # images too: a 200x200 noise PNG (about 120 KB) from codec decode and fip apply
        import numpy as np
        from PIL import Image

        from convpress.codec.weights import available_qualities

        png = tmp_path / "noise.png"
        Image.fromarray((np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)).save(png)
        assert main(["codec", "encode", str(png), str(tmp_path / "n.cpi"), "-q", str(available_qualities()[-1])]) == 0
        capsys.readouterr()
        for argv in (
            ["codec", "decode", str(tmp_path / "n.cpi"), str(mnt / "n.png")],
            ["fip", "apply", str(png), str(mnt / "f.png"), "--operator", "rof", "--reference"],
        ):
            assert main(argv) == 2, argv
            assert "No space left" in _one_error_line(capsys), argv
            assert os.listdir(mnt) == [], argv


def test_impossible_input_sizes_are_refused_before_any_allocation(
    cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # defect 7 of issue 22: the sizes are estimated from shapes alone (the meta device) and refused
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "2G")
    for argv in (
        ["analyze", "resnet18", "--input-size", "100000"],
        ["analyze", str(cpz), "--input-size", "100000"],
        ["export", str(cpz), "-o", str(tmp_path / "a.onnx"), "--input-shape", "1,1,100000,100000"],
        ["export", str(cpz), "-o", str(tmp_path / "b.onnx"), "--input-shape", "100000,1,28,28"],
    ):
        assert main(argv) == 2, argv
        assert "of memory, but only" in _one_error_line(capsys), argv
    assert list(tmp_path.iterdir()) == []
    from convpress.analysis.memory import forward_bytes

    model = cp.create_model("lenet-300-100")
    # the input, the three layers' outputs and the model's own output, float32, batch 2
    assert forward_bytes(model, (2, 1, 28, 28)) == 4 * 2 * (784 + 300 + 100 + 10 + 10)


def test_a_small_file_claiming_a_huge_layer_is_refused_before_the_model_is_built(
    cpz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # defect 5 of issue 22: the recorded shapes made load_model build a 50,000 x 20,000 layer (4 GB) first
    import resource

    from convpress.core.errors import FileFormatError
    from convpress.models.checkpoint import load_model

    version, flags, header, sections = split_container(cpz.read_bytes())
    head = json.loads(zlib.decompress(header) if flags & FLAG_ZLIB else header)
    head["model"]["shapes"]["fc1"] = {"type": "Linear", "in": 20000, "out": 50000, "bias": True}
    raw = json.dumps(head).encode()
    forged = tmp_path / "forged.cpz"
    forged.write_bytes(
        pack_container(cpz.read_bytes()[:8], version, zlib.compress(raw) if flags & FLAG_ZLIB else raw, sections, flags=flags)
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FileFormatError, match="disagrees with its stored weights"):
        load_model(forged)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 1 << 30  # under 1 GB more
    for argv in (["analyze", str(forged)], ["export", str(forged), "-o", str(tmp_path / "x.onnx"), "--input-shape", "1,1,28,28"]):
        assert main(argv) == 2, argv
        assert "disagrees with its stored weights" in _one_error_line(capsys)
    assert load_model(cpz) is not None  # the genuine file still loads


@pytest.mark.parametrize("tolerance", ["-1", "0", "nan", "inf"])
def test_export_refuses_a_tolerance_that_is_not_a_positive_number(
    cpz: Path, tmp_path: Path, tolerance: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", str(cpz), "-o", str(tmp_path / "x.onnx"), "--input-shape", "1,1,28,28", "--tolerance", tolerance]
    assert main(argv) == 2
    assert "--tolerance must be a positive number" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["codec", "encode", "{png}", "{out}", "-q", "3"], ["fip", "apply", "{png}", "{out}", "--operator", "rof"]]
)
def test_a_bomb_is_refused_before_torch_or_a_model_is_loaded(tmp_path: Path, command: list[str]) -> None:
    # issue 22: the header's size is checked first, so the refusal costs a Python start-up, not torch's import
    import os
    import subprocess
    import sys

    from tests.data.test_images import _png_header_only

    png = tmp_path / "bomb.png"
    _png_header_only(png, 20000, 20000)
    argv = [a.format(png=png, out=tmp_path / "out") for a in command]
    code = f"import sys; from convpress.cli.main import main; rc = main({argv!r}); print(rc, 'torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "CONVPRESS_MAX_MEMORY": "4G"})
    assert run.stdout.split() == ["2", "False"], run.stdout + run.stderr
    assert "20000x20000" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """`convpress codec qualities | head -1`: the closed pipe ends the command with SIGPIPE's status, no error line."""
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "convpress", "codec", "qualities"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command (seconds of imports) writes a byte
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == "", err
