"""``convpress bench acceleration``: does compression make a model *faster* on this CPU?

A torchvision ResNet-18 is trained on the bundled MNIST digits (resized to 64x64 RGB), then
compressed several ways from the same dense weights: structured channel pruning by three
criteria (filter L1, BatchNorm gamma after sparsity training, LASSO reconstruction), and
low-rank factorization; each is fine-tuned with knowledge distillation from the dense model
(each variant is one call of :func:`convpress.compress.accelerate.accelerate`, the pipeline
behind ``convpress accelerate``). For each we measure held-out accuracy, MACs, and median CPU latency at batch 1 and 32 in
PyTorch and onnxruntime (fp32, int8 dynamic, int8 static), all in the same run, and check that
the ONNX export matches PyTorch.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from convpress.analysis.metrics import accuracy
from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, paired_times
from convpress.bench.can_acceleration import run_can24
from convpress.compress.accelerate import AccelerateConfig, accelerate
from convpress.compress.export import export_onnx, onnx_max_error, onnx_session, quantize_onnx
from convpress.compress.finetune import finetune
from convpress.compress.structured import count_macs
from convpress.data.mnist import load_mnist, resized

__all__ = ["run", "to_markdown"]

SIZE = 64
ONNX_TOL = 1e-4


def _accuracy_and_exports(
    model: torch.nn.Module, test: DataLoader, tmp: Path, calib: list[np.ndarray], tag: str, *, acc: float | None = None
) -> dict[str, Any]:
    """Accuracy (``acc`` if already measured), cost, and the ONNX files (fp32, int8 dynamic, int8 static) with their accuracy."""

    model.eval()
    x32 = next(iter(test))[0][:32]
    out: dict[str, Any] = {"accuracy": acc if acc is not None else accuracy(model, test)}
    out["macs"], out["params"] = count_macs(model, x32[:1])
    onnx_path = export_onnx(model, x32[:1], tmp / f"{tag}.onnx")
    out["onnx_max_error"] = onnx_max_error(model, onnx_path, x32)
    files = {
        "onnx_fp32": onnx_path,
        "onnx_int8_dynamic": quantize_onnx(onnx_path, tmp / f"{tag}.dyn.onnx", mode="dynamic"),
        "onnx_int8_static": quantize_onnx(onnx_path, tmp / f"{tag}.st.onnx", mode="static", calibration=calib),
    }
    for name, path in files.items():
        if name == "onnx_fp32":
            continue
        sess = onnx_session(path, threads=torch.get_num_threads())
        correct = total = 0
        for xs, ys in test:
            correct += int((sess.run(None, {"input": xs.numpy()})[0].argmax(1) == ys.numpy()).sum())
            total += len(ys)
        out[f"{name}_accuracy"] = 100.0 * correct / total
    out["_files"] = {k: str(v) for k, v in files.items()}
    return out


def _time_all(
    models: dict[str, torch.nn.Module], files: dict[str, dict[str, str]], x32: torch.Tensor, repeat: int
) -> dict[str, dict[str, float]]:
    """Latency of every variant and runtime at batch 1 and 32, interleaved round by round."""

    fns: dict[tuple[str, str], Any] = {}
    for b in (1, 32):
        xb = x32[:b]
        xn = xb.numpy()
        for name, model in models.items():
            model.eval()
            fns[(name, f"torch_b{b}_s")] = lambda m=model, xb=xb: m(xb)
            for runtime, path in files[name].items():
                sess = onnx_session(path, threads=torch.get_num_threads())
                fns[(name, f"{runtime}_b{b}_s")] = lambda s=sess, xn=xn: s.run(None, {"input": xn})
    with torch.no_grad():
        medians = paired_times({f"{k[0]}|{k[1]}": f for k, f in fns.items()}, warmup=2, repeat=repeat, min_time=0.05)
    out: dict[str, dict[str, float]] = {name: {} for name in models}
    for key, t in medians.items():
        name, metric = key.split("|")
        out[name][metric] = t
    return out


def run(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; ``quick`` trains for one short epoch (a smoke test)."""
    import torchvision

    torch.manual_seed(0)
    t_start = time.perf_counter()
    train_set: Dataset[Any] = resized(load_mnist("train"), size=SIZE)
    test_set: Dataset[Any] = resized(load_mnist("test"), size=SIZE)
    if quick:
        train_set, test_set = Subset(train_set, range(256)), Subset(test_set, range(128))
    train = DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    test = DataLoader(test_set, batch_size=100)
    loss = torch.nn.functional.cross_entropy
    epochs, ft_epochs, repeat = (1, 1, 3) if quick else (4, 3, 25)
    calib = [next(iter(train))[0][:16].numpy() for _ in range(4)]
    example = next(iter(test))[0][:2]

    dense = torchvision.models.resnet18(num_classes=10)
    finetune(dense, train, loss, epochs, 1e-3, progress=progress, description="train dense ResNet-18")
    variants: dict[str, dict[str, Any]] = {}
    models: dict[str, torch.nn.Module] = {"dense": dense}
    with tempfile.TemporaryDirectory(prefix="convpress-accel-") as tmpdir:
        tmp = Path(tmpdir)
        variants["dense"] = _accuracy_and_exports(dense, test, tmp, calib, "dense") | {"method": "dense ResNet-18 (baseline)"}

        # each variant: one call of the library's pipeline on a copy of the dense model (distilled from
        # it); its latency is not measured there but below, interleaved across all variants

        common: dict[str, Any] = {"epochs": ft_epochs, "lr": 3e-4, "latency_batches": (), "score_before_finetune": True}
        recipes: dict[str, tuple[str, AccelerateConfig, Callable[[], list[Any]] | None]] = {
            "channels-l1": (
                "50% of channels removed, filter L1 norm (Li et al.)",
                AccelerateConfig(channels=0.5, criterion="l1", **common),
                None,
            ),
            "channels-bn": (
                "50% of channels removed, BN gamma after 1 epoch of L1 sparsity training (Network Slimming)",
                AccelerateConfig(channels=0.5, criterion="bn", sparsity_epochs=1, sparsity_lr=1e-4, bn_l1=1e-4, **common),
                None,
            ),
            "channels-lasso": (
                "50% of the first conv of each block removed, LASSO + least squares (He et al.)",
                AccelerateConfig(channels=0.5, criterion="lasso", **common),
                lambda: [next(iter(train)) for _ in range(4)],
            ),
            "lowrank": ("3x3 convs as 3x1 + 1x3 and FC by SVD, 90% of spectral energy", AccelerateConfig(lowrank=0.9, **common), None),
        }

        for name, (method, config, calibration) in recipes.items():
            model = copy.deepcopy(dense)
            t0 = time.perf_counter()
            rep = accelerate(
                model,
                config,
                train=train,
                example=example,
                evaluate=lambda m: accuracy(m, test),
                loss_fn=loss,
                calibration=calibration() if calibration is not None else None,
                progress=progress,
            )
            res = _accuracy_and_exports(model, test, tmp, calib, name, acc=rep.after.score)
            res["method"] = method
            res["accuracy_before_finetune"] = rep.score_before_finetune
            res["compress_seconds"] = time.perf_counter() - t0
            method_report = rep.channels if rep.channels is not None else rep.lowrank  # each variant uses one method
            res["skipped_layers"] = dict(method_report.skipped) if method_report is not None else {}
            variants[name] = res
            models[name] = model
        # all timing happens here, after training, interleaved across variants
        x32 = next(iter(test))[0][:32]
        files = {name: v.pop("_files") for name, v in variants.items()}
        for name, lat in _time_all(models, files, x32, repeat).items():
            variants[name].update(lat)

    base = variants["dense"]
    for v in variants.values():
        v["mac_ratio"] = v["macs"] / base["macs"]
        for key in [k for k in v if k.endswith("_s") and k.startswith(("torch_", "onnx_"))]:
            v[key[: -len("_s")] + "_ratio"] = v[key] / base[key]  # not str.replace: "_static" holds "_s" too
        v["accuracy_loss"] = base["accuracy"] - v["accuracy"]
    structured = [n for n in variants if n.startswith("channels-")]
    best = min(
        structured,
        key=lambda n: max(variants[n]["torch_b1_ratio"], variants[n]["torch_b32_ratio"]) + (10 if variants[n]["accuracy_loss"] > 1 else 0),
    )
    b = variants[best]
    worst_onnx = max(v["onnx_max_error"] for v in variants.values())

    can = run_can24(quick=quick, progress=progress)  # after the ResNet timing, so the two never overlap
    lr = can["variants"]["channels+lowrank"]
    checks = [
        {
            "name": f"ResNet-18 compressed ({best}) latency <= 0.5x dense, batch 1 (PyTorch)",
            "value": round(b["torch_b1_ratio"], 3),
            "target": 0.5,
            "passed": b["torch_b1_ratio"] <= 0.5,
        },
        {
            "name": f"ResNet-18 compressed ({best}) latency <= 0.5x dense, batch 32 (PyTorch)",
            "value": round(b["torch_b32_ratio"], 3),
            "target": 0.5,
            "passed": b["torch_b32_ratio"] <= 0.5,
        },
        {
            "name": f"ResNet-18 compressed ({best}) accuracy loss <= 1 point",
            "value": round(b["accuracy_loss"], 2),
            "target": 1.0,
            "passed": b["accuracy_loss"] <= 1.0,
        },
        {
            "name": f"every ONNX export matches PyTorch to {ONNX_TOL:g}",
            "value": worst_onnx,
            "target": ONNX_TOL,
            "passed": worst_onnx <= ONNX_TOL,
        },
        {
            "name": "CAN24 >= 2x faster after structured pruning + low-rank (1 MP, batch 1)",
            "value": round(lr["speedup"], 2),
            "target": 2.0,
            "passed": lr["speedup"] >= 2.0,
        },
        {
            "name": "CAN24 pruned + low-rank: PSNR loss <= 0.5 dB",
            "value": round(lr["psnr_loss"], 2),
            "target": 0.5,
            "passed": lr["psnr_loss"] <= 0.5,
        },
    ]
    return {
        "benchmark": "acceleration",
        "quick": quick,
        "environment": environment(),
        "seconds": time.perf_counter() - t_start,
        "protocol": (
            f"torchvision ResNet-18 (10 classes) trained {epochs} epochs on the bundled MNIST training split resized to "
            f"{SIZE}x{SIZE} RGB; accuracy on the 1,000 held-out digits; each compressed variant fine-tuned {ft_epochs} epochs "
            f"with distillation from the dense model; latency = median of {repeat} rounds after warm-up in which every "
            "variant and runtime runs (interleaved; calls under 50 ms repeated back to back to fill 50 ms, time per call), "
            f"{torch.get_num_threads()} threads, ratios against the dense model "
            f"measured in the same rounds"
        ),
        "best_structured": best,
        "variants": variants,
        "checks": checks,
        "can24": can,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env = result["environment"]
    lines = ["## Compression that makes models faster (`convpress bench acceleration`)", ""]
    lines.append(
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}; {result['seconds'] / 60:.1f} minutes"
        f"{' (QUICK smoke run: figures not meaningful)' if result['quick'] else ''}. {result['protocol']}."
    )
    lines += [
        "",
        "| variant | method | accuracy (before FT) | MACs | torch b1 | torch b32 | ORT fp32 b1 / b32 | ORT int8 dyn b1 / b32 "
        "(acc) | ORT int8 static b1 / b32 (acc) | ONNX error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        before = f" ({v['accuracy_before_finetune']:.1f})" if "accuracy_before_finetune" in v else ""
        lines.append(
            f"| {name} | {v['method']} | {v['accuracy']:.2f}%{before} | {v['macs'] / 1e6:.0f}M ({v['mac_ratio']:.2f}×) | "
            f"{v['torch_b1_s'] * 1e3:.2f} ms ({v['torch_b1_ratio']:.2f}×) | {v['torch_b32_s'] * 1e3:.1f} ms "
            f"({v['torch_b32_ratio']:.2f}×) | "
            f"{v['onnx_fp32_b1_s'] * 1e3:.2f} / {v['onnx_fp32_b32_s'] * 1e3:.1f} ms | "
            f"{v['onnx_int8_dynamic_b1_s'] * 1e3:.2f} / {v['onnx_int8_dynamic_b32_s'] * 1e3:.1f} ms "
            f"({v['onnx_int8_dynamic_accuracy']:.1f}%) | "
            f"{v['onnx_int8_static_b1_s'] * 1e3:.2f} / {v['onnx_int8_static_b32_s'] * 1e3:.1f} ms "
            f"({v['onnx_int8_static_accuracy']:.1f}%) | "
            f"{v['onnx_max_error']:.1e} |"
        )
    lines += ["", "Ratios in parentheses are against the dense model in the same run (lower is faster).", ""]
    c = result["can24"]
    if "variants" not in c:  # results written before the CAN24 part existed
        lines.append(f"CAN24: {c.get('status', 'not measured')}.")
    else:
        lines += [
            f"**CAN24** ({c['protocol']}):",
            "",
            "| model | params | MACs | 3x3 convs split (ranks) | PSNR vs operator (before fine-tuning) | latency 1 MP |",
            "|---|---|---|---|---|---|",
            f"| dense CAN24 | {c['params_dense']:,} | 1.00× | – | {c['psnr_dense']:.2f} dB | {c['latency_dense_s']:.3f} s |",
        ]
        for name, v in c["variants"].items():
            split = ", ".join(f"{k}: {r}" for k, r in v["ranks"].items()) or ("none within the budget" if "lowrank" in name else "–")
            lines.append(
                f"| {name} | {v['params']:,} | {v['macs_ratio']:.2f}× | {split} | {v['psnr']:.2f} dB ({v['psnr_before_finetune']:.2f}) | "
                f"{v['latency_s']:.3f} s ({v['speedup']:.2f}× faster) |"
            )
    lines += ["", *checks_table(result["checks"])]
    return "\n".join(lines) + "\n"


BENCHMARKS.register(
    "acceleration", Benchmark(run, to_markdown, "does compression make ResNet-18 and CAN24 faster on this CPU (latency ratios, accuracy)")
)
