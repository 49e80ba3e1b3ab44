"""ONNX export of compressed models, the onnxruntime check, and int8 quantization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import convpress as cp
from convpress.compress.export import onnx_max_error, onnx_session, quantize_onnx


@pytest.fixture(scope="module")
def compressed() -> nn.Module:
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(2, 3, 32, 32)
    cp.prune_channels_(m, x, 0.5)
    cp.factorize_(m, energy=0.8, filter_fn=lambda n, _m: n.startswith("layer4"))
    cp.prune_(m, 0.5)  # unstructured masks and weight sharing are baked in on export
    cp.quantize_(m, 6)
    return m


def test_export_matches_pytorch_and_has_a_dynamic_batch(compressed: nn.Module, tmp_path: Path) -> None:
    path = cp.export_onnx(compressed, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    assert onnx_max_error(compressed, path, torch.randn(5, 3, 32, 32)) <= 1e-4
    # the in-memory model keeps its compression: half of every kernel pruned, at most 2**6 shared values and zero
    kernels = [v for k, v in cp.dense_state_dict(compressed).items() if k.endswith("weight") and v.ndim == 4]
    assert kernels and all(float((v == 0).float().mean()) >= 0.45 and len(torch.unique(v)) <= 65 for v in kernels)
    # sessions do not busy-wait between runs (idle spinning threads slowed other work 5x in bench acceleration)
    opts = onnx_session(path, threads=2).get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.intra_op_num_threads == 2


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_models_run_and_stay_close(compressed: nn.Module, tmp_path: Path, mode: str) -> None:
    path = cp.export_onnx(compressed, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    calib = [np.random.default_rng(i).standard_normal((4, 3, 32, 32)).astype(np.float32) for i in range(3)]
    q = quantize_onnx(path, tmp_path / f"q-{mode}.onnx", mode=mode, calibration=calib)  # type: ignore[arg-type]
    x = np.random.default_rng(9).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ref = onnx_session(path).run(None, {"input": x})[0]
    got = onnx_session(q).run(None, {"input": x})[0]
    assert got.shape == ref.shape
    # int8: close, not equal (measured: 1.3% (dynamic) and 1.7% (static) relative RMS error, the largest
    # error 2% of the output range), and the weights take a quarter of the bytes
    assert np.sqrt(((got - ref) ** 2).mean() / (ref**2).mean()) < 0.05
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    assert not np.array_equal(got, ref) and q.stat().st_size < 0.5 * path.stat().st_size


def test_static_int8_needs_calibration(tmp_path: Path) -> None:
    with pytest.raises(cp.ConfigError, match="calibration"):
        quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", mode="static")
    with pytest.raises(cp.ConfigError, match="mode"):
        quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", mode="int4")  # type: ignore[arg-type]
