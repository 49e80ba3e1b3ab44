"""The .cpz file: bit-exact round trips, and refusal of every damaged or foreign file."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import convpress as cp
from convpress.core.atomic import atomic_write_bytes
from convpress.core.container import read_container
from convpress.core.errors import ConfigError
from convpress.core.version import __version__
from convpress.fileformat.coders import CODERS, decode_stream, empirical_entropy_bits, encode_stream
from convpress.fileformat.cpz import (
    MAGIC,
    MAX_CODEBOOK,
    MAX_ELEMENTS,
    VERSION,
    CompressedTensor,
    TensorInfo,
    _free_memory,
    load,
    read_info,
    read_model_spec,
    save_tensors,
)
from convpress.fileformat.sparse import MAX_INDEX_BITS, encode_positions


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


# ----------------------------------------------------------------------------- save_tensors in detail


def _sparse(shape: tuple[int, ...], keep: float, seed: int, dtype: torch.dtype = torch.float32) -> CompressedTensor:
    """A pruned-only tensor keeping about ``keep`` of its weights."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < keep
    return CompressedTensor(torch.where(mask, torch.randn(shape, generator=g), 0.0).to(dtype), mask)


def _shared(
    shape: tuple[int, ...], k: int, keep: float, seed: int, dtype: torch.dtype = torch.float32, layer: str = "conv"
) -> CompressedTensor:
    """A pruned and weight-shared tensor with a codebook of ``k`` centroids."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < keep
    codebook = torch.linspace(-1, 1, k, dtype=torch.float64).to(dtype)
    index = torch.randint(0, k, shape, generator=g) * mask
    return CompressedTensor(torch.where(mask, codebook[index], 0.0).to(dtype), mask, codebook, index, layer)


def _dense(t: torch.Tensor | CompressedTensor) -> torch.Tensor:
    return t.values if isinstance(t, CompressedTensor) else t


def _assert_loads_bit_exact(path: Path, tensors: dict[str, torch.Tensor | CompressedTensor]) -> None:
    state = load(path)
    assert list(state) == list(tensors)
    for name, t in tensors.items():
        want = _dense(t)
        assert state[name].dtype == want.dtype and state[name].shape == want.shape, name
        assert state[name].reshape(-1).view(torch.uint8).tolist() == want.reshape(-1).view(torch.uint8).tolist(), name


def _rows(path: Path) -> dict[str, TensorInfo]:
    return {t.name: t for t in read_info(path).tensors}


def test_save_tensors_defaults_are_ans_auto_auto_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "t.cpz"
    tensors = {"w": _sparse((20, 30), 0.5, 0)}
    info = save_tensors(tensors, path)
    assert info.coder == "ans" and info.path == path and read_info(path).coder == "ans"
    row = _rows(path)["w"]
    assert row.kind == "sparse" and row.order in ("C", "T") and row.index_bits in range(1, 13)
    assert save_tensors(tensors, path).file_bytes == path.stat().st_size  # the default replaces the file
    _assert_loads_bit_exact(path, tensors)


def test_index_bits_by_tensor_name_then_layer_name_then_auto(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "block.fc.weight": _sparse((20, 30), 0.5, 1),
        "block.fc.bias": _sparse((400,), 0.5, 2),
        "block.conv.weight": _shared((8, 4, 3, 3), 16, 0.5, 3),
        "head.weight": _sparse((20, 30), 0.5, 4),
    }
    spec = {"block.fc": 3, "block.fc.bias": 4, "block.conv.weight": 7}
    save_tensors(tensors, tmp_path / "a.cpz", index_bits=spec, order="C")
    rows = _rows(tmp_path / "a.cpz")
    assert rows["block.fc.weight"].index_bits == 3  # by its layer
    assert rows["block.fc.bias"].index_bits == 4  # by its own name, before its layer's
    assert rows["block.conv.weight"].index_bits == 7
    save_tensors({"head.weight": tensors["head.weight"]}, tmp_path / "auto.cpz", order="C")
    assert rows["head.weight"].index_bits == _rows(tmp_path / "auto.cpz")["head.weight"].index_bits  # not named: auto
    assert all(r.kind != "raw" for r in rows.values())
    _assert_loads_bit_exact(tmp_path / "a.cpz", tensors)


def test_paper_index_bits_are_5_for_linear_and_8_for_conv(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "fc.weight": _shared((40, 50), 16, 0.3, 0, layer="linear"),
        "conv.weight": _shared((16, 8, 3, 3), 16, 0.3, 1, layer="conv"),
    }
    save_tensors(tensors, tmp_path / "p.cpz", index_bits="paper")
    rows = _rows(tmp_path / "p.cpz")
    assert (rows["fc.weight"].index_bits, rows["conv.weight"].index_bits) == (5, 8)
    _assert_loads_bit_exact(tmp_path / "p.cpz", tensors)


@pytest.mark.parametrize("bits", [1, MAX_INDEX_BITS])
def test_index_bits_at_both_ends_of_the_range_round_trip(tmp_path: Path, bits: int) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"w": _sparse((30, 40), 0.4, bits)}
    save_tensors(tensors, tmp_path / "b.cpz", index_bits=bits)
    assert _rows(tmp_path / "b.cpz")["w"].index_bits == bits
    _assert_loads_bit_exact(tmp_path / "b.cpz", tensors)


@pytest.mark.parametrize("bad", [0, MAX_INDEX_BITS + 1, True, 3.0, "small"])
def test_index_bits_outside_the_range_or_not_an_int_are_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="index_bits must be 'auto', 'paper', or an integer in"):
        save_tensors({"w": _sparse((20, 30), 0.5, 0)}, tmp_path / "x.cpz", index_bits=bad)  # type: ignore[arg-type]


def _auto_oracle(mask: np.ndarray, coder: str) -> int:
    """The index width ``"auto"`` must pick: the smallest position stream over 1..12 bits, ties to fewer bits."""
    sizes = [len(encode_stream(encode_positions(mask, b), (1 << b) + 1, coder)) for b in range(1, 13)]
    return 1 + sizes.index(min(sizes))


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        (np.arange(600) % 2 == 0, 1),  # every other weight: one-bit steps
        (np.arange(8 * 5001) % 5001 == 0, 12),  # gaps of 5000: the widest step 'auto' tries
    ],
)
def test_auto_index_bits_picks_the_smallest_position_stream(tmp_path: Path, mask: np.ndarray, expected: int) -> None:
    assert _auto_oracle(mask, "none") == expected
    m = torch.from_numpy(mask)
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"w": CompressedTensor(torch.ones(mask.size) * m, m)}
    save_tensors(tensors, tmp_path / "a.cpz", coder="none")
    assert _rows(tmp_path / "a.cpz")["w"].index_bits == expected
    _assert_loads_bit_exact(tmp_path / "a.cpz", tensors)


def _input_major() -> CompressedTensor:
    """A Linear weight whose first 20 inputs are pruned for every output: long runs in 'T' order."""
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(30, 40, generator=g) < 0.5
    mask[:, :20] = False
    return CompressedTensor(torch.where(mask, torch.randn(30, 40, generator=g), 0.0), mask, layer="linear")


def test_order_is_kept_when_given_and_auto_picks_the_smaller(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"fc.weight": _input_major()}
    sizes = {}
    for order in ("C", "T", "auto"):
        info = save_tensors(tensors, tmp_path / f"{order}.cpz", order=order)
        sizes[order] = info.file_bytes
        _assert_loads_bit_exact(tmp_path / f"{order}.cpz", tensors)
    rows = {o: _rows(tmp_path / f"{o}.cpz")["fc.weight"] for o in sizes}
    assert (rows["C"].order, rows["T"].order) == ("C", "T")
    assert sizes["T"] < sizes["C"] and rows["auto"].order == "T" and sizes["auto"] == sizes["T"]


def test_one_dimensional_tensors_are_stored_in_c_order_whatever_the_order_asked(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"bias": _sparse((500,), 0.3, 0), "shared_bias": _shared((500,), 4, 0.3, 1)}
    for order in ("T", "auto"):
        save_tensors(tensors, tmp_path / "b.cpz", order=order)
        assert [r.order for r in read_info(tmp_path / "b.cpz").tensors] == ["C", "C"]
        _assert_loads_bit_exact(tmp_path / "b.cpz", tensors)


def test_a_tensor_with_every_weight_kept_has_no_position_stream(tmp_path: Path) -> None:
    t = _shared((20, 30), 4, 1.1, 0)  # keep > 1: every weight kept
    assert bool(t.mask.all())
    info = save_tensors({"w": t}, tmp_path / "f.cpz")
    row = _rows(tmp_path / "f.cpz")["w"]
    assert row.kind == "shared" and row.kept == 600 and row.index_bits is None
    assert [s.name for s in info.streams] == ["w:values"]
    assert row.stored_bytes == 4 * 4 + info.streams[0].coded_bytes  # the codebook and the index stream alone
    _assert_loads_bit_exact(tmp_path / "f.cpz", {"w": t})


def test_a_moderately_pruned_tensor_is_stored_sparse_not_raw(tmp_path: Path) -> None:
    """Half the weights kept: values (2000 B) and positions are well under the dense 4000 B."""
    save_tensors({"w": _sparse((1000,), 0.5, 0)}, tmp_path / "s.cpz")
    row = _rows(tmp_path / "s.cpz")["w"]
    assert row.kind == "sparse" and row.stored_bytes < 4000


def test_masks_of_any_dtype_mean_nonzero_is_kept(tmp_path: Path) -> None:
    t = _shared((20, 30), 8, 0.5, 0)
    assert t.codebook is not None
    as_bool = save_tensors({"w": t}, tmp_path / "bool.cpz")
    for mask in (t.mask.float(), t.mask.to(torch.uint8)):
        save_tensors({"w": CompressedTensor(t.values, mask, t.codebook, t.index)}, tmp_path / "other.cpz")
        assert (tmp_path / "other.cpz").read_bytes() == (tmp_path / "bool.cpz").read_bytes()
    assert as_bool.file_bytes == (tmp_path / "bool.cpz").stat().st_size
    _assert_loads_bit_exact(tmp_path / "other.cpz", {"w": t})


def test_a_codebook_of_another_dtype_is_stored_in_the_tensors_dtype(tmp_path: Path) -> None:
    t = _shared((20, 30), 8, 0.5, 0)
    assert t.codebook is not None
    wide = CompressedTensor(t.values, t.mask, t.codebook.double(), t.index)
    save_tensors({"w": wide}, tmp_path / "w.cpz")
    assert _rows(tmp_path / "w.cpz")["w"].dtype == "float32"
    _assert_loads_bit_exact(tmp_path / "w.cpz", {"w": t})


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_compressed_tensors_of_every_float_dtype_round_trip(tmp_path: Path, dtype: torch.dtype) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "sparse": _sparse((30, 40), 0.3, 0, dtype),
        "shared": _shared((30, 40), 8, 0.3, 1, dtype),
    }
    save_tensors(tensors, tmp_path / "d.cpz")
    assert [r.kind for r in read_info(tmp_path / "d.cpz").tensors] == ["sparse", "shared"]
    _assert_loads_bit_exact(tmp_path / "d.cpz", tensors)


def test_raw_tensors_of_every_dtype_and_empty_tensors_round_trip(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "i64": torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4),
        "b": torch.tensor([True, False, True]),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "h": torch.tensor([1.5, -2.25], dtype=torch.float16),
        "empty_i64": torch.zeros(0, 3, dtype=torch.int64),
        "empty_h": torch.zeros(2, 0, dtype=torch.float16),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
    }
    save_tensors(tensors, tmp_path / "r.cpz")
    rows = _rows(tmp_path / "r.cpz")
    assert {r.kind for r in rows.values()} == {"raw"}
    assert rows["empty_i64"].shape == (0, 3) and rows["scalar"].shape == ()
    _assert_loads_bit_exact(tmp_path / "r.cpz", tensors)


def test_entirely_pruned_tensors_round_trip(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "short": CompressedTensor(torch.zeros(3), torch.zeros(3, dtype=torch.bool)),  # fewer positions than M: no steps
        "long": CompressedTensor(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool)),  # 16 positions: 4 fillers of 4
    }
    info = save_tensors(tensors, tmp_path / "z.cpz", index_bits=2, order="C")
    rows = _rows(tmp_path / "z.cpz")
    assert [(r.kind, r.kept) for r in rows.values()] == [("sparse", 0), ("sparse", 0)]
    assert [s.symbols for s in info.streams] == [0, 4]
    _assert_loads_bit_exact(tmp_path / "z.cpz", tensors)


@pytest.mark.parametrize(("k", "bits"), [(1, 1), (2, 1), (4, 2), (5, 3), (16, 4), (17, 5)])
def test_codebook_sizes_and_their_value_bits(tmp_path: Path, k: int, bits: int) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"w": _shared((30, 40), k, 0.3, k)}
    save_tensors(tensors, tmp_path / "k.cpz")
    row = _rows(tmp_path / "k.cpz")["w"]
    assert (row.kind, row.codebook_size, row.value_bits) == ("shared", k, bits)
    _assert_loads_bit_exact(tmp_path / "k.cpz", tensors)


def test_refusals_of_tensors_the_format_cannot_hold(tmp_path: Path) -> None:
    out = tmp_path / "x.cpz"
    with pytest.raises(ConfigError, match="tensor 'c' has dtype torch.complex64, which .cpz files do not store"):
        save_tensors({"c": torch.zeros(3, dtype=torch.complex64)}, out)
    with pytest.raises(ConfigError, match="tensor 'i' has dtype torch.int64; only float tensors can be compressed"):
        save_tensors({"i": CompressedTensor(torch.zeros(5, dtype=torch.int64), torch.ones(5, dtype=torch.bool))}, out)
    t = _shared((20, 30), 4, 0.5, 0)
    with pytest.raises(ConfigError, match="tensor 'w' has a codebook but no index"):
        save_tensors({"w": CompressedTensor(t.values, t.mask, t.codebook)}, out)
    with pytest.raises(ConfigError, match="order must be 'auto', 'C' or 'T'"):
        save_tensors({"w": t}, out, order="c")
    with pytest.raises(ConfigError, match="metadata must be JSON-serialisable"):
        save_tensors({"w": t}, out, model={"arch": object()})
    assert not out.exists()


def test_info_rows_describe_every_tensor_exactly(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "shared": _shared((20, 30), 8, 0.4, 0),
        "sparse": _sparse((20, 30), 0.4, 1),
        "raw_h": torch.ones(2, 3, dtype=torch.float16),
        "raw_f": torch.ones(5),
    }
    path = tmp_path / "i.cpz"
    saved = save_tensors(tensors, path, index_bits=4, order="C")
    info = read_info(path)
    assert info.path == path and info.coder == "ans" and info.arch is None
    rows = {t.name: t for t in info.tensors}
    kept = {n: int(t.mask.sum()) for n, t in tensors.items() if isinstance(t, CompressedTensor)}
    assert (rows["shared"].shape, rows["shared"].dtype, rows["shared"].numel) == ((20, 30), "float32", 600)
    assert (rows["shared"].kind, rows["shared"].kept, rows["shared"].index_bits, rows["shared"].order) == ("shared", kept["shared"], 4, "C")
    assert (rows["shared"].codebook_size, rows["shared"].value_bits) == (8, 3)
    assert (rows["sparse"].kind, rows["sparse"].kept, rows["sparse"].codebook_size, rows["sparse"].value_bits) == (
        "sparse",
        kept["sparse"],
        None,
        32,
    )
    for name, bits in (("raw_h", 16), ("raw_f", 32)):
        r = rows[name]
        assert (r.kind, r.kept, r.numel, r.index_bits, r.order, r.codebook_size, r.value_bits) == (
            "raw",
            r.numel,
            r.numel,
            None,
            "C",
            None,
            bits,
        )
    assert rows["raw_h"].stored_bytes == 12 and rows["raw_f"].stored_bytes == 20
    # every section belongs to exactly one tensor
    sections = read_container(path, MAGIC, [VERSION]).sections
    assert sum(r.stored_bytes for r in info.tensors) == sum(len(s) for s in sections)
    assert [(r.name, r.stored_bytes) for r in saved.tensors] == [(r.name, r.stored_bytes) for r in info.tensors]


@pytest.mark.parametrize("coder", ["ans", "huffman", "none"])
def test_stream_statistics_describe_the_streams_written(tmp_path: Path, coder: str) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"a": _shared((20, 30), 8, 0.4, 0), "b": _sparse((20, 30), 0.4, 1)}
    path = tmp_path / "s.cpz"
    info = save_tensors(tensors, path, coder=coder, index_bits=3, order="C")
    header = read_container(path, MAGIC, [VERSION]).header
    sections = read_container(path, MAGIC, [VERSION]).sections
    entries = {e["name"]: e for e in header["tensors"]}
    expected = [("a:positions", "positions", 9), ("a:values", "values", 8), ("b:positions", "positions", 9)]
    assert [s.name for s in info.streams] == [name for name, _, _ in expected]
    for stats, (name, key, alphabet) in zip(info.streams, expected, strict=True):
        rec = entries[name.split(":")[0]][key]
        data = sections[rec["section"]]
        symbols = decode_stream(data, rec["count"], alphabet, coder)
        assert (stats.symbols, stats.alphabet, stats.coded_bytes) == (rec["count"], alphabet, len(data))
        assert stats.entropy_bits == empirical_entropy_bits(symbols, alphabet)
        assert stats.payload_bits == CODERS.get(coder).payload_bits(symbols, alphabet)


def test_model_description_and_provenance_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "m.cpz"
    spec = {"arch": "tiny", "shapes": {"w": [20, 30]}}
    info = save_tensors({"w": _sparse((20, 30), 0.5, 0)}, path, model=spec, metadata={"acc": 1.5})
    assert info.arch == "tiny" and read_info(path).arch == "tiny"
    assert read_model_spec(path) == spec
    header = read_container(path, MAGIC, [VERSION]).header
    assert header["created_by"] == f"convpress {__version__}" and header["metadata"] == {"acc": 1.5}
    save_tensors({"w": _sparse((20, 30), 0.5, 0)}, path, model={"shapes": {}})
    assert read_info(path).arch is None
    with pytest.raises(cp.FileFormatError, match="saved without an architecture name"):
        read_model_spec(path)


def _solve_crc_suffix(prefix: bytes, target: int) -> bytes:
    """Four bytes ``x`` with ``crc32(prefix + x) == target`` (CRC32 is affine in ``x``: solve over GF(2))."""
    base = zlib.crc32(prefix + bytes(4))
    basis: dict[int, tuple[int, int]] = {}  # pivot bit -> (column, the bits of x that make it)
    for i in range(32):
        v, combo = zlib.crc32(prefix + (1 << i).to_bytes(4, "little")) ^ base, 1 << i
        while v:
            p = v.bit_length() - 1
            if p not in basis:
                basis[p] = (v, combo)
                break
            v, combo = v ^ basis[p][0], combo ^ basis[p][1]
    r, x = base ^ target, 0
    while r:
        v, combo = basis[r.bit_length() - 1]
        r, x = r ^ v, x ^ combo
    return x.to_bytes(4, "little")


def test_a_tensor_whose_checksum_is_zero_loads(tmp_path: Path) -> None:
    """A CRC of 0 is as valid as any other: the checksum field accepts all of [0, 2**32)."""
    last = _solve_crc_suffix(bytes(4 * 63), 0)
    values = torch.zeros(64)
    values[63] = torch.frombuffer(bytearray(last), dtype=torch.float32)[0]
    mask = torch.zeros(64, dtype=torch.bool)
    mask[63] = True
    assert zlib.crc32(values.numpy().tobytes()) == 0
    tensors: dict[str, torch.Tensor | CompressedTensor] = {"w": CompressedTensor(values, mask)}
    save_tensors(tensors, tmp_path / "z.cpz")
    assert read_container(tmp_path / "z.cpz", MAGIC, [VERSION]).header["tensors"][0]["crc"] == 0
    _assert_loads_bit_exact(tmp_path / "z.cpz", tensors)


# ----------------------------------------------------------------------------- forged headers, field by field


@pytest.fixture(scope="module")
def forge_base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A file holding every kind of entry, in this order (and these sections):
    r (raw: 0), a.weight (shared: positions 1, codebook 2, values 3), b.weight (sparse: positions 4, values 5),
    full.weight (shared, nothing pruned: codebook 6, values 7), d.bias (1-D sparse: positions 8, values 9)."""
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "r": torch.arange(6, dtype=torch.float32),
        "a.weight": _shared((20, 30), 8, 0.4, 0),
        "b.weight": _sparse((20, 30), 0.4, 1),
        "full.weight": _shared((20, 30), 4, 1.1, 2),
        "d.bias": _sparse((500,), 0.3, 3),
    }
    path = tmp_path_factory.mktemp("forge") / "base.cpz"
    save_tensors(tensors, path, index_bits=3, order="C")
    return path.read_bytes()


