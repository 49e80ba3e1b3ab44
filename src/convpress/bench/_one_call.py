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

from convpress.analysis.metrics import accuracy
from convpress.compress.finetune import finetune
from convpress.compress.pipeline import PLANNED_TRAINING, deep_compress
from convpress.compress.state import dense_state_dict, strip_
from convpress.data.mnist import mnist_loaders
from convpress.fileformat.cpz import load

__all__ = ["one_call", "one_call_markdown", "ONE_CALL", "OneCallFigure"]


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


def one_call(*, quick: bool = False, progress: bool = True, seed: int = 0) -> dict[str, Any]:
    """Train the MLP, compress it with one planned call, and check the figure.

    Returns:
        ``{"seconds", "dense_accuracy", "loaded_accuracy", "drop", "ratio", "file_bytes",
        "dense_bytes", "bit_exact", "plan", "attempts", "layers", "checks", ...}``.
    """
    spec = ONE_CALL
    ratio_goal = 8.0 if quick else spec.ratio
    train, test = mnist_loaders(batch_size=64, seed=seed)
    loss = torch.nn.functional.cross_entropy
    torch.manual_seed(seed)
    model = _mlp(spec.widths)
    t0 = time.perf_counter()
    finetune(model, train, loss, 1 if quick else spec.train_epochs, 1e-3, progress=progress, description="train the dense MLP")
    train_seconds = time.perf_counter() - t0
    evaluate = partial(accuracy, loader=test)
    cfg = replace(PLANNED_TRAINING, prune_epochs=1, quant_epochs=1) if quick else None
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="convpress-bench-") as tmp:
        out = Path(tmp) / "mlp.cpz"
        t0 = time.perf_counter()
        rep = deep_compress(
            model,
            cfg,
            train_loader=train,
            loss_fn=loss,
            evaluate=evaluate,
            target_ratio=ratio_goal,
            max_drop=spec.max_drop,
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
    dense_bytes = rep.dense_bytes
    ratio = dense_bytes / file_bytes if file_bytes else 0.0
    drop = rep.metric["dense"] - loaded_acc if loaded_acc is not None else None
    checks = [
        {
            "name": f"one call on an MLP {'-'.join(map(str, spec.widths))} (no recipe): ratio >= {ratio_goal:g}x",
            "value": round(ratio, 1),
            "target": ratio_goal,
            "passed": ratio >= ratio_goal,
        },
        {
            "name": f"one call: accuracy drop <= {spec.max_drop:g} point (file loaded back vs dense)",
            "value": None if drop is None else round(drop, 2),
            "target": spec.max_drop,
            "passed": drop is not None and drop <= spec.max_drop,
        },
        {"name": "one call: the file loads back bit-exact", "value": bool(bit_exact), "target": True, "passed": bool(bit_exact)},
        {
            "name": f"one call: wall time <= {spec.seconds / 60:g} minutes on this machine (seconds)",
            "value": round(seconds, 1),
            "target": spec.seconds,
            "passed": seconds <= spec.seconds,
        },
    ]
    return {
        "protocol": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() if __doc__ else "",
        "seed": seed,
        "widths": list(spec.widths),
        "target_ratio": ratio_goal,
        "max_drop": spec.max_drop,
        "train_seconds": train_seconds,
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "dense_accuracy": rep.metric["dense"],
        "loaded_accuracy": loaded_acc,
        "drop": drop,
        "dense_bytes": dense_bytes,
        "file_bytes": file_bytes,
        "ratio": ratio,
        "target_met": rep.target_met,
        "bit_exact": bool(bit_exact),
        "plan": rep.plan,
        "attempts": rep.attempts,
        "layers": [r.__dict__ | {"kept_fraction": r.kept_fraction} for r in rep.rows],
        "log": lines,
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


def one_call_markdown(r: dict[str, Any]) -> list[str]:
    """The one-call section's Markdown lines."""
    widths = "-".join(map(str, r["widths"]))
    lines = [
        "",
        f"### One call on a model without a recipe (MLP {widths})",
        "",
        r["protocol"],
        "",
        f"`deep_compress(model, train_loader=..., loss_fn=..., evaluate=..., target_ratio={r['target_ratio']:g}, "
        f"max_drop={r['max_drop']:g})`: dense {r['dense_accuracy']:.2f}% -> file {r['loaded_accuracy']:.2f}% "
        f"(drop {r['drop']:.2f}), {r['dense_bytes']:,} B -> {r['file_bytes']:,} B = **{r['ratio']:.1f}x**, "
        f"in {r['seconds']:.0f} s ({r['torch_threads']} torch threads; dense training {r['train_seconds']:.0f} s before it).",
        "",
        "| attempt | plan (layer: sparsity / bits) | ratio | drop |",
        "|---|---|---|---|",
    ]
    for i, a in enumerate(r["attempts"], 1):
        plan = ", ".join(f"{n}: {v['sparsity']:.1%} / {v['bits']}" for n, v in a["plan"]["layers"].items())
        lines.append(f"| {i} | {plan} | {a['ratio']:.1f}x | {a['drop']:.2f} |")
    lines += ["", "| layer | weights | kept | bits | final bytes | ratio |", "|---|---|---|---|---|---|"]
    for lay in r["layers"]:
        ratio = lay["dense"] / lay["final"]
        lines.append(
            f"| {lay['name']} | {lay['weights']:,} | {lay['kept_fraction']:.1%} | {lay['bits']} | {lay['final']:,} | {ratio:.0f}x |"
        )
    return lines
