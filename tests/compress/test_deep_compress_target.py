"""The one call: ``deep_compress(model, target_ratio=R, max_drop=D)`` plans, compresses and keeps its promises."""

from __future__ import annotations

import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

import convpress as cp
from convpress.analysis.metrics import accuracy
from convpress.compress.pipeline import PLANNED_TRAINING
from convpress.compress.plan import measure_sensitivity, plan_for_ratio
from convpress.compress.state import compression_of, dense_state_dict
from convpress.data.mnist import load_mnist

FAST = replace(PLANNED_TRAINING, prune_epochs=2, quant_epochs=1)
LOSS = nn.functional.cross_entropy


@pytest.fixture(scope="module")
def digits() -> tuple[DataLoader, DataLoader]:
    train = Subset(load_mnist("train"), range(0, 4000, 8))  # 500 digits
    test = Subset(load_mnist("test"), range(0, 1000, 4))  # 250 held out
    gen = torch.Generator().manual_seed(0)
    return DataLoader(train, batch_size=50, shuffle=True, generator=gen), DataLoader(test, batch_size=250)


@pytest.fixture(scope="module")
def trained(digits: tuple[DataLoader, DataLoader]) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cp.finetune(model, digits[0], LOSS, 3, 3e-3, progress=False)
    return model


def _dense_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in dense_state_dict(model).values())


class _NoWork:
    """A loader that fails the test if anything reads it: errors must come before any work."""

    def __iter__(self) -> Any:
        raise AssertionError("the loader was read before the settings were checked")


def _compress(model: nn.Module, test: DataLoader, **kw: Any) -> cp.PipelineReport:
    kw.setdefault("cfg", FAST)
    return cp.deep_compress(model, loss_fn=LOSS, evaluate=partial(accuracy, loader=test), progress=False, **kw)


def test_one_call_reaches_the_ratio_on_the_real_file(trained: nn.Module, digits: tuple[DataLoader, DataLoader], tmp_path: Path) -> None:
    import copy

    model = copy.deepcopy(trained)
    dense = _dense_bytes(model)
    out = tmp_path / "mlp.cpz"
    lines: list[str] = []
    rep = _compress(model, digits[1], train_loader=digits[0], target_ratio=8.0, max_drop=5.0, out_path=out, log=lines.append)
    assert rep.target_met and rep.within_drop and rep.path == str(out)
    assert dense / out.stat().st_size >= 8.0  # the file on disk, not an estimate
    assert rep.totals["final"] == out.stat().st_size and rep.drop() <= 5.0
    assert rep.plan is not None and set(rep.plan["layers"]) == {"1", "3", "5"}
    assert any("sparsity" in line and "bits" in line for line in lines)  # the plan is printed
    # the model in memory is the compressed one, and the file loads back bit-exact
    assert all(compression_of(m, "weight") is not None for m in (model[1], model[3], model[5]))
    loaded = cp.load(out)
    assert rep.bit_exact and all(torch.equal(loaded[k], v) for k, v in dense_state_dict(model).items())


def test_impossible_ratio_within_a_tiny_drop_writes_nothing_worse(
    trained: nn.Module, digits: tuple[DataLoader, DataLoader], tmp_path: Path
) -> None:
    import copy

    model = copy.deepcopy(trained)
    out = tmp_path / "mine.cpz"
    out.write_bytes(b"the user's earlier file")
    rep = _compress(
        model, digits[1], train_loader=digits[0], target_ratio=3000.0, max_drop=0.0, max_attempts=2, out_path=out, overwrite=True
    )
    assert rep.target_met is False and len(rep.attempts) == 2
    if rep.within_drop:  # a gentler attempt kept the metric: that file, and it is within the drop
        assert rep.drop() <= 0.0 and out.stat().st_size == rep.totals["final"]
    else:  # nothing within the drop: the user's file and model are untouched
        assert all(a["drop"] > 0.0 for a in rep.attempts)
        assert out.read_bytes() == b"the user's earlier file" and rep.path is None
        assert all(compression_of(m, "weight") is None for m in (model[1], model[3], model[5]))


