"""``convpress bench data-distillation``: the Data Distillation figures of issue 21.

Per seed, the bundled MNIST training split (4,000 digits) is divided into a labelled part (10%,
40 digits per class) and an unlabelled part (the other 3,600; their labels are used only to
report the pseudo-labels' accuracy); the 1,000 held-out digits are the test set and are never
pseudo-labelled. LeNet-5 is trained on the labelled part alone (the baseline, also the teacher),
then students start from it and are trained by :func:`convpress.data_distill` on batches mixing
labelled and pseudo-labelled digits, for several rounds (each round's student labels the digits
again for the next, until fewer than 0.5% of the unlabelled digits change label or 8 rounds
have run: a stopping rule that needs no labels). Every training run (baseline, students, pruned models) uses the same
augmentation: a random rotation of up to 10 degrees, scaling of up to 10% and shift of up to 2
pixels per digit.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from convpress.analysis.metrics import accuracy
from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment
from convpress.bench._dd_segmentation import SEG_PROTOCOL, seg_seed_run, seg_summary
from convpress.compress.data_distill import data_distill
from convpress.compress.finetune import finetune
from convpress.compress.multi_transform import DIGIT_TRANSFORMS, HFlip, Identity, Transform
from convpress.compress.prune import sparsity
from convpress.compress.pseudo_labels import KeepFraction, labelled_stats, pseudo_label
from convpress.compress.recipes import get_recipe
from convpress.compress.schedule import AGP
from convpress.core.errors import ConfigError
from convpress.data.mnist import load_mnist
from convpress.models import create_model

__all__ = ["run", "to_markdown", "TRANSFORMS", "MIN_GAIN", "PARTS"]

#: the parts ``convpress bench data-distillation --only PART`` runs alone
PARTS = ("digits", "segmentation")

#: the teacher's transforms: one view, the digit views of the paper's multi-transform inference, and those plus a flip
TRANSFORMS: dict[str, list[Transform]] = {
    "single": [Identity()],
    "multi": list(DIGIT_TRANSFORMS),
    "multi + flip": [*DIGIT_TRANSFORMS, HFlip()],
}
#: accuracy points the Data Distillation student must gain over the labelled-only model
MIN_GAIN = 2.0
LABELS_PER_CLASS = 40  # 10% of the 4,000 training digits
RULE = KeepFraction(0.9, per_class=True)
TEACHER_EPOCHS, STUDENT_EPOCHS, RATIO, LR = 60, 30, 0.25, 1e-3
#: rounds of distillation: at most MAX_ROUNDS, ending (label-free) once fewer than MIN_CHANGE of the
#: unlabelled digits change their hard label between two rounds (data_distill's ``min_change``).
#: Set on 2026-12-04 without a run behind it: 0.5% is 18 of the 3,600 unlabelled digits.
MAX_ROUNDS, MIN_CHANGE = 8, 0.005
PRUNED_STUDENT_EPOCHS = 8  # the pruned student distils once, for 8 epochs
PLAIN_PRUNE_EPOCHS = 40  # labelled-only retraining of the pruned model: about as many steps as the pruned student's 8 epochs
ROTATE, SCALE, SHIFT = 10.0, 0.1, 2  # the augmentation of every run: degrees, relative scale, whole pixels


def _augment(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A random rotation (up to ``ROTATE`` degrees), scaling (up to ``SCALE``) and whole-pixel shift
    (up to ``SHIFT``) of each image of the batch (N, C, H, W), zeros coming in; ``y`` unchanged.

    One batched ``affine_grid`` + ``grid_sample`` instead of torchvision's ``RandomAffine``, which
    draws one transform per call (per batch) and would need a Python loop to vary it per image.
    """
    n, _, h, w = x.shape
    angle = (torch.rand(n) * 2 - 1) * math.radians(ROTATE)
    scale = 1 + (torch.rand(n) * 2 - 1) * SCALE
    shift = torch.randint(-SHIFT, SHIFT + 1, (2, n)).float() * 2 / torch.tensor([[w], [h]])  # in grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), y


