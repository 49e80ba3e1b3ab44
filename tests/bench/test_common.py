"""Timing helpers of the benchmarks (counts only: tests never assert wall-clock times)."""

from __future__ import annotations

import time

from convpress.bench._common import paired_times


def test_paired_times_repeats_fast_calls_within_a_round() -> None:
    calls = {"fast": 0, "slow": 0}

    def fast() -> None:
        calls["fast"] += 1

    def slow() -> None:
        calls["slow"] += 1
        time.sleep(0.03)

    out = paired_times({"fast": fast, "slow": slow}, warmup=2, repeat=3, min_time=0.02)
    assert set(out) == {"fast", "slow"} and all(v > 0 for v in out.values())
    assert calls["slow"] == 2 + 3  # slower than min_time: once per round
    assert calls["fast"] > 2 + 3 * 10  # a no-op is repeated many times per round
    calls.update(fast=0, slow=0)
    paired_times({"fast": fast, "slow": slow}, warmup=2, repeat=3)  # default: once per round
    assert calls == {"fast": 5, "slow": 5}


def test_every_benchmark_the_cli_offers_is_registered_with_what_the_cli_calls() -> None:
    from convpress.bench import BENCHMARKS
    from convpress.cli.main import build_parser

    assert BENCHMARKS.names() and set(BENCHMARKS.names()) == {
        "acceleration",
        "codec",
        "data-distillation",
        "deep-compression",
        "fip",
        "layers",
        "segmentation",
    }
    for name in BENCHMARKS.names():
        bench = BENCHMARKS.get(name)
        assert callable(bench.run) and callable(bench.to_markdown) and bench.summary
        assert build_parser().parse_args(["bench", name, "--json", "x.json"]).name == name
