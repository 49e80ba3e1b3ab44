"""Hard pseudo-labels from multi-transform predictions (Data Distillation, step 3).

The teacher's aggregated probabilities (see :mod:`convpress.compress.multi_transform`) become
hard labels (the most probable class), and only confident ones are kept. Which ones is a rule
object:

* :class:`Confidence` keeps predictions whose probability reaches a fixed threshold;
* :class:`KeepFraction` keeps the most confident fraction, optionally per class in the labelled
  data's class proportions (so the pseudo-labels do not over-represent the easy classes);
* :class:`MatchRate` is the paper's rule: the threshold is set so that unlabelled images carry
  as many annotations on average as labelled ones. It applies where a labelled image carries a
  variable number of annotations: segmentation masks whose pixels may be unannotated
  (``ignore_index``), where the kept fraction of pixels then equals the labelled data's
  annotated fraction, and structured outputs such as boxes (:meth:`MatchRate.threshold_for` on
  the candidate scores). It does not apply to classification, where every image carries
  exactly one label and the rule would keep everything; use :class:`KeepFraction` there.

Dense pseudo-labels keep every image and mark dropped pixels with ``ignore_index``, which the
loss skips. A :class:`PseudoLabelReport` says how many labels were kept and, when the unlabelled
loader also yields ground truth, how accurate they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from convpress.compress.multi_transform import Identity, Transform, check_transforms, multi_transform_predict
from convpress.core.errors import ConfigError, InputError

__all__ = [
    "Confidence",
    "KeepFraction",
    "MatchRate",
    "LabelledStats",
    "Rule",
    "PseudoLabels",
    "PseudoLabelReport",
    "labelled_stats",
    "pseudo_label",
    "split_batch",
    "pseudo_label_images",
]


@dataclass(frozen=True)
class LabelledStats:
    """What the rules may match in the labelled data.

    Attributes:
        images: labelled images.
        positions: label positions (one per image for classification, pixels for segmentation).
        class_counts: annotations per class (K,).
    """

    images: int
    positions: int
    class_counts: torch.Tensor

    @property
    def annotated_fraction(self) -> float:
        """Annotated positions over all positions (1.0 for classification)."""
        return float(self.class_counts.sum()) / max(self.positions, 1)


class Rule:
    """Chooses which hard labels to keep from their confidences."""

    def check(self, *, dense: bool) -> None:
        """Raise ConfigError before any work if the rule does not apply to the task (``dense``: segmentation)."""

    def keep(self, conf: torch.Tensor, pred: torch.Tensor, num_classes: int, stats: LabelledStats | None) -> torch.Tensor:
        """Mask of the labels to keep.

        Args:
            conf: aggregated probability of each hard label, (N,) or (N, H, W).
            pred: the hard labels, same shape.
            num_classes: K.
            stats: the labelled data's statistics, if known.

        Returns:
            Bool mask of ``conf``'s shape.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Confidence(Rule):
    """Keep a hard label when its aggregated probability is at least ``threshold`` (in (0, 1])."""

    threshold: float = 0.9

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and 0 < self.threshold <= 1):
            raise ConfigError(f"confidence threshold must be in (0, 1], got {self.threshold!r}")

    def keep(self, conf: torch.Tensor, pred: torch.Tensor, num_classes: int, stats: LabelledStats | None) -> torch.Tensor:
        return conf >= self.threshold


@dataclass(frozen=True)
class KeepFraction(Rule):
    """Keep the most confident ``fraction`` of the labels.

    With ``per_class``, class c keeps at most ``fraction * n * p_c`` of its most confident
    predictions, p_c being the class's share of the labelled data (uniform without labelled data),
    so the pseudo-labels follow the labelled class balance.
    """

    fraction: float = 0.8
    per_class: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise ConfigError(f"keep fraction must be in (0, 1], got {self.fraction!r}")

    def keep(self, conf: torch.Tensor, pred: torch.Tensor, num_classes: int, stats: LabelledStats | None) -> torch.Tensor:
        n = conf.numel()
        if not self.per_class:
            return _top(conf, round(self.fraction * n))
        share = (
            stats.class_counts.double() / stats.class_counts.sum().clamp_min(1)
            if stats is not None and len(stats.class_counts) == num_classes
            else torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        )
        mask = torch.zeros_like(conf, dtype=torch.bool)
        for c in range(num_classes):
            members = pred == c
            quota = min(int(members.sum()), round(self.fraction * n * float(share[c])))
            mask |= members & _top(torch.where(members, conf, torch.full_like(conf, -1.0)), quota)
        return mask