def _entry(h: dict, name: str) -> dict:  # type: ignore[type-arg]
    return next(e for e in h["tensors"] if e["name"] == name)


def test_forge_base_has_the_documented_layout(forge_base: bytes, tmp_path: Path) -> None:
    path = tmp_path / "x.cpz"
    path.write_bytes(forge_base)
    h = read_container(path, MAGIC, [VERSION]).header
    assert [(e["name"], e["kind"]) for e in h["tensors"]] == [
        ("r", "raw"),
        ("a.weight", "shared"),
        ("b.weight", "sparse"),
        ("full.weight", "shared"),
        ("d.bias", "sparse"),
    ]
    a, b = _entry(h, "a.weight"), _entry(h, "b.weight")
    assert (_entry(h, "r")["data"], a["positions"]["section"], a["codebook"]["section"], a["values"]["section"]) == (0, 1, 2, 3)
    assert (b["positions"]["section"], b["values"]["section"], _entry(h, "full.weight")["positions"]) == (4, 5, None)
    assert len(load(path)) == 5 and len(read_info(path).tensors) == 5


def _set(name: str, key: str, value: object):  # type: ignore[no-untyped-def]
    return lambda h: _entry(h, name).update({key: value})


def _set_in(name: str, key: str, sub: str, value: object):  # type: ignore[no-untyped-def]
    return lambda h: _entry(h, name)[key].update({sub: value})


