"""``convpress bench fip``: the fip networks against their reference operators and against doing nothing.

1. **Quality, on photos never trained on**: every one of the ten operators runs on the test set
   (:func:`convpress.data.photos.held_out_photos`: the bundled coffee, rocket and motorcycle and
   the photographs of Debian's ``lomiri-wallpapers`` packages, long side 768). For each photo:
   the PSNR of the *untouched input* against the operator's output (how far the operator moves
   the photo: the trivial baseline), and, where a network ships, the network's PSNR and SSIM
   against the operator and its gain over the input in dB (the share of the operator's change
   that the network reproduces). An operator without a network is still measured, so the table
   shows all ten.
2. **Speed at 1 MP** (coffee resized to about one megapixel): one run of the reference against
   the network's median of three after a warm-up.
3. **Cost growth**: time at 4 MP divided by time at 1 MP for the plain CAN24 and for the fast
   variant (gf-can24), timed in interleaved rounds.

Named checks (issue 17): every operator ships a network that gains at least 6 dB over the input;
each network is at least 10x faster than its reference where the reference takes at least 1 s
at 1 MP, and faster otherwise; the mean PSNR over the ten operators is at least 33 dB (the
paper's is 36 dB); at least 8 test photos.

With ``--work-dir DIR`` the references of the quality photos (RTV and WLS take 30-40 s per
megapixel, most of the run) are kept in ``DIR/fip-references/``, keyed by the operator, its
parameters, its version and the photo's pixels, with the reference time measured when each was computed;
a later run reuses them and only re-runs the networks. The speed comparison at 1 MP always
times the reference again, in the same run as the network: a reference under 2 s as the network
is timed (the median of 3 runs after a warm-up), a slower one once.
"""

from __future__ import annotations

import hashlib
import io
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, median_time, paired_times
from convpress.core.atomic import atomic_write_bytes
from convpress.core.progress import progress_bar
from convpress.data.photos import TEST_PHOTOS, bundled_photo, held_out_photos, resize_long_side
from convpress.fip.apply import apply_network, run_reference
from convpress.fip.operators import get_operator, operator_names
from convpress.fip.train import psnr
from convpress.fip.weights import load_network, shipped_operators, shipped_weights
from convpress.models import create_model

__all__ = ["run", "to_markdown", "test_images", "test_photos"]

#: long side of the quality test photos
LONG_SIDE = 768
#: a network must gain this much over the untouched input (dB)
GAIN_DB = 6.0
#: mean PSNR over the ten operators (the paper reports 36 dB on MIT-Adobe 5K)
MEAN_PSNR_DB = 33.0
#: a reference that takes at least this long at 1 MP must be beaten 10x
SLOW_REFERENCE_S = 1.0
MIN_PHOTOS = 8


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


def test_photos(*, quick: bool = False) -> dict[str, torch.Tensor]:
    """The quality test set: :func:`held_out_photos` at long side :data:`LONG_SIDE` (quick: the two
    TEST photos at long side 128, for smoke runs)."""
    if quick:
        return {n: resize_long_side(bundled_photo(n), 128) for n in TEST_PHOTOS}
    return held_out_photos(long_side=LONG_SIDE)


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a.permute(1, 2, 0).numpy(), b.permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0))


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


#: references faster than this (seconds at 1 MP) are timed like the networks, by the median of 3 after a warm-up
FAST_REFERENCE_S = 2.0


def _reference(op: str, img: torch.Tensor, cache: Path | None) -> tuple[torch.Tensor, float]:
    """The operator's output on ``img`` (3, H, W) and the seconds per megapixel it took.

    With a cache folder, the output is stored there (keyed by the operator, its parameters, its version and
    the image's pixels) with the time measured when it was computed, and reused by later runs.
    """
    path = None
    if cache is not None:
        tag = get_operator(op).cache_tag()  # the operator, its parameters and version, as the training pairs are keyed
        key = hashlib.sha256(f"{tag}|{tuple(img.shape)}|".encode() + img.numpy().tobytes()).hexdigest()[:20]
        path = cache / "fip-references" / op / f"{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                return torch.from_numpy(z["reference"]), float(z["s_per_mp"])
    t0 = time.perf_counter()
    ref = run_reference(op, img)
    s_per_mp = (time.perf_counter() - t0) / (img.shape[1] * img.shape[2] / 1e6)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, reference=ref.numpy(), s_per_mp=np.float64(s_per_mp))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    return ref, s_per_mp


