"""``convpress bench segmentation``: ShuffleSeg's speed and accuracy against LR-ASPP and FCN-ResNet50.

Protocol (one run; every model timed with the same threads, in interleaved rounds):

1. **Accuracy.** ShuffleSeg (``shuffleseg``: ShuffleNet v1 g=3, width 0.5, UNet-like decoder) and
   torchvision's LR-ASPP MobileNetV3-Large (``lraspp-mbv3``, random initialisation) are trained on
   the bundled demonstration set (:class:`~convpress.seg.data.DemoDigits`, 11 classes) with the same
   budget (steps, batch, crops, learning rate, seed; one thread each), and scored on its held-out
   part (other photos, other digits): mIoU, per-class IoU and the confusion matrix of each.
2. **Speed.** Images per second at 640x360, batch 1, 2 threads, of ShuffleSeg, LR-ASPP and
   FCN-ResNet50 (random weights, ``weights=None``, ``weights_backbone=None``), interleaved rounds.
3. **Acceleration.** A copy of the trained ShuffleSeg goes through :func:`convpress.accelerate`:
   channels removed (L1 norm) from the inner (bottleneck) channels of every ShuffleNet unit, across
   the channel shuffle, and from the decoder's fusions (see :func:`_prunable`); 9 of the 13
   stride-1 units removed (depth pruning: those that change their input least); then fine-tuned
   with distillation from the trained model (MSE of logits);
   its mIoU and speed are measured against the trained model's, and it is exported to ONNX
   (largest difference to PyTorch reported).
4. **Example.** One held-out sample: input | ground truth | prediction (``write_figures``).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, paired_times
from convpress.compress.accelerate import AccelerateConfig, accelerate
from convpress.compress.deploy import for_cpu
from convpress.compress.export import export_onnx, onnx_max_error
from convpress.compress.unit_pruners import find_units
from convpress.models.shuffleseg import TorchvisionSegmenter
from convpress.seg.data import DEMO_CLASSES, DemoDigits
from convpress.seg.metrics import iou_per_class, mean_iou
from convpress.seg.train import SegTrainConfig, augment, evaluate_segmenter, predict, segmentation_loss, train_segmenter

__all__ = ["run", "to_markdown", "write_figures"]

SPEED_SIZE = (360, 640)  # (H, W): 640x360
QUICK_SPEED_SIZE = (72, 128)  # a smoke run's timing input (its figures are not comparable)
THREADS = 2
UNIT_AMOUNT = 0.75  # of each ShuffleNet unit's inner channels (they go 9 at a time: 30 -> 12, 60 -> 15, 120 -> 30)
DECODER_AMOUNT = 0.25  # of the decoder's fusion convolutions
#: of the 13 stride-1 units, replaced by the identity (depth pruning): ShuffleSeg at 640x360 is bound
#: by per-operation costs that thinner channels do not lower (the whole network at width 0.25 is
#: only 1.2-1.3x faster than at 0.5), removing units removes operations
UNIT_DEPTH = 0.7  # 9 of the 13
FINETUNE_EPOCHS = 10
FINETUNE_LR = 2e-3


def _budget(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "epochs": 1,
            "steps": 2,
            "train": 16,
            "val": 4,
            "finetune_batches": 2,
            "finetune_epochs": 1,
            "finetune_lr": 1e-3,
            "repeat": 2,
        }
    # the fine-tune (FINETUNE_EPOCHS x 100 steps) is longer than the training (400 steps): the thinned
    # network starts near chance (mIoU about 8) and is taught back by the trained one
    return {
        "epochs": 4,
        "steps": 100,
        "train": 2000,
        "val": 200,
        "finetune_batches": 100,
        "finetune_epochs": FINETUNE_EPOCHS,
        "finetune_lr": FINETUNE_LR,
        "repeat": 7,
    }


def _scores(model: nn.Module, val: DemoDigits) -> dict[str, Any]:
    cm = evaluate_segmenter(model, val, len(DEMO_CLASSES))
    iou = iou_per_class(cm)
    return {
        "miou": 100 * mean_iou(cm),
        "iou": {c: (None if bool(v.isnan()) else round(100 * float(v), 2)) for c, v in zip(DEMO_CLASSES, iou, strict=True)},
        "confusion": cm.tolist(),
    }


def _prunable(model: nn.Module, *, units: float = UNIT_AMOUNT, decoder: float = DECODER_AMOUNT) -> dict[str, float]:
    """The channel plan: the inner channels of every ShuffleNet v1 unit and the decoder's fusions.

    A unit's inner channels (grouped 1 x 1 -> channel shuffle -> depthwise 3 x 3 -> grouped
    1 x 1) are thinned by whole cells across the shuffle
    (:mod:`convpress.compress.unit_pruners`; naming ``compress.0`` selects them); the units'
    output channels, tied together by the residual adds, stay. The decoder's fusion convolutions
    are thinned by Torch-Pruning; its upsampling convolutions feeding depth_to_space and the
    classifier are never pruned.
    """
    plan = {f"{name}.compress.0": units for name in find_units(model)}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name.startswith("decoder.fuse"):
            plan[name] = decoder
    return plan


def run(*, quick: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train, time, accelerate and export; returns the JSON result (see the module docstring)."""
    torch.set_num_threads(1)  # training: one thread each (a busy 2-core machine); timing below: THREADS
    t_start = time.perf_counter()
    b = _budget(quick)
    train = DemoDigits("train", count=b["train"])
    val = DemoDigits("val", count=b["val"])
    k = len(DEMO_CLASSES)
    trained: dict[str, nn.Module] = {}
    rows: dict[str, dict[str, Any]] = {}
    for name in ("shuffleseg", "lraspp-mbv3"):
        cfg = SegTrainConfig(num_classes=k, model=name, epochs=b["epochs"], steps=b["steps"], batch=8, lr=3e-3, seed=0)
        t0 = time.perf_counter()
        res = train_segmenter(train, val, cfg, data_id={"demo": b["train"]}, progress=progress)
        trained[name] = res.model.eval()
        rows[name] = {
            "train_seconds": time.perf_counter() - t0,
            "history": res.history,
            "params": sum(p.numel() for p in res.model.parameters()),
            **_scores(res.model, val),
        }

    # speed at 640x360, batch 1
    size = QUICK_SPEED_SIZE if quick else SPEED_SIZE
    x = torch.rand(1, 3, *size)
    fcn = TorchvisionSegmenter("fcn_resnet50", num_classes=k).eval()
    # every network is timed in its CPU deployment form (convpress.for_cpu: BatchNorm folded,
    # channels-last), the figures the checks use, and as trained (eager), for reference
    eager = {"shuffleseg": trained["shuffleseg"], "lraspp-mbv3": trained["lraspp-mbv3"], "fcn-resnet50": fcn}
    deployed = {n: for_cpu(m) for n, m in eager.items()}
    torch.set_num_threads(THREADS)
    with torch.no_grad():
        deploy_error = max(float((deployed[n](x) - eager[n](x)).abs().max()) for n in eager)
        calls: dict[str, Callable[[], Any]] = {f"{n} eager": partial(m, x) for n, m in eager.items()}
        calls.update({n: partial(m, x) for n, m in deployed.items()})
        times = paired_times(
            calls,
            warmup=1,
            repeat=b["repeat"],
        )
    speed = {n: times[n] for n in eager}
    speed_eager = {n: times[f"{n} eager"] for n in eager}

    # acceleration: channel pruning + distillation of the trained ShuffleSeg
    torch.set_num_threads(1)
    rng = np.random.default_rng(1234)
    cfg = SegTrainConfig(num_classes=k)
    batches = []
    for _ in range(b["finetune_batches"]):
        crops = [augment(*train[int(rng.integers(len(train)))], rng, cfg) for _ in range(8)]
        batches.append((torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops])))
    student = copy.deepcopy(trained["shuffleseg"])
    plan = _prunable(student)
    report = accelerate(
        student,
        # logits matched by MSE (and the labels, 0.3), Adam with a cosine schedule
        AccelerateConfig(
            channels=plan,
            units=UNIT_DEPTH,
            epochs=b["finetune_epochs"],
            lr=b["finetune_lr"],
            distill=True,
            distill_mode="output",
            latency_batches=(),
            score_before_finetune=True,
        ),
        evaluate=lambda m: 100 * mean_iou(evaluate_segmenter(m, val, k)),
        train=batches,
        example=batches[0][0][:2],
        loss_fn=segmentation_loss,
        progress=progress,
    )
    student.eval()
    pruned = _scores(student, val)
    torch.set_num_threads(THREADS)
    with torch.no_grad():
        dense_d, pruned_d = deployed["shuffleseg"], for_cpu(student)
        speed_pruned = paired_times(
            {
                "shuffleseg eager": lambda: trained["shuffleseg"](x),
                "pruned eager": lambda: student(x),
                "shuffleseg": lambda: dense_d(x),
                "pruned": lambda: pruned_d(x),
            },
            warmup=2,
            repeat=2 * b["repeat"],
        )
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(student, x, Path(tmp) / "shuffleseg.onnx")
        onnx_bytes = onnx_path.stat().st_size
        onnx_error = onnx_max_error(student, onnx_path, x)

    # the example figure: the held-out sample with the most digit pixels among the first ten
    idx = max(range(min(10, len(val))), key=lambda i: int((val[i][1] > 0).sum()))
    example_pred = predict(trained["shuffleseg"], val[idx][0])

    ss, lr_ = rows["shuffleseg"], rows["lraspp-mbv3"]
    speedup = speed["lraspp-mbv3"] / speed["shuffleseg"]
    prune_speedup = speed_pruned["shuffleseg"] / speed_pruned["pruned"]
    checks = [
        {"name": "ShuffleSeg faster than LR-ASPP at 640x360 (x)", "value": round(speedup, 2), "target": ">= 2", "passed": speedup >= 2},
        {
            "name": "ShuffleSeg mIoU minus LR-ASPP mIoU, held-out demo set (points)",
            "value": round(ss["miou"] - lr_["miou"], 2),
            "target": ">= -3",
            "passed": ss["miou"] - lr_["miou"] >= -3,
        },
        {
            "name": "accelerated ShuffleSeg faster than ShuffleSeg (x)",
            "value": round(prune_speedup, 2),
            "target": ">= 1.5",
            "passed": prune_speedup >= 1.5,
        },
        {
            "name": "mIoU lost by acceleration (points)",
            "value": round(ss["miou"] - pruned["miou"], 2),
            "target": "<= 2",
            "passed": ss["miou"] - pruned["miou"] <= 2,
        },
        {
            "name": "ONNX export: largest difference to PyTorch",
            "value": float(f"{onnx_error:.3g}"),
            "target": "<= 1e-3",
            "passed": onnx_error <= 1e-3,
        },
    ]
    return {
        "benchmark": "segmentation",
        "quick": quick,
        "environment": environment(),
        "seconds": time.perf_counter() - t_start,
        "budget": {**b, "batch": 8, "crop": list(cfg.crop), "lr": 3e-3},
        "classes": list(DEMO_CLASSES),
        "models": rows,
        "speed": {
            "size": f"{size[1]}x{size[0]}",
            "threads": THREADS,
            "form": "convpress.for_cpu: BatchNorm folded into the convolutions, channels-last memory",
            "seconds": speed,
            "images_per_second": {n: 1 / s for n, s in speed.items()},
            "eager_seconds": speed_eager,
            "deploy_max_difference": deploy_error,
        },
        "accelerated": {
            **pruned,
            "plan": plan,
            "units_removed": report.units or {},
            "miou_before_finetune": report.score_before_finetune,
            "channels": {n: list(v) for n, v in (report.channels.channels if report.channels else {}).items()},
            "macs": [report.before.macs, report.after.macs],
            "params": [report.before.params, report.after.params],
            "seconds": speed_pruned,
            "onnx_bytes": onnx_bytes,
            "onnx_max_error": onnx_error,
        },
        "example": {"index": idx, "prediction": example_pred.tolist()},
        "checks": checks,
    }


