"""The ``.cpz`` compressed model file: save a (pruned, weight-shared) model, load it back bit-exact.

A ``.cpz`` is a :mod:`container <convpress.core.container>` (magic ``\\x89CPZ\\r\\n\\x1a\\n``,
version 1) whose JSON header lists every tensor of the model's dense state_dict:

* ``shared`` (pruned and/or weight-shared): a codebook (raw, the tensor's dtype), the kept
  positions as relative steps (:mod:`~convpress.fileformat.sparse`) and the codebook index of
  every kept weight, both entropy-coded;
* ``sparse`` (pruned only): coded positions plus the kept values as raw floats;
* ``raw``: any other tensor (biases, BN statistics, ...) as raw little-endian bytes.

Positions can be laid out in C order or with the first two axes swapped (``order="T"``: for a
``Linear`` that is input-major, where inputs pruned for every output become long runs);
``order="auto"`` keeps whichever codes smaller. ``index_bits="auto"`` likewise picks the step
width that codes smallest; ``"paper"`` uses Deep Compression's 8 bits for convolutions and 5 for
fully connected layers.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convpress.core.container import read_container, write_container
from convpress.core.errors import ConfigError, FileFormatError
from convpress.core.version import __version__
from convpress.fileformat.coders import check_coder, decode_stream, empirical_entropy_bits, encode_stream
from convpress.fileformat.sparse import MAX_INDEX_BITS, decode_positions, encode_positions

__all__ = [
    "CompressedTensor",
    "save_tensors",
    "load",
    "read_info",
    "read_model_spec",
    "CpzInfo",
    "TensorInfo",
    "StreamStats",
    "MAGIC",
    "VERSION",
]

MAGIC = b"\x89CPZ\r\n\x1a\n"
VERSION = 1
WHAT = "convpress model file (.cpz)"
#: refuse files declaring more elements than this in total (a forged header must not exhaust memory)
MAX_ELEMENTS = 1 << 31
#: most centroids a codebook may have (16-bit weight sharing)
MAX_CODEBOOK = 1 << 16

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


@dataclass(frozen=True)
class CompressedTensor:
    """A pruned and/or weight-shared tensor, as a ``.cpz`` stores it.

    Attributes:
        values: the effective tensor (pruned entries zero, shared entries equal to their centroid).
        mask: bool tensor of the same shape; True where a weight is kept.
        codebook: (K,) centroids of a weight-shared tensor, or None (pruned only).
        index: integer tensor of the same shape, each kept weight's centroid in ``[0, K)``
            (with ``codebook``).
        layer: ``"linear"`` or ``"conv"``: picks Deep Compression's index width (5 or 8 bits)
            under ``index_bits="paper"``.
    """

    values: torch.Tensor
    mask: torch.Tensor
    codebook: torch.Tensor | None = None
    index: torch.Tensor | None = None
    layer: str = "conv"


@dataclass
class StreamStats:
    """How well one coded stream was compressed (filled in by :func:`save`)."""

    name: str
    symbols: int
    alphabet: int
    entropy_bits: float  # empirical entropy of the stream, in total bits
    coded_bytes: int  # frequency table + payload, as written
    payload_bits: int  # information-carrying bits of the payload (no table, no word padding)


@dataclass
class TensorInfo:
    """One tensor of a ``.cpz`` file, as described by its header."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # "shared", "sparse" or "raw"
    numel: int
    kept: int
    value_bits: int  # bits per weight before entropy coding: ceil(log2 K), or the dtype's width
    index_bits: int | None
    order: str
    codebook_size: int | None
    stored_bytes: int  # bytes of this tensor's sections in the file

    @property
    def dense_bytes(self) -> int:
        return self.numel * _DTYPES[self.dtype].itemsize