@dataclass(frozen=True)
class MatchRate(Rule):
    """The paper's rule: keep as many annotations per unlabelled image as labelled images carry.

    For segmentation the kept fraction of pixels equals the labelled masks' annotated fraction
    (pixels not equal to ``ignore_index``), measured from the labelled data unless ``rate`` gives it.
    For boxes, :meth:`threshold_for` gives the score threshold from all candidates' scores.
    """

    rate: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not (isinstance(self.rate, (int, float)) and 0 < self.rate <= 1):
            raise ConfigError(f"MatchRate rate (annotated fraction) must be in (0, 1], got {self.rate!r}")

    def check(self, *, dense: bool) -> None:
        if not dense:
            raise ConfigError(
                "MatchRate does not apply to classification: every labelled image carries one label, so matching "
                "the rate would keep every prediction; use KeepFraction (per_class=True matches the class balance) or Confidence"
            )

    def keep(self, conf: torch.Tensor, pred: torch.Tensor, num_classes: int, stats: LabelledStats | None) -> torch.Tensor:
        rate = self.rate if self.rate is not None else (stats.annotated_fraction if stats is not None else None)
        if rate is None:
            raise ConfigError("MatchRate needs the labelled data (or rate=) to know its annotation rate")
        return _top(conf, round(rate * conf.numel()))

    @staticmethod
    def threshold_for(scores: torch.Tensor, images: int, per_image: float) -> float:
        """The score threshold keeping ``per_image`` annotations per image on average.

        Args:
            scores: scores of every candidate annotation (e.g. boxes) over ``images`` unlabelled images, (M,).
            images: how many unlabelled images the candidates come from.
            per_image: mean annotations per labelled image.

        Returns:
            The lowest kept score (``inf`` when nothing is kept).
        """
        k = min(round(per_image * images), scores.numel())
        if k <= 0:
            return math.inf
        return float(scores.flatten().topk(k).values[-1])


def _top(conf: torch.Tensor, k: int) -> torch.Tensor:
    """Mask of the ``k`` largest entries (ties broken by position, so exactly ``k``)."""
    flat = conf.flatten()
    mask = torch.zeros_like(flat, dtype=torch.bool)
    k = max(0, min(k, flat.numel()))
    if k:
        mask[flat.topk(k).indices] = True
    return mask.view_as(conf)


@dataclass
class PseudoLabelReport:
    """How many pseudo-labels were kept and how good they are.

    Attributes:
        images: unlabelled images seen.
        candidates: predictions (images for classification, pixels for segmentation).
        kept: hard labels kept.
        kept_images: images with at least one kept label.
        threshold: the lowest kept confidence (``nan`` when nothing is kept).
        rule: the selection rule.
        transforms: the transforms whose predictions were aggregated.
        per_class: kept labels per class.
        accuracy: percent of kept labels equal to the ground truth (None without ground truth).
        accuracy_all: percent of all hard predictions (before selection) equal to the ground truth.
    """

    images: int
    candidates: int
    kept: int
    kept_images: int
    threshold: float
    rule: str
    transforms: list[str]
    per_class: list[int] = field(default_factory=list)
    accuracy: float | None = None
    accuracy_all: float | None = None

    @property
    def kept_fraction(self) -> float:
        """kept / candidates."""
        return self.kept / max(self.candidates, 1)


