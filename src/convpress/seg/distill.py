"""Data Distillation for segmentation (Radosavovic et al. CVPR 2018): unlabelled images become training data.

:func:`distill_segmenter` runs the paper's four steps on segmentation data:

1. a teacher trained on the labelled samples (given, or trained here with
   :func:`~convpress.seg.train.train_segmenter`);
2. its predictions on every unlabelled image under several transforms (scales and a horizontal
   flip, :data:`SEG_TRANSFORMS`), per-pixel probabilities mapped back and averaged
   (:func:`~convpress.compress.multi_transform.multi_transform_predict`);
3. hard labels where the averaged probability is confident, the ignore index elsewhere
   (:func:`~convpress.compress.pseudo_labels.pseudo_label_images`, any
   :class:`~convpress.compress.pseudo_labels.Rule`);
4. a student trained by :func:`~convpress.seg.train.train_segmenter` on batches that mix labelled
   and pseudo-labelled crops at a set ratio.

Both trainings are resumable: the teacher's checkpoint lives in ``work_dir/teacher``, the
student's in ``work_dir/student``; a rerun skips what is done and ends with the same weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convpress.compress.data_distill import check_mix
from convpress.compress.multi_transform import HFlip, Identity, Scale, Transform, check_transforms
from convpress.compress.pseudo_labels import Confidence, LabelledStats, PseudoLabelReport, Rule, pseudo_label_images
from convpress.core.digest import state_digest
from convpress.core.errors import ConfigError
from convpress.core.statedict import state_mismatch
from convpress.models import create_model
from convpress.seg.data import IGNORE_INDEX
from convpress.seg.train import Samples, SegTrainConfig, SegTrainResult, train_segmenter

__all__ = ["SEG_TRANSFORMS", "SegDistillResult", "distill_segmenter", "check_teacher_classes"]

SEG_TRANSFORMS: tuple[Transform, ...] = (Identity(), HFlip(), Scale(0.75), Scale(1.25))
"""The teacher's default views (the paper's scales and flip): the image (3, H, W), its mirror, and
rescalings to 0.75 and 1.25 of its size; each view's per-pixel probabilities are mapped back to (H, W)."""


@dataclass
class SegDistillResult:
    """What :func:`distill_segmenter` did.

    Attributes:
        student: the student's :class:`~convpress.seg.train.SegTrainResult` (model, history, best mIoU).
        teacher: the teacher (eval mode).
        teacher_result: the teacher's training result when it was trained here, else None.
        pseudo_labels: the :class:`~convpress.compress.pseudo_labels.PseudoLabelReport` (kept
            fraction of pixels; their accuracy when the unlabelled images came with masks).
        student_init: where the student started: "teacher", "init" or "random".
    """

    student: SegTrainResult
    teacher: nn.Module
    teacher_result: SegTrainResult | None
    pseudo_labels: PseudoLabelReport
    student_init: str


def check_teacher_classes(teacher: nn.Module, sample: torch.Tensor, num_classes: int) -> None:
    """ConfigError if ``teacher`` does not give ``num_classes`` score maps for ``sample`` (3, H, W)."""
    was = teacher.training
    teacher.eval()
    try:
        with torch.no_grad():
            out = teacher(sample[None])
    finally:
        teacher.train(was)
    if not (isinstance(out, torch.Tensor) and out.ndim == 4):
        raise ConfigError(f"the teacher must return (N, K, H, W) score maps, got {type(out).__name__}")
    if int(out.shape[1]) != num_classes:
        raise ConfigError(f"the teacher predicts {out.shape[1]} classes but the data has {num_classes}")


def _labelled_stats(train: Samples, num_classes: int) -> LabelledStats:
    """Class counts and annotated pixels of every labelled mask (masks may differ in size)."""
    counts = torch.zeros(num_classes, dtype=torch.int64)
    positions = 0
    for k in range(len(train)):
        mask = train[k][1]
        positions += mask.numel()
        valid = mask[mask != IGNORE_INDEX]
        counts += torch.bincount(valid.flatten(), minlength=num_classes)[:num_classes]
    return LabelledStats(len(train), positions, counts)


