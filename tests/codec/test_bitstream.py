"""The .cpi file: any image size, exact decoding, header validation, cross-process determinism."""

from __future__ import annotations

import copy
import hashlib
import math
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.helpers.cpi import rewrite_header

from convpress.codec.bitstream import (
    MAGIC,
    MAX_PIXELS,
    MAX_SIDE,
    decode_image,
    encode_image,
    estimate_memory,
    format_version,
    pack_v3,
    pad_image,
    read_cpi,
    read_header,
    reseal_v3,
    split_v3,
    weights_match,
    weights_tag,
    write_cpi,
)
from convpress.codec.models import CODEC_MODELS, build_model
from convpress.codec.weights import load_weights, save_weights
from convpress.core import rans
from convpress.core.container import encode_container
from convpress.core.errors import ConfigError, FileFormatError, InputError
from convpress.core.varint import encode_varint


def _resolver(model, wid):  # type: ignore[no-untyped-def]
    return lambda name, q: (model, {"weights_id": wid})


@pytest.mark.parametrize("size", [(1, 1), (5, 70), (64, 64), (65, 129), (90, 130)])
def test_any_image_size_round_trips_through_padding(size, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    torch.manual_seed(size[0])
    x = torch.rand(3, *size)
    data = encode_image(x, model, quality=2, weights_id=wid)
    y, head = decode_image(data, resolver=_resolver(model, wid))
    assert y.shape == x.shape and head["h"] == size[0] and head["w"] == size[1] and head["q"] == 2
    # decoding twice gives the same pixels, and the file is a pure function of the input
    assert torch.equal(y, decode_image(data, resolver=_resolver(model, wid))[0])
    assert data == encode_image(x, model, quality=2, weights_id=wid)


def test_factorized_files_round_trip(tiny_factorized, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_factorized
    data = encode_image(photo_crop, model, quality=1, weights_id=wid)
    y, head = decode_image(data, resolver=_resolver(model, wid))
    assert y.shape == photo_crop.shape and head["m"] == "factorized"


def _reheader(data: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    """Re-encode the header after ``edit(dict)``, with valid checksums (a forged but well-formed file)."""
    return rewrite_header(data, edit)


@pytest.mark.parametrize("version", [4, 3, 2])
def test_refuses_mismatched_weights_bad_fields_and_versions(version, tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid, version=version)
    assert struct.unpack_from("<H", data, 8)[0] == (version if version >= 3 else 1)
    res = _resolver(model, wid)
    with pytest.raises(FileFormatError, match="mismatched model version"):
        decode_image(data, resolver=_resolver(model, "0123456789abcdef"))
    edits = [
        lambda h: h.update(m="transformer"),
        lambda h: h.update(h=0),
        lambda h: h.update(h=40000, w=40000),
        lambda h: h.update(m="factorized"),
        lambda h: h.update(v="00000000"),
        lambda h: h.update(t=64),  # a one-tile image declared as tiled
        lambda h: h.update(sections=h["sections"][:1]),
        lambda h: h.update(sections=[h["sections"][0] + 4, h["sections"][1] - 4]),
    ]
    if version >= 3:  # raw model codes and the length table in words
        edits += [lambda h: h.update(m=2), lambda h: h.update(m=255), lambda h: h.update(sections=[h["sections"][0], 1 << 30])]
    else:  # what only a JSON header can hold
        edits += [
            lambda h: h.update(w=1 << 20),
            lambda h: h.update(q="2"),
            lambda h: h.update(v=7),
            lambda h: h.pop("v"),
            lambda h: h.update(extra=1),
            lambda h: h.update(m=["hyperprior"]),
        ]
    for edit in edits:
        with pytest.raises(FileFormatError):
            decode_image(_reheader(data, edit), resolver=res)
    newer = data[:8] + struct.pack("<H", 6) + data[10:]
    with pytest.raises(FileFormatError, match="version 6"):
        read_header(newer)
    for cut in (1, 9, 10, 20, len(data) // 2, len(data) - 3, len(data) - 1):
        with pytest.raises(FileFormatError):
            read_header(data[:cut])
    with pytest.raises(FileFormatError, match="trailing"):
        read_header(data + data[-4:])
    with pytest.raises(FileFormatError):
        read_header(b"\x89PNG\r\n\x1a\n" + data[8:])
    # a size that disagrees with the streams is refused, not decoded into another crop
    for dh in (1, -1, 64, -64, 65):
        with pytest.raises(FileFormatError):
            decode_image(_reheader(data, lambda h, dh=dh: h.update(h=h["h"] + dh)), resolver=res)
    # the width alone, too: +-1 keeps the padded size and the section count, so only the size coded
    # into the stream can tell (a check of the height alone would let it decode into another crop)
    for dw in (1, -1, 64, -64, 65):
        with pytest.raises(FileFormatError, match="does not match the coded data" if abs(dw) == 1 else None):
            decode_image(_reheader(data, lambda h, dw=dw: h.update(w=h["w"] + dw)), resolver=res)
    assert decode_image(_reheader(data, lambda h: None), resolver=res)[0].shape == photo_crop.shape


def test_compact_files_cost_28_bytes_and_convert_losslessly_to_the_legacy_layout(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    res = _resolver(model, wid)
    data = encode_image(photo_crop, model, quality=2, weights_id=wid, version=3)
    legacy = encode_image(photo_crop, model, quality=2, weights_id=wid, version=2)
    head, sections = read_header(data)
    # same y stream in both layouts (the z stream binds the whole size in version 3, 18 bits more);
    # the compact layout adds 28 bytes (two sections under 128 words). (Version 4 has the same
    # layout; its streams are those of escaped latents, so they differ from version 2's.)
    assert sections[1] == read_header(legacy)[1][1] and all(len(s) < 512 for s in sections)
    assert len(data) == sum(map(len, sections)) + 28 < len(legacy) - 60
    assert head["v"] == wid and head["q"] == 2 and "t" not in head
    assert torch.equal(decode_image(data, resolver=res)[0], decode_image(legacy, resolver=res)[0])
    # the test helper converts between the layouts (a forged layout: the size binding differs)
    assert read_header(rewrite_header(legacy, lambda h: None, version=3))[1] == read_header(legacy)[1]
    assert read_header(rewrite_header(data, lambda h: None, version=1))[1] == sections
    # ids that are not 8 hex digits (custom resolvers) are stored as a hash and still checked
    custom = encode_image(photo_crop, model, quality=2, weights_id="my-weights v1")
    assert decode_image(custom, resolver=_resolver(model, "my-weights v1"))[1]["v"] == weights_tag("my-weights v1").hex()
    with pytest.raises(FileFormatError, match="mismatched model version"):
        decode_image(custom, resolver=_resolver(model, "my-weights v2"))
    for bad in (-1, 256, "2", True):
        with pytest.raises(ConfigError, match="quality"):
            encode_image(photo_crop, model, quality=bad, weights_id=wid)
    for bad_version in (1, 6, True, "4"):
        with pytest.raises(ConfigError, match="format version"):
            encode_image(photo_crop, model, quality=2, weights_id=wid, version=bad_version)


def test_refuses_bad_image_tensors(tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    with pytest.raises(InputError):
        encode_image(torch.rand(4, 8, 8), model, quality=1, weights_id=wid)
    with pytest.raises(InputError):
        encode_image(torch.full((3, 8, 8), float("nan")), model, quality=1, weights_id=wid)


def test_integer_hyper_synthesis_matches_float_and_ignores_threads(tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_hyperprior
    torch.manual_seed(3)
    zq = torch.randint(-6, 7, (1, 8, 3, 4))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.scale_levels(zq)
        torch.set_num_threads(2)
        two = model.scale_levels(zq)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    with torch.no_grad():
        ref = model.gaussian_conditional.indexes_from_scales(model.h_s(model.entropy_bottleneck.dequantize(zq)))
    # fixed point differs from float only at level boundaries
    assert (one - ref).abs().max() <= 1 and (one == ref).float().mean() > 0.98


_CHILD = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from convpress.codec.bitstream import decode_image
from convpress.codec.weights import load_weights
model, meta = load_weights(sys.argv[1])
y, _ = decode_image(open(sys.argv[2], 'rb').read(), resolver=lambda n, q: (model, meta))
sys.stdout.buffer.write(y.mul(255).round().to(torch.uint8).numpy().tobytes())
"""


@pytest.mark.parametrize("tile", [1024, 64])  # one tile (version 1), and 2x2 tiles (version 2)
def test_decoding_in_fresh_processes_with_other_thread_counts_gives_identical_pixels(tile, tiny_hyperprior, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, _ = tiny_hyperprior
    wpath = tmp_path / "tiny.safetensors"
    wid = save_weights(model, wpath, quality=1, lmbda=0.01)
    reloaded, meta = load_weights(wpath)
    torch.manual_seed(5)
    x = torch.rand(3, 70, 90)
    data = encode_image(x, reloaded, quality=1, weights_id=wid, tile=tile)
    (tmp_path / "f.cpi").write_bytes(data)
    here = decode_image(data, resolver=lambda n, q: (reloaded, meta))[0].mul(255).round().to(torch.uint8).numpy().tobytes()
    outs = [
        subprocess.run([sys.executable, "-c", _CHILD, str(wpath), str(tmp_path / "f.cpi"), str(t)], capture_output=True, check=True).stdout
        for t in (1, 2)
    ]
    assert outs[0] == outs[1] == here


def test_weights_files_derive_the_fixed_point_layers_exactly(tiny_hyperprior, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fixed-point hyper-synthesis weights are not stored; load rebuilds exactly what update() made."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, _ = tiny_hyperprior
    wpath = tmp_path / "tiny.safetensors"
    save_weights(model, wpath, quality=1, lmbda=0.01)
    with safe_open(str(wpath), framework="pt") as fh:
        keys, meta = set(fh.keys()), fh.metadata()
    assert not any(k.startswith("h_s_int.w") for k in keys) and "h_s_int.s0" in keys
    reloaded, _ = load_weights(wpath)
    # reference: the float16-rounded model with update() run on it, as at save time
    ref = load_weights(wpath)[0]
    ref.update()
    for k in range(3):
        assert torch.equal(getattr(reloaded.h_s_int, f"w{k}"), getattr(ref.h_s_int, f"w{k}")), k
        assert getattr(reloaded.h_s_int, f"w{k}").numel() > 0
    # a file of the older layout (fixed-point weights stored) loads when they agree and is refused when not
    state = load_file(str(wpath))
    state.update({f"h_s_int.w{k}": getattr(ref.h_s_int, f"w{k}").contiguous().clone() for k in range(3)})
    old = tmp_path / "old.safetensors"
    save_file(state, str(old), metadata=meta)
    assert torch.equal(load_weights(old)[0].h_s_int.w1, ref.h_s_int.w1)
    state["h_s_int.w1"] = state["h_s_int.w1"].clone()
    state["h_s_int.w1"].view(-1)[0] += 1
    save_file(state, str(old), metadata=meta)
    with pytest.raises(FileFormatError, match="fixed-point"):
        load_weights(old)
    # a file that lacks a stored layer of its model is refused by name
    del state["h_s.0.weight"]
    save_file(state, str(old), metadata=meta)
    with pytest.raises(FileFormatError, match="h_s.0.weight"):
        load_weights(old)


# ---- the compact layout (versions 3 and 4), byte for byte (issue 24: a mutation run of this module) ----


def _fields(data: bytes) -> tuple:  # type: ignore[type-arg]
    return split_v3(data).fields


def test_a_known_file_has_exactly_the_documented_bytes(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    z, y = read_header(data)[1]
    assert len(z) < 512 and len(y) < 512  # each length takes one varint byte
    le16 = lambda n: n.to_bytes(2, "little")  # noqa: E731
    # magic, version 4, model code 1 (hyperprior), quality 2, height 90, width 130, tile 0, weights tag
    assert data[:22] == MAGIC + le16(4) + bytes([1, 2]) + le16(90) + le16(130) + le16(0) + bytes.fromhex(wid)
    assert data[22:24] == bytes([len(z) // 4, len(y) // 4]) and data[24:-4] == z + y
    assert data[-4:] == zlib.crc32(data[10:-4]).to_bytes(4, "little")
    layout = split_v3(data)
    assert layout.fields == (1, 2, 90, 130, 0, bytes.fromhex(wid))
    assert layout.header == (10, 24)
    assert layout.sections == [(24, 24 + len(z)), (24 + len(z), len(data) - 4)]
    assert reseal_v3(data) == data
    # the format version is read from bytes 8-9 of anything that starts with the magic
    assert format_version(data) == 4 and format_version(MAGIC + le16(3)) == 3 and format_version(MAGIC + le16(0x107)) == 0x107
    assert format_version(MAGIC + b"\x03") is None and format_version(b"\x89PNG\r\n\x1a\n" + data[8:]) is None


@st.composite
def _v3_files(draw):  # type: ignore[no-untyped-def]
    """Raw fields and sections of a structurally valid version-3 file (any model, size, tiling)."""
    name = draw(st.sampled_from(sorted(CODEC_MODELS)))
    cls = CODEC_MODELS.get(name)
    if draw(st.booleans()):  # one tile
        h = draw(st.integers(1, MAX_SIDE))
        w = draw(st.integers(1, min(MAX_SIDE, MAX_PIXELS // h)))
        tile, tiles = 0, 1
    else:  # a grid of rows x cols tiles, not 1 x 1
        rows = draw(st.integers(1, 3))
        cols = draw(st.integers(2 if rows == 1 else 1, 3))
        n = max(rows, cols)
        # (n - 1) tiles and a pixel fit in MAX_SIDE, and rows x cols full tiles in MAX_PIXELS
        most = min((MAX_SIDE - 1) // (n - 1), math.isqrt(MAX_PIXELS // (rows * cols))) // cls.stride
        tile = cls.stride * draw(st.integers(1, most))
        h = draw(st.integers((rows - 1) * tile + 1, min(rows * tile, MAX_SIDE)))
        w = draw(st.integers((cols - 1) * tile + 1, min(cols * tile, MAX_SIDE)))
        tiles = rows * cols
    words = draw(st.lists(st.integers(0, 200), min_size=tiles * len(cls.streams), max_size=tiles * len(cls.streams)))
    fields = (cls.code, draw(st.integers(0, 255)), h, w, tile, draw(st.binary(min_size=4, max_size=4)))
    return name, fields, [bytes([i % 251]) * (4 * k) for i, k in enumerate(words)]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(f=_v3_files())
def test_v3_header_fields_round_trip_at_their_offsets(f) -> None:  # type: ignore[no-untyped-def]
    name, fields, sections = f
    code, q, h, w, tile, tag = fields
    data = pack_v3(fields, sections)
    assert data[:10] == MAGIC + b"\x04\x00" and data[10] == code and data[11] == q
    assert [int.from_bytes(data[i : i + 2], "little") for i in (12, 14, 16)] == [h, w, tile] and data[18:22] == tag
    table = b"".join(encode_varint(len(s) // 4) for s in sections)
    assert data[22 : 22 + len(table)] == table and data[22 + len(table) : -4] == b"".join(sections)
    assert data[-4:] == zlib.crc32(data[10:-4]).to_bytes(4, "little")
    layout = split_v3(data)
    assert layout.fields == fields and layout.header == (10, 22 + len(table))
    assert [data[a:b] for a, b in layout.sections] == sections
    head, got = read_header(data)
    want = {"m": name, "q": q, "h": h, "w": w, "v": tag.hex()} | ({"t": tile} if tile else {})
    assert head == want | {"sections": [len(s) for s in sections]} and got == sections
    assert reseal_v3(data) == data


def _full(msg: str) -> str:
    return "^" + re.escape(msg) + "$"


def test_every_v3_refusal_names_the_file_and_its_fault(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    fields = _fields(data)
    z, y = read_header(data)[1]

    def sized(h: int, w: int, tile: int = 0, n: int = 2) -> bytes:
        return pack_v3(fields[:2] + (h, w, tile) + fields[5:], [z, y] * (n // 2))

    runs_past = "input is truncated or corrupted (section lengths run past the end of the file)"
    longer = pack_v3(fields, [z, y], lengths=[len(z), len(y) + 4])
    six_byte_zero = MAGIC + b"\x03\x00" + data[10:22] + b"\x80\x80\x80\x80\x80\x00" + encode_varint(len(y) // 4) + y + bytes(4)
    flipped = bytearray(data)
    flipped[30] ^= 1
    cases = [
        (data[:25], "input is truncated (25 bytes): not a complete convpress image file (.cpi)"),
        (pack_v3(fields, [], lengths=[]), runs_past),  # 26 bytes: all the fixed parts, no length table
        (pack_v3((200,) + fields[1:], [z, y]), "input was made with codec model number 200, which this convpress does not know"),
        (sized(0, 130), "input is corrupted (image size 0x130 is out of range)"),
        (sized(90, 0), "input is corrupted (image size 90x0 is out of range)"),
        (sized(MAX_SIDE + 1, 1), "input is corrupted (image size 32769x1 is out of range)"),
        (sized(1, MAX_SIDE + 1), "input is corrupted (image size 1x32769 is out of range)"),
        (sized(MAX_SIDE, MAX_SIDE), "input is corrupted (image size 32768x32768 is out of range)"),
        (sized(4097, MAX_SIDE), "input is corrupted (image size 4097x32768 is out of range)"),
        (sized(90, 130, 65), "input is corrupted (tile side 65 is not a multiple of 64)"),
        (sized(90, 130, 32), "input is corrupted (tile side 32 is not a multiple of 64)"),
        (sized(64, 64, 64), "input is corrupted (a tiled file of a single tile)"),
        (sized(64, 50, 64), "input is corrupted (a tiled file of a single tile)"),
        (sized(50, 64, 64), "input is corrupted (a tiled file of a single tile)"),
        # a length whose varint would only end inside the checksum
        (MAGIC + b"\x03\x00" + data[10:22] + b"\x80" + b"\x01\x00\x00\x00", runs_past),
        # a varint of 6 bytes (of value 0) is refused, even with everything after it well formed
        (reseal_v3(six_byte_zero), runs_past),
        (longer, f"input is truncated ({len(longer)} bytes, the header promises {len(longer) + 4})"),
        (data + bytes(4), "input has 4 unexpected trailing bytes (corrupted or concatenated)"),
        (data + bytes(8), "input has 8 unexpected trailing bytes (corrupted or concatenated)"),
        (bytes(flipped), "input is corrupted (checksum mismatch)"),
    ]
    for bad, msg in cases:
        with pytest.raises(FileFormatError, match=_full(msg)):
            read_header(bad)
    # a 5-byte varint is the longest accepted (of value 0 here: an empty first section)
    five = reseal_v3(MAGIC + b"\x03\x00" + data[10:22] + b"\x80\x80\x80\x80\x00" + encode_varint(len(y) // 4) + y + bytes(4))
    assert read_header(five)[1] == [b"", y]
    # split_v3 alone names the file "input" too, or the name given
    with pytest.raises(FileFormatError, match=r"^input is corrupted \(checksum mismatch\)$"):
        split_v3(bytes(flipped))
    # the file name given replaces "input"
    with pytest.raises(FileFormatError, match=r"^photo\.cpi is corrupted \(checksum mismatch\)$"):
        read_header(bytes(flipped), name="photo.cpi")
    with pytest.raises(FileFormatError, match=r"^photo\.cpi is truncated \(25 bytes\)"):
        decode_image(data[:25], resolver=_resolver(model, wid), name="photo.cpi")


def test_sizes_at_the_limits_are_read_back_exactly(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    for version in (3, 2):
        data = encode_image(photo_crop, model, quality=2, weights_id=wid, version=version)
        for h, w in ((1, 1), (MAX_SIDE, 1), (1, MAX_SIDE), (MAX_PIXELS // MAX_SIDE, MAX_SIDE), (MAX_SIDE, MAX_PIXELS // MAX_SIDE)):
            head = read_header(rewrite_header(data, lambda d, h=h, w=w: d.update(h=h, w=w)))[0]
            assert (head["h"], head["w"]) == (h, w), version
    # a tiled file may be one tile high or wide, not both
    z, y = read_header(data)[1]
    for h, w in ((64, 65), (65, 64)):
        strip3 = pack_v3((1, 2, h, w, 64, bytes.fromhex(wid)), [z, y, z, y])
        strip2 = encode_container(MAGIC, 2, {"m": "hyperprior", "q": 2, "h": h, "w": w, "v": wid, "t": 64}, [z, y, z, y])
        assert read_header(strip3)[0]["t"] == read_header(strip2)[0]["t"] == 64


def test_legacy_refusals_name_the_file_and_its_fault(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid, version=2)
    head, sections = read_header(data)
    cases = [
        (lambda d: d.update(m="transformer"), "input was made with codec model 'transformer', which this convpress does not know"),
        (lambda d: d.update(q="2"), "input is corrupted (header field 'q' is not an integer)"),
        (lambda d: d.update(h="90"), "input is corrupted (header field 'h' is not an integer)"),
        (lambda d: d.update(w=True), "input is corrupted (header field 'w' is not an integer)"),
        (lambda d: d.update(h=0), "input is corrupted (image size 0x130 is out of range)"),
        (lambda d: d.update(w=0), "input is corrupted (image size 90x0 is out of range)"),
        (lambda d: d.update(h=1, w=MAX_SIDE + 1), "input is corrupted (image size 1x32769 is out of range)"),
        (lambda d: d.update(h=MAX_SIDE + 1, w=1), "input is corrupted (image size 32769x1 is out of range)"),
        (lambda d: d.update(h=MAX_SIDE, w=MAX_SIDE), "input is corrupted (image size 32768x32768 is out of range)"),
        (lambda d: d.update(v=""), "input is corrupted (header has no weights id)"),
        (lambda d: d.update(v=7), "input is corrupted (header has no weights id)"),
    ]
    for edit, msg in cases:
        with pytest.raises(FileFormatError, match=_full(msg)):
            read_header(rewrite_header(data, edit))
    tiled = [
        (lambda d: d.update(t=65), "input is corrupted (tile side 65 is not a multiple of 64 in range)"),
        (lambda d: d.update(t=MAX_SIDE + 64), "input is corrupted (tile side 32832 is not a multiple of 64 in range)"),
        (lambda d: d.update(t=MAX_SIDE), "input is corrupted (a tiled file of a single tile)"),
        (lambda d: d.update(h=64, w=64, t=64), "input is corrupted (a tiled file of a single tile)"),
        (lambda d: d.update(h=64, w=50, t=64), "input is corrupted (a tiled file of a single tile)"),
        (lambda d: d.update(h=50, w=64, t=64), "input is corrupted (a tiled file of a single tile)"),
    ]
    for edit, msg in tiled:
        with pytest.raises(FileFormatError, match=_full(msg)):
            read_header(rewrite_header(data, edit, version=2))
    one_section = encode_container(MAGIC, 1, {k: v for k, v in head.items() if k != "sections"}, sections[:1])
    with pytest.raises(FileFormatError, match=_full("input is corrupted (1 sections, a hyperprior file of 1 tile(s) has 2)")):
        read_header(one_section)
    with pytest.raises(FileFormatError, match=_full("x.png is not a convpress image file (.cpi) (wrong magic bytes)")):
        read_header(b"\x89PNG\r\n\x1a\n" + data[8:], name="x.png")
    with pytest.raises(FileFormatError, match=_full("input is not a convpress image file (.cpi) (wrong magic bytes)")):
        read_header(b"\x89PNG\r\n\x1a\n" + data[8:])


def test_the_first_stream_binds_the_size_exactly(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    """Versions 3-4 push (h, w) as two symbols uniform over 0..MAX_SIDE onto the model's first
    stream; versions 1-2 push (h % stride, w % stride) uniform over 0..stride-1. Version 4's
    streams are the model's escaped ones, versions 1-3's the clamped ones."""
    model, wid = tiny_hyperprior
    raw = {e: model.compress(pad_image(photo_crop, 64), escape=e)["strings"][0][0] for e in (True, False)}
    assert raw[True] != raw[False]  # the escape-augmented tables code differently
    for version, values, span in ((4, [90, 130], MAX_SIDE + 1), (3, [90, 130], MAX_SIDE + 1), (2, [90 % 64, 130 % 64], 64)):
        first = read_header(encode_image(photo_crop, model, quality=2, weights_id=wid, version=version))[1][0]
        (got,), rest = rans.decode(rans.words_from_bytes(first), [(2, rans.uniform(span))], exhaust=False)
        assert got.tolist() == values and rans.words_to_bytes(rest) == raw[version >= 4], version
    # the largest side too: only there do the ranges 0..MAX_SIDE and 0..MAX_SIDE+1 code differently
    x = photo_crop[:, :1, :1].expand(3, 1, MAX_SIDE).contiguous()
    data = encode_image(x, model, quality=2, weights_id=wid, tile=MAX_SIDE)
    first = read_header(data)[1][0]
    (got,), rest = rans.decode(rans.words_from_bytes(first), [(2, rans.uniform(MAX_SIDE + 1))], exhaust=False)
    assert got.tolist() == [1, MAX_SIDE] and rans.words_to_bytes(rest) == model.compress(pad_image(x, 64))["strings"][0][0]
    assert decode_image(data, resolver=_resolver(model, wid))[0].shape == (3, 1, MAX_SIDE)


def test_forged_first_streams_are_refused_by_name(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    res = _resolver(model, wid)
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    fields = _fields(data)
    z, y = read_header(data)[1]
    for first, why in (
        (b"", "latent stream is not a whole, non-empty number of 32-bit words"),
        (bytes(4), "latent stream cannot be decoded"),
    ):
        with pytest.raises(FileFormatError, match="^" + re.escape(f"f.cpi is corrupted ({why}")):
            decode_image(pack_v3(fields, [first, y]), resolver=res, name="f.cpi")
    # a forged size is refused by the file's name, in one-tile and in tiled files
    for tile, edit in ((1024, lambda d: d.update(w=129)), (64, lambda d: d.update(h=89))):
        forged = rewrite_header(encode_image(photo_crop, model, quality=2, weights_id=wid, tile=tile), edit)
        with pytest.raises(FileFormatError, match=_full("f.cpi is corrupted (the image size in the header does not match the coded data)")):
            decode_image(forged, resolver=res, name="f.cpi")
        with pytest.raises(FileFormatError, match=r"^input is corrupted \(the image size"):
            decode_image(forged, resolver=res)


def test_weights_tags_and_matching_by_version(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    assert weights_tag("0123abcd") == bytes.fromhex("0123abcd")
    assert weights_tag("my-weights v1") == hashlib.sha256(b"my-weights v1").digest()[:4]
    assert weights_tag("0123ABCD") == hashlib.sha256(b"0123ABCD").digest()[:4]  # only lower-case hex is stored as is
    tag = weights_tag("my-weights v1").hex()
    assert weights_match(tag, "my-weights v1", 3) and not weights_match("my-weights v1", "my-weights v1", 3)
    for version in (1, 2):  # the legacy header holds the id itself
        assert weights_match("my-weights v1", "my-weights v1", version) and not weights_match(tag, "my-weights v1", version)
    # so a legacy file of a custom resolver's weights decodes with them, and only with them
    model, _ = tiny_hyperprior
    legacy = encode_image(photo_crop, model, quality=2, weights_id="my-weights v1", version=2)
    assert decode_image(legacy, resolver=_resolver(model, "my-weights v1"))[1]["v"] == "my-weights v1"
    with pytest.raises(FileFormatError, match="mismatched model version"):
        decode_image(legacy, resolver=_resolver(model, "my-weights v2"))


def test_the_resolver_gets_the_files_model_and_quality(tiny_hyperprior, tiny_factorized, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    calls = []

    def resolver(name: str, quality: int):  # type: ignore[no-untyped-def]
        calls.append((name, quality))
        return model, {"weights_id": wid}

    decode_image(data, resolver=resolver)
    assert calls == [("hyperprior", 2)]
    with pytest.raises(
        FileFormatError, match=_full("input was made with the hyperprior codec model, but the resolver gave a factorized model")
    ):
        decode_image(data, resolver=_resolver(tiny_factorized[0], wid))
    msg = (
        f"input was made with hyperprior weights {wid} for quality 2, but this convpress has weights 0123456789abcdef: "
        "a mismatched model version cannot decode it"
    )
    with pytest.raises(FileFormatError, match=_full(msg)):
        decode_image(data, resolver=_resolver(model, "0123456789abcdef"))


def test_pad_image_replicates_the_right_and_bottom_edges() -> None:
    x = torch.arange(3 * 2 * 3, dtype=torch.float32).reshape(3, 2, 3)
    p = pad_image(x, 4)
    assert p.shape == (1, 3, 4, 4) and torch.equal(p[0, :, :2, :3], x)
    assert torch.equal(p[0, :, :, 3], p[0, :, :, 2]) and torch.equal(p[0, :, 2], p[0, :, 1]) and torch.equal(p[0, :, 3], p[0, :, 1])
    assert torch.equal(pad_image(x, 1), x[None]) and pad_image(torch.zeros(3, 64, 16), 16).shape == (1, 3, 64, 16)


def test_images_outside_the_range_or_shape_are_refused_before_any_work(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    for shape in ((3, 8), (4, 8, 8), (1, 3, 8, 8)):
        with pytest.raises(InputError, match=_full(f"expected an RGB image tensor (3, H, W), got {shape}")):
            encode_image(torch.rand(shape), model, quality=1, weights_id=wid)
    # tensors with no data (meta): the size alone is refused, nothing is read or allocated
    for h, w in ((MAX_SIDE + 1, 1), (1, MAX_SIDE + 1), (MAX_SIDE, MAX_SIDE), (0, 5)):
        msg = f"image of {h}x{w} pixels is outside what .cpi files hold (sides up to 32768, 134217728 pixels)"
        with pytest.raises(InputError, match=_full(msg)):
            encode_image(torch.empty(3, h, w, device="meta"), model, quality=1, weights_id=wid)
    # values outside [0, 1] are coded as the clamped image
    x = photo_crop * 1.6 - 0.3
    assert float(x.min()) < 0 and float(x.max()) > 1
    data = encode_image(x, model, quality=2, weights_id=wid)
    assert (
        data
        == encode_image(x.clamp(0, 1), model, quality=2, weights_id=wid)
        != encode_image(torch.ones_like(x), model, quality=2, weights_id=wid)
    )


def test_encode_refuses_bad_arguments_by_name(tiny_hyperprior, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    x = torch.rand(3, 8, 8)
    for bad in ("64", 64.0, True, MAX_SIDE + 64):
        msg = f"tile side must be a multiple of 64 (the hyperprior model's stride) between 64 and 32768, got {bad}"
        with pytest.raises(ConfigError, match=_full(msg)):
            encode_image(x, model, quality=1, weights_id=wid, tile=bad)
    assert encode_image(x, model, quality=1, weights_id=wid, tile=MAX_SIDE) == encode_image(x, model, quality=1, weights_id=wid)
    for q in (0, 255):  # the whole byte
        assert read_header(encode_image(x, model, quality=q, weights_id=wid))[0]["q"] == q
    for bad in (-1, True, "1", 1.5):
        with pytest.raises(ConfigError, match=_full(f"effort must be a non-negative number of refinement iterations, got {bad!r}")):
            encode_image(x, model, quality=1, weights_id=wid, effort=bad)
    unregistered = copy.deepcopy(model)
    unregistered.name = "custom"
    with pytest.raises(ConfigError, match=_full("codec model 'custom' is not registered, so a .cpi file cannot name it")):
        encode_image(x, unregistered, quality=1, weights_id=wid)
    for value in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[1, 2, 3] = value
        with pytest.raises(InputError, match=_full("image contains NaN or infinite values")):
            encode_image(y, model, quality=1, weights_id=wid)
    # a side of exactly MAX_SIDE passes the size check (and meets the memory check next)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "1M")
    for h, w in ((MAX_SIDE, 1), (1, MAX_SIDE)):
        with pytest.raises(ConfigError, match=f"^encoding a {w}x{h} image in tiles of 1024x1024 needs about "):
            encode_image(torch.zeros(3, h, w), model, quality=1, weights_id=wid)


def test_float64_and_float16_images_are_coded_in_float32_and_integer_tensors_refused(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    """A bug found in the mutation run: any dtype but float32 failed deep in the model with a raw
    RuntimeError (and an 8-bit image would have been clamped to 0/1 had it got through)."""
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    assert encode_image(photo_crop.double(), model, quality=2, weights_id=wid) == data
    half = encode_image(photo_crop.half(), model, quality=2, weights_id=wid)
    assert half == encode_image(photo_crop.half().float(), model, quality=2, weights_id=wid)
    for dtype in (torch.uint8, torch.int64, torch.bool):
        with pytest.raises(InputError, match=_full(f"expected a float image tensor with values in [0, 1], got dtype {dtype}")):
            encode_image(photo_crop.mul(255).to(dtype), model, quality=2, weights_id=wid)


def test_effort_reaches_the_model(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    refining = copy.deepcopy(model)
    refining.lmbda = 0.01
    x = photo_crop[:, :40, :60]
    plain = encode_image(x, refining, quality=2, weights_id=wid, version=4)
    refined = encode_image(x, refining, quality=2, weights_id=wid, effort=1, version=4)
    assert plain == encode_image(x, model, quality=2, weights_id=wid, version=4) and refined != plain
    assert decode_image(refined, resolver=_resolver(model, wid))[0].shape == x.shape


@pytest.fixture(scope="module")
def overfit_file():  # type: ignore[no-untyped-def]
    """A 21x37 file of the per-image model (fitted 5 steps): its encoding needs more memory than its decoding."""
    torch.manual_seed(0)
    model = build_model("overfit", {"levels": 3, "arm_hidden": 6, "synth_hidden": 6})
    model.lmbda = 0.01
    x = torch.rand(3, 21, 37)
    return x, model, encode_image(x, model, quality=3, weights_id=model.FORMAT_ID, effort=5)


def _expected_memory(per_pixel: int, stride: int, h: int, w: int, tile: int) -> int:
    """Computed apart from the module: one tile padded up to the stride, plus 2 float32 RGB images, plus 64 MiB."""
    th, tw = min(h, tile), min(w, tile)
    padded = -(-th // stride) * stride * (-(-tw // stride) * stride)
    return padded * per_pixel + 2 * 3 * 4 * h * w + 64 * 2**20


def test_estimate_memory_matches_an_independent_count(tiny_hyperprior, overfit_file) -> None:  # type: ignore[no-untyped-def]
    hyper, _ = tiny_hyperprior
    _, overfit, _ = overfit_file
    # hand-checked: a 90x130 image in one tile pads to 128x192; 40 bytes per pixel at N=8
    assert estimate_memory(hyper, 90, 130, 1024) == 128 * 192 * 40 + 90 * 130 * 24 + 64 * 2**20 == 68372704
    plain, refining = hyper.bytes_per_pixel(0), hyper.bytes_per_pixel(3)
    fit, decode = overfit.encode_bytes_per_pixel(0), overfit.bytes_per_pixel(0)
    assert plain < refining and decode < fit  # else the cases below could not tell them apart
    for h, w, tile in ((90, 130, 1024), (150, 200, 64), (70, 1000, 512), (1000, 70, 512), (1, 1, 64), (1500, 1500, 2048)):
        assert (
            estimate_memory(hyper, h, w, tile)
            == estimate_memory(hyper, h, w, tile, 0, encode=False)
            == _expected_memory(plain, 64, h, w, tile)
        )
        assert estimate_memory(hyper, h, w, tile, encode=True) == _expected_memory(plain, 64, h, w, tile)
        assert (
            estimate_memory(hyper, h, w, tile, 3)
            == estimate_memory(hyper, h, w, tile, 3, encode=True)
            == _expected_memory(refining, 64, h, w, tile)
        )
        assert estimate_memory(overfit, h, w, tile) == _expected_memory(decode, 64, h, w, tile)
        assert estimate_memory(overfit, h, w, tile, encode=True) == _expected_memory(fit, 64, h, w, tile)


def test_memory_checks_refuse_exactly_above_the_estimate(tiny_hyperprior, overfit_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x, overfit, data = overfit_file
    res = _resolver(overfit, overfit.FORMAT_ID)
    need_decode = _expected_memory(overfit.bytes_per_pixel(), 64, 21, 37, 37)
    need_fit = _expected_memory(overfit.encode_bytes_per_pixel(5), 64, 21, 37, 37)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", str(need_decode))
    assert decode_image(data, resolver=res)[0].shape == (3, 21, 37)
    # fitting needs more than decoding: refused at the decoding's limit, before any fitting
    with pytest.raises(
        ConfigError,
        match=r"^encoding with effort 5 a 37x21 image in tiles of 37x37 needs about .*; pass a smaller --tile \(a multiple of 64\)$",
    ):
        encode_image(x, overfit, quality=3, weights_id=overfit.FORMAT_ID, effort=5)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", str(need_decode - 1))
    with pytest.raises(
        ConfigError, match=r"^decoding a 37x21 image in tiles of 37x37 needs about .* is available; decode it where more memory is free$"
    ):
        decode_image(data, resolver=res)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", str(need_fit))
    assert encode_image(x, overfit, quality=3, weights_id=overfit.FORMAT_ID, effort=5) == data
    # refinement of the hyperprior needs more than plain encoding: refused before it starts
    model, wid = tiny_hyperprior
    y = torch.rand(3, 70, 150)
    need = _expected_memory(model.bytes_per_pixel(0), 64, 70, 150, 128)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", str(need))
    coded = encode_image(y, model, quality=1, weights_id=wid, tile=128)
    with pytest.raises(ConfigError, match=r"^encoding with effort 1 a 150x70 image in tiles of 128x128 needs about "):
        encode_image(y, model, quality=1, weights_id=wid, tile=128, effort=1)
    assert decode_image(coded, resolver=_resolver(model, wid))[0].shape == (3, 70, 150)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", str(need - 1))
    with pytest.raises(ConfigError, match=r"^encoding a 150x70 image in tiles of 128x128 needs about "):
        encode_image(y, model, quality=1, weights_id=wid, tile=128)
    with pytest.raises(ConfigError, match=r"^decoding a 150x70 image in tiles of 128x128 needs about "):
        decode_image(coded, resolver=_resolver(model, wid))


def test_write_cpi_and_read_cpi(tiny_hyperprior, photo_crop, overfit_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    res = _resolver(model, wid)
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    other = encode_image(photo_crop.flip(-1), model, quality=2, weights_id=wid)
    path = tmp_path / "a.cpi"
    assert write_cpi(str(path), data) == path and path.read_bytes() == data
    with pytest.raises(FileExistsError):
        write_cpi(path, other)
    assert path.read_bytes() == data
    assert write_cpi(path, other, overwrite=True) == path and path.read_bytes() == other
    y, head = read_cpi(str(path), resolver=res)
    assert torch.equal(y, decode_image(other, resolver=res)[0]) and head == read_header(other)[0]
    with pytest.raises(FileFormatError, match=_full(f"{tmp_path} is a directory, not a convpress image file (.cpi)")):
        read_cpi(tmp_path, resolver=res)
    write_cpi(path, data[:-1], overwrite=True)
    with pytest.raises(FileFormatError, match="^" + re.escape(f"{path} is truncated")):
        read_cpi(path, resolver=res)
    # without a resolver: the shipped model of the file's name and quality (the per-image model ships no weights)
    _, overfit, fitted = overfit_file
    write_cpi(tmp_path / "o.cpi", fitted)
    y, head = read_cpi(tmp_path / "o.cpi")
    assert head["m"] == "overfit" and head["q"] == 3
    assert torch.equal(y, decode_image(fitted, resolver=_resolver(overfit, overfit.FORMAT_ID))[0])