def _grow_codebook(h: dict) -> None:  # type: ignore[type-arg]
    """Codebook size and alphabet agree with each other (9) but not with the 8 stored centroids."""
    _entry(h, "a.weight")["codebook"]["size"] = 9
    _entry(h, "a.weight")["values"]["alphabet"] = 9


_FORGERIES = [
    # records and their names
    (lambda h: h["tensors"].__setitem__(0, []), "a tensor record is not an object"),
    (_set("r", "name", ""), "a tensor has no name"),
    (_set("r", "name", 5), "a tensor has no name"),
    # shapes, dtypes, kinds
    (_set("r", "shape", [-1, 6]), "tensor 'r' has an invalid shape"),
    (_set("r", "shape", [6.0]), "tensor 'r' has an invalid shape"),
    (_set("r", "shape", [True] * 6), "tensor 'r' has an invalid shape"),
    (_set("r", "shape", "6"), "tensor 'r' has an invalid shape"),
    (_set("r", "shape", [1 << 31]), "tensor 'r' has an invalid shape"),
    (_set("r", "shape", [1 << 16, 1 << 16, 2]), "tensor 'r' has 8589934592 elements, more than this reader accepts"),
    (_set("r", "dtype", "complex64"), "tensor 'r' has unknown dtype 'complex64'"),
    (_set("r", "kind", "dense"), "tensor 'r' has unknown kind 'dense'"),
    # raw data
    (_set("r", "data", 10), "tensor 'r' has an invalid 'data'"),
    (_set("r", "data", -1), "tensor 'r' has an invalid 'data'"),
    (_set("r", "data", False), "tensor 'r' has an invalid 'data'"),  # False == 0 is its section, but not an int
    (_set("r", "data", "0"), "tensor 'r' has an invalid 'data'"),
    (_set("r", "shape", [7]), "tensor 'r' has 24 bytes of data for 7 elements"),
    # compressed entries
    (_set("a.weight", "dtype", "int32"), "tensor 'a.weight' has a non-float dtype for a compressed tensor"),
    (_set("a.weight", "order", "F"), "tensor 'a.weight' has an invalid position order"),
    (_set("d.bias", "order", "T"), "tensor 'd.bias' has an invalid position order"),  # 'T' needs two axes
    (_set("a.weight", "kept", 601), "tensor 'a.weight' has an invalid 'kept'"),
    (_set("a.weight", "kept", -1), "tensor 'a.weight' has an invalid 'kept'"),
    (_set("a.weight", "positions", None), "tensor 'a.weight' has no position stream although weights are pruned"),
    (_set("a.weight", "index_bits", MAX_INDEX_BITS + 1), "tensor 'a.weight' has an invalid 'index_bits'"),
    (_set("a.weight", "index_bits", 0), "tensor 'a.weight' has an invalid 'index_bits'"),
    (_set("a.weight", "positions", 1), "tensor 'a.weight' has no valid 'positions' section"),
    (_set_in("a.weight", "positions", "section", True), "tensor 'a.weight' has no valid 'positions' section"),  # True == 1
    (_set_in("a.weight", "positions", "section", 10), "tensor 'a.weight' has no valid 'positions' section"),
    (_set_in("a.weight", "positions", "count", 601 + 600 // 8 + 1), "tensor 'a.weight' has an invalid 'count'"),
    (_set_in("a.weight", "positions", "count", -1), "tensor 'a.weight' has an invalid 'count'"),
    (_set("a.weight", "values", [3]), "tensor 'a.weight' has no valid 'values' section"),
    (_set_in("a.weight", "values", "count", 601), "tensor 'a.weight' has an invalid 'count'"),
    (_set_in("a.weight", "values", "count", -1), "tensor 'a.weight' has an invalid 'count'"),
    (_set_in("a.weight", "values", "count", 1), "tensor 'a.weight' has a value count that differs from its kept count"),
    (_set_in("a.weight", "codebook", "size", 0), "tensor 'a.weight' has an invalid 'size'"),
    (_set_in("a.weight", "codebook", "size", (1 << 16) + 1), "tensor 'a.weight' has an invalid 'size'"),
    (_set_in("a.weight", "codebook", "size", 9), "tensor 'a.weight' has a codebook whose size does not match"),
    (_set_in("a.weight", "values", "alphabet", 9), "tensor 'a.weight' has a codebook whose size does not match"),
    (_set_in("a.weight", "values", "alphabet", 0), "tensor 'a.weight' has an invalid 'alphabet'"),
    (_grow_codebook, "tensor 'a.weight' has a codebook whose size does not match"),
    (_set_in("b.weight", "values", "section", 4), "tensor 'b.weight' has a value section of the wrong size"),
    (_set("a.weight", "crc", 1 << 32), "tensor 'a.weight' has an invalid 'crc'"),
    (lambda h: _entry(h, "a.weight").update(crc=_entry(h, "a.weight")["crc"] ^ 1), "tensor 'a.weight' has values that do not match"),
    # the file as a whole
    (lambda h: h.update(coder=5), "no coder named in the header"),
]


@pytest.mark.parametrize(("edit", "match"), _FORGERIES)
def test_each_forged_field_is_refused_by_name(forge_base: bytes, tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.cpz"
    path.write_bytes(_reheader(forge_base, edit))
    with pytest.raises(cp.FileFormatError, match=re.escape(match)):
        load(path)


@pytest.mark.parametrize(
    "edit",
    [
        _set("r", "data", 10),
        _set("a.weight", "codebook", None),
        _set_in("a.weight", "codebook", "size", (1 << 16) + 1),
        _set_in("a.weight", "positions", "section", 10),
        _set("a.weight", "kept", 601),
        _set("b.weight", "values", None),
    ],
)
def test_read_info_refuses_the_section_records_it_reads(forge_base: bytes, tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.cpz"
    path.write_bytes(_reheader(forge_base, edit))
    with pytest.raises(cp.FileFormatError, match="corrupted .cpz header"):
        read_info(path)


def test_read_info_accepts_a_single_centroid_and_an_entirely_pruned_tensor(tmp_path: Path) -> None:
    tensors: dict[str, torch.Tensor | CompressedTensor] = {
        "one": _shared((20, 30), 1, 0.3, 0),
        "none": CompressedTensor(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool)),
    }
    save_tensors(tensors, tmp_path / "e.cpz", index_bits=2)
    rows = _rows(tmp_path / "e.cpz")
    assert (rows["one"].codebook_size, rows["none"].kept) == (1, 0)


# ----------------------------------------------------------------------------- element and memory bounds


def _one_raw_tensor(tmp_path: Path, shape: list[int]) -> Path:
    """A file of one raw float32 tensor of 4 values, its header forged to declare ``shape``."""
    src = tmp_path / "one.cpz"
    save_tensors({"w": torch.ones(4)}, src)
    path = tmp_path / "forged.cpz"
    path.write_bytes(_reheader(src.read_bytes(), _set("w", "shape", shape)))
    return path


def test_exactly_max_elements_is_not_refused_for_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2**31 elements is the limit itself: the file is refused for its 16 bytes of data, not for its size."""
    monkeypatch.setattr("convpress.fileformat.cpz._free_memory", lambda: None)  # as where the OS does not say
    with pytest.raises(cp.FileFormatError, match=f"16 bytes of data for {MAX_ELEMENTS} elements"):
        load(_one_raw_tensor(tmp_path, [1 << 30, 2]))


def test_more_than_max_elements_in_total_is_refused(tmp_path: Path) -> None:
    """Each tensor within the limit, together one element over it."""
    src = tmp_path / "two.cpz"
    save_tensors({"a": torch.ones(4), "b": torch.ones(4)}, src)
    path = tmp_path / "forged.cpz"
    path.write_bytes(_reheader(src.read_bytes(), lambda h: (_entry(h, "a").update(shape=[1 << 30, 2]), _entry(h, "b").update(shape=[1]))))
    with pytest.raises(cp.FileFormatError, match=f"declares {MAX_ELEMENTS + 1} elements, more than this reader accepts"):
        load(path)


def test_free_memory_check_is_16_bytes_a_value_and_names_the_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _one_raw_tensor(tmp_path, [8192, 8192])  # 2**26 values: 1 GiB to decode
    monkeypatch.setattr("convpress.fileformat.cpz._free_memory", lambda: 1 << 29)
    with pytest.raises(
        cp.FileFormatError, match=r"declares 67,108,864 values \(1\.0 GiB to decode\), more than this machine's free memory \(0\.5 GiB\)"
    ):
        load(path)
    monkeypatch.setattr("convpress.fileformat.cpz._free_memory", lambda: 16 * (1 << 26))  # exactly enough
    with pytest.raises(cp.FileFormatError, match="16 bytes of data for 67108864 elements"):
        load(path)
    monkeypatch.setattr("convpress.fileformat.cpz._free_memory", lambda: 16 * (1 << 26) - 1)
    with pytest.raises(cp.FileFormatError, match="free memory"):
        load(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sysconf page counts are a Linux guarantee")
def test_free_memory_is_read_from_the_os() -> None:
    free = _free_memory()
    assert isinstance(free, int) and 0 < free <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_values_the_file_cannot_reproduce_are_refused_at_save(tmp_path: Path) -> None:
    """A .cpz keeps only the mask and the kept values (or centroids): other values would fail the checksum at load."""
    out = tmp_path / "x.cpz"
    t = _sparse((20, 30), 0.5, 0)
    pruned = int(torch.nonzero(~t.mask)[0, 0] * 30 + torch.nonzero(~t.mask)[0, 1])
    for stray in (-0.0, 0.5):
        values = t.values.clone()
        values.view(-1)[pruned] = stray
        with pytest.raises(ConfigError, match=r"tensor 'w': its values must be \+0\.0 where pruned, or the file"):
            save_tensors({"w": CompressedTensor(values, t.mask)}, out)
    s = _shared((20, 30), 4, 0.5, 1)
    kept = int(torch.nonzero(s.mask.view(-1))[0, 0])
    values = s.values.clone()
    values.view(-1)[kept] += 0.125
    with pytest.raises(ConfigError, match=r"must be \+0\.0 where pruned and its centroid where kept"):
        save_tensors({"w": CompressedTensor(values, s.mask, s.codebook, s.index)}, out)
    assert not out.exists()
    save_tensors({"w": t}, out)  # the same tensor with +0.0 where pruned
    _assert_loads_bit_exact(out, {"w": t})


@pytest.mark.parametrize("k", [0, MAX_CODEBOOK + 1])
def test_codebooks_outside_1_to_65536_centroids_are_refused_at_save(tmp_path: Path, k: int) -> None:
    """The reader refuses such codebooks, so the writer must not write them."""
    mask = torch.zeros(20, 30, dtype=torch.bool)
    codebook = torch.linspace(-1, 1, k)
    with pytest.raises(ConfigError, match=f"tensor 'w' has a codebook of {k} centroids; .cpz files hold 1 to 65536"):
        save_tensors(
            {"w": CompressedTensor(torch.zeros(20, 30), mask, codebook, torch.zeros(20, 30, dtype=torch.long))}, tmp_path / "x.cpz"
        )


def test_a_codebook_of_exactly_65536_centroids_is_accepted(tmp_path: Path) -> None:
    codebook = torch.linspace(-1, 1, MAX_CODEBOOK)
    index = torch.arange(0, MAX_CODEBOOK, 4096)
    t = CompressedTensor(codebook[index], torch.ones(16, dtype=torch.bool), codebook, index)
    save_tensors({"w": t}, tmp_path / "x.cpz")  # 16 values: stored raw, but the codebook is checked first
    _assert_loads_bit_exact(tmp_path / "x.cpz", {"w": t})


def test_an_index_without_a_codebook_is_ignored(tmp_path: Path) -> None:
    t = _sparse((20, 30), 0.5, 0)
    save_tensors({"w": CompressedTensor(t.values, t.mask, None, torch.zeros(20, 30, dtype=torch.long))}, tmp_path / "x.cpz")
    assert _rows(tmp_path / "x.cpz")["w"].kind == "sparse"
    _assert_loads_bit_exact(tmp_path / "x.cpz", {"w": t})
