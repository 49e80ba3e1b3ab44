"""Real-time semantic segmentation: ShuffleSeg (Gamal, Siam et al. 2018), trained offline.

Submodules (imported on use, so ``import convpress`` stays fast):

* :mod:`convpress.seg.data` -- the bundled demonstration set (digits pasted onto photos) and
  readers for Cityscapes, Pascal VOC and plain ``images/`` + ``masks/`` folders;
* :mod:`convpress.seg.metrics` -- confusion matrix, per-class IoU, mean IoU;
* :mod:`convpress.seg.train` -- resumable, data-parallel training with scale/crop/flip
  augmentation and mIoU validated every epoch;
* :mod:`convpress.seg.distill` -- Data Distillation: a teacher's multi-view pseudo-labels on
  unlabelled images and a student trained on labelled + pseudo-labelled crops;
* :mod:`convpress.seg.apply` -- masks and overlays as PNG files;
* :mod:`convpress.seg.weights` -- safetensors files that name their model and classes.

The models live in :mod:`convpress.models.shuffleseg` (``shuffleseg``, ``shuffleseg-fcn8s``,
``shuffleseg-v2``, ``shuffleseg-mbv2``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convpress.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "IGNORE_INDEX": ".data",
    "DEMO_CLASSES": ".data",
    "DemoDigits": ".data",
    "SegFolder": ".data",
    "find_pairs": ".data",
    "read_mask": ".data",
    "confusion_matrix": ".metrics",
    "iou_per_class": ".metrics",
    "mean_iou": ".metrics",
    "SegTrainConfig": ".train",
    "train_segmenter": ".train",
    "evaluate_segmenter": ".train",
    "predict": ".train",
    "distill_segmenter": ".distill",
    "SegDistillResult": ".distill",
    "SEG_TRANSFORMS": ".distill",
    "save_segmenter": ".weights",
    "load_segmenter": ".weights",
    "colorize": ".apply",
    "overlay": ".apply",
    "write_mask": ".apply",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from convpress.seg.apply import colorize, overlay, write_mask
    from convpress.seg.data import DEMO_CLASSES, IGNORE_INDEX, DemoDigits, SegFolder, find_pairs, read_mask
    from convpress.seg.distill import SEG_TRANSFORMS, SegDistillResult, distill_segmenter
    from convpress.seg.metrics import confusion_matrix, iou_per_class, mean_iou
    from convpress.seg.train import SegTrainConfig, evaluate_segmenter, predict, train_segmenter
    from convpress.seg.weights import load_segmenter, save_segmenter
