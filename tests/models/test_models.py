"""Model registry, architecture lookup across convpress/torchvision/timm, checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.core.registry import Registry
from convpress.models import check_arch, model_names, resolve_model
from convpress.models.checkpoint import load_into, read_state_dict


def test_lenets_have_the_papers_parameter_counts() -> None:
    counts = {n: sum(p.numel() for p in cp.create_model(n).parameters()) for n in ("lenet-300-100", "lenet-5")}
    assert counts == {"lenet-300-100": 266_610, "lenet-5": 431_080}
    assert cp.create_model("lenet-5")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_registry_refuses_duplicates_and_suggests_names() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(cp.ConfigError, match="did you mean alpha"):
        reg.get("alpah")


def test_arch_lookup_spans_convpress_torchvision_and_timm() -> None:
    assert {"lenet-300-100", "lenet-5"} <= set(model_names())
    assert check_arch("lenet-5") == "convpress"
    assert check_arch("resnet18") == "torchvision"
    assert check_arch("resnet10t") == "timm"
    m = resolve_model("resnet10t", num_classes=3)
    assert m.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    with pytest.raises(cp.ConfigError, match="unknown architecture"):
        check_arch("resnet-9000")


def test_checkpoints_in_every_supported_wrapping(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = cp.create_model("lenet-300-100").state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "a.pt")
    save_file(state, str(tmp_path / "b.safetensors"))
    cp.save(cp.create_model("lenet-300-100"), tmp_path / "c.cpz")
    for name in ("a.pt", "b.safetensors", "c.cpz"):
        got = read_state_dict(tmp_path / name)
        assert got.keys() == state.keys()
        load_into(cp.create_model("lenet-300-100"), got, arch="lenet-300-100", source=name)


def test_bad_checkpoints_are_named(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(cp.FileFormatError, match="not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00junk")
    with pytest.raises(cp.FileFormatError, match="safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    torch.save({"lr": 0.1}, tmp_path / "nostate.pt")
    with pytest.raises(cp.FileFormatError, match="does not hold a state_dict"):
        read_state_dict(tmp_path / "nostate.pt")
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pt")
    state = cp.create_model("lenet-300-100", num_classes=4).state_dict()
    with pytest.raises(cp.ConfigError, match="wrong shapes.*num-classes"):
        load_into(cp.create_model("lenet-300-100"), state, arch="lenet-300-100", source="x")
