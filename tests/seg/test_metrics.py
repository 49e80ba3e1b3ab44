"""Confusion matrix, per-class IoU and mIoU against a hand-computed example."""

from __future__ import annotations

import math

import pytest
import torch

import convpress as cp
from convpress.seg.metrics import confusion_matrix, iou_per_class, mean_iou

PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])
TARGET = torch.tensor([[0, 1, 2], [2, 255, 1]])  # one ignored pixel, whatever is predicted there


def test_hand_computed_example() -> None:
    # (true, predicted) pairs: (0,0) (1,1) (2,1) (2,2) (1,0); the ignored pixel counts nowhere
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    # IoU_c = TP / (row + column - TP): 1/(1+2-1), 1/(2+2-1), 1/(2+1-1)
    assert iou_per_class(cm).tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 2])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)


def test_a_class_absent_everywhere_has_no_iou_and_is_left_out_of_the_mean() -> None:
    cm = confusion_matrix(PRED, TARGET, 4)
    iou = iou_per_class(cm)
    assert math.isnan(iou[3]) and mean_iou(cm) == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)


def test_ignore_index_is_configurable_and_bad_labels_are_refused() -> None:
    assert int(confusion_matrix(PRED, TARGET.clamp(max=2), 3, ignore_index=-1).sum()) == 6
    with pytest.raises(cp.InputError, match="outside the 3 classes"):
        confusion_matrix(PRED, torch.tensor([[0, 1, 2], [2, 7, 1]]), 3)
    with pytest.raises(cp.InputError, match="differ in shape"):
        confusion_matrix(PRED, TARGET[:1], 3)
