"""The .cpi file: any image size, exact decoding, header validation, cross-process determinism."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.helpers.cpi import rewrite_header

from convpress.codec.bitstream import decode_image, encode_image, read_header, weights_tag
from convpress.codec.weights import load_weights, save_weights
from convpress.core.errors import ConfigError, FileFormatError, InputError


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


@pytest.mark.parametrize("version", [3, 2])
def test_refuses_mismatched_weights_bad_fields_and_versions(version, tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    data = encode_image(photo_crop, model, quality=2, weights_id=wid, version=version)
    assert struct.unpack_from("<H", data, 8)[0] == (3 if version == 3 else 1)
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
    if version == 3:  # raw model codes and the length table in words
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
    newer = data[:8] + struct.pack("<H", 4) + data[10:]
    with pytest.raises(FileFormatError, match="version 4"):
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
        with pytest.raises(FileFormatError, match="does not match the coded data" if abs(dw) == 1 else ""):
            decode_image(_reheader(data, lambda h, dw=dw: h.update(w=h["w"] + dw)), resolver=res)
    assert decode_image(_reheader(data, lambda h: None), resolver=res)[0].shape == photo_crop.shape


def test_compact_files_cost_28_bytes_and_convert_losslessly_to_the_legacy_layout(tiny_hyperprior, photo_crop) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    res = _resolver(model, wid)
    data = encode_image(photo_crop, model, quality=2, weights_id=wid)
    legacy = encode_image(photo_crop, model, quality=2, weights_id=wid, version=2)
    head, sections = read_header(data)
    # same y stream in both layouts (the z stream binds the whole size in version 3, 18 bits more);
    # the compact layout adds 28 bytes (two sections under 128 words)
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
    with pytest.raises(ConfigError, match="format version"):
        encode_image(photo_crop, model, quality=2, weights_id=wid, version=1)


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
