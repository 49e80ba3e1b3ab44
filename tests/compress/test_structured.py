"""Structured channel pruning: real channel removal, dependencies, criteria, and refused plans."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torchvision
from tests.helpers.models import ConvChain
from torch import nn

import convpress as cp
from convpress.compress.structured import bn_l1_penalty
from convpress.models.checkpoint import load_into
from convpress.models.shapes import apply_shapes_, layer_shapes


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn"])
def test_channels_are_removed_for_real_across_residual_adds(criterion: str) -> None:
    m = _resnet()
    x = torch.randn(2, 3, 32, 32)
    rep = cp.prune_channels_(m, x, 0.5, criterion=criterion)
    assert m.layer1[0].conv1.weight.shape[0] == 32 and m.bn1.num_features == 32
    # residual adds tie conv1, layer1.*.conv2 and the shortcut together: all were cut consistently
    assert m.layer1[0].conv2.out_channels == m.layer1[1].conv2.out_channels == m.conv1.out_channels
    assert m(x).shape == (2, 5)
    assert rep.mac_ratio < 0.4 and rep.params[1] < 0.35 * rep.params[0]
    assert rep.skipped == {"fc": "output layer: its channels are the model's outputs"}


def test_depthwise_groups_and_concatenations_stay_consistent() -> None:
    torch.manual_seed(0)
    m = torchvision.models.mobilenet_v2(num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    cp.prune_channels_(m, x, 0.3)
    dw = m.features[2].conv[1][0]
    assert dw.groups == dw.in_channels == dw.out_channels < 96
    assert m(x).shape == (1, 3)
    torch.manual_seed(0)
    sq = torchvision.models.squeezenet1_1(num_classes=3).eval()  # Fire modules concatenate two branches
    cp.prune_channels_(sq, torch.randn(1, 3, 64, 64), 0.3)
    fire = sq.features[3]
    assert fire.expand1x1.in_channels == fire.squeeze.out_channels < 16
    assert sq(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_lasso_keeps_the_reconstruction_close_and_refits_the_consumer() -> None:
    torch.manual_seed(0)
    m = ConvChain().eval()
    calib = [(torch.randn(8, 3, 12, 12), None) for _ in range(4)]
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        # make half of c1's channels useless: LASSO must find and drop exactly those
        m.c2.weight[:, 8:] *= 1e-4
    ref = m(x)
    rep = cp.prune_channels_(m, x, {"c1": 0.5}, criterion="lasso", calibration=calib)
    assert rep.channels == {"c1": (16, 8)}
    assert m.c2.in_channels == 8
    assert torch.allclose(m(x), ref, atol=1e-3, rtol=1e-3)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_lasso_samples_consumers_with_string_padding() -> None:
    # found by mypy (issue 23): a consumer with padding="same" reached F.unfold as a string (TypeError)
    torch.manual_seed(0)
    m = ConvChain().eval()
    same = nn.Conv2d(16, 16, 3, padding="same", bias=False)
    with torch.no_grad():
        same.weight.copy_(m.c2.weight)
        same.weight[:, 8:] *= 1e-4
    m.c2 = same
    x = torch.randn(4, 3, 12, 12)
    ref = m(x)
    rep = cp.prune_channels_(m, x, {"c1": 0.5}, criterion="lasso", calibration=[(torch.randn(8, 3, 12, 12), None) for _ in range(4)])
    assert rep.channels == {"c1": (16, 8)} and m.c2.in_channels == 8
    assert torch.allclose(m(x), ref, atol=1e-3, rtol=1e-3)
    # "same" around an even kernel pads unevenly: the producer is skipped with the reason
    m = ConvChain().eval()
    m.c2 = nn.Conv2d(16, 16, 2, padding="same", bias=False)
    rep = cp.prune_channels_(m, x, {"c1": 0.5}, criterion="lasso", calibration=[(torch.randn(8, 3, 12, 12), None)])
    assert "unevenly" in rep.skipped["c1"] and m.c1.out_channels == 16


def test_lasso_names_layers_it_cannot_handle() -> None:
    m = _resnet()
    x = torch.randn(2, 3, 32, 32)
    rep = cp.prune_channels_(m, x, 0.5, criterion="lasso", calibration=[(torch.randn(4, 3, 32, 32), None)])
    assert "layer1.0.conv1" in rep.channels
    assert "residual" in rep.skipped["layer1.0.conv2"]


@pytest.mark.parametrize(
    ("amount", "kwargs", "match"),
    [
        (1.0, {}, "amount"),
        (0.99, {}, "would leave none"),
        ({"c1": 0.97}, {}, "would leave none"),
        ({"nope": 0.5}, {}, "unknown layer"),
        (0.5, {"criterion": "random"}, "criterion"),
        (0.5, {"criterion": "lasso"}, "calibration"),
        (0.5, {"ignored_layers": ["zz"]}, "unknown ignored"),
    ],
)
def test_impossible_plans_are_refused_before_any_change(amount: object, kwargs: dict, match: str) -> None:
    m = ConvChain()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(cp.ConfigError, match=match):
        cp.prune_channels_(m, torch.randn(1, 3, 8, 8), amount, **kwargs)  # type: ignore[arg-type]
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_models_with_unstructured_compression_are_refused() -> None:
    m = ConvChain()
    cp.prune_(m, 0.5)
    with pytest.raises(cp.ConfigError, match="unstructured"):
        cp.prune_channels_(m, torch.randn(1, 3, 8, 8), 0.5)


def test_bn_penalty_and_sparsity_training() -> None:
    m = ConvChain()
    assert bn_l1_penalty(m).item() == pytest.approx(32.0)  # BN gammas start at 1
    data = [(torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))) for _ in range(4)]
    cp.finetune(m, data, nn.functional.cross_entropy, 3, 1e-2, bn_l1=1e-1, progress=False)
    assert bn_l1_penalty(m).item() < 32.0
    with pytest.raises(cp.ConfigError, match="BatchNorm"):
        cp.finetune(
            nn.Linear(3, 2),
            [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))],
            nn.functional.cross_entropy,
            1,
            1e-3,
            bn_l1=0.1,
            progress=False,
        )


def test_pruned_model_saves_and_reloads_only_with_its_shapes(tmp_path: Path) -> None:
    m = _resnet()
    x = torch.randn(2, 3, 32, 32)
    cp.prune_channels_(m, x, 0.4)
    cp.save(m, tmp_path / "p.cpz", arch="resnet18")
    back = cp.load_model(tmp_path / "p.cpz")
    assert torch.equal(back(x), m(x))
    with pytest.raises(cp.ConfigError, match="load_model"):
        load_into(torchvision.models.resnet18(num_classes=5), cp.load(tmp_path / "p.cpz"), arch="resnet18", source="p.cpz")
    cp.save(m, tmp_path / "noarch.cpz")
    with pytest.raises(cp.FileFormatError, match="without an architecture"):
        cp.load_model(tmp_path / "noarch.cpz")


def test_shape_records_rebuild_exactly_and_refuse_foreign_layers() -> None:
    m = ConvChain()
    cp.prune_channels_(m, torch.randn(1, 3, 8, 8), {"c1": 0.5, "c2": 0.25})
    fresh = apply_shapes_(ConvChain(), layer_shapes(m))
    fresh.load_state_dict(m.state_dict())
    with pytest.raises(cp.FileFormatError, match="does not have"):
        apply_shapes_(ConvChain(), {"c9": {"in": 1, "out": 1, "groups": 1}})
    with pytest.raises(cp.FileFormatError, match="malformed"):
        apply_shapes_(ConvChain(), {"c1": {"in": -3, "out": 1, "groups": 1}})


def test_channel_wise_layers_torch_pruning_does_not_know_are_pruned_along() -> None:
    """The CAN's adaptive normalisation (registered channel-wise) loses the same channels as its conv."""
    from convpress.models.can import CAN

    torch.manual_seed(0)
    net = CAN(width=24, depth=5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(1, 3, 40, 40)
    convs = [net.body[3 * i] for i in range(4)]
    norms = [net.body[3 * i + 1] for i in range(4)]
    with torch.no_grad():
        for n in norms:  # distinct gains name each channel, so the kept ones can be identified afterwards
            n.weight.copy_(1 + torch.arange(24) / 100)
    old = [c.weight.detach().clone() for c in convs]
    report = cp.prune_channels_(net, x, 0.5)
    assert set(report.channels.values()) == {(24, 12)}
    prev = torch.arange(3)
    for conv, norm, w in zip(convs, norms, old, strict=True):
        assert norm.weight.shape == norm.bias.shape == (12,)
        kept = torch.round((norm.weight.detach() - 1) * 100).long()
        # the norm kept exactly the channels its convolution kept
        assert torch.equal(conv.weight, w[kept][:, prev])
        prev = kept
    assert net(x).shape == (1, 3, 40, 40)


def test_a_registered_channel_layer_is_no_barrier() -> None:
    from convpress.compress.structured import register_channel_layer

    @register_channel_layer
    class Scale(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.gain = nn.Parameter(torch.ones(c))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain.view(1, -1, 1, 1)

    net = nn.Sequential(nn.Conv2d(3, 8, 3), Scale(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    cp.prune_channels_(net, torch.rand(1, 3, 10, 10), 0.5)
    assert net[0].out_channels == 4 and net[1].gain.shape == (4,) and net[3].in_channels == 4


def test_lasso_prunes_a_trained_can_far_better_than_filter_norms() -> None:
    """Under the CAN's per-image normalisation, filter L1 norms do not rank channels; LASSO does.

    On the trained CAN inside the shipped RTV network (a gf-can24), halving every hidden layer by LASSO +
    least-squares refit keeps the output close to the dense one; L1 pruning wrecks it.
    """
    import torch.nn.functional as F

    from convpress.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, bundled_photo
    from convpress.fip.weights import WEIGHTS_DIR, load_network

    can = load_network(WEIGHTS_DIR / "rtv.safetensors")[0].can.eval()

    def small(name: str) -> torch.Tensor:
        return F.interpolate(bundled_photo(name)[None], size=(96, 128), mode="area")

    calibration = [(small(n), None) for n in list(TRAIN_PHOTOS)[:3]]
    x = small(TEST_PHOTOS[0])
    with torch.no_grad():
        ref = can(x)
    psnr = {}
    for criterion in ("l1", "lasso"):
        net = copy.deepcopy(can)
        kw = {"calibration": calibration, "lasso_samples": 1500} if criterion == "lasso" else {}
        report = cp.prune_channels_(net, x[..., :32, :32], 0.5, criterion=criterion, **kw)
        assert set(report.channels.values()) == {(24, 12)} and all(m.weight.shape == (12,) for m in net.modules() if hasattr(m, "w0"))
        with torch.no_grad():
            psnr[criterion] = float(10 * torch.log10(1 / F.mse_loss(net(x), ref)))
    assert psnr["lasso"] > 18 and psnr["lasso"] > psnr["l1"] + 6, psnr
