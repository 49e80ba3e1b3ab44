"""ShuffleSeg: logits at the input's size for any size, every encoder and decoder, traceable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.analysis import receptive_fields
from convpress.layers.transposed import subpixel_weight
from convpress.models.shuffleseg import SEG_ENCODERS, ShuffleSeg, Upsample2x


@pytest.mark.parametrize("name", ["shuffleseg", "shuffleseg-fcn8s", "shuffleseg-v2", "shuffleseg-mbv2"])
def test_logits_have_the_input_size_for_sizes_not_divisible_by_32(name: str) -> None:
    model = cp.create_model(name, num_classes=5).eval()
    with torch.no_grad():
        for shape in ((1, 3, 37, 53), (2, 3, 64, 96), (1, 3, 360, 64)):
            y = model(torch.rand(shape))
            assert y.shape == (shape[0], 5, *shape[2:]) and torch.isfinite(y).all()
    fields = receptive_fields(model)  # torch.fx traces it, as `convpress analyze` does
    assert "decoder" in {name.split(".")[0] for name in fields}


@pytest.mark.parametrize("encoder", SEG_ENCODERS.names())
def test_encoders_give_features_at_8_16_32_with_their_declared_channels(encoder: str) -> None:
    enc = SEG_ENCODERS.get(encoder)(0.5).eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // s, 128 // s) for c, s in zip(enc.channels, (8, 16, 32), strict=True)]


def test_width_multiplier_narrows_the_shufflenet_v1_encoder() -> None:
    narrow, wide = (cp.create_model("shuffleseg", num_classes=3, width=w) for w in (0.5, 1.0))
    assert narrow.encoder.channels == (120, 240, 480) and wide.encoder.channels == (240, 480, 960)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters()) / 2


def test_upsampling_is_a_2x2_stride_2_transposed_convolution() -> None:
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(6, 4, 2, stride=2, bias=False)
    up = Upsample2x(6, 4)
    with torch.no_grad():
        up.conv.weight.copy_(subpixel_weight(ref.weight, 2))
        x = torch.randn(2, 6, 5, 7)
        torch.testing.assert_close(up(x), ref(x), rtol=1e-5, atol=1e-6)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(cp.ConfigError, match="unknown segmentation encoder"):
        ShuffleSeg(num_classes=3, encoder="resnet")
    with pytest.raises(cp.ConfigError, match="unknown segmentation decoder"):
        ShuffleSeg(num_classes=3, decoder="dilation")
    with pytest.raises(cp.ConfigError, match="num_classes"):
        cp.create_model("shuffleseg", num_classes=1)
    with pytest.raises(cp.ConfigError, match="widths"):
        cp.create_model("shuffleseg-v2", num_classes=3, width=0.7)