@dataclass
class PseudoLabels:
    """Kept inputs and their hard labels.

    Attributes:
        inputs: images (M, C, H, W) with at least one kept label (untransformed).
        labels: classes (M,) for classification, or (M, H, W) with ``ignore_index`` where dropped.
        report: the :class:`PseudoLabelReport`.
        predictions: the hard label of every candidate before selection, (N,) or (N, H, W), in
            the order of the unlabelled set (compare two teachers' labels with it).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    report: PseudoLabelReport
    predictions: torch.Tensor | None = None


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An unlabelled batch as (inputs, ground truth or None): a tensor, ``(x,)`` or ``(x, y)``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and 1 <= len(batch) <= 2 and isinstance(batch[0], torch.Tensor):
        y = batch[1] if len(batch) == 2 else None
        return batch[0], y if isinstance(y, torch.Tensor) else None
    raise InputError(f"an unlabelled batch must be a tensor (N, C, H, W), (x,) or (x, y), got {type(batch).__name__}")


def labelled_stats(labels: torch.Tensor, num_classes: int, *, ignore_index: int = 255) -> LabelledStats:
    """:class:`LabelledStats` of labelled targets (N,) or (N, H, W)."""
    valid = labels[labels != ignore_index]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise InputError(f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}")
    return LabelledStats(int(labels.shape[0]), labels.numel(), torch.bincount(valid.flatten().long(), minlength=num_classes))


def pseudo_label(
    teacher: nn.Module,
    unlabelled: Iterable[Any],
    transforms: Sequence[Transform] = (Identity(),),
    *,
    task: str = "classification",
    rule: Rule | None = None,
    stats: LabelledStats | None = None,
    ignore_index: int = 255,
    device: str | torch.device | None = None,
) -> PseudoLabels:
    """Hard pseudo-labels for ``unlabelled`` images from ``teacher``'s multi-transform predictions.

    Args:
        teacher: the trained model (run in eval mode, no gradients).
        unlabelled: batches of images (N, C, H, W), as tensors, ``(x,)`` or ``(x, y)``; ``y``
            (N,) or (N, H, W) is ground truth used only for the report's accuracy.
        transforms: see :func:`~convpress.compress.multi_transform.multi_transform_predict`.
        task: "classification" or "segmentation" (for structured outputs, aggregate with
            ``multi_transform_predict(..., task=fn)`` and select with :meth:`MatchRate.threshold_for`).
        rule: :class:`Confidence` (default 0.9), :class:`KeepFraction` or :class:`MatchRate`.
        stats: the labelled data's :class:`LabelledStats` (for per-class balance and MatchRate).
        ignore_index: label of dropped pixels in dense pseudo-labels (and of unannotated ground truth).
        device: where the teacher runs (default: its parameters' device); results are on the CPU.

    Returns:
        :class:`PseudoLabels`.

    Raises:
        ConfigError: before any prediction for transforms that do not suit the task, a rule that
            does not apply, or a task other than classification/segmentation; or if
            ``unlabelled`` is empty.
    """
    if task not in ("classification", "segmentation"):
        raise ConfigError(
            f"pseudo_label makes hard labels for 'classification' and 'segmentation', not {task!r}; "
            "select structured outputs with MatchRate.threshold_for"
        )
    agg = check_transforms(transforms, task)
    dense = task == "segmentation"
    rule = Confidence() if rule is None else rule
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule must be Confidence, KeepFraction or MatchRate, got {rule!r}")
    rule.check(dense=dense)
    xs, confs, preds, gts, k = _predict(teacher, unlabelled, transforms, agg, device)
    if not xs or sum(len(x) for x in xs) == 0:
        raise ConfigError("the unlabelled set is empty: give at least one image to pseudo-label")
    if len({tuple(x.shape[1:]) for x in xs}) > 1:
        raise InputError("the unlabelled batches differ in image size; use pseudo_label_images for images of several sizes")
    masks, report = _select(confs, preds, gts, rule, k, stats, ignore_index, dense, transforms)
    x_all, pred_all, mask = torch.cat(xs), torch.cat(preds), torch.cat(masks)
    per_image = mask.flatten(1).any(1) if dense else mask
    if dense:
        inputs, labels = x_all[per_image], torch.where(mask, pred_all, torch.full_like(pred_all, ignore_index))[per_image]
    else:
        inputs, labels = x_all[mask], pred_all[mask]
    return PseudoLabels(inputs, labels, report, pred_all)


def _predict(
    teacher: nn.Module, unlabelled: Iterable[Any], transforms: Sequence[Transform], agg: Any, device: str | torch.device | None
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor | None], int]:
    """Per batch: inputs, aggregated confidence and hard label (N[, H, W]), ground truth or None; and K."""
    if device is None:
        first = next(iter(teacher.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    xs, confs, preds, gts, k = [], [], [], [], 0
    for batch in unlabelled:
        x, y = split_batch(batch)
        prob = multi_transform_predict(teacher, x.to(device), transforms, task=agg).cpu()  # (N, K[, H, W])
        conf, pred = prob.max(1)
        if y is not None and y.shape != pred.shape:
            raise InputError(f"ground truth of shape {tuple(y.shape)} does not match the predictions {tuple(pred.shape)}")
        xs.append(x.cpu())
        confs.append(conf)
        preds.append(pred)
        gts.append(None if y is None else y.cpu())
        k = int(prob.shape[1])
    return xs, confs, preds, gts, k


def _select(
    confs: list[torch.Tensor],
    preds: list[torch.Tensor],
    gts: list[torch.Tensor | None],
    rule: Rule,
    k: int,
    stats: LabelledStats | None,
    ignore_index: int,
    dense: bool,
    transforms: Sequence[Transform],
) -> tuple[list[torch.Tensor], PseudoLabelReport]:
    """The rule over all batches at once (flattened, so batches may differ in size): kept masks per batch and the report."""
    conf_all, pred_all = torch.cat([c.flatten() for c in confs]), torch.cat([p.flatten() for p in preds])
    flat = rule.keep(conf_all, pred_all, k, stats)
    masks = [m.view_as(c) for m, c in zip(flat.split([c.numel() for c in confs]), confs, strict=True)]
    acc = acc_all = None
    if all(g is not None for g in gts):
        gt = torch.cat([g.flatten() for g in gts if g is not None])
        valid = gt != ignore_index
        hit = (pred_all == gt) & valid
        acc_all = 100.0 * float(hit.sum()) / max(int(valid.sum()), 1)
        acc = 100.0 * float((hit & flat).sum()) / max(int((valid & flat).sum()), 1) if bool((valid & flat).any()) else None
    kept_images = sum(int(m.flatten(1).any(1).sum()) if dense else int(m.sum()) for m in masks)
    report = PseudoLabelReport(
        images=sum(len(c) for c in confs),
        candidates=conf_all.numel(),
        kept=int(flat.sum()),
        kept_images=kept_images,
        threshold=float(conf_all[flat].min()) if bool(flat.any()) else math.nan,
        rule=repr(rule),
        transforms=[repr(t) for t in transforms],
        per_class=torch.bincount(pred_all[flat], minlength=k).tolist(),
        accuracy=acc,
        accuracy_all=acc_all,
    )
    return masks, report


def pseudo_label_images(
    teacher: nn.Module,
    images: Iterable[Any],
    transforms: Sequence[Transform] = (Identity(),),
    *,
    rule: Rule | None = None,
    stats: LabelledStats | None = None,
    ignore_index: int = 255,
    device: str | torch.device | None = None,
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], PseudoLabelReport]:
    """Dense pseudo-labels for images of any sizes (segmentation), the rule applied over all their pixels.

    Each image runs through the teacher on its own (a batch of one), so images may differ in size.

    Args:
        teacher: the trained segmentation model, (1, C, H, W) -> logits (1, K, h, w).
        images: images (C, H, W), or ``(image, mask (H, W))`` pairs whose masks only score the report.
        transforms: see :func:`~convpress.compress.multi_transform.multi_transform_predict`.
        rule: :class:`Confidence` (default 0.9), :class:`KeepFraction` or :class:`MatchRate`.
        stats: the labelled data's :class:`LabelledStats`.
        ignore_index: label of dropped pixels.
        device: where the teacher runs.

    Returns:
        ``[(image (C, H, W), labels (H, W) int64 with ignore_index where dropped)]`` for every image
        with at least one kept pixel, and the :class:`PseudoLabelReport`.

    Raises:
        ConfigError: before any prediction for transforms that cannot be mapped back or a rule
            that does not apply; or if ``images`` is empty.
    """
    agg = check_transforms(transforms, "segmentation")
    rule = Confidence() if rule is None else rule
    if not isinstance(rule, Rule):
        raise ConfigError(f"rule must be Confidence, KeepFraction or MatchRate, got {rule!r}")
    rule.check(dense=True)

    def batches() -> Iterable[Any]:
        for item in images:
            if isinstance(item, (tuple, list)):
                yield (item[0][None], item[1][None]) if len(item) == 2 and item[1] is not None else (item[0][None],)
            else:
                yield item[None]

    xs, confs, preds, gts, k = _predict(teacher, batches(), transforms, agg, device)
    if not xs:
        raise ConfigError("the unlabelled set is empty: give at least one image to pseudo-label")
    masks, report = _select(confs, preds, gts, rule, k, stats, ignore_index, True, transforms)
    out = [
        (x[0], torch.where(m, p, torch.full_like(p, ignore_index))[0]) for x, p, m in zip(xs, preds, masks, strict=True) if bool(m.any())
    ]
    return out, report