class _Augmented:
    """A loader whose batches pass through :func:`_augment`."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.generator = loader.generator

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            yield _augment(x, y)


def _split(seed: int, quick: bool) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """(labelled, unlabelled with ground truth, test): stratified, fixed by ``seed``."""
    x, y = load_mnist("train", seed=seed).tensors
    g = torch.Generator().manual_seed(seed)
    chosen = [torch.randperm(int((y == c).sum()), generator=g)[:LABELS_PER_CLASS] for c in range(10)]
    lab_idx = torch.cat([torch.nonzero(y == c).squeeze(1)[chosen[c]] for c in range(10)])
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[lab_idx] = False
    unl_idx = torch.nonzero(rest).squeeze(1)
    if quick:  # a random 600 of the rest (taken in index order above)
        unl_idx = unl_idx[torch.randperm(len(unl_idx), generator=g)[:600]]
    return TensorDataset(x[lab_idx], y[lab_idx]), TensorDataset(x[unl_idx], y[unl_idx]), load_mnist("test", seed=seed)


def _seed_run(seed: int, *, quick: bool, progress: bool) -> dict[str, Any]:
    lab_set, unl_set, test_set = _split(seed, quick)
    test = DataLoader(test_set, batch_size=500)
    unlabelled = DataLoader(unl_set, batch_size=500)

    def labelled() -> DataLoader:
        return DataLoader(lab_set, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))

    epochs = (
        {"teacher": 2, "student": 1, "rounds": 2, "pruned": 1, "plain": 2}
        if quick
        else {
            "teacher": TEACHER_EPOCHS,
            "student": STUDENT_EPOCHS,
            "rounds": MAX_ROUNDS,
            "pruned": PRUNED_STUDENT_EPOCHS,
            "plain": PLAIN_PRUNE_EPOCHS,
        }
    )
    out: dict[str, Any] = {"seed": seed, "labelled": len(lab_set), "unlabelled": len(unl_set), "test": len(test_set)}
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    teacher = create_model("lenet-5")
    finetune(
        teacher,
        _Augmented(labelled()),
        F.cross_entropy,
        epochs["teacher"],
        LR,
        progress=progress,
        description=f"labelled only (seed {seed})",
    )
    out["labelled_only"] = accuracy(teacher, test)
    stats = labelled_stats(lab_set.tensors[1], 10)
    out["pseudo_labels"] = {}
    for name, transforms in TRANSFORMS.items():
        rep = pseudo_label(teacher, unlabelled, transforms, rule=RULE, stats=stats).report
        out["pseudo_labels"][name] = {"kept": rep.kept, "accuracy_kept": rep.accuracy, "accuracy_all": rep.accuracy_all}

    def distil(name: str, pruning: AGP | None = None) -> tuple[float, dict[str, Any]]:
        torch.manual_seed(seed)
        student = copy.deepcopy(teacher)
        res = data_distill(
            student,
            labelled(),
            unlabelled,
            teacher=teacher,
            transforms=TRANSFORMS[name],
            rule=RULE,
            epochs=epochs["student"] if pruning is None else epochs["pruned"],
            rounds=epochs["rounds"] if pruning is None else 1,
            min_change=MIN_CHANGE,
            lr=LR,
            ratio=RATIO,
            augment=_augment,
            pruning=pruning,
            seed=seed,
            progress=progress,
        )
        extra: dict[str, Any] = {
            "kept": res.pseudo_labels.kept,
            "pseudo_accuracy": res.pseudo_labels.accuracy,
            "pseudo_accuracy_per_round": [r.accuracy for r in res.rounds],
            "rounds": len(res.rounds),
            "changed_per_round": [round(c, 5) for c in res.changed],
        }
        if pruning is not None:
            extra["sparsity"] = {k: round(v, 4) for k, v in sparsity(student).items()}
        return accuracy(student, test), extra

    out["dd_multi"], out["dd_multi_info"] = distil("multi")
    out["dd_single"], out["dd_single_info"] = distil("single")
    target = get_recipe("lenet-5").config.prune
    torch.manual_seed(seed)
    plain = copy.deepcopy(teacher)
    finetune(
        plain,
        _Augmented(labelled()),
        F.cross_entropy,
        epochs["plain"],
        LR,
        pruning=AGP(target),
        progress=progress,
        description="pruned, labelled only",
    )
    out["pruned_plain"] = accuracy(plain, test)
    out["pruned_dd"], out["pruned_dd_info"] = distil("multi", pruning=AGP(target))
    out["pruned_sparsity"] = {k: round(v, 4) for k, v in sparsity(plain).items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def _per_round(runs: list[dict[str, Any]], name: str, key: str) -> list[float]:
    """Mean of ``dd_<name>_info[key][i]`` over the runs that have an entry i, for each i."""
    series = [r[f"dd_{name}_info"].get(key) or [] for r in runs]
    return [statistics.fmean(v[i] or 0.0 for v in series if len(v) > i) for i in range(max(map(len, series), default=0))]


def _mean(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def run(*, quick: bool = False, progress: bool = True, only: str | None = None) -> dict[str, Any]:
    """Run the benchmark; ``quick`` is a smoke test (one seed, a few steps per stage).

    ``only`` runs one of :data:`PARTS`: "digits" (10% of the bundled digits labelled: the student's
    gain, the transform ablation, the pruned student) or "segmentation" (the demonstration set
    with 10% of the labels).
    """
    if only is not None and only not in PARTS:
        raise ConfigError(f"the data-distillation benchmark has parts {', '.join(PARTS)}, not {only!r}")
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    seeds = [0] if quick else [0, 1, 2]
    result: dict[str, Any] = {"benchmark": "data-distillation", "quick": quick, "environment": environment(), "checks": []}
    if only in (None, "digits"):
        result.update(_digits(seeds, quick=quick, progress=progress))
    if only in (None, "segmentation"):
        runs = [seg_seed_run(s, quick=quick, progress=progress) for s in seeds]
        summary, checks = seg_summary(runs)
        result["segmentation"] = {"protocol": SEG_PROTOCOL, "summary": summary, "runs": runs}
        result["checks"] += checks
    result["seconds"] = time.perf_counter() - t_start
    return result


def _digits(seeds: list[int], *, quick: bool, progress: bool) -> dict[str, Any]:
    """The digits part: protocol, transforms, summary, checks and per-seed runs."""
    runs = [_seed_run(s, quick=quick, progress=progress) for s in seeds]
    base, multi, single = _mean(runs, "labelled_only"), _mean(runs, "dd_multi"), _mean(runs, "dd_single")
    loss_plain = statistics.fmean(r["labelled_only"] - r["pruned_plain"] for r in runs)
    loss_dd = statistics.fmean(r["labelled_only"] - r["pruned_dd"] for r in runs)
    pl = {name: statistics.fmean(r["pseudo_labels"][name]["accuracy_kept"] or 0.0 for r in runs) for name in TRANSFORMS}
    summary = {
        "labelled_only": base,
        "data_distillation_multi": multi,
        "data_distillation_single": single,
        "gain_multi": multi - base,
        "multi_minus_single": multi - single,
        "pruned_loss_plain": loss_plain,
        "pruned_loss_dd": loss_dd,
        "pseudo_label_accuracy_kept": pl,
        "pseudo_label_accuracy_all": {
            name: statistics.fmean(r["pseudo_labels"][name]["accuracy_all"] or 0.0 for r in runs) for name in TRANSFORMS
        },
        # round i's mean over the seeds that ran it (min_change may end seeds after different rounds)
        "pseudo_label_accuracy_kept_per_round": {name: _per_round(runs, name, "pseudo_accuracy_per_round") for name in ("multi", "single")},
        "changed_per_round": {name: _per_round(runs, name, "changed_per_round") for name in ("multi", "single")},
        "rounds": {name: [r[f"dd_{name}_info"].get("rounds") for r in runs] for name in ("multi", "single")},
    }
    checks = [
        {
            "name": f"digits, 10% labels: Data Distillation student - labelled-only model >= {MIN_GAIN:g} points (mean)",
            "value": round(multi - base, 2),
            "target": MIN_GAIN,
            "passed": multi - base >= MIN_GAIN,
        },
        {
            "name": "ablation: student on multi-transform pseudo-labels - student on single-transform ones > 0 points (mean)",
            "value": round(multi - single, 2),
            "target": 0.0,
            "passed": multi - single > 0,
        },
        {
            "name": "pruned LeNet-5 (lenet-5 recipe sparsity): accuracy lost with Data Distillation < without (points, mean)",
            "value": round(loss_dd, 2),
            "target": round(loss_plain, 2),
            "passed": loss_dd < loss_plain,
        },
        {
            "name": "pseudo-label accuracy of the kept labels: multi - single transform (points, mean)",
            "value": round(pl["multi"] - pl["single"], 2),
            "target": None,
            "passed": True,
            "reported": True,
        },
    ]
    return {
        "protocol": (
            f"bundled MNIST subset per seed: {LABELS_PER_CLASS} labelled digits per class (10% of the 4,000 training digits), "
            "the other 3,600 unlabelled (their labels only score the pseudo-labels), 1,000 held-out test digits never "
            f"pseudo-labelled; LeNet-5 trained {TEACHER_EPOCHS} epochs on the labelled part (baseline and teacher); students "
            f"start from it and train with convpress.data_distill for rounds of {STUDENT_EPOCHS} epochs, each "
            f"round's student labelling the digits again for the next, at most {MAX_ROUNDS} rounds, stopping once fewer than "
            f"{100 * MIN_CHANGE:g}% of the unlabelled digits change label between rounds "
            f"(ratio {RATIO} labelled per pseudo-labelled sample, "
            f"{RULE!r}); every run uses random rotations of up to {ROTATE:g} degrees, scaling of up to {100 * SCALE:g}% "
            f"and shifts of up to {SHIFT} px; pruned models reach the lenet-5 recipe's sparsity by AGP while retraining "
            f"({PLAIN_PRUNE_EPOCHS} labelled-only epochs, or one round of {PRUNED_STUDENT_EPOCHS} epochs with Data "
            "Distillation); accuracy on the test digits"
        ),
        "transforms": {k: [repr(t) for t in v] for k, v in TRANSFORMS.items()},
        "summary": summary,
        "checks": checks,
        "runs": runs,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result (the parts it holds)."""
    env = result["environment"]
    lines = ["## Data Distillation (`convpress bench data-distillation`)", ""]
    lines.append(
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}, convpress {env['convpress']}; "
        f"{result['seconds'] / 60:.1f} minutes{' (QUICK smoke run: figures not meaningful)' if result['quick'] else ''}."
    )
    if result.get("measured"):  # parts measured in separate runs (``--only PART``) and merged
        lines += ["", "Parts measured separately: " + "; ".join(result["measured"]) + "."]
    if "runs" in result:
        lines += ["", "### Digits, 10% of the labels", ""]
        lines += _digits_markdown(result)
    if "segmentation" in result:
        lines += ["", "### Segmentation demonstration set, 10% of the labels", ""]
        lines += _segmentation_markdown(result["segmentation"])
    lines += ["", *checks_table(result["checks"])]
    return "\n".join(lines) + "\n"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _digits_markdown(result: dict[str, Any]) -> list[str]:
    s = result["summary"]
    rows = [
        [str(r["seed"]), *(f"{r[k]:.1f}%" for k in ("labelled_only", "dd_multi", "dd_single", "pruned_plain", "pruned_dd"))]
        for r in result["runs"]
    ]
    base = s["labelled_only"]
    means = [base, s["data_distillation_multi"], s["data_distillation_single"], base - s["pruned_loss_plain"], base - s["pruned_loss_dd"]]
    rows.append(["**mean**", *(f"{v:.2f}%" for v in means)])
    head = ["seed", "labelled only", "DD, multi-transform", "DD, single-transform", "pruned, labelled only", "pruned, DD"]
    lines = [result["protocol"] + ".", "", *_table(head, rows)]
    lines += ["", "Pseudo-labels of the unlabelled digits (mean over seeds): accuracy of all hard predictions, and of the kept ones.", ""]
    lines += ["| teacher transforms | all | kept |", "|---|---|---|"]
    for name, ts in result["transforms"].items():
        lines.append(
            f"| {name}: {', '.join(ts)} | {s['pseudo_label_accuracy_all'][name]:.2f}% | {s['pseudo_label_accuracy_kept'][name]:.2f}% |"
        )
    per_round = s.get("pseudo_label_accuracy_kept_per_round")
    if per_round:
        lines += ["", "Accuracy of the kept pseudo-labels in each round (mean over seeds; round 1 is the labelled-only teacher's):", ""]
        lines += _table(
            ["transforms", *(f"round {i + 1}" for i in range(len(per_round["multi"])))],
            [[name, *(f"{v:.2f}%" for v in vals)] for name, vals in per_round.items()],
        )
    changed = s.get("changed_per_round")
    if changed:
        lines += [
            "",
            "Share of the unlabelled digits whose hard label changed since the previous round (mean over seeds; "
            "a seed stops below the threshold), and the rounds each seed trained:",
            "",
        ]
        width = max(len(v) for v in changed.values())
        lines += _table(
            ["transforms", *(f"round {i + 2}" for i in range(width)), "rounds trained per seed"],
            [
                [name, *(f"{100 * v:.2f}%" for v in vals), *([""] * (width - len(vals))), ", ".join(map(str, s["rounds"][name]))]
                for name, vals in changed.items()
            ],
        )
    return lines


