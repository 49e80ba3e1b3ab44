"""10,000 random mutations of a valid training checkpoint: each loads the exact original or is refused."""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from tests.helpers.mutate import mutate, mutations
from torch import nn

from convpress.core.checkpoint import load_checkpoint, save_checkpoint
from convpress.core.errors import FileFormatError

_ORIGINAL: dict[str, object] = {}


def _valid_file(tmp: Path) -> bytes:
    if "data" not in _ORIGINAL:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
        opt = torch.optim.Adam(model.parameters())
        model(torch.randn(2, 1, 4, 4)).sum().backward()
        opt.step()
        payload = {"epochs_done": 3, "model": model.state_dict(), "optimizer": opt.state_dict(), "losses": [0.5, 0.25]}
        save_checkpoint(tmp / "valid.ckpt", "finetune", payload)
        _ORIGINAL["data"] = (tmp / "valid.ckpt").read_bytes()
        _ORIGINAL["model"] = {k: v.clone() for k, v in model.state_dict().items()}
    return _ORIGINAL["data"]  # type: ignore[return-value]


MUTATIONS = mutations()


def test_the_unmutated_checkpoint_loads_exactly(tmp_path: Path) -> None:
    # without this, a loader that refuses everything would pass the fuzz test below
    path = tmp_path / "copy.ckpt"
    path.write_bytes(_valid_file(tmp_path))
    payload = load_checkpoint(path, "finetune")
    assert payload["epochs_done"] == 3 and payload["losses"] == [0.5, 0.25]
    original = _ORIGINAL["model"]
    assert payload["model"].keys() == original.keys()  # type: ignore[attr-defined]
    assert all(torch.equal(v, original[k]) for k, v in payload["model"].items())  # type: ignore[index]
    assert payload["optimizer"]["state"]  # the optimiser's moments travel too


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(m=MUTATIONS)
def test_mutated_checkpoints_load_exactly_or_are_refused(tmp_path_factory, m) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.getbasetemp()
    path = tmp / "mutant.ckpt"
    path.write_bytes(mutate(_valid_file(tmp), *m))
    try:
        payload = load_checkpoint(path, "finetune")
    except FileFormatError:
        return
    # a surviving mutation (e.g. JSON whitespace) must not change a single number
    assert payload["epochs_done"] == 3 and payload["losses"] == [0.5, 0.25]
    original = _ORIGINAL["model"]
    assert payload["model"].keys() == original.keys()  # type: ignore[attr-defined]
    for k, v in payload["model"].items():
        assert torch.equal(v, original[k])  # type: ignore[index]


def test_a_checkpoint_of_another_kind_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.ckpt", "fip-train", {"x": torch.ones(2)})
    try:
        load_checkpoint(tmp_path / "a.ckpt", "finetune")
    except FileFormatError as exc:
        assert "'fip-train' checkpoint" in str(exc)
    else:  # pragma: no cover - the assertion above must fire
        raise AssertionError("a checkpoint of another kind was accepted")
    torch.save({"x": torch.ones(2)}, tmp_path / "plain.pt")  # a bare torch.save file has no checksums
    try:
        load_checkpoint(tmp_path / "plain.pt", "finetune")
    except FileFormatError as exc:
        assert "not a convpress training checkpoint" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("a foreign file was accepted")