@dataclass
class CpzInfo:
    """Summary of a ``.cpz`` file: per-tensor rows, sizes, and (after save) stream statistics."""

    path: Path
    coder: str
    file_bytes: int
    tensors: list[TensorInfo]
    metadata: dict[str, Any] = field(default_factory=dict)
    streams: list[StreamStats] = field(default_factory=list)
    arch: str | None = None  # architecture name, when saved with one (then load_model works)

    @property
    def dense_bytes(self) -> int:
        """Bytes of the uncompressed state_dict (each tensor at its dtype's width)."""
        return sum(t.dense_bytes for t in self.tensors)

    @property
    def ratio(self) -> float:
        """Uncompressed state_dict bytes / file bytes on disk."""
        return self.dense_bytes / self.file_bytes


# ----------------------------------------------------------------------------- saving


def _ordered(x: torch.Tensor, order: str) -> torch.Tensor:
    return x.transpose(0, 1).reshape(-1) if order == "T" else x.reshape(-1)


def _unordered(flat: torch.Tensor, shape: tuple[int, ...], order: str) -> torch.Tensor:
    if order == "T":
        tshape = (shape[1], shape[0], *shape[2:])
        return flat.reshape(tshape).transpose(0, 1).contiguous()
    return flat.reshape(shape)


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _from_raw(data: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if not data:
        return torch.zeros(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape).clone()


def _index_bits_choices(spec: Any, name: str, layer_kind: str) -> list[int]:
    layer = name.rsplit(".", 1)[0]
    if isinstance(spec, Mapping):
        spec = spec.get(name, spec.get(layer, "auto"))
    if spec == "auto":
        return list(range(1, 13))
    if spec == "paper":
        return [5 if layer_kind == "linear" else 8]
    if isinstance(spec, bool) or not isinstance(spec, int) or not 1 <= spec <= MAX_INDEX_BITS:
        raise ConfigError(f"index_bits must be 'auto', 'paper', or an integer in [1, {MAX_INDEX_BITS}], got {spec!r}")
    return [spec]


def _stats(name: str, symbols: np.ndarray, alphabet: int, coder: str, data: bytes) -> StreamStats:
    payload = check_coder(coder).payload_bits(symbols, alphabet)
    return StreamStats(name, int(symbols.size), alphabet, empirical_entropy_bits(symbols, alphabet), len(data), payload)


def _as_stored(t: CompressedTensor) -> torch.Tensor:
    """The tensor a file rebuilds from ``t``: zeros, and the kept values (or their centroids) where kept."""
    mask = t.mask.detach().cpu().to(torch.bool)
    values = t.values.detach().cpu()
    out = torch.zeros(values.shape, dtype=values.dtype)
    if t.codebook is not None and t.index is not None:
        out[mask] = t.codebook.detach().cpu().to(values.dtype)[t.index.detach().cpu().long()[mask]]
    else:
        out[mask] = values[mask]
    return out


class _Writer:
    def __init__(self, coder: str, index_bits: Any, order: str) -> None:
        self.coder = coder
        self.index_bits = index_bits
        self.order = order
        self.sections: list[bytes] = []
        self.streams: list[StreamStats] = []

    def add(self, data: bytes) -> int:
        self.sections.append(data)
        return len(self.sections) - 1

    def raw(self, name: str, t: torch.Tensor) -> dict[str, Any]:
        if t.dtype not in _DTYPE_NAMES:
            raise ConfigError(f"tensor {name!r} has dtype {t.dtype}, which .cpz files do not store")
        return {"name": name, "kind": "raw", "shape": list(t.shape), "dtype": _DTYPE_NAMES[t.dtype], "data": self.add(_raw_bytes(t))}

    def compressed(self, name: str, t: CompressedTensor) -> dict[str, Any]:
        effective = t.values
        if effective.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
            raise ConfigError(f"tensor {name!r} has dtype {effective.dtype}; only float tensors can be compressed")
        start, n_streams = len(self.sections), len(self.streams)
        entry = self._compressed(name, t)
        if sum(len(s) for s in self.sections[start:]) >= effective.numel() * effective.element_size():
            # tiny tensors (a 10-value bias) store smaller raw than with a codebook and tables;
            # raw keeps the exact same values, so loading stays bit-exact
            del self.sections[start:], self.streams[n_streams:]
            return self.raw(name, effective)
        if _raw_bytes(_as_stored(t)) != _raw_bytes(effective):
            # the file keeps only the mask and the kept values (or centroids): anything else in
            # ``values`` (a -0.0 or a stray value where pruned, a kept weight off its centroid)
            # would fail the checksum below at load time, so refuse it now instead of writing a
            # file that cannot be loaded
            what = "+0.0 where pruned and its centroid where kept" if t.codebook is not None else "+0.0 where pruned"
            raise ConfigError(
                f"tensor {name!r}: its values must be {what}, or the file could not reproduce them bit-exact "
                "(w * mask leaves -0.0 where a negative weight was pruned; use torch.where(mask, w, 0.0))"
            )
        # checksum of the decoded values: the sections have their own checksums, but a header
        # field that stays valid when altered (order "C" <-> "T") would otherwise decode silently
        # to other values
        entry["crc"] = zlib.crc32(_raw_bytes(effective))
        return entry

    def _compressed(self, name: str, t: CompressedTensor) -> dict[str, Any]:
        effective = t.values
        mask = t.mask.detach().cpu().to(torch.bool)
        shared = t.codebook is not None
        kept = int(mask.sum())
        orders = ["C", "T"] if self.order == "auto" and effective.ndim >= 2 else [self.order if effective.ndim >= 2 else "C"]
        best: tuple[int, str, int | None, bytes | None, np.ndarray | None] | None = None
        for order in orders:
            cand: tuple[int, str, int | None, bytes | None, np.ndarray | None] | None
            if bool(mask.all()):
                cand = (0, order, None, None, None)
            else:
                flat = _ordered(mask, order).numpy()
                cand = None
                for b in _index_bits_choices(self.index_bits, name, t.layer):
                    steps = encode_positions(flat, b)
                    data = encode_stream(steps, (1 << b) + 1, self.coder)
                    if cand is None or len(data) < cand[0]:
                        cand = (len(data), order, b, data, steps)
            assert cand is not None
            if best is None or cand[0] < best[0]:
                best = cand
        assert best is not None
        _, order, best_bits, pos_data, best_steps = best
        entry: dict[str, Any] = {
            "name": name,
            "kind": "shared" if shared else "sparse",
            "shape": list(effective.shape),
            "dtype": _DTYPE_NAMES[effective.dtype],
            "order": order,
            "kept": kept,
            "index_bits": best_bits,
            "positions": None,
        }
        if pos_data is not None and best_steps is not None and best_bits is not None:
            entry["positions"] = {"section": self.add(pos_data), "count": int(best_steps.size)}
            self.streams.append(_stats(f"{name}:positions", best_steps, (1 << best_bits) + 1, self.coder, pos_data))
        keep = _ordered(mask, order)
        if t.codebook is not None:
            if t.index is None:
                raise ConfigError(f"tensor {name!r} has a codebook but no index")
            codebook = t.codebook.detach().cpu().to(effective.dtype)
            k = int(codebook.numel())
            if not 1 <= k <= MAX_CODEBOOK:
                raise ConfigError(f"tensor {name!r} has a codebook of {k} centroids; .cpz files hold 1 to {MAX_CODEBOOK}")
            symbols = _ordered(t.index.detach().cpu().long(), order)[keep].numpy()
            val_data = encode_stream(symbols, k, self.coder)
            entry["codebook"] = {"section": self.add(_raw_bytes(codebook)), "size": k}
            entry["values"] = {"section": self.add(val_data), "count": int(symbols.size), "alphabet": k}
            self.streams.append(_stats(f"{name}:values", symbols, k, self.coder, val_data))
        else:
            values = _ordered(effective.detach().cpu(), order)[keep]
            entry["values"] = {"section": self.add(_raw_bytes(values)), "count": kept}
        return entry


def save_tensors(
    tensors: Mapping[str, torch.Tensor | CompressedTensor],
    path: str | os.PathLike[str],
    coder: str = "ans",
    *,
    index_bits: int | str | Mapping[str, int] = "auto",
    order: str = "auto",
    metadata: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> CpzInfo:
    """Write tensors as a ``.cpz`` file (atomically: temp file + rename).

    :class:`CompressedTensor` entries are stored sparsely and entropy-coded (or raw, when that
    is smaller: tiny tensors), plain tensors raw; :func:`load` returns every tensor, dense and
    bit-exact, in the order given. ``convpress.save`` builds the tensors from a compressed model.

    Args:
        tensors: name -> tensor, in state_dict order.
        path: output file.
        coder: a registered coder (:data:`~convpress.fileformat.coders.CODERS`): "ans" (rANS,
            default), "huffman" (as in the paper) or "none" (fixed-width bits).
        index_bits: relative-index width: "auto" (smallest file), "paper" (conv 8, fc 5), an
            int, or ``{layer_or_tensor_name: bits}``.
        order: position layout "auto", "C" or "T" (first two axes swapped).
        metadata: JSON-serialisable facts stored in the header (accuracy, data, ...).
        model: JSON-serialisable description of the model (architecture name and layer
            shapes), stored for :func:`read_model_spec`.
        overwrite: replace an existing file at ``path``.

    Returns:
        A :class:`CpzInfo` of the written file, including per-stream coding statistics.

    Raises:
        ConfigError: unknown coder/order/index_bits, unserialisable metadata, unsupported dtype,
            or ``path`` exists and ``overwrite`` is False.
    """
    check_coder(coder)
    if order not in ("auto", "C", "T"):
        raise ConfigError(f"order must be 'auto', 'C' or 'T', got {order!r}")
    meta = dict(metadata or {})
    try:
        json.dumps(meta)
        json.dumps(model)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"metadata must be JSON-serialisable: {exc}") from None
    out = Path(path)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite=True (CLI: --force) to replace it")
    writer = _Writer(coder, index_bits, order)
    entries = [writer.compressed(name, t) if isinstance(t, CompressedTensor) else writer.raw(name, t) for name, t in tensors.items()]
    header: dict[str, Any] = {
        "format": "convpress.cpz",
        "created_by": f"convpress {__version__}",
        "coder": coder,
        "metadata": meta,
        "tensors": entries,
    }
    if model is not None:
        header["model"] = dict(model)
    size = write_container(out, MAGIC, VERSION, header, writer.sections, overwrite=overwrite)
    info = _info_from_header(out, header, [len(s) for s in writer.sections], size)
    info.streams = writer.streams
    return info


# ----------------------------------------------------------------------------- loading


def _bad(name: Any, what: str) -> FileFormatError:
    return FileFormatError(f"corrupted .cpz header: tensor {name!r} has {what}")


def _int(entry: Mapping[str, Any], key: str, lo: int = 0, hi: int = 1 << 62, *, owner: Any = None) -> int:
    v = entry.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(owner if owner is not None else entry.get("name"), f"an invalid {key!r}")
    return v


def _section(entry: Mapping[str, Any], key: str, n_sections: int) -> dict[str, Any]:
    sub = entry.get(key)
    sec = sub.get("section") if isinstance(sub, dict) else None
    if not isinstance(sub, dict) or isinstance(sec, bool) or not isinstance(sec, int) or not 0 <= sec < n_sections:
        raise _bad(entry.get("name"), f"no valid {key!r} section")
    return sub


def _validate_entry(entry: Any, n_sections: int) -> tuple[str, tuple[int, ...], str, int]:
    if not isinstance(entry, dict):
        raise FileFormatError("corrupted .cpz header: a tensor record is not an object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise FileFormatError("corrupted .cpz header: a tensor has no name")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < (1 << 31) for d in shape):
        raise _bad(name, "an invalid shape")
    numel = math.prod(shape)
    if numel > MAX_ELEMENTS:
        raise _bad(name, f"{numel} elements, more than this reader accepts")
    dtype = entry.get("dtype")
    if dtype not in _DTYPES:
        raise _bad(name, f"unknown dtype {dtype!r}")
    kind = entry.get("kind")
    if kind not in ("raw", "shared", "sparse"):
        raise _bad(name, f"unknown kind {kind!r}")
    return name, tuple(shape), kind, numel


def _decode_entry(entry: dict[str, Any], sections: list[bytes], coder: str) -> tuple[str, torch.Tensor]:
    name, shape, kind, numel = _validate_entry(entry, len(sections))
    dtype = _DTYPES[entry["dtype"]]
    if kind == "raw":
        data = sections[_int(entry, "data", 0, len(sections) - 1)]
        if len(data) != numel * dtype.itemsize:
            raise _bad(name, f"{len(data)} bytes of data for {numel} elements")
        return name, _from_raw(data, dtype, shape)
    if not dtype.is_floating_point:
        raise _bad(name, "a non-float dtype for a compressed tensor")
    order = entry.get("order")
    if order not in ("C", "T") or (order == "T" and len(shape) < 2):
        raise _bad(name, "an invalid position order")
    kept = _int(entry, "kept", 0, numel)
    if entry.get("positions") is None:
        if kept != numel:
            raise _bad(name, "no position stream although weights are pruned")
        positions = None
    else:
        b = _int(entry, "index_bits", 1, MAX_INDEX_BITS)
        pos = _section(entry, "positions", len(sections))
        count = _int(pos, "count", 0, kept + numel // (1 << b) + 1, owner=name)
        steps = decode_stream(sections[pos["section"]], count, (1 << b) + 1, coder)
        positions = torch.from_numpy(decode_positions(steps, b, numel, kept))
    vals = _section(entry, "values", len(sections))
    if _int(vals, "count", 0, numel, owner=name) != kept:
        raise _bad(name, "a value count that differs from its kept count")
    if kind == "shared":
        cb = _section(entry, "codebook", len(sections))
        k = _int(cb, "size", 1, MAX_CODEBOOK, owner=name)
        cb_data = sections[cb["section"]]
        if len(cb_data) != k * dtype.itemsize or _int(vals, "alphabet", 1, MAX_CODEBOOK, owner=name) != k:
            raise _bad(name, "a codebook whose size does not match")
        codebook = _from_raw(cb_data, dtype, (k,))
        symbols = decode_stream(sections[vals["section"]], kept, k, coder)
        values = codebook[torch.from_numpy(symbols)]
    else:
        data = sections[vals["section"]]
        if len(data) != kept * dtype.itemsize:
            raise _bad(name, "a value section of the wrong size")
        values = _from_raw(data, dtype, (kept,))
    if positions is None:
        flat = values
    else:
        flat = torch.zeros(numel, dtype=dtype)
        flat[positions] = values
    tensor = _unordered(flat, shape, order)
    if "crc" in entry and zlib.crc32(_raw_bytes(tensor)) != _int(entry, "crc", 0, 0xFFFFFFFF):
        raise _bad(name, "values that do not match their checksum")
    return name, tensor


def _read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[bytes], int]:
    p = Path(path)
    c = read_container(p, MAGIC, [VERSION], what=WHAT)
    h = c.header
    if h.get("format") != "convpress.cpz":
        raise FileFormatError(f"{p} is corrupted (header does not describe a .cpz model)")
    coder = h.get("coder")
    if not isinstance(coder, str):
        raise FileFormatError(f"{p} is corrupted (no coder named in the header)")
    try:
        check_coder(coder)
    except ConfigError:
        raise FileFormatError(f"{p} uses coder {coder!r}, which this convpress does not know") from None
    tensors = h.get("tensors")
    if not isinstance(tensors, list):
        raise FileFormatError(f"{p} is corrupted (header has no tensor list)")
    total = 0
    for e in tensors:
        total += _validate_entry(e, len(c.sections))[3]
    if total > MAX_ELEMENTS:
        raise FileFormatError(f"{p} declares {total} elements, more than this reader accepts")
    need = 16 * total  # decoded tensors plus int64 symbol buffers, generously
    free = _free_memory()
    if free is not None and need > free:
        raise FileFormatError(
            f"{p} declares {total:,} values ({need / 2**30:.1f} GiB to decode), more than this machine's "
            f"free memory ({free / 2**30:.1f} GiB); refusing instead of running out of memory"
        )
    return h, c.sections, p.stat().st_size


def _free_memory() -> int | None:
    """Bytes of physical memory currently available, or None where the OS does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def load(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``.cpz`` file into a dense state_dict.

    The tensors are bit-for-bit equal to :func:`~convpress.dense_state_dict` of the model that
    was saved (pruned weights +0.0, shared weights exactly their float centroids).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        FileFormatError: if it is not a valid .cpz file (foreign, truncated, corrupted, unknown version).
    """
    header, sections, _ = _read(path)
    out: dict[str, torch.Tensor] = {}
    for entry in header["tensors"]:
        name, tensor = _decode_entry(entry, sections, header["coder"])
        if name in out:
            raise FileFormatError(f"{path} is corrupted (tensor {name!r} appears twice)")
        out[name] = tensor
    return out


def _info_from_header(path: Path, header: dict[str, Any], section_sizes: list[int], file_bytes: int) -> CpzInfo:
    rows = []
    for e in header["tensors"]:
        secs = []
        for key in ("positions", "values", "codebook"):
            if isinstance(e.get(key), dict):
                secs.append(e[key]["section"])
        if e["kind"] == "raw":
            secs.append(e["data"])
        dtype = _DTYPES[e["dtype"]]
        k = e["codebook"]["size"] if e["kind"] == "shared" else None
        numel = math.prod(e["shape"])
        rows.append(
            TensorInfo(
                name=e["name"],
                shape=tuple(e["shape"]),
                dtype=e["dtype"],
                kind=e["kind"],
                numel=numel,
                kept=e.get("kept", numel),
                value_bits=max(1, int(k - 1).bit_length()) if k else dtype.itemsize * 8,
                index_bits=e.get("index_bits"),
                order=e.get("order", "C"),
                codebook_size=k,
                stored_bytes=sum(section_sizes[i] for i in secs),
            )
        )
    model = header.get("model")
    arch = model.get("arch") if isinstance(model, dict) and isinstance(model.get("arch"), str) else None
    return CpzInfo(
        path=path, coder=header["coder"], file_bytes=file_bytes, tensors=rows, metadata=dict(header.get("metadata") or {}), arch=arch
    )


def read_info(path: str | os.PathLike[str]) -> CpzInfo:
    """Describe a ``.cpz`` file from its (checksum-verified) header without decoding the weights."""
    header, sections, size = _read(path)
    for e in header["tensors"]:  # make sure the section records that the summary reads are sane
        if e["kind"] == "raw":
            _int(e, "data", 0, len(sections) - 1)
        else:
            _section(e, "values", len(sections))
            if e["kind"] == "shared":
                _int(_section(e, "codebook", len(sections)), "size", 1, MAX_CODEBOOK)
            if e.get("positions") is not None:
                _section(e, "positions", len(sections))
            _int(e, "kept", 0, math.prod(e["shape"]))
    return _info_from_header(Path(path), header, [len(s) for s in sections], size)


def read_model_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model description a ``.cpz`` was saved with: ``{"arch": name, "shapes": {...}}``.

    Raises:
        FileFormatError: if the file is invalid or was saved without an architecture name.
    """
    header, _sections, _ = _read(path)
    spec = header.get("model")
    if not isinstance(spec, dict) or not isinstance(spec.get("arch"), str):
        raise FileFormatError(f"{path} was saved without an architecture name; load its state_dict with convpress.load")
    return spec
