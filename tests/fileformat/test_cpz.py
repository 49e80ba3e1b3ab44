"""The .cpz file: bit-exact round trips, and refusal of every damaged or foreign file."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.core.atomic import atomic_write_bytes
from convpress.fileformat.cpz import MAGIC


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(4 * 6 * 6, 40)
        self.fc2 = nn.Linear(40, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _compressed(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = _Net()
    m(torch.randn(2, 1, 8, 8))  # BN running statistics become non-trivial
    cp.prune_(m, {"conv": 0.3, "fc1": 0.9, "fc2": 0.5})
    cp.quantize_(m, {"conv": 6, "fc1": 4, "fc2": 4}, bias_bits=4)
    return m


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


def _assert_bit_exact(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    expected = cp.dense_state_dict(model)
    assert state.keys() == expected.keys()
    for k in expected:
        assert state[k].dtype == expected[k].dtype and state[k].shape == expected[k].shape, k
        assert torch.equal(_bits(state[k]), _bits(expected[k])), k


@pytest.mark.parametrize("coder", ["ans", "huffman", "none"])
@pytest.mark.parametrize("index_bits", ["auto", "paper", 3])
def test_round_trip_is_bit_exact(tmp_path: Path, coder: str, index_bits: object) -> None:
    m = _compressed()
    info = cp.save(m, tmp_path / "m.cpz", coder=coder, index_bits=index_bits)  # type: ignore[arg-type]
    assert info.file_bytes == (tmp_path / "m.cpz").stat().st_size
    _assert_bit_exact(cp.load(tmp_path / "m.cpz"), m)


def test_pruned_only_and_uncompressed_models_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = _Net()
    cp.save(m, tmp_path / "dense.cpz")
    _assert_bit_exact(cp.load(tmp_path / "dense.cpz"), m)
    cp.prune_(m, 0.8)
    cp.save(m, tmp_path / "pruned.cpz", order="T")
    _assert_bit_exact(cp.load(tmp_path / "pruned.cpz"), m)


def test_loaded_state_dict_drives_a_fresh_model_identically(tmp_path: Path) -> None:
    m = _compressed().eval()
    cp.save(m, tmp_path / "m.cpz")
    fresh = _Net().eval()
    fresh.load_state_dict(cp.load(tmp_path / "m.cpz"))
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(fresh(x), m(x))


def test_compressed_file_is_much_smaller_than_dense(tmp_path: Path) -> None:
    m = _compressed()
    info = cp.save(m, tmp_path / "m.cpz")
    assert info.ratio > 4
    assert cp.read_info(tmp_path / "m.cpz").file_bytes == info.file_bytes


def test_header_describes_layers_and_metadata(tmp_path: Path) -> None:
    m = _compressed()
    cp.save(m, tmp_path / "m.cpz", metadata={"arch": "test-net", "accuracy": 97.5})
    info = cp.read_info(tmp_path / "m.cpz")
    assert info.metadata == {"arch": "test-net", "accuracy": 97.5}
    rows = {t.name: t for t in info.tensors}
    assert rows["fc1.weight"].kind == "shared" and rows["fc1.weight"].value_bits == 4
    assert rows["fc1.weight"].kept == round(0.1 * 144 * 40)
    assert rows["bn.running_mean"].kind == "raw"
    assert sum(t.stored_bytes for t in info.tensors) < info.file_bytes


def test_save_refuses_bad_settings_and_keeps_existing_files(tmp_path: Path) -> None:
    m = _compressed()
    out = tmp_path / "m.cpz"
    out.write_bytes(b"precious")
    with pytest.raises(cp.ConfigError, match="exists"):
        cp.save(m, out, overwrite=False)
    with pytest.raises(cp.ConfigError, match="coder"):
        cp.save(m, out, coder="lzma")
    with pytest.raises(cp.ConfigError, match="index_bits"):
        cp.save(m, out, index_bits=0)
    with pytest.raises(cp.ConfigError, match="order"):
        cp.save(m, out, order="F")
    with pytest.raises(cp.ConfigError, match="metadata"):
        cp.save(m, out, metadata={"x": object()})
    assert out.read_bytes() == b"precious"


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m.cpz"
    out.write_bytes(b"old")

    def boom(*_a: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(out, b"new data")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.cpz"]  # no temp file left behind


# ----------------------------------------------------------------------------- damaged files


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3))
    cp.prune_(m, 0.6)
    cp.quantize_(m, 3, bias_bits=2)
    path = tmp_path_factory.mktemp("cpz") / "small.cpz"
    cp.save(m, path)
    return path.read_bytes()


def test_every_single_flipped_byte_is_refused(small_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.cpz"
    for i in range(len(small_file)):
        for flip in (0x01, 0xFF):
            damaged = bytearray(small_file)
            damaged[i] ^= flip
            path.write_bytes(bytes(damaged))
            with pytest.raises(cp.FileFormatError):
                cp.load(path)


def test_every_truncation_is_refused(small_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.cpz"
    for n in range(len(small_file)):
        path.write_bytes(small_file[:n])
        with pytest.raises(cp.FileFormatError):
            cp.load(path)
    path.write_bytes(small_file + b"\x00")
    with pytest.raises(cp.FileFormatError, match="trailing"):
        cp.load(path)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not a convpress model file"),
        (b"PK\x03\x04" + b"\x00" * 60, "not a convpress model file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 60, "wrong magic"),
        (MAGIC[:5], "truncated"),
    ],
)
def test_foreign_files_are_refused(tmp_path: Path, payload: bytes, match: str) -> None:
    path = tmp_path / "x.cpz"
    path.write_bytes(payload)
    with pytest.raises(cp.FileFormatError, match=match):
        cp.load(path)


def _reheader(data: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    """Rewrite the JSON header with ``edit`` and a *valid* checksum (a forged file)."""
    magic, version, flags, hlen = struct.unpack_from("<8sHHI", data)
    raw = data[16 : 16 + hlen]
    header = json.loads(zlib.decompress(raw) if flags & 1 else raw)
    edit(header)
    raw = json.dumps(header).encode()  # written back uncompressed (flags 0), also a valid layout
    return struct.pack("<8sHHI", magic, version, 0, len(raw)) + raw + struct.pack("<I", zlib.crc32(raw)) + data[16 + hlen + 4 :]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda h: h.update(coder="lzma"), "coder"),
        (lambda h: h["tensors"][0].update(shape=[1 << 30, 1 << 30]), "elements"),
        (lambda h: h["tensors"][0].update(kept=5), "holds|count"),
        (lambda h: h["tensors"][0].update(dtype="complex64"), "dtype"),
        (lambda h: h["tensors"][0]["values"].update(section=99), "values"),
        (lambda h: h["tensors"].append(h["tensors"][0]), "twice"),
        (lambda h: h.update(format="something-else"), "does not describe"),
        (lambda h: h.update(tensors="nope"), "tensor list"),
        # valid but different values of a field: caught by the checksum of the decoded values
        (lambda h: h["tensors"][0].update(order={"C": "T", "T": "C"}[h["tensors"][0]["order"]]), "checksum"),
        (lambda h: h["tensors"][0].update(crc=h["tensors"][0]["crc"] ^ 1), "checksum"),
    ],
)
def test_forged_headers_with_valid_checksums_are_refused(small_file: bytes, tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.cpz"
    path.write_bytes(_reheader(small_file, edit))
    with pytest.raises(cp.FileFormatError, match=match):
        cp.load(path)


def test_header_is_deflated_and_unknown_flags_are_refused(small_file: bytes, tmp_path: Path) -> None:
    assert struct.unpack_from("<H", small_file, 10)[0] == 1  # zlib flag set: the header got smaller
    data = bytearray(small_file)
    struct.pack_into("<H", data, 10, 3)
    path = tmp_path / "x.cpz"
    path.write_bytes(bytes(data))
    with pytest.raises(cp.FileFormatError, match="flags"):
        cp.load(path)


def test_files_too_large_for_memory_are_refused_up_front(small_file: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.cpz"
    path.write_bytes(small_file)
    monkeypatch.setattr("convpress.fileformat.cpz._free_memory", lambda: 1000)
    with pytest.raises(cp.FileFormatError, match="free memory"):
        cp.load(path)


def test_unknown_version_is_named(small_file: bytes, tmp_path: Path) -> None:
    data = bytearray(small_file)
    struct.pack_into("<H", data, 8, 7)
    path = tmp_path / "x.cpz"
    path.write_bytes(bytes(data))
    with pytest.raises(cp.FileFormatError, match="version 7"):
        cp.load(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        cp.load(tmp_path / "nope.cpz")
    with pytest.raises(cp.FileFormatError, match="directory"):
        cp.load(tmp_path)
