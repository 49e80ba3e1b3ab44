"""Data Distillation (Radosavovic, Dollar, Girshick, Gkioxari, He, CVPR 2018): a student learns
from labelled images plus unlabelled images labelled by a teacher's multi-transform predictions.

:func:`data_distill` runs steps 2-4 of the paper: the (trained) teacher predicts the unlabelled
images under several transforms, confident aggregated predictions become hard labels
(:func:`~convpress.compress.pseudo_labels.pseudo_label`), and the student is trained on batches
that mix labelled and pseudo-labelled samples in a set ratio (:class:`MixedBatches`). Training is
:func:`~convpress.compress.finetune.finetune`, so a pruned or weight-shared student keeps its zeros
and centroids, and ``distill=`` / ``pruning=`` combine with it.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from convpress.compress.distill import Distill
from convpress.compress.finetune import FinetuneResult, _check, finetune
from convpress.compress.multi_transform import Identity, Transform, check_transforms
from convpress.compress.pseudo_labels import PseudoLabelReport, PseudoLabels, Rule, labelled_stats, pseudo_label, split_batch
from convpress.compress.schedule import AGP
from convpress.core.errors import ConfigError, InputError

__all__ = ["data_distill", "DataDistillResult", "MixedBatches", "collect", "check_mix", "mix_counts"]

#: ``augment(inputs, targets) -> (inputs, targets)``, applied to each training batch
Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def collect(loader: Iterable[Any], what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``(inputs, targets)`` batches of ``loader`` concatenated on the CPU.

    Raises:
        ConfigError: if ``loader`` yields nothing.
    """
    xs, ys = [], []
    for batch in loader:
        x, y = split_batch(batch)
        if y is None:
            raise InputError(f"the {what} batches must be (inputs, targets) pairs")
        xs.append(x.cpu())
        ys.append(y.cpu())
    if not xs or sum(len(x) for x in xs) == 0:
        raise ConfigError(f"the {what} set is empty")
    return torch.cat(xs), torch.cat(ys)


