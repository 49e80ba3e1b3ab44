"""The one-call figure of ``convpress bench deep-compression``: a model with no recipe, compressed by the planner.

An MLP 784-400-300-100-10 (a plain ``nn.Sequential``, not one of the LeNets the recipes were
tuned on) is trained on the bundled MNIST training split, then ``convpress.deep_compress`` is
called once with ``target_ratio`` and ``max_drop`` and nothing else about compression. Accuracy
is the model loaded back from the written file, on the 1,000 held-out digits; the ratio is
dense float32 bytes over the file's bytes on disk; the time is the wall time of that one call.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from convpress.analysis.metrics import accuracy
from convpress.bench._common import environment
from convpress.compress.finetune import finetune
from convpress.compress.pipeline import PLANNED_TRAINING, DeepCompressionConfig, deep_compress
from convpress.compress.state import dense_state_dict, strip_
from convpress.data.mnist import mnist_loaders
from convpress.fileformat.cpz import load

__all__ = ["one_call", "one_call_markdown", "planned_run", "section_head", "attempts_table", "ONE_CALL", "OneCallFigure"]


@dataclass(frozen=True)
class OneCallFigure:
    """The figure: ratio at least ``ratio`` within ``max_drop`` points, in at most ``seconds`` on 2 cores."""

    widths: tuple[int, ...] = (784, 400, 300, 100, 10)
    ratio: float = 60.0
    max_drop: float = 1.0
    seconds: float = 600.0
    train_epochs: int = 20


ONE_CALL = OneCallFigure()


def _mlp(widths: tuple[int, ...]) -> nn.Module:
    """A user's MLP: (N, 1, 28, 28) -> (N, widths[-1]) logits."""
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _one_run(seed: int, *, quick: bool, progress: bool) -> dict[str, Any]:
    """One seed: train the MLP, compress it with one planned call, check the written file."""
    spec = ONE_CALL
    train, test = mnist_loaders(batch_size=64, seed=seed)
    torch.manual_seed(seed)
    model = _mlp(spec.widths)
    t0 = time.perf_counter()
    epochs = 1 if quick else spec.train_epochs
    finetune(model, train, _LOSS, epochs, 1e-3, progress=progress, description=f"train the dense MLP (seed {seed})")
    train_seconds = time.perf_counter() - t0
    cfg = replace(PLANNED_TRAINING, prune_epochs=1, quant_epochs=1) if quick else None
    return {"seed": seed, "train_seconds": train_seconds} | planned_run(
        model, cfg, train, test, _goal(quick), spec.max_drop, progress=progress
    )


_LOSS = torch.nn.functional.cross_entropy


def planned_run(
    model: nn.Module,
    cfg: DeepCompressionConfig | None,
    train: DataLoader,
    test: DataLoader,
    target_ratio: float | None,
    max_drop: float,
    *,
    progress: bool,
) -> dict[str, Any]:
    """``deep_compress(model, cfg, target_ratio=, max_drop=)`` into a temporary file, checked independently.

    With ``target_ratio`` None, ``cfg``'s own amounts (or learned sparsity) and bits are used.

    Returns:
        seconds of the call, accuracies (dense, and of the model loaded back from the file),
        drop, file bytes, ratio, whether the loaded tensors equal the model's bit for bit, the
        plan, the attempts, per-layer rows and the log lines.
    """
    evaluate = partial(accuracy, loader=test)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="convpress-bench-") as tmp:
        out = Path(tmp) / "model.cpz"
        t0 = time.perf_counter()
        rep = deep_compress(
            model,
            cfg,
            train_loader=train,
            loss_fn=_LOSS,
            evaluate=evaluate,
            target_ratio=target_ratio,
            max_drop=max_drop,
            out_path=out,
            progress=progress,
            log=lines.append,
        )
        seconds = time.perf_counter() - t0
        written = out.exists()
        file_bytes = out.stat().st_size if written else None
        # an independent check of the file: loaded tensors equal the compressed model in memory, bit for bit
        bit_exact = written and all(torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in _pairs(load(out), model))
        loaded_acc = _loaded_accuracy(model, load(out), evaluate) if written else None
    return {
        "seconds": seconds,
        "dense_accuracy": rep.metric["dense"],
        "loaded_accuracy": loaded_acc,
        "drop": rep.metric["dense"] - loaded_acc if loaded_acc is not None else None,
        "dense_bytes": rep.dense_bytes,
        "file_bytes": file_bytes,
        "ratio": rep.dense_bytes / file_bytes if file_bytes else 0.0,
        "target_met": rep.target_met,
        "bit_exact": bool(bit_exact),
        "plan": rep.plan,
        "attempts": rep.attempts,
        "layers": [r.__dict__ | {"kept_fraction": r.kept_fraction} for r in rep.rows],
        "log": lines,
    }


def _goal(quick: bool) -> float:
    return 8.0 if quick else ONE_CALL.ratio