def _segmentation_markdown(seg: dict[str, Any]) -> list[str]:
    s = seg["summary"]
    lines = [seg["protocol"] + ".", ""]
    rows = [
        [str(r["seed"]), *(f"{r[k]:.1f}" for k in ("teacher", "labelled_only", "data_distillation"))]
        + [f"{100 * r['pseudo_labels']['multi']['kept_fraction']:.1f}%", f"{r['pseudo_labels']['multi']['accuracy_kept'] or 0:.1f}%"]
        for r in seg["runs"]
    ]
    pl = s["pseudo_labels"]
    rows.append(
        ["**mean**", *(f"{s[k]:.2f}" for k in ("teacher", "labelled_only", "data_distillation"))]
        + [f"{100 * pl['multi']['kept_fraction']:.1f}%", f"{pl['multi']['accuracy_kept']:.2f}%"]
    )
    head = ["seed", "teacher (labelled only)", "+ steps, labelled only", "+ steps, Data Distillation", "pixels kept", "kept pixels correct"]
    lines += _table(head, rows)
    lines += [
        "",
        f"mIoU (%) on the held-out samples. Pseudo-labels (mean over seeds): four views keep {100 * pl['multi']['kept_fraction']:.1f}% "
        f"of the pixels, {pl['multi']['accuracy_kept']:.2f}% of them correct ({pl['multi']['accuracy_all']:.2f}% of all hard "
        f"predictions); one view keeps {100 * pl['single']['kept_fraction']:.1f}%, {pl['single']['accuracy_kept']:.2f}% correct "
        f"({pl['single']['accuracy_all']:.2f}% of all).",
    ]
    return lines