class MixedBatches:
    """Batches of ``batch_size`` samples, ``ratio : 1`` labelled to pseudo-labelled in each.

    One epoch passes over the larger of the two parts once (in the proportions of the mix);
    the other part is cycled, each pass in a new random order drawn from ``generator`` (whose
    state the training checkpoints hold, so a resumed run sees the same batches).

    Args:
        labelled: ``(inputs (L, ...), targets (L, ...))``.
        pseudo: ``(inputs (M, ...), labels (M, ...))``.
        batch_size: samples per batch (>= 2).
        ratio: labelled samples per pseudo-labelled sample in a batch (> 0).
        seed: seed of the sample order.
        augment: ``augment(x, y) -> (x, y)`` applied to each mixed batch (e.g. random shifts).
    """

    def __init__(
        self,
        labelled: tuple[torch.Tensor, torch.Tensor],
        pseudo: tuple[torch.Tensor, torch.Tensor],
        *,
        batch_size: int = 64,
        ratio: float = 1.0,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        check_mix(batch_size, ratio)
        if augment is not None and not callable(augment):
            raise ConfigError(f"augment must be a callable augment(x, y) -> (x, y), got {augment!r}")
        self.augment = augment
        if len(labelled[0]) == 0 or len(pseudo[0]) == 0:
            raise ConfigError("a mixed batch needs labelled and pseudo-labelled samples; one part is empty")
        if labelled[0].shape[1:] != pseudo[0].shape[1:] or labelled[1].shape[1:] != pseudo[1].shape[1:]:
            raise InputError(
                f"labelled samples {tuple(labelled[0].shape[1:])} -> {tuple(labelled[1].shape[1:])} and pseudo-labelled "
                f"samples {tuple(pseudo[0].shape[1:])} -> {tuple(pseudo[1].shape[1:])} differ in shape"
            )
        self.labelled, self.pseudo = labelled, pseudo
        self.n_labelled, self.n_pseudo = mix_counts(batch_size, ratio)
        self.generator = torch.Generator().manual_seed(seed)
        self._steps = max(math.ceil(len(labelled[0]) / self.n_labelled), math.ceil(len(pseudo[0]) / self.n_pseudo))

    def __len__(self) -> int:
        return self._steps

    def _stream(self, n: int) -> Iterator[torch.Tensor]:
        while True:
            yield from torch.randperm(n, generator=self.generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        lab, pse = self._stream(len(self.labelled[0])), self._stream(len(self.pseudo[0]))
        for _ in range(self._steps):
            il = torch.stack([next(lab) for _ in range(self.n_labelled)])
            ip = torch.stack([next(pse) for _ in range(self.n_pseudo)])
            x = torch.cat([self.labelled[0][il], self.pseudo[0][ip]])  # (B, C, H, W)
            y = torch.cat([self.labelled[1][il], self.pseudo[1][ip]])  # (B,) or (B, H, W)
            yield self.augment(x, y) if self.augment is not None else (x, y)


def mix_counts(batch_size: int, ratio: float) -> tuple[int, int]:
    """(labelled, pseudo-labelled) samples of a mixed batch of ``batch_size`` at ``ratio`` : 1, at least one of each."""
    check_mix(batch_size, ratio)
    n_labelled = min(batch_size - 1, max(1, round(batch_size * ratio / (1 + ratio))))
    return n_labelled, batch_size - n_labelled


def check_mix(batch_size: Any, ratio: Any) -> None:
    """ConfigError unless ``batch_size`` >= 2 and ``ratio`` > 0 (labelled : pseudo-labelled)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ConfigError(f"batch_size must be an integer >= 2 (a mixed batch holds both kinds), got {batch_size!r}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        raise ConfigError(f"ratio (labelled : pseudo-labelled samples per batch) must be a positive number, got {ratio!r}")


@dataclass
class DataDistillResult:
    """What :func:`data_distill` did.

    Attributes:
        pseudo_labels: the :class:`~convpress.compress.pseudo_labels.PseudoLabelReport` of the
            last round.
        epoch_losses: mean training loss per epoch (all rounds, in order).
        pruning_steps: sparsity after each gradual-pruning step (with ``pruning=``).
        rounds: the pseudo-label report of every round that trained (one entry without ``rounds=``).
        changed: per round after the first, the share of hard predictions (before selection)
            that differ from the previous round's, in [0, 1]; it includes the round that
            ``min_change`` stopped, which did not train.
    """

    pseudo_labels: PseudoLabelReport
    epoch_losses: list[float]
    pruning_steps: list[dict[str, float]]
    rounds: list[PseudoLabelReport] = field(default_factory=list)
    changed: list[float] = field(default_factory=list)

    @property
    def stopped_early(self) -> bool:
        """True when ``min_change`` ended the rounds before ``rounds`` were trained."""
        return len(self.changed) >= len(self.rounds)


def check_teacher(teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> None:
    """ConfigError if ``teacher`` and ``student`` give outputs of different shapes on ``x`` (N, C, H, W)."""
    outs = []
    for net in (teacher, student):
        was = net.training
        net.eval()
        try:
            with torch.no_grad():
                outs.append(net(x))
        finally:
            net.train(was)
    shapes = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
    if shapes[0] != shapes[1]:
        raise ConfigError(f"the teacher's output {shapes[0]} does not match the student's {shapes[1]}; they must predict the same classes")


def data_distill(
    student: nn.Module,
    labelled: Iterable[Any],
    unlabelled: Iterable[Any],
    *,
    teacher: nn.Module | None = None,
    transforms: Sequence[Transform] = (Identity(),),
    task: str = "classification",
    rule: Rule | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    ratio: float = 1.0,
    batch_size: int = 64,
    augment: Augment | None = None,
    ignore_index: int = 255,
    distill: Distill | None = None,
    pruning: AGP | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    rounds: int = 1,
    min_change: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> DataDistillResult:
    """Train ``student`` in place on labelled data plus the teacher's pseudo-labelled data.

    The labelled and kept pseudo-labelled samples are held in memory (as CPU tensors).

    Args:
        student: the model to train (may be smaller, pruned or weight-shared; its compression is kept).
        labelled: ``(inputs (N, C, H, W), targets (N,) or (N, H, W))`` batches.
        unlabelled: image batches (N, C, H, W): tensors, ``(x,)``, or ``(x, y)`` with ground truth
            used only to report the pseudo-labels' accuracy.
        teacher: the trained model that labels ``unlabelled``; default: a frozen copy of
            ``student`` as it is now (e.g. the dense model before compression).
        transforms: the teacher's transforms, aggregated per task (see
            :func:`~convpress.compress.multi_transform.multi_transform_predict`).
        task: "classification" or "segmentation".
        rule: which hard labels to keep (default ``Confidence(0.9)``; see
            :mod:`convpress.compress.pseudo_labels`).
        loss_fn: ``loss_fn(student(x), y)``; default cross-entropy that skips ``ignore_index``.
        epochs: passes over the larger part of the mix.
        lr: learning rate (Adam, cosine decay).
        ratio: labelled : pseudo-labelled samples in each batch (1.0 = half and half).
        batch_size: samples per mixed batch.
        augment: ``augment(x, y) -> (x, y)`` applied to each mixed batch (the paper trains the
            student with the teacher's augmentation).
        ignore_index: label of dropped pixels in dense pseudo-labels.
        distill: also match the teacher's soft outputs (:class:`~convpress.compress.distill.Distill`).
        pruning: prune gradually while training (:class:`~convpress.compress.schedule.AGP`).
        checkpoint: resumable training state (as in ``finetune``); with several rounds, round
            ``r`` > 1 keeps its state beside it, in ``<checkpoint>.round<r>``.
        rounds: how many times to distil. After each round the student, frozen, becomes the
            teacher of the next: it labels the unlabelled images again (with ``transforms`` and
            ``rule``) and the student trains on for ``epochs`` more. The paper distils once
            (``rounds=1``); later rounds are iterated self-training, which keeps helping while the
            student labels the unlabelled images better than its teacher did. ``pruning`` runs in
            the first round; later rounds keep its zeros.
        min_change: stop the rounds early, without labels: a round after the first trains only
            if at least this share (0-1) of the hard predictions on the unlabelled images changed
            since the previous round's. When the students stop changing their minds, another
            round teaches little. 0 (default) trains every round. With ``rounds`` > 1 the
            unlabelled batches are read once and kept in memory, in that order.
        seed: seed of the batch order.
        device: where to train (default: the student's device).
        progress: draw a progress bar.

    Returns:
        :class:`DataDistillResult`.

    Raises:
        ConfigError: before any training, for an empty labelled or unlabelled set, a teacher
            whose output shape differs from the student's, transforms that cannot be inverted for
            the task, a rule that does not apply, bad epochs/lr/ratio/batch_size/rounds/min_change, or when no
            pseudo-label survives the rule.
    """
    _check(epochs, lr, "adam", "cosine", 0.0)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be a whole number >= 1, got {rounds!r}")
    if isinstance(min_change, bool) or not isinstance(min_change, (int, float)) or not 0.0 <= min_change <= 1.0:
        raise ConfigError(f"min_change must be a share of the predictions in [0, 1], got {min_change!r}")
    check_mix(batch_size, ratio)
    check_transforms(transforms, task)
    if task not in ("classification", "segmentation"):
        raise ConfigError(f"data_distill trains 'classification' or 'segmentation' students, not {task!r}")
    dense = task == "segmentation"
    if rule is not None:
        if not isinstance(rule, Rule):
            raise ConfigError(f"rule must be Confidence, KeepFraction or MatchRate, got {rule!r}")
        rule.check(dense=dense)
    if teacher is None:
        teacher = copy.deepcopy(student)
    lab = collect(labelled, "labelled")
    if device is None:
        first = next(iter(student.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    check_teacher(teacher, student, lab[0][:2].to(device))
    with torch.no_grad():
        was = student.training
        student.eval()
        k = int(student(lab[0][:1].to(device)).shape[1])
        student.train(was)
    stats = labelled_stats(lab[1], k, ignore_index=ignore_index)
    loss = loss_fn if loss_fn is not None else functools.partial(F.cross_entropy, ignore_index=ignore_index)
    reports: list[PseudoLabelReport] = []
    losses: list[float] = []
    steps: list[dict[str, float]] = []
    changed: list[float] = []
    previous: torch.Tensor | None = None
    if rounds > 1:  # one fixed order for every round, so that `changed` compares each image with itself
        unlabelled = list(unlabelled)
    for r in range(1, rounds + 1):
        if r > 1:  # the student of the last round, frozen, labels the unlabelled images again
            teacher = copy.deepcopy(student).eval()
        labels: PseudoLabels = pseudo_label(
            teacher, unlabelled, transforms, task=task, rule=rule, stats=stats, ignore_index=ignore_index, device=device
        )
        if labels.report.kept == 0:
            raise ConfigError(f"no pseudo-label passed {labels.report.rule}; lower the threshold or keep a larger fraction")
        if previous is not None and labels.predictions is not None:
            changed.append(float((labels.predictions != previous).float().mean()))
            if changed[-1] < min_change:
                break
        previous = labels.predictions
        reports.append(labels.report)
        mixed = MixedBatches(
            lab, (labels.inputs, labels.labels.to(lab[1].dtype)), batch_size=batch_size, ratio=ratio, seed=seed + r - 1, augment=augment
        )
        res: FinetuneResult = finetune(
            student,
            mixed,
            loss,
            epochs,
            lr,
            distill=distill,
            pruning=pruning if r == 1 else None,
            checkpoint=checkpoint if checkpoint is None or r == 1 else f"{os.fspath(checkpoint)}.round{r}",
            seed=seed + r - 1,
            device=device,
            progress=progress,
            description="data distillation" if rounds == 1 else f"data distillation, round {r}/{rounds}",
        )
        losses += res.epoch_losses
        steps += res.pruning_steps
    return DataDistillResult(reports[-1], losses, steps, reports, changed)
