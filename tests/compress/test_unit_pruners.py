"""ShuffleNet v1 units thinned across their channel shuffle: exact, equal groups, a valid model."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.analysis import receptive_fields
from convpress.compress.export import export_onnx, onnx_max_error
from convpress.compress.unit_pruners import (
    UNIT_PRUNERS,
    ShuffleUnitV1Pruner,
    find_units,
    remove_units_,
    shuffle_cells,
    thin_shuffle_unit_,
)
from convpress.layers.shuffle import ShuffleUnitV1
from convpress.models.shapes import apply_shapes_, layer_shapes


class _UnitNet(nn.Module):
    """A ShuffleNet v1 unit (240 channels, 60 inner, 3 groups) and a head to score its output."""

    def __init__(self, *, first_group: bool = True, stride: int = 1) -> None:
        super().__init__()
        self.unit = ShuffleUnitV1(240, 240 if stride == 1 else 480, groups=3, stride=stride, first_group=first_group)
        self.head = nn.Conv2d(240 if stride == 1 else 480, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.unit(x))


def _randomised(net: nn.Module) -> nn.Module:
    """Eval mode with BatchNorm statistics and affine terms away from identity (so mistakes show)."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return net.eval()


def _silence_(unit: ShuffleUnitV1, idx: torch.Tensor) -> None:
    """Make the inner channels ``idx`` (compress order) output exactly zero and score lowest."""
    _, position = shuffle_cells(unit.compress[0].out_channels, unit.groups)
    with torch.no_grad():
        unit.compress[0].weight[idx] = 0
        unit.compress[1].weight[idx] = 0
        unit.compress[1].bias[idx] = 0
        unit.depthwise[1].weight[position[idx]] = 0  # after the shuffle the channel sits at its position
        unit.depthwise[1].bias[position[idx]] = 0


def test_shuffle_unit_is_registered_and_found() -> None:
    assert isinstance(UNIT_PRUNERS.lookup(ShuffleUnitV1), ShuffleUnitV1Pruner)
    model = cp.create_model("shuffleseg", num_classes=3)
    assert len(find_units(model)) == 16 and all(isinstance(u, ShuffleUnitV1) for u, _ in find_units(model).values())