def distill_segmenter(
    train: Samples,
    unlabelled: Sequence[Any],
    val: Samples,
    cfg: SegTrainConfig,
    *,
    data_id: Any,
    unlabelled_id: Any,
    teacher: nn.Module | None = None,
    teacher_cfg: SegTrainConfig | None = None,
    transforms: Sequence[Transform] = SEG_TRANSFORMS,
    rule: Rule | None = None,
    ratio: float = 1.0,
    init: dict[str, torch.Tensor] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> SegDistillResult:
    """Train a segmentation student on labelled plus teacher-pseudo-labelled images.

    Args:
        train: labelled (image (3, H, W), mask (H, W)) samples.
        unlabelled: images (3, H, W) of any sizes, or (image, mask) pairs whose masks only score
            the pseudo-labels in the report.
        val: held-out samples scored after every epoch (teacher and student keep their best epoch).
        cfg: the student's training settings (model, classes, epochs, steps, batch, crops, lr, seed).
        data_id: what identifies the labelled data (part of the checkpoints' fingerprints).
        unlabelled_id: what identifies the unlabelled images (e.g. their file names).
        teacher: a trained model returning (N, K, h, w) logits; default: one trained here on
            ``train`` with ``teacher_cfg`` (default ``cfg``).
        teacher_cfg: settings of that teacher's training.
        transforms: the teacher's views, per-pixel probabilities mapped back and averaged.
        rule: which pixels keep their hard label (default ``Confidence(0.9)``); the others get
            the ignore index. ``MatchRate()`` is the paper's rule (as many annotated pixels as the
            labelled masks have).
        ratio: labelled crops per pseudo-labelled crop in each batch.
        init: the student's starting weights; default: the teacher's when it is the same model
            (``cfg.model``, ``cfg.model_kwargs``), else a random initialisation.
        work_dir: checkpoint folder (``teacher/`` and ``student/`` inside); a rerun resumes.
        progress: draw progress bars.

    Returns:
        :class:`SegDistillResult`.

    Raises:
        ConfigError: before any training: an empty ``unlabelled``, transforms that cannot be
            mapped back, a rule that does not apply, a bad ratio, a teacher whose class count
            differs from ``cfg.num_classes``; after pseudo-labelling, if no pixel was kept.
    """
    check_transforms(transforms, "segmentation")
    rule = Confidence() if rule is None else rule
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule must be Confidence, KeepFraction or MatchRate, got {rule!r}")
    rule.check(dense=True)
    check_mix(cfg.batch, ratio)
    if len(unlabelled) == 0:
        raise ConfigError("the unlabelled set is empty: give at least one image to pseudo-label")
    if len(train) == 0:
        raise ConfigError("no labelled samples to train on")
    teacher_cfg = cfg if teacher_cfg is None else teacher_cfg
    if teacher_cfg.num_classes != cfg.num_classes:
        raise ConfigError(f"the teacher's settings have {teacher_cfg.num_classes} classes but the student's {cfg.num_classes}")
    if teacher is not None:
        check_teacher_classes(teacher, train[0][0], cfg.num_classes)
    work = Path(work_dir) if work_dir is not None else None

    teacher_result = None
    if teacher is None:
        teacher_result = train_segmenter(
            train, val, teacher_cfg, data_id=data_id, work_dir=work / "teacher" if work else None, progress=progress
        )
        teacher = teacher_result.model
        same = (teacher_cfg.model, teacher_cfg.model_kwargs) == (cfg.model, cfg.model_kwargs)
    else:
        probe = create_model(cfg.model, num_classes=cfg.num_classes, **cfg.model_kwargs)
        same = not state_mismatch(probe.state_dict(), teacher.state_dict())
    teacher.eval()
    stats = None if isinstance(rule, Confidence) else _labelled_stats(train, cfg.num_classes)
    pseudo, report = pseudo_label_images(teacher, unlabelled, transforms, rule=rule, stats=stats, ignore_index=IGNORE_INDEX)
    if report.kept == 0:
        raise ConfigError(f"no pixel passed {report.rule}; lower the confidence threshold")
    teacher_state = {k: v.detach().clone() for k, v in teacher.state_dict().items()}
    if init is not None:
        start, student_init = init, "init"
    elif same:
        start, student_init = teacher_state, "teacher"
    else:
        start, student_init = None, "random"
    student_data = {
        "labelled": data_id,
        "unlabelled": unlabelled_id,
        "teacher": state_digest(teacher_state),
        "transforms": [repr(t) for t in transforms],
        "rule": repr(rule),
    }
    result = train_segmenter(
        train,
        val,
        cfg,
        data_id=student_data,
        work_dir=work / "student" if work else None,
        progress=progress,
        init=start,
        pseudo=pseudo,
        ratio=ratio,
    )
    return SegDistillResult(result, teacher, teacher_result, report, student_init)