def test_plan_fits_the_budget_with_the_real_coder(trained: nn.Module, digits: tuple[DataLoader, DataLoader]) -> None:
    sens = measure_sensitivity(trained, digits[0], LOSS, probe_batches=2)
    # the model is restored exactly after measuring
    assert all(compression_of(m, "weight") is None for m in (trained[1], trained[3], trained[5]))
    dense = _dense_bytes(trained)
    small, large = (plan_for_ratio(trained, sens, r, dense_bytes=dense) for r in (20.0, 5.0))
    assert small.estimated_bytes <= dense / 20.0 and large.estimated_bytes <= dense / 5.0
    assert sum(small.prune.values()) > sum(large.prune.values())  # a smaller file prunes more
    assert small.predicted_loss >= large.predicted_loss
    # no layer below the floor of weights per output (the last, 32 -> 10, keeps >= 10 each)
    assert (1 - small.prune["5"]) * 320 >= 10 * 10 or small.prune["5"] == 0.0


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"target_ratio": 1.0}, "greater than 1"),
        ({"target_ratio": 0.5}, "greater than 1"),
        ({"target_ratio": "60"}, "greater than 1"),
        ({"target_ratio": 10.0, "max_drop": -0.5}, "non-negative"),
        ({"target_ratio": 10.0, "max_attempts": 0}, "max attempts"),
    ],
)
def test_impossible_targets_are_refused_before_any_work(kw: dict[str, Any], match: str, tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(cp.ConfigError, match=match):
        cp.deep_compress(model, train_loader=_NoWork(), loss_fn=LOSS, evaluate=lambda m: 1.0, out_path=tmp_path / "x.cpz", **kw)
    assert not (tmp_path / "x.cpz").exists()


def test_a_model_without_weight_layers_is_refused() -> None:
    with pytest.raises(cp.ConfigError, match="no Linear or convolution"):
        cp.deep_compress(nn.Sequential(nn.ReLU()), train_loader=_NoWork(), loss_fn=LOSS, evaluate=lambda m: 1.0, target_ratio=10.0)


def test_an_already_pruned_model_is_refused_for_a_target() -> None:
    model = nn.Sequential(nn.Linear(40, 30))
    cp.prune_(model, 0.5)
    with pytest.raises(cp.ConfigError, match="already pruned"):
        cp.deep_compress(model, train_loader=_NoWork(), loss_fn=LOSS, evaluate=lambda m: 1.0, target_ratio=10.0)


def test_an_evaluate_that_returns_no_number_is_named() -> None:
    def my_eval(m: nn.Module) -> Any:
        return {"acc": 0.9}

    with pytest.raises(cp.ConfigError, match="my_eval.*must return a number"):
        cp.deep_compress(nn.Sequential(nn.Linear(4, 3)), train_loader=_NoWork(), loss_fn=LOSS, evaluate=my_eval, target_ratio=10.0)


def test_uniform_prune_warns_for_a_layer_left_with_few_weights_per_output() -> None:
    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100), nn.ReLU(), nn.Linear(100, 10))
    with pytest.warns(cp.ConvpressWarning, match="layer '4' with 8.0 weights per output"):
        cp.prune_(model, 0.92)
    fresh = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 100), nn.ReLU(), nn.Linear(100, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cp.prune_(fresh, 0.8)  # 20 per output: fine
        cp.prune_(fresh, {"0": 0.95, "2": 0.95, "4": 0.92})  # per-layer amounts are the user's choice


def test_a_fixed_config_beyond_max_drop_is_not_written(trained: nn.Module, digits: tuple[DataLoader, DataLoader], tmp_path: Path) -> None:
    import copy

    out = tmp_path / "x.cpz"
    cfg = replace(FAST, prune={"1": 0.995, "3": 0.9, "5": 0.5}, schedule="oneshot", prune_epochs=1, bits={"1": 1, "3": 1, "5": 1})
    rep = _compress(copy.deepcopy(trained), digits[1], cfg=cfg, train_loader=digits[0], max_drop=0.0, out_path=out)
    assert rep.drop() > 0.0 and not rep.within_drop
    assert not out.exists() and rep.path is None


def test_retries_never_repeat_a_plan(trained: nn.Module, digits: tuple[DataLoader, DataLoader]) -> None:
    """Issue 19: a retry whose ratio gives an earlier attempt's plan again would only repeat its (deterministic) result.

    At 3000x every plan is the smallest one allowed: the retry at the same ratio with finer codebooks
    gives a new plan, and every gentler ratio after it gives that plan again, so the third attempt
    must be skipped rather than run twice.
    """
    import copy

    lines: list[str] = []
    rep = _compress(
        copy.deepcopy(trained), digits[1], train_loader=digits[0], target_ratio=3000.0, max_drop=0.0, max_attempts=3, log=lines.append
    )
    plans = [a["plan"]["layers"] for a in rep.attempts]
    assert len(plans) >= 2 and all(plan not in plans[:i] for i, plan in enumerate(plans))
    assert len(plans) == 3 or any("no new plan" in line for line in lines)  # fewer attempts only when no new plan is left