def one_call(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """The one-call figure over seeds 0, 1, 2 (``quick``: seed 0, one epoch per stage, 8x).

    Returns:
        ``{"runs": [one dict per seed: ratio, drop, seconds, bit_exact, plan, attempts, layers, ...],
        "checks": [...], ...}``; the checks take the worst seed.
    """
    spec = ONE_CALL
    runs = [_one_run(seed, quick=quick, progress=progress) for seed in ([0] if quick else [0, 1, 2])]
    goal = _goal(quick)
    ratio = min(r["ratio"] for r in runs)
    drops = [r["drop"] for r in runs]
    drop = None if None in drops else max(drops)
    seconds = max(r["seconds"] for r in runs)
    exact = all(r["bit_exact"] for r in runs)
    n = len(runs)
    checks = [
        {
            "name": f"one call on an MLP {'-'.join(map(str, spec.widths))} (no recipe): ratio >= {goal:g}x (min over {n} seeds)",
            "value": round(ratio, 1),
            "target": goal,
            "passed": ratio >= goal,
        },
        {
            "name": f"one call: accuracy drop <= {spec.max_drop:g} point, file loaded back vs dense (max over {n} seeds)",
            "value": None if drop is None else round(drop, 2),
            "target": spec.max_drop,
            "passed": drop is not None and drop <= spec.max_drop,
        },
        {"name": f"one call: the file loads back bit-exact ({n} seeds)", "value": exact, "target": True, "passed": exact},
        {
            "name": f"one call: wall time <= {spec.seconds / 60:g} minutes, seconds (max over {n} seeds)",
            "value": round(seconds, 1),
            "target": spec.seconds,
            "passed": seconds <= spec.seconds,
        },
    ]
    return {
        "protocol": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else "",
        "environment": environment(),
        "widths": list(spec.widths),
        "target_ratio": goal,
        "max_drop": spec.max_drop,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "checks": checks,
    }


def _pairs(loaded: dict[str, torch.Tensor], model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    expected = dense_state_dict(model)
    if loaded.keys() != expected.keys():
        return [(torch.zeros(1), torch.ones(1))]
    return [(loaded[k].float().contiguous(), expected[k].float().contiguous()) for k in expected]


def _loaded_accuracy(model: nn.Module, state: dict[str, torch.Tensor], evaluate: Any) -> float:
    fresh = strip_(copy.deepcopy(model))
    fresh.load_state_dict(state)
    return float(evaluate(fresh))


def run_cells(run: dict[str, Any]) -> tuple[str, str, str]:
    """Markdown cells of one planned run: accuracy dense -> file, drop, file bytes ("not written"/"—" without a file)."""
    acc = "not written" if run["loaded_accuracy"] is None else f"{run['dense_accuracy']:.2f}% → {run['loaded_accuracy']:.2f}%"
    drop = "—" if run["drop"] is None else f"{run['drop']:.2f}"
    size = "—" if run["file_bytes"] is None else f"{run['file_bytes']:,}"
    return acc, drop, size


def plan_text(layers: dict[str, dict[str, Any]]) -> str:
    """A plan's layers as "name: sparsity / bits, ..."."""
    return ", ".join(f"{n}: {v['sparsity']:.1%} / {v['bits']}" for n, v in layers.items())


def section_head(r: dict[str, Any], title: str) -> list[str]:
    """A part's heading and its protocol line (date, cores, threads, version, protocol text)."""
    env = r["environment"]
    return [
        "",
        f"### {title}",
        "",
        f"{env['date']}, {env['cpu_count']} CPU cores, {r['torch_threads']} torch thread(s), convpress {env['convpress']}. "
        + r["protocol"],
        "",
    ]


def attempts_table(runs: list[dict[str, Any]], *, by_seed: bool) -> list[str]:
    """The plans of every attempt of planned runs, with their ratio and drop (a seed column if ``by_seed``)."""
    columns = ["seed"] * by_seed + ["attempt", "plan", "ratio", "drop"]
    lines = ["", "The plans the planner chose (layer: sparsity / k-means bits) and what each attempt gave:", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run in runs:
        for i, a in enumerate(run["attempts"], 1):
            cells = [str(run["seed"])] if by_seed else []
            cells += [str(i), plan_text(a["plan"]["layers"]), f"{a['ratio']:.1f}×", f"{a['drop']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def one_call_markdown(r: dict[str, Any]) -> list[str]:
    """The one-call section's Markdown lines."""
    widths = "-".join(map(str, r["widths"]))
    lines = [
        *section_head(r, f"One call on a model without a recipe (MLP {widths})"),
        "`deep_compress(model, train_loader=..., loss_fn=..., evaluate=..., "
        f"target_ratio={r['target_ratio']:g}, max_drop={r['max_drop']:g})`:",
        "",
        "| seed | accuracy dense → file | drop | file bytes | ratio | attempts | seconds (dense training before it) |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        acc, drop, size = run_cells(run)
        lines.append(
            f"| {run['seed']} | {acc} | {drop} | {size} | {run['ratio']:.1f}× | {len(run['attempts'])} | "
            f"{run['seconds']:.0f} ({run['train_seconds']:.0f}) |"
        )
    lines += attempts_table(r["runs"], by_seed=True)
    first = r["runs"][0]
    lines += [
        "",
        f"Per layer (seed {first['seed']}):",
        "",
        "| layer | weights | kept | bits | bytes in the file | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for lay in first["layers"]:
        ratio = lay["dense"] / lay["final"]
        lines.append(
            f"| {lay['name']} | {lay['weights']:,} | {lay['kept_fraction']:.1%} | {lay['bits']} | {lay['final']:,} | {ratio:.0f}× |"
        )
    return lines