def readme_summary(result: dict[str, Any]) -> str:
    """The figures quoted in the README (the parts the result holds)."""
    out = []
    if "runs" in result:
        s = result["summary"]
        out.append(
            f"Measured by `convpress bench data-distillation` (LeNet-5, 10% of the bundled digits labelled, mean of "
            f"{len(result['runs'])} seeds): labelled only {s['labelled_only']:.2f}%, with Data Distillation "
            f"{s['data_distillation_multi']:.2f}% ({s['gain_multi']:+.2f} points; single-transform pseudo-labels "
            f"{s['data_distillation_single']:.2f}%); pruned to the lenet-5 recipe's sparsity it loses "
            f"{s['pruned_loss_dd']:.2f} points with Data Distillation and {s['pruned_loss_plain']:.2f} without."
        )
    if "segmentation" in result:
        s = result["segmentation"]["summary"]
        out.append(
            f"Segmentation (ShuffleSeg, demonstration set, 10% of the labels, mean of {s['seeds']} seeds, held-out mIoU): "
            f"the same extra steps on the labelled part alone give {s['labelled_only']:.2f}, with Data Distillation "
            f"{s['data_distillation']:.2f} ({s['gain']:+.2f} points; teacher {s['teacher']:.2f})."
        )
    return "\n\n".join(out)


BENCHMARKS.register(
    "data-distillation",
    Benchmark(
        run,
        to_markdown,
        "Data Distillation, 10% of the labels: bundled digits (gain, transform ablation, pruned student), segmentation demo set",
        readme_summary=readme_summary,
    ),
)