@pytest.mark.parametrize("first_group", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_amount_runs_the_surgery_and_changes_nothing(first_group: bool, stride: int) -> None:
    net = _randomised(_UnitNet(first_group=first_group, stride=stride))
    x = torch.rand(2, 240, 9, 11)
    ref = net(x)
    thin_shuffle_unit_(net.unit, torch.ones(net.unit.compress[0].out_channels, dtype=torch.bool))  # the identity re-indexing
    report = cp.prune_channels_(net, x, {"unit.compress.0": 0.0})
    assert report.channels == {}
    assert torch.equal(net(x), ref)


@pytest.mark.parametrize("first_group", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_removed_channels_that_output_zero_leave_the_output_unchanged(first_group: bool, stride: int) -> None:
    """The proof that the right channels went, across the shuffle: only zero channels were removed."""
    net = _randomised(_UnitNet(first_group=first_group, stride=stride))
    mid = net.unit.compress[0].out_channels  # 60, or 120 for the strided unit
    cell, _ = shuffle_cells(mid, 3)
    silent = torch.cat([(cell == c).nonzero().squeeze(1)[[0, -1]] for c in range(9)])  # 2 per cell: 18 channels
    _silence_(net.unit, silent)
    x = torch.rand(2, 240, 9, 11)
    ref = net(x)
    macs0, params0 = cp.compress.structured.count_macs(net, x)
    report = cp.prune_channels_(net, x, {"unit.compress.0": 18 / mid})  # 2 per cell
    assert report.channels == {"unit.compress.0": (mid, mid - 18), "unit.depthwise.0": (mid, mid - 18)}
    torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-5)
    macs1, params1 = cp.compress.structured.count_macs(net, x)
    assert macs1 < macs0 and params1 < params0


def test_torch_pruning_alone_gets_the_shuffle_wrong() -> None:
    """Why the units are kept from Torch-Pruning: on its own it changes the function of a unit."""
    import torch_pruning as tp

    net = _randomised(_UnitNet())
    cell, _ = shuffle_cells(60, 3)
    _silence_(net.unit, torch.cat([(cell == c).nonzero().squeeze(1)[[0, -1]] for c in range(9)]))
    x = torch.rand(2, 240, 9, 11)
    ref = net(x)
    ratio = {net.unit.compress[0]: 0.3}
    imp = tp.importance.GroupMagnitudeImportance(p=1)
    tp.pruner.BasePruner(net, x, importance=imp, pruning_ratio=0.0, pruning_ratio_dict=ratio, ignored_layers=[net.head]).step()
    assert net.unit.compress[0].out_channels < 60
    assert (net(x) - ref).abs().max() > 0.1


def test_groups_stay_equal_and_the_model_stays_valid(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = cp.create_model("shuffleseg", num_classes=4).eval()
    example = torch.rand(2, 3, 64, 96)
    plan = {f"{name}.compress.0": 0.5 for name in find_units(model)}
    before = copy.deepcopy(model)
    report = cp.prune_channels_(model, example, plan)
    assert report.macs[1] < 0.8 * report.macs[0] and report.params[1] < report.params[0]
    for name, (unit, _) in find_units(model).items():
        g, mid = unit.groups, unit.compress[0].out_channels
        assert mid < before.get_submodule(name).compress[0].out_channels and mid % (g * g) == before.get_submodule(name).compress[
            0
        ].out_channels % (g * g)
        assert unit.expand[0].in_channels == mid and unit.expand[0].weight.shape[1] * g == mid
        assert unit.depthwise[0].groups == mid and unit.compress[1].num_features == unit.depthwise[1].num_features == mid
    with torch.no_grad():
        for shape in ((1, 3, 37, 53), (1, 3, 120, 64)):
            assert model(torch.rand(shape)).shape == (1, 4, *shape[2:])
    assert "decoder" in {n.split(".")[0] for n in receptive_fields(model)}  # torch.fx traces it (convpress analyze)
    x = torch.rand(1, 3, 48, 80)
    path = export_onnx(model, x, tmp_path / "thin.onnx")
    assert onnx_max_error(model, path, x) < 1e-3
    fresh = apply_shapes_(cp.create_model("shuffleseg", num_classes=4), layer_shapes(model)).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


def test_uniform_amounts_lasso_and_too_small_amounts_are_reported() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 240, 8, 8)
    net = _randomised(_UnitNet())
    report = cp.prune_channels_(net, x, 0.5)
    assert report.channels["unit.compress.0"] == (60, 33)  # round(0.5 x 60 / 9) = 3 per cell
    assert "own pruner" in report.skipped["unit.expand.0"]
    net = _randomised(_UnitNet())
    report = cp.prune_channels_(net, x, {"unit.depthwise.0": 0.05})  # 3 channels: less than one per cell
    assert report.channels == {} and "9 at a time" in report.skipped["unit.compress.0"]
    net = _randomised(_UnitNet())
    report = cp.prune_channels_(net, x, {"unit.compress.0": 0.5}, criterion="lasso", calibration=[(x, None)])
    assert report.channels == {} and "importance criterion" in report.skipped["unit.compress.0"]


def test_unequal_cells_are_refused() -> None:
    unit = ShuffleUnitV1(240, 240, groups=3).eval()
    keep = torch.ones(60, dtype=torch.bool)
    keep[:9] = False  # nine channels of compress group 0: other groups keep theirs
    with pytest.raises(ValueError, match="whole cells"):
        thin_shuffle_unit_(unit, keep)


def test_depth_pruning_removes_the_units_that_change_least_and_stays_exact(tmp_path: Path) -> None:
    model = _randomised(cp.create_model("shuffleseg", num_classes=4))
    removable = [n for n, (m, p) in find_units(model).items() if p.removable(m)]
    assert len(removable) == 13 and all(model.get_submodule(n).stride == 1 for n in removable)  # 3 + 7 + 3 stride-1 units
    quiet = "encoder.to16.3"
    with torch.no_grad():  # its branch outputs zero: the unit is the identity (its input comes out of a ReLU)
        model.get_submodule(quiet).expand[1].weight.zero_()
        model.get_submodule(quiet).expand[1].bias.zero_()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        want = model(x)
    removed = remove_units_(model, 1 / 13, [x])
    assert list(removed) == [quiet] and removed[quiet] == 0.0
    assert isinstance(model.get_submodule(quiet), nn.Identity)
    with torch.no_grad():
        assert torch.equal(model(x), want)
    removed = remove_units_(model, 0.5, [x])  # half of the 12 left
    assert len(removed) == 6 and quiet not in removed
    assert all(isinstance(model.get_submodule(n), nn.Identity) for n in removed)
    assert "decoder" in {n.split(".")[0] for n in receptive_fields(model)}  # still traced by convpress analyze
    fresh = apply_shapes_(cp.create_model("shuffleseg", num_classes=4), layer_shapes(model)).eval()
    fresh.load_state_dict(model.state_dict())  # a saved depth-pruned model rebuilds from its recorded structure
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    path = export_onnx(model, x, tmp_path / "shallow.onnx")
    assert onnx_max_error(model, path, x) < 1e-3


def test_accelerate_removes_units_and_reports_them() -> None:
    torch.manual_seed(0)
    model = cp.create_model("shuffleseg", num_classes=3)
    x = torch.rand(2, 3, 32, 48)
    y = torch.randint(0, 3, (2, 32, 48))
    cfg = cp.AccelerateConfig(units=0.3, epochs=1, distill_mode="output", latency_batches=())
    report = cp.accelerate(model, cfg, train=[(x, y)], example=x, loss_fn=nn.functional.cross_entropy, progress=False)
    assert report.units is not None and len(report.units) == 4  # round(0.3 * 13)
    assert report.after.macs < report.before.macs
    with pytest.raises(cp.ConfigError, match="units"):
        cp.AccelerateConfig(units=1.0)
    lines: list[str] = []  # a model without removable units is told so, not silently left alone
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    report = cp.accelerate(plain, cfg, train=[(x, y)], example=x, loss_fn=nn.functional.cross_entropy, progress=False, say=lines.append)
    assert report.units == {} and any("no removable unit" in line for line in lines)
