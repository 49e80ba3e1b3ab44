"""Pruning criteria as objects: names and objects agree, settings are validated, users add their own."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch_pruning as tp
import torchvision
from tests.helpers.models import ConvChain
from torch import nn

import convpress as cp
from convpress.compress.criteria import (
    CRITERIA,
    BNScale,
    ImportanceCriterion,
    L1Norm,
    L2Norm,
    Lasso,
    PruningCriterion,
    criterion_name,
    get_criterion,
    register_criterion,
)


class _FirstChannels(tp.importance.Importance):
    """Scores channel 0 highest, then 1, ...: pruning keeps the first channels."""

    def __call__(self, group: Any, **kwargs: Any) -> torch.Tensor:
        _, idxs = group[0]
        return torch.arange(len(idxs), 0, -1, dtype=torch.float32)  # (channels,)


@register_criterion("test-keep-first")
@dataclass(frozen=True)
class _KeepFirst(ImportanceCriterion):
    """A user's criterion: one class and its registration."""

    def importance(self) -> Any:
        return _FirstChannels()


def test_builtin_names_map_to_their_classes() -> None:
    assert {"l1", "l2", "bn", "lasso"} <= set(CRITERIA.names())
    assert get_criterion("l1") == L1Norm() and get_criterion("l2") == L2Norm() and get_criterion("bn") == BNScale()
    assert get_criterion("lasso") == Lasso() and Lasso().samples == 4000
    assert [criterion_name(c()) for c in (L1Norm, L2Norm, BNScale, Lasso)] == ["l1", "l2", "bn", "lasso"]
    assert Lasso.needs_calibration and not L1Norm.needs_calibration and BNScale.uses_bn_sparsity and not L2Norm.uses_bn_sparsity
    assert "lasso" in CRITERIA.choices() and "nope" not in CRITERIA.choices()


@pytest.mark.parametrize(("name", "obj"), [("l1", L1Norm()), ("l2", L2Norm()), ("bn", BNScale())])
def test_a_name_and_its_object_prune_identically(name: str, obj: PruningCriterion) -> None:
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=5).eval()
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.weight.uniform_(0.1, 1.0)  # distinct gammas, so "bn" has something to rank
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    x = torch.randn(2, 3, 32, 32)
    ra = cp.prune_channels_(a, x, 0.5, criterion=name)
    rb = cp.prune_channels_(b, x, 0.5, criterion=obj)
    assert ra == rb
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_criteria_rank_differently() -> None:
    """Guards against every name silently resolving to the same importance."""
    torch.manual_seed(0)
    m = ConvChain().eval()
    with torch.no_grad():
        m.b1.weight.copy_(torch.linspace(1.0, 0.9, 16))  # BN gamma keeps the first channels of c1...
        m.c1.weight.mul_(torch.linspace(0.01, 1.0, 16).view(-1, 1, 1, 1))  # ...filter norms the last ones
        m.c2.weight.copy_(0.1 * torch.sign(m.c2.weight))  # the consumer weighs every input channel alike
    kept = {}
    for name in ("l1", "bn"):
        net = copy.deepcopy(m)
        old = net.c2.weight.detach().clone()
        cp.prune_channels_(net, torch.randn(1, 3, 8, 8), {"c1": 0.5}, criterion=name)
        kept[name] = [i for i in range(16) if any(torch.equal(net.c2.weight[:, j], old[:, i]) for j in range(8))]
    assert kept == {"l1": list(range(8, 16)), "bn": list(range(8))}


def test_lasso_object_settings_equal_the_older_keyword() -> None:
    torch.manual_seed(0)
    m = ConvChain().eval()
    calib = [(torch.randn(8, 3, 12, 12), None) for _ in range(2)]
    x = torch.randn(2, 3, 12, 12)
    a, b = copy.deepcopy(m), copy.deepcopy(m)
    cp.prune_channels_(a, x, {"c1": 0.5}, criterion="lasso", calibration=calib, lasso_samples=300)
    cp.prune_channels_(b, x, {"c1": 0.5}, criterion=Lasso(samples=300), calibration=calib)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_a_user_criterion_is_one_registered_class_usable_by_name_and_as_object() -> None:
    assert "test-keep-first" in CRITERIA.choices() and criterion_name(_KeepFirst()) == "test-keep-first"
    for criterion in ("test-keep-first", _KeepFirst()):
        torch.manual_seed(0)
        m = ConvChain().eval()
        old = m.c2.weight.detach().clone()
        rep = cp.prune_channels_(m, torch.randn(1, 3, 8, 8), {"c1": 0.5}, criterion=criterion)
        assert rep.channels == {"c1": (16, 8)} and torch.equal(m.c2.weight, old[:, :8])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: Lasso(samples=0), cp.ConfigError, "lasso samples must be a positive integer"),
        (lambda: Lasso(samples=2.5), cp.ConfigError, "lasso samples"),
        (lambda: Lasso(seed=-1), cp.ConfigError, "lasso seed"),
        (lambda: get_criterion("lassso"), cp.ConfigError, r"unknown pruning criterion 'lassso'; did you mean lasso"),
        (lambda: get_criterion(3), cp.ConfigError, "criterion must be a registered name"),
        (lambda: register_criterion("l1")(L1Norm), ValueError, "already registered"),
        (lambda: register_criterion("not-a-criterion")(int), TypeError, "PruningCriterion"),
    ],
)
def test_bad_criteria_are_refused(make: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_a_criterion_needing_calibration_refuses_to_start_without_it() -> None:
    m = ConvChain()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(cp.ConfigError, match="criterion 'lasso' needs calibration batches"):
        cp.prune_channels_(m, torch.randn(1, 3, 8, 8), 0.5, criterion=Lasso(samples=100))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


def test_the_criteria_table_loads_without_pytorch() -> None:
    """The command line reads --criterion choices from it while building its parser."""
    code = "import sys, convpress.compress.criteria as c; c.CRITERIA.names(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_command_line_offers_every_registered_criterion(capsys: pytest.CaptureFixture[str]) -> None:
    from convpress.cli.main import build_parser

    parser = build_parser()
    args = parser.parse_args(["accelerate", "resnet18", "-o", "x.cpz", "--criterion", "test-keep-first"])
    assert args.criterion == "test-keep-first"
    with pytest.raises(SystemExit):
        parser.parse_args(["accelerate", "resnet18", "-o", "x.cpz", "--criterion", "l3"])
    assert "invalid choice: 'l3'" in capsys.readouterr().err
