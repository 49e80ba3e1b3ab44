"""Segmentation metrics: confusion matrix, per-class intersection over union, mean IoU.

Pixels labelled with the ignore index count nowhere. A class that appears neither in the labels
nor in the predictions has no IoU (NaN) and is left out of the mean, as in the Cityscapes and
VOC evaluations.
"""

from __future__ import annotations

import torch

from convpress.core.errors import InputError

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou"]


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, ignore_index: int = 255) -> torch.Tensor:
    """Counts of (true class, predicted class) over the pixels whose label is not ``ignore_index``.

    Args:
        pred: predicted classes, any shape (e.g. (N, H, W)), integers in ``0 .. num_classes - 1``.
        target: labels of the same shape.
        num_classes: K.
        ignore_index: label of pixels left out.

    Returns:
        (K, K) int64: row = true class, column = predicted class.

    Raises:
        InputError: shapes that differ, or a label or prediction outside the classes.
    """
    if pred.shape != target.shape:
        raise InputError(f"predictions {tuple(pred.shape)} and labels {tuple(target.shape)} differ in shape")
    keep = target != ignore_index
    t, p = target[keep].long(), pred[keep].long()
    for name, v in (("label", t), ("prediction", p)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise InputError(f"a {name} lies outside the {num_classes} classes")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """(K,) float64 IoU = TP / (TP + FP + FN) per class; NaN where the class is absent from both."""
    c = confusion.double()
    tp = c.diagonal()
    union = c.sum(0) + c.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of the per-class IoUs that exist (see :func:`iou_per_class`), in [0, 1]."""
    iou = iou_per_class(confusion)
    present = iou[~iou.isnan()]
    return float(present.mean()) if present.numel() else float("nan")
