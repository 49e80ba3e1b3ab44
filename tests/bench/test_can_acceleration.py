"""The CAN24 part of ``convpress bench acceleration`` in quick mode (the real run is in benchmarks/results)."""

from __future__ import annotations

import json


def test_quick_can_acceleration_prunes_factorizes_and_never_ends_worse_than_it_started() -> None:
    from convpress.bench.can_acceleration import run_can24

    r = run_can24(quick=True, progress=False)
    json.dumps(r)
    assert r["criterion"] == "lasso" and r["latency_dense_s"] > 0
    ch, lr = r["variants"]["channels"], r["variants"]["channels+lowrank"]
    assert set(map(tuple, ch["channels"].values())) == {(24, 12)}
    assert ch["macs_ratio"] < 0.3 and lr["macs_ratio"] <= ch["macs_ratio"] + 1e-9
    # a 3x3 conv 12 -> 12 split into 3x1 (12 -> k) + 1x3 (k -> 12) saves MACs only for k < 18
    assert lr["ranks"] and all(1 <= k < 18 for k in lr["ranks"].values())
    for v in (ch, lr):
        # the pruned copies are measured on the TEST photos: a real image, not a broken network
        assert 15 < v["psnr"] < 60 and v["latency_s"] > 0 and v["params"] < r["params_dense"]


def test_distillation_learns_and_keeps_its_best_state() -> None:
    # the fine-tuning step of the benchmark on its own: a student learns the teacher's map (the loss
    # falls by a stated margin), and it ends with the state whose validation MSE it reports
    import torch
    from torch import nn

    from convpress.bench.can_acceleration import _distill, _val_crops, _val_mse

    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(3, 200, 200, generator=g) for _ in range(3)]
    target = nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        data = [(x, target(x[None])[0].clamp(0, 1)) for x in xs]
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()
    student = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    val = _val_crops(data)
    fit = _distill(student, teacher, data, val, steps=30, lr=1e-2, progress=False, check_every=5)
    assert fit["val_mse_best"] < 0.7 * fit["val_mse_start"], fit
    assert _val_mse(student, val) == fit["val_mse_best"]  # the best state is the one loaded