def write_figures(result: dict[str, Any], json_path: Path) -> list[Path]:
    """``OUT.png`` next to the JSON: the example's input | ground truth | ShuffleSeg's prediction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from convpress.seg.apply import colorize

    ex = result["example"]
    image, mask = DemoDigits("val", count=result["budget"]["val"])[ex["index"]]
    pred = torch.tensor(ex["prediction"])
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
    miou = result["models"]["shuffleseg"]["miou"]
    for ax, img, title in zip(
        axes,
        (image, colorize(mask), colorize(pred)),
        ("input (held out)", "ground truth", f"ShuffleSeg (held-out mIoU {miou:.1f})"),
        strict=True,
    ):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    out = Path(json_path).with_suffix(".png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env, m, sp, acc = result["environment"], result["models"], result["speed"], result["accelerated"]
    bud = result["budget"]
    ips = sp["images_per_second"]
    lines = [
        "## Real-time segmentation (`convpress bench segmentation`)",
        "",
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}; {result['seconds']:.0f} s"
        f"{' (QUICK smoke run)' if result['quick'] else ''}. Both networks trained from random weights on the bundled "
        f"demonstration set (digits pasted onto photos, 11 classes) with the same budget: {bud['epochs']} x {bud['steps']} steps "
        f"of {bud['batch']} crops {bud['crop'][0]}x{bud['crop'][1]}, Adam {bud['lr']}; mIoU on {bud['val']} held-out samples "
        f"(other photos, other digits). Speed at {sp['size']}, batch 1, {sp['threads']} threads, interleaved rounds (medians), "
        "every network in its CPU deployment form (`convpress.for_cpu`: BatchNorm folded into the convolutions, channels-last "
        f"memory; outputs equal the trained networks' to {sp.get('deploy_max_difference', float('nan')):.1g}) "
        "and, for reference, as trained (eager).",
        "",
        "| model | parameters | held-out mIoU | images/s at 640x360 | ms | ms as trained (eager) |",
        "|---|---|---|---|---|---|",
    ]
    eager = sp.get("eager_seconds", {})

    def eager_ms(name: str) -> str:
        return f"{1000 * eager[name]:.0f}" if name in eager else "–"

    for name in ("shuffleseg", "lraspp-mbv3"):
        lines.append(
            f"| {name} | {m[name]['params']:,} | {m[name]['miou']:.2f} | {ips[name]:.1f} | {1000 * sp['seconds'][name]:.0f} "
            f"| {eager_ms(name)} |"
        )
    lines.append(
        f"| fcn-resnet50 (random weights) | – | – | {ips['fcn-resnet50']:.2f} | {1000 * sp['seconds']['fcn-resnet50']:.0f} "
        f"| {eager_ms('fcn-resnet50')} |"
    )
    a_ratio = acc["seconds"]["shuffleseg"] / acc["seconds"]["pruned"]
    a_eager = acc["seconds"].get("shuffleseg eager", float("nan")) / acc["seconds"].get("pruned eager", float("nan"))
    n_units = sum(n.endswith(".compress.0") for n in acc["plan"])
    lines += [
        f"| shuffleseg accelerated | {acc['params'][1]:,} | {acc['miou']:.2f} | – | {a_ratio:.2f}x faster than shuffleseg "
        f"| {a_eager:.2f}x |",
        "",
        "Per-class IoU (held out):",
        "",
        "| class | " + " | ".join(result["classes"]) + " |",
        "|---|" + "---|" * len(result["classes"]),
    ]
    for name, row in (("shuffleseg", m["shuffleseg"]), ("lraspp-mbv3", m["lraspp-mbv3"]), ("accelerated", acc)):
        cells = ["–" if row["iou"][c] is None else f"{row['iou'][c]:.1f}" for c in result["classes"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Acceleration: the inner channels of the {n_units} ShuffleNet units (across the channel shuffle; {bud['finetune_batches']} "
        f"batches x {bud['finetune_epochs']} epochs of distillation, Adam {bud['finetune_lr']}; mIoU {acc['miou_before_finetune']:.1f} "
        f"before it) and the decoder's fusions, and {len(acc.get('units_removed', {}))} of the 13 stride-1 units removed "
        f"(depth pruning: {', '.join(acc.get('units_removed', {})) or 'none'}); "
        f"MACs {acc['macs'][0] / 1e6:.1f} M -> {acc['macs'][1] / 1e6:.1f} M on two 96x128 inputs; "
        f"ONNX {acc['onnx_bytes'] / 1e6:.2f} MB, largest difference to PyTorch {acc['onnx_max_error']:.2g}. "
        "Confusion matrices are in the JSON.",
        "",
        *checks_table(result["checks"]),
    ]
    return "\n".join(lines) + "\n"


def readme_summary(result: dict[str, Any]) -> str:
    """The README's summary of this result (inserted by benchmarks/make_benchmarks_md.py)."""
    m, sp, acc = result["models"], result["speed"], result["accelerated"]
    s = sp["seconds"]
    ratio = acc["seconds"]["shuffleseg"] / acc["seconds"]["pruned"]
    return (
        f"Measured (`benchmarks/results/segmentation.json`, {result['environment']['cpu_count']} cores, {sp['threads']} threads, "
        f"{sp['size']}, batch 1, each network BN-folded and channels-last by `convpress.for_cpu`): "
        f"ShuffleSeg {1000 * s['shuffleseg']:.0f} ms, LR-ASPP MobileNetV3-Large {1000 * s['lraspp-mbv3']:.0f} ms "
        f"({s['lraspp-mbv3'] / s['shuffleseg']:.2f}x), FCN-ResNet50 {1000 * s['fcn-resnet50']:.0f} ms "
        f"({s['fcn-resnet50'] / s['shuffleseg']:.1f}x). Trained with the same budget on the demonstration set, held-out mIoU "
        f"{m['shuffleseg']['miou']:.1f} for ShuffleSeg against {m['lraspp-mbv3']['miou']:.1f} for LR-ASPP. `accelerate` "
        f"(inner channels of the ShuffleNet units and the decoder's, {len(acc.get('units_removed', {}))} of 13 units removed, "
        f"distillation): {ratio:.2f}x faster, mIoU {acc['miou']:.1f}. "
        "Example (held out): `docs/seg/example.png`."
    )


BENCHMARKS.register(
    "segmentation",
    Benchmark(
        run,
        to_markdown,
        "ShuffleSeg against LR-ASPP and FCN-ResNet50: speed, mIoU, acceleration",
        write_figures=write_figures,
        readme_summary=readme_summary,
    ),
)
