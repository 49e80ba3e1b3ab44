"""10,000 random mutations of a valid .cpz: each decodes to the exact original or is refused with FileFormatError."""

from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from tests.helpers.mutate import mutate, mutations
from torch import nn

import convpress as cp

_ORIGINAL: dict[str, bytes] = {}


def _valid_file(tmp: Path) -> bytes:
    if "data" not in _ORIGINAL:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10), nn.ReLU(), nn.Linear(10, 3))
        cp.prune_(m, 0.7)
        cp.quantize_(m, 4, bias_bits=3)
        cp.save(m, tmp / "f.cpz", arch=None)
        _ORIGINAL["data"] = (tmp / "f.cpz").read_bytes()
        _ORIGINAL["state"] = b"".join(v.numpy().tobytes() for v in cp.load(tmp / "f.cpz").values())
    return _ORIGINAL["data"]


MUTATIONS = mutations()


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(m=MUTATIONS)
def test_mutated_files_decode_exactly_or_are_refused(tmp_path_factory, m) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.getbasetemp()
    data = _valid_file(tmp)
    path = tmp / "mutant.cpz"
    path.write_bytes(mutate(data, *m))
    try:
        state = cp.load(path)
    except cp.FileFormatError:
        return
    # a mutation that survives must not change a single value (e.g. whitespace in the JSON)
    assert b"".join(v.numpy().tobytes() for v in state.values()) == _ORIGINAL["state"]
