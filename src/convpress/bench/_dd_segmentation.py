"""The segmentation task of ``convpress bench data-distillation`` (issue 21).

Per seed, a pool of the demonstration set's training samples (digits pasted onto the training
photos, 11 classes) is shuffled and divided into a labelled part (10%), an unlabelled part (the
other 90%; their masks only score the pseudo-labels) and a validation part that picks each
training's best epoch. The held-out demonstration samples (other photos, other digits) are the
test set, never trained on, never used to choose anything. ShuffleSeg is trained on the labelled
part alone (the teacher); then, from the teacher's weights and for the same number of steps,

* the Data Distillation student trains on batches mixing labelled crops with crops of the
  unlabelled images pseudo-labelled by the teacher's four views (:data:`~convpress.seg.distill.SEG_TRANSFORMS`),
* the baseline trains on the labelled part alone,

so the two differ only in the pseudo-labelled data.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from convpress.compress.multi_transform import Identity
from convpress.compress.pseudo_labels import Confidence, KeepFraction, pseudo_label_images
from convpress.seg.data import DEMO_CLASSES, IGNORE_INDEX, DemoDigits
from convpress.seg.distill import SEG_TRANSFORMS, distill_segmenter
from convpress.seg.metrics import mean_iou
from convpress.seg.train import SegTrainConfig, evaluate_segmenter, train_segmenter

__all__ = ["seg_seed_run", "seg_summary", "SEG_PROTOCOL"]

POOL, LABELLED, VAL, TEST = 1000, 100, 100, 200  # 10% of the pool labelled
TEACHER_EPOCHS, STUDENT_EPOCHS, STEPS, BATCH = 6, 6, 100, 8
TEACHER_LR, STUDENT_LR = 3e-3, 1e-3
RULE, RATIO, WIDTH = Confidence(0.9), 1.0, 0.5
SEG_PROTOCOL = (
    f"demonstration set (digits pasted onto photos, 11 classes, 96x128) per seed: a pool of {POOL} training samples, "
    f"{LABELLED} labelled (10%), the other {POOL - LABELLED} unlabelled (their masks only score the pseudo-labels), "
    f"{VAL} more training samples as the validation split (each training keeps its best epoch on it), {TEST} held-out "
    f"samples (other photos, other digits) as the test set; ShuffleSeg (width {WIDTH}) trained {TEACHER_EPOCHS}x{STEPS} "
    f"steps of {BATCH} crops on the labelled part (the teacher); from its weights, {STUDENT_EPOCHS}x{STEPS} more steps "
    f"either on the labelled part alone (baseline) or with Data Distillation (half of every batch pseudo-labelled "
    f"crops, {RULE!r} on the teacher's four views averaged: {', '.join(repr(t) for t in SEG_TRANSFORMS)}); mIoU on the test set"
)


def _miou(model: torch.nn.Module, data: Any) -> float:
    return 100.0 * mean_iou(evaluate_segmenter(model, data, len(DEMO_CLASSES)))


def seg_seed_run(seed: int, *, quick: bool, progress: bool) -> dict[str, Any]:
    """One seed of the segmentation task (see the module docstring); ``quick`` shrinks everything."""
    t0 = time.perf_counter()
    pool_n, lab_n, val_n, test_n = (40, 8, 4, 4) if quick else (POOL, LABELLED, VAL, TEST)
    epochs_t, epochs_s, steps = (1, 1, 2) if quick else (TEACHER_EPOCHS, STUDENT_EPOCHS, STEPS)
    pool = DemoDigits("train", count=pool_n + val_n, seed=seed)
    order = np.random.default_rng(seed).permutation(pool_n).tolist()
    labelled, unlabelled = Subset(pool, order[:lab_n]), [pool[i] for i in order[lab_n:]]
    val, test = Subset(pool, list(range(pool_n, pool_n + val_n))), DemoDigits("val", count=test_n, seed=0)
    k = len(DEMO_CLASSES)
    rule = KeepFraction(0.5) if quick else RULE  # a smoke run's barely trained teacher is confident nowhere

    def cfg(epochs: int, lr: float) -> SegTrainConfig:
        return SegTrainConfig(num_classes=k, model_kwargs={"width": WIDTH}, epochs=epochs, steps=steps, batch=BATCH, lr=lr, seed=seed)

    data_id = {"pool": pool_n, "labelled": order[:lab_n], "seed": seed}
    teacher = train_segmenter(labelled, val, cfg(epochs_t, TEACHER_LR), data_id=data_id, progress=progress).model.eval()
    out: dict[str, Any] = {"seed": seed, "labelled": lab_n, "unlabelled": len(unlabelled), "val": val_n, "test": test_n}
    out["teacher"] = _miou(teacher, test)
    init = {n: v.clone() for n, v in teacher.state_dict().items()}
    base = train_segmenter(labelled, val, cfg(epochs_s, STUDENT_LR), data_id=data_id, init=init, progress=progress)
    out["labelled_only"] = _miou(base.model, test)
    res = distill_segmenter(
        labelled,
        unlabelled,
        val,
        cfg(epochs_s, STUDENT_LR),
        data_id=data_id,
        unlabelled_id=order[lab_n:],
        teacher=teacher,
        rule=rule,
        ratio=RATIO,
        progress=progress,
    )
    out["data_distillation"] = _miou(res.student.model, test)
    rep = res.pseudo_labels
    single = pseudo_label_images(teacher, unlabelled, [Identity()], rule=rule, ignore_index=IGNORE_INDEX)[1]
    out["pseudo_labels"] = {
        name: {"kept_fraction": r.kept_fraction, "accuracy_kept": r.accuracy, "accuracy_all": r.accuracy_all}
        for name, r in (("multi", rep), ("single", single))
    }
    out["seconds"] = time.perf_counter() - t0
    return out


def seg_summary(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Means over seeds and the named checks of the segmentation task."""

    def mean(f: Any) -> float:
        return statistics.fmean(f(r) for r in runs)

    pseudo = {
        name: {
            key: mean(lambda r, n=name, q=key: r["pseudo_labels"][n][q] or 0.0)
            for key in ("kept_fraction", "accuracy_kept", "accuracy_all")
        }
        for name in ("multi", "single")
    }
    teacher, base, dd = mean(lambda r: r["teacher"]), mean(lambda r: r["labelled_only"]), mean(lambda r: r["data_distillation"])
    s: dict[str, Any] = {"seeds": len(runs), "teacher": teacher, "labelled_only": base, "data_distillation": dd, "gain": dd - base}
    s["pseudo_labels"] = pl = pseudo
    checks = [
        {
            "name": "segmentation demo, 10% labels: Data Distillation student - same model on the labelled part alone > 0 mIoU (mean)",
            "value": round(dd - base, 2),
            "target": 0.0,
            "passed": dd - base > 0,
        },
        {
            "name": "segmentation pseudo-labels: pixel accuracy of the kept labels, four views - one view (points, mean)",
            "value": round(pl["multi"]["accuracy_kept"] - pl["single"]["accuracy_kept"], 2),
            "target": None,
            "passed": True,
            "reported": True,
        },
    ]
    return s, checks
