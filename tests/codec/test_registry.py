"""The codec model registry: every model declares what the .cpi file needs, codes are unique and
fixed, bad declarations are refused, and a model registered from outside the package is written
to and read from .cpi files (tiled, both layouts) with no change to the format."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from convpress.codec import bitstream, models
from convpress.codec.bitstream import DEFAULT_TILE, MAX_SIDE, decode_image, encode_image, read_header, tile_grid
from convpress.codec.models import CODEC_MODELS, CodecModel, build_model, model_codes, register_codec_model
from convpress.core import rans
from convpress.core.errors import ConfigError, FileFormatError
from convpress.core.registry import Registry

TINY = {"overfit": {"levels": 3, "arm_hidden": 4, "synth_hidden": 4}}


@pytest.mark.parametrize("name", sorted(CODEC_MODELS))
def test_every_registered_model_declares_what_the_file_format_needs(name: str) -> None:
    cls = CODEC_MODELS.get(name)
    assert cls.name == name and model_codes()[cls.code] == name
    assert cls.stride >= 1 and DEFAULT_TILE % cls.stride == 0 and MAX_SIDE % cls.stride == 0
    assert cls.streams and len(set(cls.streams)) == len(cls.streams)
    # a tiny model of the family (the Ballé models take N and M; a model with other arguments adds its own here)
    m = build_model(name, TINY.get(name, {"N": 8, "M": 12})).eval()
    m.update()
    if getattr(cls, "per_image", False):
        m.lmbda = 0.01  # fitted per image: a lambda and a few iterations
    x = torch.rand(2, 3, cls.stride, 2 * cls.stride)
    c = m.compress(x, effort=3) if getattr(cls, "per_image", False) else m.compress(x)
    assert len(c["strings"]) == len(cls.streams) and all(len(s) == 2 for s in c["strings"])
    assert tuple(c["shape"]) == (cls.stride, 2 * cls.stride)
    d = m.decompress(c["strings"], c["shape"])
    assert d["x_hat"].shape == x.shape
    if "y_hat" in c:  # a transform codec: the latents decompress() decodes, bit for bit (the synthesis correction's input)
        with torch.no_grad():
            assert torch.equal(m.synthesize(c["y_hat"]), d["x_hat"])


@pytest.mark.parametrize("name", ["factorized", "hyperprior", "meanscale", "varrate"])
def test_compress_returns_the_latents_the_decoder_decodes(name: str) -> None:
    # the synthesis correction is fitted through them: they must be the decoder's, bit for bit
    torch.manual_seed(3)
    m = build_model(name, {"N": 8, "M": 12}).eval()
    if hasattr(m, "h_m"):  # the means start at zero: make them count
        torch.nn.init.normal_(m.h_m.weight, std=0.5)
        torch.nn.init.normal_(m.h_m.bias, std=0.5)
    m.update()
    x = torch.rand(1, 3, 2 * m.stride, m.stride)
    c = m.compress(x)
    d = m.decompress(c["strings"], c["shape"])
    with torch.no_grad():
        assert torch.equal(m.synthesize(c["y_hat"]), d["x_hat"])


def test_model_codes_are_part_of_the_format() -> None:
    codes = model_codes()  # written into every compact (version 3-4) file: these never change
    assert (
        codes[0] == "factorized"
        and codes[1] == "hyperprior"
        and codes[2] == "overfit"
        and codes[3] == "meanscale"
        and len(codes) == len(CODEC_MODELS)
    )
    with pytest.raises(ConfigError, match="unknown codec model 'hyperprio'.*hyperprior"):
        build_model("hyperprio")


class PooledCodec(CodecModel):
    """A toy codec, not learned: the 8x8 mean colour of the image, each channel in a stream of its own."""

    name = "pooled-test"
    code = 200
    stride = 8
    streams = ("r", "g", "b")

    def update(self, force: bool = True) -> bool:
        return False

    def check_ready(self) -> None:
        pass

    def bytes_per_pixel(self, effort: int = 0) -> int:
        return 64

    def compress(self, x: Tensor, *, effort: int = 0, escape: bool = True) -> dict[str, Any]:
        self.check_input(x)
        q = torch.round(F.avg_pool2d(x, 8) * 255).long()  # (B, 3, H/8, W/8)
        strings = [
            [rans.words_to_bytes(rans.encode([(q[b, c].reshape(-1).numpy(), rans.uniform(256))])) for b in range(len(q))] for c in range(3)
        ]
        return {"strings": strings, "shape": tuple(x.shape[-2:])}

    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int], *, escape: bool = True) -> dict[str, Tensor]:
        self.check_shape(shape)
        self.check_streams(strings)
        h, w = shape[0] // 8, shape[1] // 8
        out = torch.empty(len(strings[0]), 3, h, w)
        for c, per_image in enumerate(strings):
            for b, s in enumerate(per_image):
                (sym,), _ = rans.decode(rans.words_from_bytes(s), [(h * w, rans.uniform(256))])
                out[b, c] = torch.from_numpy(sym).float().reshape(h, w) / 255
        return {"x_hat": F.interpolate(out, scale_factor=8, mode="nearest")}  # (B, 3, H, W)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry[type[CodecModel]]:
    """A copy of the registry in place of the real one, so that test models do not outlive the test."""
    reg: Registry[type[CodecModel]] = Registry("codec model")
    for name, cls in CODEC_MODELS.items():
        reg.register(name, cls)
    monkeypatch.setattr(models, "CODEC_MODELS", reg)
    monkeypatch.setattr(bitstream, "CODEC_MODELS", reg)
    return reg


def _variant(**attrs: Any) -> type[CodecModel]:
    return type("Variant", (PooledCodec,), attrs)


def test_bad_declarations_and_taken_names_or_codes_are_refused(registry) -> None:  # type: ignore[no-untyped-def]
    bad = [
        ({"name": ""}, "no name"),
        ({"code": 256}, "one-byte code"),
        ({"code": -1}, "one-byte code"),
        ({"code": True}, "one-byte code"),
        ({"stride": 0}, "stride"),
        ({"streams": ()}, "streams"),
        ({"streams": ("a", "a")}, "streams"),
        ({"streams": ["a"]}, "streams"),
        ({"code": 1}, "already the code of 'hyperprior'"),
        ({"name": "factorized", "code": 201}, "already registered"),
    ]
    for attrs, message in bad:
        with pytest.raises(ValueError, match=message):
            register_codec_model(_variant(**attrs))
    assert registry.names() == CODEC_MODELS.names()


def test_a_model_registered_from_outside_is_coded_into_cpi_files_with_no_change_to_the_format(registry, tiny_hyperprior) -> None:  # type: ignore[no-untyped-def]
    register_codec_model(PooledCodec)
    assert model_codes()[200] == "pooled-test" and isinstance(build_model("pooled-test"), PooledCodec)
    model = PooledCodec().eval()
    resolver = lambda name, q: (model, {"weights_id": "pooled v1"})
    torch.manual_seed(0)
    x = torch.rand(3, 21, 37)
    for version in (4, 3, 2):
        data = encode_image(x, model, quality=7, weights_id="pooled v1", tile=16, version=version)
        head, sections = read_header(data)
        assert head["m"] == "pooled-test" and head["t"] == 16 and len(sections) == 3 * len(tile_grid(21, 37, 16))
        if version >= 3:
            assert data[10] == 200  # the model byte is the model's own code
        y, _ = decode_image(data, resolver=resolver)
        # each tile is padded by edge replication, pooled and upsampled: compare tile by tile
        for r0, r1, c0, c1 in tile_grid(21, 37, 16):
            tile = bitstream.pad_image(x[:, r0:r1, c0:c1], 8)
            want = model.decompress(model.compress(tile)["strings"], tuple(tile.shape[-2:]))["x_hat"][0, :, : r1 - r0, : c1 - c0]
            assert torch.equal(y[:, r0:r1, c0:c1], want)
    # a resolver that answers with another model than the file names is refused, not decoded wrongly
    hyper, wid = tiny_hyperprior
    with pytest.raises(FileFormatError, match="resolver gave a hyperprior model"):
        decode_image(data, resolver=lambda name, q: (hyper, {"weights_id": "pooled v1"}))
    with pytest.raises(FileFormatError, match="resolver gave a pooled-test model"):
        decode_image(encode_image(x, hyper, quality=1, weights_id=wid), resolver=resolver)
