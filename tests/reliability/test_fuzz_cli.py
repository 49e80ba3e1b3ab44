"""A fuzz test of the command line (issue 22): every file subcommand with hostile paths, settings and files.

Each example runs one real command in-process through the top-level ``main`` with arguments drawn
from a pool of hostile choices: missing paths, directories, the input itself as the output, names
with spaces and newlines, empty, truncated, random and foreign files, negative, zero, NaN and huge
numbers. Whatever it does, it must:

* exit with 0 or 2, never a traceback, with at most one line on stderr;
* leave every input file byte for byte as it was (SHA-256);
* leave no debris: no temporary file, and nothing new in the folder unless it succeeded.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convpress as cp
from convpress.cli.main import main

_STATE: dict[str, Path] = {}


def _inputs(root: Path) -> dict[str, Path]:
    """Valid and hostile input files, made once."""
    if _STATE:
        return _STATE
    from PIL import Image

    from convpress.codec.bitstream import encode_image
    from convpress.codec.weights import available_qualities, pretrained

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = cp.create_model("lenet-300-100")
    cp.prune_(model, 0.9)
    cp.save(model, root / "good.cpz", arch="lenet-300-100")
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(root / "good.png")
    q = available_qualities()[0]
    m, meta = pretrained(q)
    (root / "good.cpi").write_bytes(encode_image(torch.rand(3, 40, 56), m, quality=q, weights_id=meta["weights_id"]))
    data = (root / "good.cpz").read_bytes()
    (root / "trunc.cpz").write_bytes(data[: len(data) // 2])
    (root / "empty.bin").write_bytes(b"")
    (root / "random.bin").write_bytes(np.random.default_rng(1).bytes(3000))
    cpi = (root / "good.cpi").read_bytes()
    (root / "trunc.cpi").write_bytes(cpi[:-7])
    (root / "dir").mkdir()
    (root / "we ird\nname.png").write_bytes((root / "good.png").read_bytes())
    _STATE.update({p.name: p for p in root.iterdir()})
    return _STATE


FILES = ["good.cpz", "trunc.cpz", "empty.bin", "random.bin", "good.cpi", "trunc.cpi", "good.png", "dir", "missing.xyz", "we ird\nname.png"]
OUTS = ["out.pt", "out.safetensors", "out.png", "out.cpi", "out.onnx", "out.json", "dir", "missing-dir/out.png", "SAME", "o" * 300 + ".png"]
NUMBERS = ["-1", "0", "nan", "inf", "1e9", "3", "28", "abc"]


def _command(kind: str, f: str, o: str, n: str, force: bool) -> list[str]:
    base = {
        "inspect": ["inspect", f],
        "decompress": ["decompress", f, "-o", o],
        "analyze": ["analyze", f, "--input-size", n, "--json", o],
        "export": ["export", f, "-o", o, "--input-shape", f"1,1,{n},{n}"],
        "codec-decode": ["codec", "decode", f, o],
        "codec-info": ["codec", "info", f],
        "codec-encode": ["codec", "encode", f, o, "-q", n],
        "fip-apply": ["fip", "apply", f, o, "--operator", "rof", "--tile-rows", n],
    }[kind]
    return [*base, "--force"] if force and kind not in ("inspect", "codec-info") else base


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["inspect", "decompress", "analyze", "export", "codec-decode", "codec-info", "codec-encode", "fip-apply"]),
    f=st.sampled_from(FILES),
    o=st.sampled_from(OUTS),
    n=st.sampled_from(NUMBERS),
    force=st.booleans(),
)
def test_hostile_commands_exit_cleanly_and_change_nothing(
    tmp_path_factory: pytest.TempPathFactory, kind: str, f: str, o: str, n: str, force: bool
) -> None:
    root = tmp_path_factory.getbasetemp() / "fuzz-cli-inputs"
    inputs = _inputs(root)
    before = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in inputs.items() if p.is_file()}
    out_dir = tmp_path_factory.mktemp("out")
    src = str(root / f)
    dst = src if o == "SAME" else str(root / "dir") if o == "dir" else str(out_dir / o)
    argv = _command(kind, src, dst, n, force)
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: bad choices and numbers that are not numbers
            code = int(exc.code or 0)
    text = err.getvalue().strip()
    assert code in (0, 2), (argv, code, text)
    assert "Traceback" not in text and len(text.splitlines()) <= 1 or text.startswith("usage:"), (argv, text)
    after = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in inputs.items() if p.is_file()}
    assert after == before, argv  # no input changed, also with --force onto itself
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")] and not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]
    if code != 0:
        assert list(out_dir.iterdir()) == [], (argv, text)  # a refusal leaves nothing
