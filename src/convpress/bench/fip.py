"""``convpress bench fip``: shipped fip networks against their reference operators, and how cost grows.

1. For every operator with shipped weights, on the TEST photos (coffee, rocket; never used for
   training) resized to about one megapixel: time of the reference operator, time of the
   network (median after warm-up), their ratio, and PSNR / SSIM of the network's output
   against the operator's (float outputs in [0, 1]).
2. Cost growth: time at 4 MP divided by time at 1 MP for the plain CAN24 and for the fast
   variant (gf-can24), timed in interleaved rounds.

Targets (issue 4): PSNR >= 30 dB per operator; network >= 10x faster than the reference for
L0, RTV and WLS, faster for every shipped operator.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import numpy as np
import torch

from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, median_time, paired_times
from convpress.core.progress import progress_bar
from convpress.data.photos import TEST_PHOTOS, bundled_photo
from convpress.fip.apply import apply_network, run_reference
from convpress.fip.train import psnr
from convpress.fip.weights import load_network, shipped_operators, shipped_weights
from convpress.models import create_model

__all__ = ["run", "to_markdown", "test_images"]

TEN_X = ("l0", "rtv", "wls")


def test_images(megapixels: float) -> list[tuple[str, torch.Tensor]]:
    """The TEST photos resized (bicubic) to about ``megapixels`` MP, as (3, H, W) tensors in [0, 1]."""
    import cv2

    out = []
    for name in TEST_PHOTOS:
        img = bundled_photo(name).permute(1, 2, 0).numpy()
        s = (megapixels * 1e6 / (img.shape[0] * img.shape[1])) ** 0.5
        size = (round(img.shape[1] * s), round(img.shape[0] * s))
        img = np.clip(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA), 0, 1)
        out.append((name, torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))))
    return out


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0))


def run(*, quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run the benchmark; ``quick`` uses 0.06 MP images and one repetition (smoke test only)."""

    t_start = time.perf_counter()
    mp = 0.06 if quick else 1.0
    images = test_images(mp)
    ops = shipped_operators()
    rows: list[dict[str, Any]] = []
    with progress_bar(len(ops) * len(images), "fip operators", enabled=progress) as bar:
        for op in ops:
            weights = shipped_weights(op)
            assert weights is not None  # shipped_operators() lists the operators with weights
            model, info = load_network(weights)
            per: list[dict[str, Any]] = []
            for name, img in images:
                t0 = time.perf_counter()
                ref = run_reference(op, img)
                t_ref = time.perf_counter() - t0
                net = apply_network(model, img)
                t_net = median_time(partial(apply_network, model, img), warmup=1, repeat=1 if quick else 3)
                per.append(
                    {
                        "photo": name,
                        "size": list(img.shape[1:]),
                        "reference_s": t_ref,
                        "network_s": t_net,
                        "psnr": psnr(net, ref),
                        "ssim": _ssim(net, ref),
                    }
                )
                bar.advance(1, info=f"{op} {name}: {per[-1]['psnr']:.1f} dB")
            t_ref = float(np.mean([p["reference_s"] for p in per]))
            t_net = float(np.mean([p["network_s"] for p in per]))
            rows.append(
                {
                    "operator": op,
                    "model": info["model"],
                    "reference_s": t_ref,
                    "network_s": t_net,
                    "speedup": t_ref / t_net,
                    "psnr": float(np.mean([p["psnr"] for p in per])),
                    "ssim": float(np.mean([p["ssim"] for p in per])),
                    "min_psnr": float(min(p["psnr"] for p in per)),
                    "photos": per,
                }
            )
    growth: list[dict[str, Any]] = []
    small, large = test_images(0.03 if quick else 1.0)[0][1], test_images(0.12 if quick else 4.0)[0][1]
    with progress_bar(2, "cost growth", enabled=progress) as bar:
        for name in ("can24", "gf-can24"):
            model = create_model(name).eval()
            t = paired_times(
                {"1": partial(apply_network, model, small), "4": partial(apply_network, model, large)},
                warmup=1,
                repeat=1 if quick else 3,
            )
            growth.append(
                {
                    "model": name,
                    "small_mp": small.shape[1] * small.shape[2] / 1e6,
                    "large_mp": large.shape[1] * large.shape[2] / 1e6,
                    "small_s": t["1"],
                    "large_s": t["4"],
                    "growth": t["4"] / t["1"],
                }
            )
            bar.advance(1, info=f"{name}: x{growth[-1]['growth']:.2f}")
    checks: list[dict[str, Any]] = []
    for r in rows:
        checks.append({"name": f"{r['operator']} PSNR", "value": f"{r['psnr']:.2f} dB", "target": ">= 30 dB", "passed": r["psnr"] >= 30.0})
        need = 10.0 if r["operator"] in TEN_X else 1.0
        checks.append(
            {
                "name": f"{r['operator']} speed-up",
                "value": f"{r['speedup']:.1f}x",
                "target": f">= {need:g}x" if need > 1 else "> 1x",
                "passed": r["speedup"] >= need if need > 1 else r["speedup"] > 1.0,
            }
        )
    return {
        "benchmark": "fip",
        "quick": quick,
        "environment": environment(),
        "megapixels": mp,
        "operators": rows,
        "growth": growth,
        "checks": checks,
        "seconds": time.perf_counter() - t_start,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env = result["environment"]
    lines = [
        "## Fast image processing (`convpress bench fip`)",
        "",
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']} ({env['torch_threads']} threads); "
        f"{result['seconds']:.0f} s{' (QUICK smoke run)' if result['quick'] else ''}. "
        f"TEST photos (coffee, rocket; not used for training) resized to about {result['megapixels']:g} MP; "
        "network = shipped weights, time = median of 3 after warm-up; reference = one run.",
        "",
        "| operator | network | reference | network time | speed-up | PSNR | min PSNR | SSIM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["operators"]:
        lines.append(
            f"| {r['operator']} | {r['model']} | {r['reference_s']:.2f} s | {r['network_s']:.3f} s | {r['speedup']:.1f}× | "
            f"{r['psnr']:.2f} dB | {r['min_psnr']:.2f} dB | {r['ssim']:.3f} |"
        )
    lines += [
        "",
        "**Cost growth** (same photo at about 1 MP and 4 MP, interleaved rounds):",
        "",
        "| model | time at 1 MP | time at 4 MP | 4 MP ÷ 1 MP |",
        "|---|---|---|---|",
    ]
    for g in result["growth"]:
        lines.append(f"| {g['model']} | {g['small_s']:.3f} s | {g['large_s']:.3f} s | {g['growth']:.2f} |")
    lines += ["", *checks_table(result["checks"])]
    return "\n".join(lines) + "\n"


def readme_summary(result: dict[str, Any]) -> str:
    """The README's one-paragraph summary of this result (inserted by benchmarks/make_benchmarks_md.py)."""
    ops = []
    for r in result["operators"]:
        miss = " (below the 30 dB target)" if r["psnr"] < 30 else ""
        ops.append(
            f"{r['operator'].upper() if len(r['operator']) <= 3 else r['operator']} "
            f"{r['speedup']:.{0 if r['speedup'] >= 10 else 1}f}× faster at {r['psnr']:.1f} dB{miss}"
        )
    g = {x["model"]: x for x in result["growth"]}
    text = (
        f"Measured (`benchmarks/results/fip.json`, TEST photos at {result['megapixels']:g} MP, "
        f"{result['environment']['cpu_count']} cores): network vs reference " + ", ".join(ops) + "."
    )
    if "gf-can24" in g and "can24" in g:
        text += (
            f" A {g['gf-can24']['small_mp']:.0f} MP image takes {g['gf-can24']['small_s']:.2f} s with `gf-can24` "
            f"against {g['can24']['small_s']:.1f} s with CAN24; from 1 to 4 MP their time grows "
            f"{g['gf-can24']['growth']:.2f}× and {g['can24']['growth']:.2f}×."
        )
    return text


BENCHMARKS.register(
    "fip",
    Benchmark(run, to_markdown, "shipped fip networks against their reference operators: PSNR and speed-up", readme_summary=readme_summary),
)
