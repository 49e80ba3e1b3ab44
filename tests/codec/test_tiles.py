"""Tiled .cpi files (format version 3, and the legacy version 2): exact tile-wise round trips, forged tilings refused, memory bounded."""

from __future__ import annotations

import struct

import pytest
import torch
from tests.helpers.cpi import rewrite_header

from convpress.codec.bitstream import decode_image, encode_image, read_header, tile_grid
from convpress.core.errors import ConfigError, FileFormatError


def _resolver(model, wid):  # type: ignore[no-untyped-def]
    return lambda name, q: (model, {"weights_id": wid})


@pytest.fixture(scope="module")
def tiled(tiny_hyperprior):  # type: ignore[no-untyped-def]
    """A 150x200 image in 64x64 tiles: a 3x4 grid with cut tiles at the right and bottom."""
    from convpress.data.photos import bundled_photo

    model, wid = tiny_hyperprior
    x = bundled_photo("astronaut")[:, 40:190, 150:350].contiguous()  # (3, 150, 200)
    return x, encode_image(x, model, quality=2, weights_id=wid, tile=64)


def test_tiled_file_is_each_tile_coded_alone_and_decodes_exactly(tiled, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    x, data = tiled
    assert struct.unpack_from("<H", data, 8)[0] == 4
    head, sections = read_header(data)
    grid = tile_grid(150, 200, 64)
    assert head["t"] == 64 and len(grid) == 12 and len(sections) == 2 * 12
    y, _ = decode_image(data, resolver=_resolver(model, wid))
    assert y.shape == x.shape
    for i, (r0, r1, c0, c1) in enumerate(grid):
        alone = encode_image(x[:, r0:r1, c0:c1], model, quality=2, weights_id=wid)
        # the tile's streams are byte-for-byte those of the tile coded as a whole (one-tile) image,
        # whose symbols round-trip exactly (test_models), so the tiled file's symbols are exact too
        assert read_header(alone)[1] == sections[2 * i : 2 * i + 2]
        assert torch.equal(y[:, r0:r1, c0:c1], decode_image(alone, resolver=_resolver(model, wid))[0])


@pytest.mark.parametrize("version", [4, 3, 2])
def test_one_row_or_one_column_of_tiles_decodes_tile_by_tile(version, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    torch.manual_seed(1)
    for shape, grid in (((40, 100), [(0, 40, 0, 64), (0, 40, 64, 100)]), ((100, 40), [(0, 64, 0, 40), (64, 100, 0, 40)])):
        x = torch.rand(3, *shape)
        data = encode_image(x, model, quality=1, weights_id=wid, tile=64, version=version)
        head, sections = read_header(data)
        assert head["t"] == 64 and len(sections) == 4 and tile_grid(*shape, 64) == grid
        if version >= 3:  # the tile side is bytes 16-17
            assert data[16:18] == (64).to_bytes(2, "little")
        y = decode_image(data, resolver=_resolver(model, wid))[0]
        assert y.shape == x.shape
        for i, (r0, r1, c0, c1) in enumerate(grid):
            alone = encode_image(x[:, r0:r1, c0:c1], model, quality=1, weights_id=wid, version=version)
            assert read_header(alone)[1] == sections[2 * i : 2 * i + 2]
            assert torch.equal(y[:, r0:r1, c0:c1], decode_image(alone, resolver=_resolver(model, wid))[0])


def test_multi_tile_pixels_are_identical_across_decodes(tiled, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    _, data = tiled
    first = decode_image(data, resolver=_resolver(model, wid))[0]
    assert torch.equal(first, decode_image(data, resolver=_resolver(model, wid))[0])
    assert data == encode_image(tiled[0], model, quality=2, weights_id=wid, tile=64)


def test_images_within_one_tile_have_no_tile_field(tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    x = torch.rand(3, 64, 50)
    data = encode_image(x, model, quality=1, weights_id=wid, tile=64)
    assert struct.unpack_from("<H", data, 8)[0] == 4 and "t" not in read_header(data)[0]
    assert data == encode_image(x, model, quality=1, weights_id=wid)
    # the legacy layout writes them as version 1, as convpress did before tiling
    legacy = encode_image(x, model, quality=1, weights_id=wid, tile=64, version=2)
    assert struct.unpack_from("<H", legacy, 8)[0] == 1 and "t" not in read_header(legacy)[0]
    for bad in (0, 32, 100, -64, 1 << 16, True):
        with pytest.raises(ConfigError, match="multiple of 64"):
            encode_image(x, model, quality=1, weights_id=wid, tile=bad)


@pytest.mark.parametrize("version", [4, 3, 2])
def test_forged_or_truncated_tiled_files_are_refused(version, tiled, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    x, _ = tiled
    data = encode_image(x, model, quality=2, weights_id=wid, tile=64, version=version)
    assert struct.unpack_from("<H", data, 8)[0] == version
    res = _resolver(model, wid)
    assert torch.equal(decode_image(data, resolver=res)[0], decode_image(tiled[1], resolver=res)[0])
    edits = [
        lambda h: h.update(t=0),
        lambda h: h.update(t=32),
        lambda h: h.update(t=65),
        lambda h: h.update(t=128),
        lambda h: h.update(t=256),
        lambda h: h.pop("t"),
        lambda h: h.update(h=151),
        lambda h: h.update(h=149),
        lambda h: h.update(h=214),
        lambda h: h.update(w=136),
        lambda h: h.update(h=32000, w=4000),
        lambda h: h.update(sections=h["sections"][:-2]),
        lambda h: h.update(sections=h["sections"] + [0, 0]),
    ]
    if version == 2:  # what only a JSON header can hold
        edits += [lambda h: h.update(t="64"), lambda h: h.update(t=None), lambda h: h.update(t=1 << 40)]
    else:
        edits += [lambda h: h.update(t=65535), lambda h: h.update(t=64 * 1023)]
    for edit in edits:
        with pytest.raises(FileFormatError):
            decode_image(rewrite_header(data, edit), resolver=res)
    small = encode_image(x[:, :60, :60], model, quality=2, weights_id=wid, tile=64, version=version)
    if version == 2:
        # a version-1 header that names a tile, a version-2 file of one tile: not canonical, refused
        with pytest.raises(FileFormatError, match="header fields"):
            read_header(rewrite_header(data, lambda h: None, version=1))
        with pytest.raises(FileFormatError):
            read_header(rewrite_header(small, lambda h: None, version=2))
    with pytest.raises(FileFormatError, match="single tile"):
        read_header(rewrite_header(small, lambda h: h.update(t=64), version=version))
    for cut in (1, 17, len(data) // 2, len(data) - 1):
        with pytest.raises(FileFormatError):
            decode_image(data[:cut], resolver=res)
    with pytest.raises(FileFormatError, match="version 6"):
        read_header(rewrite_header(data, lambda h: None, version=6))


def test_requests_that_cannot_fit_in_memory_are_refused_before_work(tiled, tiny_hyperprior, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, wid = tiny_hyperprior
    _, data = tiled
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "100M")
    big = torch.zeros(3, 1500, 1500)  # one 1536x1536 tile needs about 94 MB of activations at N=8, plus the image
    with pytest.raises(ConfigError, match=r"encoding a 1500x1500 image in tiles of 1500x1500 needs about .*; pass a smaller --tile"):
        encode_image(big, model, quality=1, weights_id=wid, tile=2048)
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "60M")
    with pytest.raises(ConfigError, match="decoding a 200x150 image .* only 60.0 MB is available"):
        decode_image(data, resolver=_resolver(model, wid))
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "2G")
    assert decode_image(data, resolver=_resolver(model, wid))[0].shape == (3, 150, 200)
