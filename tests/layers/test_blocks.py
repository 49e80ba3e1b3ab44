"""Every zoo layer against a naive reference (loops over the definition), with stated tolerances."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import convpress as cp
from convpress import layers as L

F64 = torch.float64


def _conv_naive(x: torch.Tensor, w: torch.Tensor, groups: int = 1, padding: int = 0) -> torch.Tensor:
    """Grouped conv as separate convolutions of channel slices (the definition of groups)."""
    xs, ws = x.chunk(groups, dim=1), w.chunk(groups, dim=0)
    return torch.cat([F.conv2d(a, b, padding=padding) for a, b in zip(xs, ws, strict=True)], dim=1)


def test_channel_shuffle_matches_index_definition() -> None:
    x = torch.arange(2 * 12 * 2 * 2, dtype=F64).reshape(2, 12, 2, 2)
    g, c = 3, 4
    ref = torch.stack([x[:, (j % g) * c + j // g] for j in range(12)], dim=1)
    assert torch.equal(L.channel_shuffle(x, g), ref)
    with pytest.raises(ValueError, match="groups=5 does not divide"):
        L.channel_shuffle(x, 5)
    # a channels-last input (the CPU deployment form) takes its own path: same values, still channels-last
    xl = x.contiguous(memory_format=torch.channels_last)
    out = L.channel_shuffle(xl, g)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="groups=5 does not divide"):
        L.channel_shuffle(xl, 5)


def test_igc_block_is_two_interleaved_group_convs() -> None:
    torch.manual_seed(0)
    blk = L.IGCBlock(3, 4).double().eval()
    x = torch.randn(2, 12, 6, 6, dtype=F64)
    # naive: primary L=3 groups, send channel m of partition l to secondary group m, M=4 groups, back
    y = _conv_naive(x, blk.primary.weight, groups=3, padding=1)
    perm = [part * 4 + m for m in range(4) for part in range(3)]  # secondary group m collects channel m of each partition
    z = _conv_naive(y[:, perm], blk.secondary.weight, groups=4)
    z = z[:, [perm.index(i) for i in range(12)]]
    assert torch.allclose(blk(x), torch.relu(blk.bn(z)), atol=1e-12)


def test_shuffle_units() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 24, 8, 8)
    assert L.ShuffleUnitV1(24, 24, groups=3)(x).shape == (2, 24, 8, 8)
    assert L.ShuffleUnitV1(24, 72, groups=3, stride=2)(x).shape == (2, 72, 4, 4)
    v2 = L.ShuffleUnitV2(24, 24).eval()
    out = v2(x)
    # v2 stride 1: the untouched half comes out on the even channels after the 2-group shuffle
    assert torch.equal(out[:, 0::2], x[:, :12])
    assert L.ShuffleUnitV2(24, 48, stride=2)(x).shape == (2, 48, 4, 4)
    with pytest.raises(ValueError, match="groups=3 does not divide"):
        L.ShuffleUnitV1(20, 20, groups=3)
    with pytest.raises(ValueError, match="out_channels"):
        L.ShuffleUnitV2(24, 25, stride=2)


def test_fire_se_mixconv_against_definitions() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 6, 9, 9, dtype=F64)
    fire = L.Fire(6, 3, 4, 5).double()
    s = torch.relu(F.conv2d(x, fire.squeeze.weight, fire.squeeze.bias))
    ref = torch.cat(
        [
            torch.relu(F.conv2d(s, fire.expand1x1.weight, fire.expand1x1.bias)),
            torch.relu(F.conv2d(s, fire.expand3x3.weight, fire.expand3x3.bias, padding=1)),
        ],
        1,
    )
    assert torch.allclose(fire(x), ref, atol=1e-12)

    se = L.SqueezeExcite(6, reduction=2).double()
    ref_se = torch.empty_like(x)
    for n in range(2):
        mean = torch.tensor([float(x[n, c].sum()) / 81 for c in range(6)], dtype=F64)
        e = torch.sigmoid(se.fc2.weight @ torch.relu(se.fc1.weight @ mean + se.fc1.bias) + se.fc2.bias)
        for c in range(6):
            ref_se[n, c] = x[n, c] * e[c]
    assert torch.allclose(se(x), ref_se, atol=1e-12)

    mix = L.MixConv2d(6, (3, 5, 7)).double()
    sizes = [w.shape[0] for w in mix.weights]
    ref_mix = torch.cat(
        [
            torch.cat([F.conv2d(part[:, i : i + 1], w[i : i + 1], padding=w.shape[-1] // 2) for i in range(w.shape[0])], 1)
            for part, w in zip(x.split(sizes, 1), mix.weights, strict=True)
        ],
        1,
    )
    assert torch.allclose(mix(x), ref_mix, atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        L.MixConv2d(6, (3, 4))
    with pytest.raises(ValueError, match="kernel_sizes"):
        L.MixConv2d(2, (3, 5, 7))


def test_depthwise_and_spatially_separable() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 10, dtype=F64)
    ds = L.DepthwiseSeparableConv2d(4, 6, 3, depth_multiplier=2).double()
    dw = torch.cat([F.conv2d(x[:, i : i + 1], ds.depthwise.weight[2 * i : 2 * i + 2], padding=1) for i in range(4)], 1)
    assert torch.allclose(ds(x), F.conv2d(dw, ds.pointwise.weight, ds.pointwise.bias), atol=1e-12)
    ss = L.SpatiallySeparableConv2d(4, 6, 5, mid_channels=3).double()
    assert ss(x).shape == (2, 6, 10, 10)
    with pytest.raises(ValueError, match="groups=3 does not divide in_channels=4"):
        L.SpatiallySeparableConv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="depth_multiplier"):
        L.DepthwiseSeparableConv2d(4, 6, depth_multiplier=0)


def test_deformable_conv_and_roi_pooling() -> None:
    from torchvision import ops

    torch.manual_seed(0)
    x = torch.randn(2, 4, 12, 12)
    v1, v2 = L.DeformConv2dV1(4, 6, 3), L.DeformConv2dV2(4, 6, 3)
    assert torch.allclose(v1(x), F.conv2d(x, v1.weight, v1.bias, padding=1), atol=1e-5)  # zero offsets = conv
    assert torch.allclose(v2(x), 0.5 * F.conv2d(x, v2.weight, padding=1) + v2.bias.view(1, -1, 1, 1), atol=1e-5)
    (v1(x).sum() + v2(x).sum()).backward()
    assert v1.offset_conv.weight.grad is not None
    feats = torch.randn(2, 3, 20, 20, dtype=F64, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 2.0, 15.0, 12.0], [1, 3.0, 3.0, 9.0, 18.0]], dtype=F64)
    zero = torch.zeros(2, 2, 3, 4, dtype=F64)
    assert torch.allclose(
        L.deform_roi_pool(feats, rois, zero, (3, 4)), ops.roi_align(feats, rois, (3, 4), sampling_ratio=2, aligned=False), atol=1e-12
    )
    small = torch.randn(1, 2, 10, 10, dtype=F64, requires_grad=True)
    box = torch.tensor([[0, 1.0, 2.0, 8.0, 7.0]], dtype=F64)
    offsets = (0.3 * torch.randn(1, 2, 2, 2, dtype=F64)).requires_grad_(True)
    # gradients reach both the features and the offsets (what makes the offsets learnable)
    assert torch.autograd.gradcheck(lambda f, o: L.deform_roi_pool(f, box, o, 2), (small, offsets), fast_mode=True)
    assert L.DeformRoIPool(3, 4)(feats.float().detach(), rois.float()).shape == (2, 3, 4, 4)
    ps = L.ps_roi_pool(torch.randn(1, 18, 10, 10), torch.tensor([[0, 1.0, 1.0, 8.0, 8.0]]), 3)
    assert ps.shape == (1, 2, 3, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: L.deformable.deform_conv2d(torch.zeros(1, 4, 8, 8), torch.zeros(1, 10, 8, 8), torch.zeros(6, 4, 3, 3), padding=1),
            "offset",
        ),
        (
            lambda: L.deformable.deform_conv2d(torch.zeros(1, 4, 8, 8), torch.zeros(1, 18, 7, 8), torch.zeros(6, 4, 3, 3), padding=1),
            "offset",
        ),
        (
            lambda: L.deformable.deform_conv2d(
                torch.zeros(1, 4, 8, 8), torch.zeros(1, 18, 8, 8), torch.zeros(6, 4, 3, 3), padding=1, mask=torch.zeros(1, 8, 8, 8)
            ),
            "mask",
        ),
        (lambda: L.deform_roi_pool(torch.zeros(1, 2, 8, 8), torch.zeros(3, 4), None, 2), "rois"),
        (lambda: L.deform_roi_pool(torch.zeros(1, 2, 8, 8), torch.zeros(3, 5), torch.zeros(3, 2, 3, 3), 2), "offsets"),
        (lambda: L.ps_roi_pool(torch.zeros(1, 10, 8, 8), torch.zeros(1, 5), 3), "input channels"),
        (lambda: L.DeformConv2dV1(4, 6, 3, groups=3), "groups=3"),
        (lambda: L.DeformConv2dV1(4, 6, 3, offset_groups=3), "offset_groups"),
    ],
)
def test_deformable_bad_shapes_name_the_argument(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_conv3d_blocks() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 6, 6, dtype=F64)
    blk = L.Conv3dBlock(2, 3).double().eval()
    ref = torch.zeros(1, 3, 4, 6, 6, dtype=F64)
    xp = F.pad(x, (1, 1, 1, 1, 1, 1))
    w = blk.conv.weight
    for o in range(3):
        for t in range(4):
            for i in range(6):
                for j in range(6):
                    ref[0, o, t, i, j] = (xp[0, :, t : t + 3, i : i + 3, j : j + 3] * w[o]).sum()
    assert torch.allclose(blk(x), torch.relu(blk.bn(ref)), atol=1e-12)
    assert L.Conv2Plus1dBlock(2, 8, stride=2)(x.float()).shape == (1, 8, 2, 3, 3)
    with pytest.raises(ValueError, match="x must be"):
        blk(torch.zeros(1, 2, 4, 4, dtype=F64))


def test_svdf_matches_its_definition_and_is_a_low_rank_fc_with_memory_one() -> None:
    torch.manual_seed(0)
    layer = L.SVDF(5, 3, memory=4, rank=2).double()
    x = torch.randn(2, 7, 5, dtype=F64)
    fw = layer.feature_weight.reshape(3, 2, 5)
    tw = layer.time_weight.reshape(3, 2, 4)
    ref = torch.zeros(2, 7, 3, dtype=F64)
    for n in range(2):
        for t in range(7):
            for u in range(3):
                acc = layer.bias[u].clone()
                for r in range(2):
                    for i in range(4):
                        src = t - 3 + i
                        if src >= 0:
                            acc = acc + tw[u, r, i] * (fw[u, r] @ x[n, src])
                ref[n, t, u] = acc
    assert torch.allclose(layer(x), ref, atol=1e-12)
    # each unit's (C x memory) filter has rank <= r: r·(C + memory) weights instead of C·memory
    for u in range(3):
        assert torch.linalg.matrix_rank(fw[u].T @ tw[u]) <= 2


def test_lcnn_lookup_path_equals_dense_path_and_trains() -> None:
    torch.manual_seed(0)
    m = L.LookupConv2d(4, 6, 3, dictionary_size=8, sparsity=2).double()
    x = torch.randn(2, 4, 9, 9, dtype=F64)
    assert torch.allclose(m.lookup_forward(x), m(x), atol=1e-12)
    assert int((m.sparse_coefficients() != 0).sum(-1).max()) == 2
    m(x).sum().backward()
    assert m.dictionary.grad is not None and m.coefficients.grad is not None
    with pytest.raises(ValueError, match="sparsity"):
        L.LookupConv2d(4, 6, dictionary_size=4, sparsity=5)


def test_lstmp_matches_a_naive_cell_loop() -> None:
    torch.manual_seed(0)
    m = L.LSTMP(3, 5, 2).double()
    x = torch.randn(2, 4, 3, dtype=F64)
    p = dict(m.lstm.named_parameters())
    h, c = torch.zeros(2, 2, dtype=F64), torch.zeros(2, 5, dtype=F64)
    outs = []
    for t in range(4):
        gates = x[:, t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = (torch.sigmoid(o) * torch.tanh(c)) @ p["weight_hr_l0"].T  # the projection
        outs.append(h)
    assert torch.allclose(m(x), torch.stack(outs, 1), atol=1e-12)
    with pytest.raises(ValueError, match="proj_size"):
        L.LSTMP(3, 5, 5)


@pytest.mark.parametrize("hidden", [4, 6])
def test_sru_matches_its_equations(hidden: int) -> None:
    torch.manual_seed(0)
    m = L.SRU(4, hidden).double()
    with torch.no_grad():
        m.v.normal_()
        m.b.normal_()
    x = torch.randn(2, 5, 4, dtype=F64)
    W = m.weight.reshape(-1, hidden, 4)
    ref = torch.zeros(2, 5, hidden, dtype=F64)
    for n in range(2):
        c = torch.zeros(hidden, dtype=F64)
        for t in range(5):
            xt = x[n, t]
            f = torch.sigmoid(W[1] @ xt + m.v[0] * c + m.b[0])
            r = torch.sigmoid(W[2] @ xt + m.v[1] * c + m.b[1])
            c = f * c + (1 - f) * (W[0] @ xt)
            skip = xt if hidden == 4 else W[3] @ xt
            ref[n, t] = r * c + (1 - r) * skip
    assert torch.allclose(m(x), ref, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a: L.sru(a, m.weight, m.v, m.b)[0], (x[:1, :3].clone().requires_grad_(True),))


@pytest.mark.parametrize("name", ["shufflenet-v1", "igc-net", "lcnn-net"])
def test_zoo_models_are_registered_and_run(name: str) -> None:
    m = cp.create_model(name, num_classes=7).eval()
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 7)
