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
        # fine-tuning keeps the best state on the fixed training crops: never worse than its start
        assert v["val_mse_best"] <= v["val_mse_start"]
        assert v["speedup"] > 0 and abs(v["psnr_loss"] - (r["psnr_dense"] - v["psnr"])) < 1e-9