def run(*, quick: bool = False, progress: bool = False, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Run the benchmark; ``quick`` uses two small photos and one repetition (smoke test only).

    ``work_dir`` keeps the quality photos' references between runs (see the module docstring).
    """

    t_start = time.perf_counter()
    photos = test_photos(quick=quick)
    speed_name, speed_img = test_images(0.06 if quick else 1.0)[0]
    shipped = set(shipped_operators())
    ops = operator_names()
    rows: list[dict[str, Any]] = []
    with progress_bar(len(ops) * (len(photos) + 1), "fip operators", enabled=progress) as bar:
        for op in ops:
            weights = shipped_weights(op) if op in shipped else None
            model, info = load_network(weights) if weights is not None else (None, {"model": None})
            per: list[dict[str, Any]] = []
            for name, img in photos.items():
                ref, s_per_mp = _reference(op, img, Path(work_dir) if work_dir is not None else None)
                row: dict[str, Any] = {
                    "photo": name,
                    "size": list(img.shape[1:]),
                    "reference_s_per_mp": s_per_mp,
                    "input_psnr": psnr(img, ref),
                }
                if model is not None:
                    net = apply_network(model, img)
                    row |= {"psnr": psnr(net, ref), "ssim": _ssim(net, ref)}
                    row["gain_db"] = row["psnr"] - row["input_psnr"]
                per.append(row)
                info_text = f"{op} {name}: input {row['input_psnr']:.1f} dB" + (f", network {row['psnr']:.1f} dB" if model else "")
                bar.advance(1, info=info_text)
            entry: dict[str, Any] = {
                "operator": op,
                "model": info["model"],
                "network": model is not None,
                "input_psnr": _mean(per, "input_psnr"),
                "reference_s_per_mp": _mean(per, "reference_s_per_mp"),
                "photos": per,
            }
            if model is not None:  # speed is timed where there is a network to compare
                t0 = time.perf_counter()
                run_reference(op, speed_img)
                entry["reference_s"] = time.perf_counter() - t0
                if entry["reference_s"] < FAST_REFERENCE_S and not quick:
                    # a fast reference is timed as the network is: that first run was its warm-up,
                    # then the median of 3 (a single cold run is noisier than the ratio it feeds)
                    entry["reference_s"] = median_time(partial(run_reference, op, speed_img), warmup=0, repeat=3)
                t_net = median_time(partial(apply_network, model, speed_img), warmup=1, repeat=1 if quick else 3)
                entry |= {
                    "network_s": t_net,
                    "speedup": entry["reference_s"] / t_net,
                    "psnr": _mean(per, "psnr"),
                    "ssim": _mean(per, "ssim"),
                    "gain_db": _mean(per, "gain_db"),
                    "min_psnr": float(min(p["psnr"] for p in per)),
                    "min_gain_db": float(min(p["gain_db"] for p in per)),
                }
            rows.append(entry)
            bar.advance(1, info=f"{op}: speed at 1 MP")
    growth: list[dict[str, Any]] = []
    small, large = test_images(0.03 if quick else 1.0)[0][1], test_images(0.12 if quick else 4.0)[0][1]
    with progress_bar(2, "cost growth", enabled=progress) as bar:
        for name in ("can24", "gf-can24"):
            cmodel = create_model(name).eval()
            t = paired_times(
                {"1": partial(apply_network, cmodel, small), "4": partial(apply_network, cmodel, large)},
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
    return {
        "benchmark": "fip",
        "quick": quick,
        "environment": environment(),
        "long_side": 128 if quick else LONG_SIDE,
        "test_photos": list(photos),
        "speed_photo": speed_name,
        "speed_megapixels": speed_img.shape[1] * speed_img.shape[2] / 1e6,
        "operators": rows,
        "growth": growth,
        "checks": _checks(rows, len(photos)),
        "seconds": time.perf_counter() - t_start,
    }


def _checks(rows: list[dict[str, Any]], n_photos: int) -> list[dict[str, Any]]:
    """The named checks of issue 17 (an operator without a network fails its checks)."""
    checks: list[dict[str, Any]] = [
        {"name": "test photos never trained on", "value": str(n_photos), "target": f">= {MIN_PHOTOS}", "passed": n_photos >= MIN_PHOTOS}
    ]
    with_net = [r for r in rows if r["network"]]
    checks.append(
        {
            "name": "operators with a shipped network",
            "value": f"{len(with_net)} of {len(rows)}",
            "target": f"{len(rows)} of {len(rows)}",
            "passed": len(with_net) == len(rows),
        }
    )
    for r in rows:
        if not r["network"]:
            checks.append(
                {"name": f"{r['operator']} gain over the input", "value": "no network", "target": f">= +{GAIN_DB:g} dB", "passed": False}
            )
            continue
        checks.append(
            {
                "name": f"{r['operator']} gain over the input",
                "value": f"{r['gain_db']:+.2f} dB ({r['input_psnr']:.2f} -> {r['psnr']:.2f})",
                "target": f">= +{GAIN_DB:g} dB",
                "passed": r["gain_db"] >= GAIN_DB,
            }
        )
        slow = r["reference_s"] >= SLOW_REFERENCE_S
        checks.append(
            {
                "name": f"{r['operator']} speed-up at 1 MP",
                "value": f"{r['speedup']:.1f}x (reference {r['reference_s']:.2f} s)",
                "target": ">= 10x" if slow else "> 1x",
                "passed": r["speedup"] >= 10.0 if slow else r["speedup"] > 1.0,
            }
        )
    mean = float(np.mean([r["psnr"] for r in with_net])) if with_net else float("nan")
    checks.append(
        {
            "name": "mean PSNR over the ten operators",
            "value": f"{mean:.2f} dB over {len(with_net)} of {len(rows)}",
            "target": f">= {MEAN_PSNR_DB:g} dB over all (goal 36)",
            "passed": len(with_net) == len(rows) and mean >= MEAN_PSNR_DB,
        }
    )
    return checks


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env = result["environment"]
    lines = [
        "## Fast image processing (`convpress bench fip`)",
        "",
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']} ({env['torch_threads']} threads); "
        f"{result['seconds']:.0f} s{' (QUICK smoke run)' if result['quick'] else ''}. "
        f"Quality on {len(result['test_photos'])} photos never trained on (long side {result['long_side']}): "
        "PSNR against the reference operator of the untouched input (the trivial baseline) and of the network, "
        "and the network's gain over the input. Speed on "
        f"{result['speed_photo']} at {result['speed_megapixels']:.2f} MP: reference = one run, network = median of 3 after warm-up.",
        "",
        "| operator | network | input PSNR | network PSNR | gain | min gain | SSIM | reference at 1 MP | network | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["operators"]:
        if r["network"]:
            lines.append(
                f"| {r['operator']} | {r['model']} | {r['input_psnr']:.2f} dB | {r['psnr']:.2f} dB | {r['gain_db']:+.2f} dB | "
                f"{r['min_gain_db']:+.2f} dB | {r['ssim']:.3f} | {r['reference_s']:.2f} s | {r['network_s']:.3f} s | {r['speedup']:.1f}× |"
            )
        else:
            per_mp = f"{r['reference_s_per_mp']:.2f} s (per MP at {result['long_side']} px)"
            lines.append(f"| {r['operator']} | none yet | {r['input_psnr']:.2f} dB | – | – | – | – | {per_mp} | – | – |")
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
        if not r["network"]:
            continue
        name = r["operator"].upper() if len(r["operator"]) <= 3 else r["operator"]
        ops.append(
            f"{name} {r['psnr']:.1f} dB against {r['input_psnr']:.1f} dB for the untouched input "
            f"({r['gain_db']:+.1f} dB), {r['speedup']:.{0 if r['speedup'] >= 10 else 1}f}× faster"
        )
    missing = [r["operator"] for r in result["operators"] if not r["network"]]
    text = (
        f"Measured (`benchmarks/results/fip.json`, {len(result['test_photos'])} photos never trained on, "
        f"{result['environment']['cpu_count']} cores): network vs reference operator: " + "; ".join(ops) + "."
    )
    if missing:
        text += f" No network ships yet for {', '.join(missing)}."
    g = {x["model"]: x for x in result["growth"]}
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
