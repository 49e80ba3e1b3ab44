"""ONNX export of (compressed) models, a numerical check with onnxruntime, and int8 quantization.

Compression parametrizations are baked into plain tensors on a copy before export, so the
exported graph is an ordinary dense (or structurally smaller, or factorized) network.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from convpress.compress.state import strip_
from convpress.core.atomic import atomic_write_bytes
from convpress.core.errors import ConfigError, InputError

__all__ = ["export_onnx", "onnx_max_error", "quantize_onnx", "onnx_session"]


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch dimension; returns the path.

    Uses PyTorch's TorchScript-based exporter (``dynamo=False``): it needs no extra dependency
    and handles every layer convpress produces.
    """

    plain = strip_(copy.deepcopy(model)).eval()
    out = Path(path)
    tmp = out.with_name(f".{out.name}.export.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is our deliberate choice
            torch.onnx.export(
                plain,
                (example_inputs,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        atomic_write_bytes(out, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    return out


def onnx_session(path: str | os.PathLike[str], *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    # onnxruntime's worker threads busy-wait after each run by default; on a small shared CPU they
    # steal cycles from whatever runs next (bench acceleration, 30 live sessions: dense ResNet-18
    # at batch 1 took 54 ms in PyTorch with spinning sessions, 13.5 ms without), so they sleep instead
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_max_error(model: nn.Module, path: str | os.PathLike[str], inputs: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's outputs on ``inputs``."""
    sess = onnx_session(path)
    with torch.no_grad():
        ref = model.eval()(inputs).numpy()
    got = sess.run(None, {"input": inputs.numpy()})[0]
    if got.shape != ref.shape:
        raise InputError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    return float(np.abs(got - ref).max())


def quantize_onnx(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    mode: Literal["dynamic", "static"] = "dynamic",
    calibration: Iterable[np.ndarray] | None = None,
) -> Path:
    """int8 quantization of an ONNX model with onnxruntime.quantization.

    Args:
        path: float ONNX model.
        out: where to write the int8 model.
        mode: "dynamic" (weights int8, activations quantized on the fly) or "static"
            (activations calibrated on ``calibration`` batches; QDQ format, per-channel weights).
        calibration: input batches (N, ...) as numpy arrays, required for "static".
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if mode not in ("dynamic", "static"):
        raise ConfigError(f"int8 mode must be 'dynamic' or 'static', got {mode!r}")
    dst = Path(out)
    if mode == "dynamic":
        quantize_dynamic(str(path), str(dst), weight_type=QuantType.QInt8)
        return dst
    if calibration is None:
        raise ConfigError("static int8 quantization needs calibration batches")

    class _Reader(CalibrationDataReader):
        def __init__(self, batches: Iterable[np.ndarray]) -> None:
            self._it = iter([{"input": np.ascontiguousarray(b, dtype=np.float32)} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(
        str(path),
        str(dst),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return dst
