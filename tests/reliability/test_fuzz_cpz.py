"""10,000 random mutations of a valid .cpz: each decodes to the exact original or is refused with FileFormatError."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import convpress as cp
from convpress.fileformat.cpz import MAGIC

_ORIGINAL: dict[str, bytes] = {}


def _valid_file(tmp: Path) -> bytes:
    if "data" not in _ORIGINAL:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3))
        cp.prune_(m, 0.7)
        cp.quantize_(m, 4, bias_bits=3)
        cp.save(m, tmp / "f.cpz", arch=None)
        _ORIGINAL["data"] = (tmp / "f.cpz").read_bytes()
        _ORIGINAL["state"] = b"".join(v.numpy().tobytes() for v in cp.load(tmp / "f.cpz").values())
    return _ORIGINAL["data"]


def _reheader(data: bytes, header_bytes: bytes) -> bytes:
    """Replace the header with ``header_bytes`` (compressed, valid checksum): a forged field."""
    _magic, version, _flags, hlen = struct.unpack_from("<8sHHI", data)  # the valid file's own prefix
    packed = zlib.compress(header_bytes)
    return struct.pack("<8sHHI", MAGIC, version, 1, len(packed)) + packed + struct.pack("<I", zlib.crc32(packed)) + data[16 + hlen + 4 :]


@st.composite
def mutations(draw):  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite", "header"]))
    n = 10_000  # resolved against the real length at use
    return kind, draw(st.integers(0, n)), draw(st.integers(1, 255)), draw(st.binary(min_size=1, max_size=8)), draw(st.integers(1, 32))


def _mutate(data: bytes, m: tuple) -> bytes:  # type: ignore[type-arg]
    kind, pos, byte, blob, span = m
    pos %= len(data)
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ byte]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + blob + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + span :]
    if kind == "overwrite":
        return data[:pos] + blob + data[pos + len(blob) :]
    # header field changes: mutate the JSON text itself, then re-checksum it so the reader must validate fields
    raw = bytearray(zlib.decompress(data[16 : 16 + struct.unpack_from("<I", data, 12)[0]]))
    p = pos % len(raw)
    digits = b"0123456789"
    raw[p] = digits[byte % 10] if chr(raw[p]).isdigit() else raw[p] ^ (byte & 0x1F)
    return _reheader(data, bytes(raw))


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(m=mutations())
def test_mutated_files_decode_exactly_or_are_refused(tmp_path_factory, m) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.getbasetemp()
    data = _valid_file(tmp)
    path = tmp / "mutant.cpz"
    path.write_bytes(_mutate(data, m))
    try:
        state = cp.load(path)
    except cp.FileFormatError:
        return
    # a mutation that survives must not change a single value (e.g. whitespace in the JSON)
    assert b"".join(v.numpy().tobytes() for v in state.values()) == _ORIGINAL["state"]
