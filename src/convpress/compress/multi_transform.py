"""Multi-transform inference (Radosavovic et al. 2018, "Data Distillation", step 2).

A model is run on several geometric transforms of the same images and the predictions are
aggregated, which is more accurate than any single transform. A transform is a small object:

* ``apply(x)`` maps the input batch (N, C, H, W) to the transformed batch;
* ``invariant`` says whether an image-level label survives it (classification);
* ``invert(pred, size)`` maps a dense prediction (N, K, h, w) of the transformed batch back to
  the input's frame (N, K, H, W) (segmentation). Pixels the transformed image did not show come
  back as zeros, so inverting a tensor of ones gives each pixel's coverage, and the aggregate is
  a coverage-weighted mean.

How predictions are combined is an :class:`Aggregator`, chosen per task: the mean of class
probabilities (:class:`MeanClassProbabilities`, "classification"), the coverage-weighted mean of
per-pixel probabilities mapped back (:class:`MeanPixelProbabilities`, "segmentation"), or any
callable ``fn(outputs, transforms, x)`` for structured outputs such as boxes. Each aggregator
checks the transforms before the model runs: a transform that cannot be inverted for the task
raises :class:`~convpress.core.errors.ConfigError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from convpress.core.errors import ConfigError, InputError
from convpress.core.registry import Registry

__all__ = [
    "Transform",
    "Identity",
    "HFlip",
    "Scale",
    "Zoom",
    "Shift",
    "UserTransform",
    "Aggregator",
    "MeanClassProbabilities",
    "MeanPixelProbabilities",
    "AGGREGATORS",
    "resolve_aggregator",
    "multi_transform_predict",
    "DIGIT_TRANSFORMS",
    "PHOTO_TRANSFORMS",
]


class Transform:
    """A geometric transform of an image batch and, where it exists, its inverse on predictions.

    Subclasses set ``invariant`` (an image-level label is unchanged by the transform) and
    override :meth:`apply` and, for dense tasks, :meth:`invert`.
    """

    invariant: bool = True
    invertible: bool = True

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform the input batch (N, C, H, W) -> (N, C, H', W')."""
        raise NotImplementedError

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Map a dense prediction (N, K, h, w) of the transformed batch back to (N, K, H, W) = ``size``.

        Pixels the transformed image did not show are zero (so ``invert`` of ones is the coverage).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Identity(Transform):
    """The untransformed input."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _resize(pred, size)


@dataclass(frozen=True)
class HFlip(Transform):
    """Horizontal flip (mirror left-right). Not label-preserving for digits or text: leave it out there."""

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _resize(pred.flip(-1), size)


@dataclass(frozen=True)
class Scale(Transform):
    """Resize the input by ``factor`` (the paper's multi-scale inference; the model must accept the new size).

    (N, C, H, W) -> (N, C, round(factor * H), round(factor * W)), bilinear; the inverse resizes back.
    """

    factor: float

    def __post_init__(self) -> None:
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor) and self.factor > 0):
            raise ConfigError(f"Scale factor must be a positive number, got {self.factor!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return _resize(x, (max(1, round(h * self.factor)), max(1, round(w * self.factor))))

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _resize(pred, size)


@dataclass(frozen=True)
class Zoom(Transform):
    """Scale the content by ``factor`` about the centre, keeping the input size (for fixed-size models).

    ``factor > 1`` magnifies (the borders leave the frame), ``factor < 1`` shrinks (zero borders
    come in). (N, C, H, W) -> (N, C, H, W), bilinear.
    """

    factor: float

    def __post_init__(self) -> None:
        if not (isinstance(self.factor, (int, float)) and math.isfinite(self.factor) and self.factor > 0):
            raise ConfigError(f"Zoom factor must be a positive number, got {self.factor!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return _zoom(x, self.factor)

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _zoom(_resize(pred, size), 1.0 / self.factor)


@dataclass(frozen=True)
class Shift(Transform):
    """Translate by whole pixels: ``dx`` to the right, ``dy`` down, zeros coming in. (N, C, H, W) -> same."""

    dx: int = 0
    dy: int = 0

    def __post_init__(self) -> None:
        for v in (self.dx, self.dy):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"Shift takes whole pixels, got dx={self.dx!r}, dy={self.dy!r}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return _translate(x, self.dx, self.dy)

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return _resize(_translate(pred, -self.dx, -self.dy), size)


class UserTransform(Transform):
    """A transform given by functions.

    Args:
        apply: ``apply(x)``, (N, C, H, W) -> the transformed batch.
        invert: ``invert(pred, size)``, a dense prediction (N, K, h, w) of the transformed batch ->
            (N, K, H, W) in the input's frame, zeros where the transformed image showed nothing.
            Without it the transform cannot be used for dense tasks.
        invariant: whether an image-level class survives the transform (needed for classification).
        name: shown in reports and errors.
    """

    def __init__(
        self,
        apply: Callable[[torch.Tensor], torch.Tensor],
        *,
        invert: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor] | None = None,
        invariant: bool = False,
        name: str = "user transform",
    ) -> None:
        if not callable(apply) or (invert is not None and not callable(invert)):
            raise ConfigError(f"{name}: apply and invert must be callables")
        self._apply, self._invert = apply, invert
        self.invariant = bool(invariant)
        self.invertible = invert is not None
        self.name = name

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x)

    def invert(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self._invert is None:
            raise ConfigError(f"{self.name} declares no invert(pred, size)")
        return self._invert(pred, size)

    def __repr__(self) -> str:
        return f"UserTransform({self.name!r})"


#: views of a handwritten digit that keep its class: shifts of 2 pixels and zooms of 10% (no flip: a flipped 2 is no 2)
DIGIT_TRANSFORMS: tuple[Transform, ...] = (
    Identity(),
    Shift(2, 0),
    Shift(-2, 0),
    Shift(0, 2),
    Shift(0, -2),
    Zoom(0.9),
    Zoom(1.1),
)
#: views of a photo that keep its class: itself and its mirror image
PHOTO_TRANSFORMS: tuple[Transform, ...] = (Identity(), HFlip())


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def _zoom(t: torch.Tensor, factor: float) -> torch.Tensor:
    n = t.shape[0]
    theta = torch.tensor([[1.0 / factor, 0.0, 0.0], [0.0, 1.0 / factor, 0.0]], dtype=t.dtype, device=t.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(t.shape), align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _translate(t: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    out = torch.zeros_like(t)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = t[..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


@runtime_checkable
class Aggregator(Protocol):
    """Combines a model's outputs on several transforms of one batch.

    ``check(transforms)`` raises :class:`ConfigError` before any work if a transform does not
    suit the task; ``aggregate(outputs, transforms, x)`` gets one output per transform.
    """

    def check(self, transforms: Sequence[Transform]) -> None: ...

    def aggregate(self, outputs: list[Any], transforms: Sequence[Transform], x: torch.Tensor) -> Any: ...


@dataclass(frozen=True)
class MeanClassProbabilities:
    """Classification: the mean over transforms of the softmax of logits (N, K) -> probabilities (N, K)."""

    def check(self, transforms: Sequence[Transform]) -> None:
        bad = [repr(t) for t in transforms if not t.invariant]
        if bad:
            raise ConfigError(f"transform(s) {', '.join(bad)} do not keep an image's class (invariant=False); they cannot vote on it")

    def aggregate(self, outputs: list[Any], transforms: Sequence[Transform], x: torch.Tensor) -> torch.Tensor:
        for o in outputs:
            if not (isinstance(o, torch.Tensor) and o.ndim == 2):
                raise InputError(f"classification expects logits of shape (N, K); the model returned {_shape(o)}")
        return torch.stack([o.softmax(1) for o in outputs]).mean(0)


@dataclass(frozen=True)
class MeanPixelProbabilities:
    """Dense tasks: per-pixel softmax (N, K, h, w) mapped back with each transform's inverse and averaged,
    weighted by coverage -> probabilities (N, K, H, W) at the input size. A pixel no transform showed
    gets the uniform distribution."""

    def check(self, transforms: Sequence[Transform]) -> None:
        bad = [repr(t) for t in transforms if not t.invertible]
        if bad:
            raise ConfigError(f"transform(s) {', '.join(bad)} cannot be inverted, so their per-pixel predictions cannot be mapped back")

    def aggregate(self, outputs: list[Any], transforms: Sequence[Transform], x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        total = weight = None
        for o, t in zip(outputs, transforms, strict=True):
            if not (isinstance(o, torch.Tensor) and o.ndim == 4):
                raise InputError(f"dense prediction expects logits of shape (N, K, H, W); the model returned {_shape(o)}")
            prob = t.invert(o.softmax(1), size)  # (N, K, H, W)
            cover = t.invert(torch.ones_like(o[:, :1]), size)  # (N, 1, H, W)
            total = prob if total is None else total + prob
            weight = cover if weight is None else weight + cover
        assert total is not None and weight is not None
        k = total.shape[1]
        seen = weight > 1e-6
        return torch.where(seen, total / weight.clamp_min(1e-6), torch.full_like(total, 1.0 / k))


@dataclass(frozen=True)
class _CallableAggregator:
    fn: Callable[[list[Any], Sequence[Transform], torch.Tensor], Any]

    def check(self, transforms: Sequence[Transform]) -> None:
        pass

    def aggregate(self, outputs: list[Any], transforms: Sequence[Transform], x: torch.Tensor) -> Any:
        return self.fn(outputs, transforms, x)


#: task name -> aggregator ("classification", "segmentation")
AGGREGATORS: Registry[Aggregator] = Registry("task")
AGGREGATORS.register("classification", MeanClassProbabilities())
AGGREGATORS.register("segmentation", MeanPixelProbabilities())


def resolve_aggregator(task: str | Aggregator | Callable[..., Any]) -> Aggregator:
    """The aggregator of a task name, an :class:`Aggregator`, or a callable ``fn(outputs, transforms, x)``."""
    if isinstance(task, str):
        return AGGREGATORS.get(task)
    if isinstance(task, Aggregator):
        return task
    if callable(task):
        return _CallableAggregator(task)
    raise ConfigError(f"task must be a name ({', '.join(AGGREGATORS.names())}), an Aggregator or a callable, got {task!r}")


def check_transforms(transforms: Sequence[Transform], task: str | Aggregator | Callable[..., Any]) -> Aggregator:
    """Validate ``transforms`` for ``task`` (ConfigError before any work) and return the aggregator."""
    if isinstance(transforms, Transform) or not isinstance(transforms, Sequence) or len(transforms) == 0:
        raise ConfigError("transforms must be a non-empty list of Transform objects (e.g. [Identity(), Shift(2, 0)])")
    bad = [repr(t) for t in transforms if not isinstance(t, Transform)]
    if bad:
        raise ConfigError(f"not a Transform: {', '.join(bad)}")
    agg = resolve_aggregator(task)
    agg.check(transforms)
    return agg


def _shape(o: Any) -> str:
    return str(tuple(o.shape)) if isinstance(o, torch.Tensor) else type(o).__name__


@torch.no_grad()
def multi_transform_predict(
    model: nn.Module,
    x: torch.Tensor,
    transforms: Sequence[Transform],
    *,
    task: str | Aggregator | Callable[..., Any] = "classification",
) -> Any:
    """Run ``model`` on every transform of ``x`` and aggregate the predictions for ``task``.

    The model runs in eval mode without gradients (its train/eval mode is restored afterwards).

    Args:
        model: the network; for "classification" it returns logits (N, K), for "segmentation"
            logits (N, K, h, w) (any size: each transform's inverse resizes back).
        x: input batch (N, C, H, W).
        transforms: e.g. ``[Identity(), Shift(2, 0), Shift(-2, 0), Zoom(1.1)]``.
        task: "classification" (mean class probabilities), "segmentation" (per-pixel
            probabilities mapped back and averaged), an :class:`Aggregator`, or a callable
            ``fn(outputs, transforms, x)`` for structured outputs (it gets the raw outputs, one per
            transform, and maps them back itself).

    Returns:
        Probabilities (N, K) for classification, (N, K, H, W) for segmentation, or what the
        callable returns.

    Raises:
        ConfigError: before the model runs, if a transform cannot be inverted for the task (no
            ``invert`` for a dense task, ``invariant=False`` for classification) or the list is empty.
        InputError: if ``x`` is not (N, C, H, W) or the model's outputs do not fit the task.
    """
    agg = check_transforms(transforms, task)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InputError(f"x must be an image batch (N, C, H, W), got {_shape(x)}")
    was = model.training
    model.eval()
    try:
        outputs = [model(t.apply(x)) for t in transforms]
    finally:
        model.train(was)
    return agg.aggregate(outputs, transforms, x)
