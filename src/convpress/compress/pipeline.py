"""The full Deep Compression pipeline: prune -> retrain -> share weights -> retrain centroids -> code.

:func:`deep_compress` runs the stages on any classifier-like model, measures the metric after
each stage, writes real files at each stage (so every size in its report is a file on disk),
and returns a :class:`PipelineReport` with the paper-style per-layer table.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from convpress.compress.files import save
from convpress.compress.finetune import finetune
from convpress.compress.plan import Plan, measure_sensitivity, plan_for_ratio
from convpress.compress.prune import check_fraction, prune_, resolve_layers, sparsity
from convpress.compress.quantize import bits_by_type, check_bits, quantize_
from convpress.compress.schedule import AGP, SCHEDULES, Iterative, OneShot, Variational
from convpress.compress.state import compression_of, dense_state_dict, strip_, weight_layers
from convpress.compress.variational import SparseVD, sparse_vd_
from convpress.core.atomic import atomic_write_bytes
from convpress.core.distributed import is_main
from convpress.core.errors import ConfigError
from convpress.fileformat.coders import check_coder
from convpress.fileformat.cpz import load

__all__ = [
    "DeepCompressionConfig",
    "PipelineReport",
    "LayerRow",
    "deep_compress",
    "validate_config",
    "validate_target",
    "check_target",
    "PLANNED_TRAINING",
]


@dataclass
class DeepCompressionConfig:
    """Settings of one Deep Compression run (validated before any work starts).

    Attributes:
        prune: target sparsity, one float or ``{layer_name: fraction}``.
        schedule: "iterative" (prune-retrain rounds), "oneshot", "agp" (gradual, in training), or
            "sparse-vd" (sparse variational dropout: training learns each layer's sparsity, and
            ``prune`` is not used), or a :class:`~convpress.compress.schedule.Variational` with
            its own KL weight.
        prune_steps: rounds of the iterative schedule.
        prune_epochs: retraining epochs per round (iterative / one-shot) or in total (agp, sparse-vd).
        prune_lr: learning rate while retraining after pruning.
        conv_bits / linear_bits: k-means bits per weight for conv / fully connected layers
            (paper: 8 / 5), unless ``bits`` names layers explicitly.
        bits: ``{layer_name: bits}`` overriding the per-type defaults.
        bias_bits: weight-share biases too (None keeps them float32).
        init: k-means initialisation ("linear", "density", "random").
        quant_epochs / quant_lr: retraining of the centroids.
        coder: entropy coder of the final file ("ans" or "huffman" or "none").
        index_bits: relative-index width of the final file ("auto", "paper" or an int).
        weight_decay: L2 during retraining.
        seed: seed for data order during retraining.
    """

    prune: float | dict[str, float] = 0.9
    schedule: Literal["iterative", "oneshot", "agp", "sparse-vd"] | Variational = "iterative"
    prune_steps: int = 3
    prune_epochs: int = 4
    prune_lr: float = 1e-3
    conv_bits: int = 8
    linear_bits: int = 5
    bits: dict[str, int] | None = None
    bias_bits: int | None = None
    init: Literal["linear", "density", "random"] = "linear"
    quant_epochs: int = 3
    quant_lr: float = 1e-4
    coder: str = "ans"
    index_bits: int | str = "auto"
    weight_decay: float = 0.0
    seed: int = 0


def validate_config(cfg: DeepCompressionConfig, model: nn.Module) -> None:
    """Raise ConfigError for any impossible setting, before any training happens."""

    if isinstance(cfg.prune, Mapping):
        resolve_layers(model, cfg.prune, None, what="prune")
        for n, v in cfg.prune.items():
            check_fraction(v, f"pruning amount for {n!r}")
    else:
        check_fraction(cfg.prune, "pruning amount")
    if not isinstance(cfg.schedule, Variational):
        SCHEDULES.get(cfg.schedule)  # an unknown name: one error listing the known schedules
    if not isinstance(cfg.prune_steps, int) or cfg.prune_steps < 1:
        raise ConfigError(f"prune_steps must be a positive integer, got {cfg.prune_steps!r}")
    for what, v in (("prune_epochs", cfg.prune_epochs), ("quant_epochs", cfg.quant_epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{what} must be a non-negative integer, got {v!r}")
    for what, v in (("prune_lr", cfg.prune_lr), ("quant_lr", cfg.quant_lr)):
        if not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"{what} must be positive, got {v!r}")
    check_bits(cfg.conv_bits, "conv bits")
    check_bits(cfg.linear_bits, "linear bits")
    if cfg.bias_bits is not None:
        check_bits(cfg.bias_bits, "bias bits")
    if cfg.bits is not None:
        resolve_layers(model, cfg.bits, None, what="bits")
        for n, b in cfg.bits.items():
            check_bits(b, f"bits for {n!r}")
    if cfg.init not in ("linear", "density", "random"):
        raise ConfigError(f"init must be 'linear', 'density' or 'random', got {cfg.init!r}")
    check_coder(cfg.coder)
    if not (cfg.index_bits in ("auto", "paper") or (isinstance(cfg.index_bits, int) and 1 <= cfg.index_bits <= 16)):
        raise ConfigError(f"index_bits must be 'auto', 'paper' or an integer in [1, 16], got {cfg.index_bits!r}")
    sched = schedule_of(cfg)
    if isinstance(sched, Variational):
        _sparse_vd_settings(cfg, sched)  # its settings are checked now, before any training


@dataclass
class LayerRow:
    """One row of the paper-style table: a weight tensor's size after each stage, in bytes."""

    name: str
    weights: int
    kept: int
    bits: int
    dense: int
    p: int  # pruned: relative indices (paper widths, fixed) + float32 values
    pq: int  # pruned + quantized: fixed-width indices and codebook indices + codebook
    pqh: int  # + Huffman coding (paper's full pipeline)
    final: int  # our file: the configured coder with auto index width and layout

    @property
    def kept_fraction(self) -> float:
        return self.kept / max(self.weights, 1)


@dataclass
class PipelineReport:
    """What :func:`deep_compress` did and measured.

    ``metric`` maps a stage ("dense", "pruned", "quantized", "final", "loaded": the model loaded
    back from the file) to the metric; ``totals`` maps a stage to file bytes on disk; ``rows`` is
    the paper-style per-layer table. A planned run (``target_ratio``) also fills ``plan`` (the
    chosen per-layer sparsity and bits), ``attempts`` (every run, kept or not), ``target_met``
    and ``within_drop`` (False: no run stayed within ``max_drop`` and nothing was written).
    """

    metric_name: str
    metric: dict[str, float] = field(default_factory=dict)  # stage -> metric
    sparsity: dict[str, float] = field(default_factory=dict)
    rows: list[LayerRow] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)  # stage -> file bytes on disk
    dense_bytes: int = 0
    coder: str = "ans"
    path: str | None = None
    bit_exact: bool = False
    streams: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] | None = None  # a planned run: per-layer sparsity and bits it chose
    target_ratio: float | None = None
    max_drop: float | None = None
    target_met: bool | None = None  # a planned run: ratio reached within max_drop
    within_drop: bool = True  # False: no run stayed within max_drop, nothing was written
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def verdict(self) -> str:
        """One line: file ratio against dense float32, the metric before and after, and the target's verdict."""
        m, name = self.metric, self.metric_name
        if not self.within_drop:
            last = f"{m['dense']:.2f} -> {m['loaded']:.2f}"
            return f"nothing written: every run lost more than {self.max_drop:g} {name} points (the last: {last})"
        line = (
            f"file {self.totals['final']:,} B = {self.ratio():.1f}x smaller than dense float32 ({self.dense_bytes:,} B); "
            f"{name} {m['dense']:.2f} -> {m['loaded']:.2f} (drop {self.drop():.2f})"
        )
        if self.target_ratio is not None:
            within = "" if self.max_drop is None else f" within {self.max_drop:g} points"
            line += f"; target {self.target_ratio:g}x{within}: {'met' if self.target_met else 'NOT met'}"
        return line

    def drop(self) -> float:
        """Dense metric minus the metric of the model loaded back from the file."""
        return self.metric["dense"] - self.metric["loaded"]

    def ratio(self, stage: str = "final") -> float:
        """Dense float32 bytes / file bytes on disk after ``stage`` ("p", "pq", "pqh" or "final")."""
        return self.dense_bytes / self.totals[stage]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data, with the ratio of every stage added."""
        d = asdict(self)
        d["ratios"] = {k: self.dense_bytes / v for k, v in self.totals.items()}
        return d


def _ckpt(work_dir: Path | None, name: str) -> Path | None:
    return None if work_dir is None else work_dir / f"{name}.ckpt"


def schedule_of(cfg: DeepCompressionConfig) -> OneShot | Iterative | AGP | Variational:
    """The pruning schedule ``cfg`` names (or holds, for a :class:`Variational` with its own settings)."""
    if isinstance(cfg.schedule, Variational):
        return cfg.schedule
    return SCHEDULES.get(cfg.schedule)(cfg.prune, cfg.prune_steps)


def check_schedule_target(cfg: DeepCompressionConfig, target_ratio: object) -> None:
    """Refuse a target ratio with a schedule that learns its sparsity (sparse-vd): nothing to plan."""
    if target_ratio is not None and isinstance(schedule_of(cfg), Variational):
        raise ConfigError(
            "the sparse-vd schedule learns each layer's sparsity itself, so it cannot be planned for a target ratio; "
            "give its bits (conv_bits / linear_bits, on the command line --conv-bits / --fc-bits) and no target ratio"
        )


def _sparse_vd_settings(cfg: DeepCompressionConfig, sched: Variational) -> SparseVD:
    if cfg.prune_epochs < 1:
        raise ConfigError(f"the sparse-vd schedule trains for prune_epochs, which must be >= 1, got {cfg.prune_epochs}")
    return SparseVD(epochs=cfg.prune_epochs, lr=cfg.prune_lr, threshold=sched.threshold, kl_weight=sched.kl_weight, warmup=sched.warmup)


def _train_prune_stage(
    model: nn.Module,
    cfg: DeepCompressionConfig,
    loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    progress: bool,
    work_dir: Path | None,
) -> None:
    sched = schedule_of(cfg)
    if isinstance(sched, Variational):  # the training itself decides what to prune (cfg.prune unused)
        sparse_vd_(
            model,
            loader,
            loss_fn,
            _sparse_vd_settings(cfg, sched),
            checkpoint=_ckpt(work_dir, "sparse-vd"),
            progress=progress,
        )
        return
    if isinstance(sched, AGP):  # the gradual schedule prunes inside training
        finetune(
            model,
            loader,
            loss_fn,
            cfg.prune_epochs,
            cfg.prune_lr,
            pruning=sched,
            weight_decay=cfg.weight_decay,
            progress=progress,
            description="gradual pruning",
            checkpoint=_ckpt(work_dir, "prune-agp"),
            seed=cfg.seed,
        )
        return
    steps = sched.steps()
    for i, target in enumerate(steps):
        prune_(model, target)  # deterministic: a resumed run repeats it exactly
        finetune(
            model,
            loader,
            loss_fn,
            cfg.prune_epochs,
            cfg.prune_lr,
            weight_decay=cfg.weight_decay,
            progress=progress,
            description=f"retrain after pruning {i + 1}/{len(steps)}",
            checkpoint=_ckpt(work_dir, f"prune-{i + 1}"),
            seed=cfg.seed,
        )


#: a planned run that loses too much is retried once at the same ratio with at least this many bits per layer
RETRY_MIN_BITS = 3

#: training settings of a planned run when no ``cfg`` is given (the planner sets prune, bits, bias_bits)
PLANNED_TRAINING = DeepCompressionConfig(schedule="agp", prune_epochs=20, prune_lr=1e-3, quant_epochs=3, quant_lr=1e-4)


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def check_target(target_ratio: object, max_drop: object, max_attempts: object = 1) -> None:
    """Raise ConfigError for an impossible target: ratio <= 1, a negative drop, fewer than one attempt."""
    if target_ratio is not None and not (_number(target_ratio) and float(target_ratio) > 1.0):  # type: ignore[arg-type]
        raise ConfigError(
            f"target ratio must be a number greater than 1 (the file must be smaller than the dense model), got {target_ratio!r}"
        )
    if max_drop is not None and not (_number(max_drop) and float(max_drop) >= 0.0):  # type: ignore[arg-type]
        raise ConfigError(f"max drop must be a non-negative number of metric points, got {max_drop!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"max attempts must be a positive integer, got {max_attempts!r}")


def validate_target(model: nn.Module, target_ratio: object, max_drop: object, max_attempts: object = 1) -> None:
    """:func:`check_target`, and the model has weight layers (dense ones, for a target ratio)."""
    check_target(target_ratio, max_drop, max_attempts)
    if not weight_layers(model):
        raise ConfigError(f"the model ({type(model).__name__}) has no Linear or convolution layer to compress")
    if target_ratio is not None:
        for n, m in weight_layers(model).items():
            if compression_of(m, "weight") is not None:
                raise ConfigError(f"layer {n!r} is already pruned or quantized; a target ratio run plans from a dense model")


def _function_name(fn: object) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(fn))


def _checked_metric(evaluate: Callable[[nn.Module], float]) -> Callable[[nn.Module], float]:
    """``evaluate`` with its result checked to be a number (ConfigError naming it otherwise)."""

    def metric(m: nn.Module) -> float:
        value = evaluate(m)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype.is_floating_point:
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"evaluate function {_function_name(evaluate)!r} must return a number (higher is better), got {type(value).__name__}"
            )
        return float(value)

    return metric


def _adopt(model: nn.Module, trained: nn.Module) -> None:
    """Make ``model`` the compressed copy ``trained`` (the user's object, compressed in place).

    Planned runs train copies, so that a plan that loses too much leaves the model as it was;
    the chosen copy's whole state (parametrized class included) moves into the caller's object.
    """
    model.__class__ = trained.__class__
    model.__dict__.clear()
    model.__dict__.update(trained.__dict__)


def deep_compress(
    model: nn.Module,
    cfg: DeepCompressionConfig | None = None,
    *,
    train_loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    evaluate: Callable[[nn.Module], float],
    target_ratio: float | None = None,
    max_drop: float | None = None,
    max_attempts: int = 3,
    metric_name: str = "accuracy",
    out_path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
    arch: str | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PipelineReport:
    """Run Deep Compression on ``model`` in place and write the compressed file.

    Two ways to call it:

    * with a ``cfg`` and no ``target_ratio``: the given per-layer amounts and bits (a recipe);
    * with ``target_ratio`` (``cfg`` optional, then only its training settings are used): the
      planner (:mod:`convpress.compress.plan`) measures each layer's sensitivity to pruning and
      fewer bits on a few training batches and chooses per-layer sparsity and bits whose real
      file is ``target_ratio`` times smaller than the dense float32 state_dict, with the least
      predicted loss; then gradual pruning, trained quantization and the coder run.

    With ``max_drop``, a run whose metric falls more than ``max_drop`` below the dense one is not
    kept: a planned run tries again (up to ``max_attempts`` runs) first at the same ratio with at
    least :data:`RETRY_MIN_BITS` bits per layer, then at smaller ratios, and keeps the smallest
    file within the drop. ``out_path`` is written (atomically) only with a model
    within the drop; if none is, nothing is written, the model is left as it was, and the report
    says so (``report.within_drop`` False). ``report.target_met`` says whether both held.

    Args:
        model: a trained model (dense for a planned run); compressed in place.
        cfg: the settings (validated first); None: the paper's defaults, or with
            ``target_ratio`` :data:`PLANNED_TRAINING`.
        train_loader: ``(inputs, targets)`` batches for retraining (its first batches are also
            the planner's probe set).
        loss_fn: ``loss_fn(outputs, targets)``.
        evaluate: ``evaluate(model) -> metric`` (a number, higher is better, e.g. accuracy in %).
        target_ratio: wanted dense bytes / file bytes (> 1); None keeps ``cfg``'s amounts and bits.
        max_drop: the largest allowed fall of the metric, in its units (>= 0); None: no limit.
        max_attempts: planned runs at most (each one full retraining).
        metric_name: name of that metric in the report.
        out_path: where to write the final ``.cpz``; a temporary file when None.
        overwrite: allow replacing ``out_path``.
        metadata: stored in the file header.
        arch: architecture name recorded with the layer shapes, so ``convpress.load_model``
            can rebuild the model from the file.
        work_dir: folder for resumable training checkpoints (one per retraining stage, updated
            every epoch); running again with the same folder resumes where a run stopped.
        progress: progress bars for training.
        log: called with one line per finished stage (and the plan of a planned run).

    Returns:
        The report of the kept run; the model (in memory) is pruned and weight-shared, or left
        unchanged by a planned run when no attempt stayed within ``max_drop``.

    Raises:
        ConfigError: before any training, for impossible settings: ``target_ratio <= 1``, a
            negative ``max_drop``, a model without Linear/convolution layers, an existing
            ``out_path`` without ``overwrite``, bad ``cfg`` values, a target ratio with the
            ``sparse-vd`` schedule; and when ``evaluate`` does not return a number (naming the function).
    """
    validate_target(model, target_ratio, max_drop, max_attempts)
    if cfg is None:
        cfg = PLANNED_TRAINING if target_ratio is not None else DeepCompressionConfig()
    validate_config(cfg, model)
    check_schedule_target(cfg, target_ratio)
    if out_path is not None and Path(out_path).exists() and not overwrite:
        raise ConfigError(f"{out_path} already exists; pass --force to overwrite it")
    say = log or (lambda _s: None)
    metric = _checked_metric(evaluate)
    dense_metric = metric(model)
    say(f"dense {metric_name}: {dense_metric:.2f}")
    wd = Path(work_dir) if work_dir is not None else None
    common: dict[str, Any] = dict(
        dense_metric=dense_metric,
        train_loader=train_loader,
        loss_fn=loss_fn,
        evaluate=metric,
        metric_name=metric_name,
        metadata=metadata,
        arch=arch,
        progress=progress,
        log=log,
    )
    with tempfile.TemporaryDirectory(prefix="convpress-dc-") as tmp:
        if target_ratio is None:
            report = _run_stages(model, cfg, final_path=Path(tmp) / "final.cpz", wd=wd, **common)
            report.within_drop = max_drop is None or dense_metric - report.metric["loaded"] <= max_drop
            kept = Path(tmp) / "final.cpz" if report.within_drop else None
        else:
            report, kept = _planned(model, cfg, float(target_ratio), max_drop, max_attempts, Path(tmp), wd, common, say)
        report.max_drop = max_drop
        if kept is not None and out_path is not None and is_main():  # only rank 0 of a distributed run writes
            atomic_write_bytes(out_path, kept.read_bytes())
            report.path = str(out_path)
    if report.within_drop and target_ratio is not None and not report.target_met:
        say(f"target {target_ratio:g}x not met within the allowed drop; kept the smallest file within it")
    say(report.verdict())
    return report


def _planned(
    model: nn.Module,
    cfg: DeepCompressionConfig,
    target_ratio: float,
    max_drop: float | None,
    max_attempts: int,
    tmp: Path,
    wd: Path | None,
    common: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[PipelineReport, Path | None]:
    """Plan, compress a copy, check the drop; gentler plans while the drop is exceeded."""
    sens = measure_sensitivity(model, common["train_loader"], common["loss_fn"])
    dense_bytes = sum(t.numel() * t.element_size() for t in dense_state_dict(model).values())
    ratio = target_ratio
    attempts: list[dict[str, Any]] = []
    best: tuple[PipelineReport, nn.Module, Path] | None = None
    last: PipelineReport | None = None
    min_bits = 1
    tried: list[Plan] = []
    for i in range(max_attempts):
        plan = plan_for_ratio(model, sens, ratio, dense_bytes=dense_bytes, coder=cfg.coder, index_bits=cfg.index_bits, min_bits=min_bits)
        # the allocation reaches only some plans (the lower convex hull of loss against bytes), so a
        # ratio between two attempts can give one of them again; training is deterministic, so an
        # identical plan would only repeat its result: move on towards the last good ratio
        replans = 0
        while _seen(plan, tried) and replans < 4:
            ratio = math.sqrt(best[0].ratio() * ratio) if best is not None else ratio * 0.9
            plan = plan_for_ratio(
                model, sens, ratio, dense_bytes=dense_bytes, coder=cfg.coder, index_bits=cfg.index_bits, min_bits=min_bits
            )
            replans += 1
        if _seen(plan, tried):
            say("no new plan between the attempts so far: stopping")
            break
        tried.append(plan)
        say(f"plan {i + 1} for {ratio:.1f}x (one-shot file {plan.estimated_bytes:,} B):")
        for line in plan.lines():
            say(f"  {line}")
        trial = copy.deepcopy(model)
        path = tmp / f"attempt-{i + 1}.cpz"
        settings = replace(cfg, prune=plan.prune, bits=plan.bits, bias_bits=plan.bias_bits)
        rep = _run_stages(trial, settings, final_path=path, wd=None if wd is None else wd / f"attempt-{i + 1}", **common)
        rep.plan = plan.to_dict()
        drop = rep.metric["dense"] - rep.metric["loaded"]
        rep.within_drop = max_drop is None or drop <= max_drop
        attempts.append(
            {"plan": rep.plan, "ratio": rep.ratio(), "drop": drop, "within_drop": rep.within_drop, "file_bytes": rep.totals["final"]}
        )
        say(f"attempt {i + 1}: {rep.ratio():.1f}x, drop {drop:.2f} points ({'within' if rep.within_drop else 'beyond'} the allowed drop)")
        last = rep
        if rep.within_drop and (best is None or rep.ratio() > best[0].ratio()):
            best = (rep, trial, path)
        if rep.within_drop and rep.ratio() >= target_ratio:
            break
        if rep.within_drop:  # within the drop but the retrained file came out larger than planned
            ratio *= target_ratio / rep.ratio() * 1.01
        elif best is None and min_bits < RETRY_MIN_BITS and min(plan.bits.values()) < RETRY_MIN_BITS:
            # one-shot sensitivities undervalue coarse codebooks (retraining recovers pruning better
            # than 2-bit sharing): first the same ratio with finer codebooks and more pruning
            min_bits = RETRY_MIN_BITS
        elif best is not None:  # between the last good ratio and this one
            ratio = math.sqrt(best[0].ratio() * ratio)
        else:
            ratio = 1.0 + (ratio - 1.0) * 0.8
    assert last is not None
    report, kept = (best[0], best[2]) if best is not None else (last, None)
    if best is not None:
        _adopt(model, best[1])
    report.target_ratio = target_ratio
    report.target_met = best is not None and report.ratio() >= target_ratio
    report.attempts = attempts
    return report, kept


def _seen(plan: Plan, tried: list[Plan]) -> bool:
    return any(p.prune == plan.prune and p.bits == plan.bits for p in tried)


def _run_stages(
    model: nn.Module,
    cfg: DeepCompressionConfig,
    *,
    dense_metric: float,
    train_loader: Iterable[Any],
    loss_fn: Callable[..., torch.Tensor],
    evaluate: Callable[[nn.Module], float],
    metric_name: str,
    final_path: Path,
    metadata: Mapping[str, Any] | None,
    arch: str | None,
    wd: Path | None,
    progress: bool,
    log: Callable[[str], None] | None,
) -> PipelineReport:
    """Prune, retrain, share, retrain and write ``final_path`` with the fixed settings ``cfg``."""

    say = log or (lambda _s: None)
    report = PipelineReport(metric_name=metric_name, coder=cfg.coder)
    report.metric["dense"] = dense_metric
    torch.manual_seed(cfg.seed)
    if wd is not None:
        wd.mkdir(parents=True, exist_ok=True)
    _train_prune_stage(model, cfg, train_loader, loss_fn, progress, wd)
    report.sparsity = sparsity(model)
    report.metric["pruned"] = evaluate(model)
    say(f"pruned ({_kept_fraction(model):.1%} of weights kept) {metric_name}: {report.metric['pruned']:.2f}")

    with tempfile.TemporaryDirectory(prefix="convpress-") as tmp:
        p_info = save(model, Path(tmp) / "p.cpz", coder="none", index_bits="paper", order="C")
        bits = dict(cfg.bits) if cfg.bits is not None else bits_by_type(model, conv=cfg.conv_bits, linear=cfg.linear_bits)
        quantize_(model, bits, init=cfg.init, bias_bits=cfg.bias_bits)
        report.metric["quantized"] = evaluate(model)
        say(f"quantized, before retraining {metric_name}: {report.metric['quantized']:.2f}")
        finetune(
            model,
            train_loader,
            loss_fn,
            cfg.quant_epochs,
            cfg.quant_lr,
            weight_decay=cfg.weight_decay,
            progress=progress,
            description="retrain centroids",
            checkpoint=_ckpt(wd, "quantize"),
            seed=cfg.seed,
        )
        report.metric["final"] = evaluate(model)
        say(f"quantized, after retraining {metric_name}: {report.metric['final']:.2f}")

        pq_info = save(model, Path(tmp) / "pq.cpz", coder="none", index_bits="paper", order="C")
        pqh_info = save(model, Path(tmp) / "pqh.cpz", coder="huffman", index_bits="paper", order="C")
        meta = dict(metadata or {})
        meta.setdefault(metric_name, round(report.metric["final"], 4))
        final_info = save(model, final_path, coder=cfg.coder, index_bits=cfg.index_bits, metadata=meta, arch=arch, overwrite=True)
        loaded = load(final_path)
        expected = dense_state_dict(model)
        report.bit_exact = loaded.keys() == expected.keys() and all(_bitwise_equal(loaded[k], expected[k]) for k in expected)
        reloaded = _evaluate_state(model, loaded, evaluate)
        report.metric["loaded"] = reloaded

    report.dense_bytes = final_info.dense_bytes
    report.totals = {
        "dense": final_info.dense_bytes,
        "p": p_info.file_bytes,
        "pq": pq_info.file_bytes,
        "pqh": pqh_info.file_bytes,
        "final": final_info.file_bytes,
    }
    by_name = {
        key: {t.name: t for t in info.tensors} for key, info in (("p", p_info), ("pq", pq_info), ("pqh", pqh_info), ("final", final_info))
    }
    layer_names = set(weight_layers(model))
    for t in final_info.tensors:
        if t.name.rsplit(".", 1)[0] in layer_names and t.name.endswith(".weight"):
            report.rows.append(
                LayerRow(
                    name=t.name,
                    weights=t.numel,
                    kept=t.kept,
                    bits=by_name["pq"][t.name].value_bits,
                    dense=t.dense_bytes,
                    p=by_name["p"][t.name].stored_bytes,
                    pq=by_name["pq"][t.name].stored_bytes,
                    pqh=by_name["pqh"][t.name].stored_bytes,
                    final=t.stored_bytes,
                )
            )
    report.streams = [asdict(s) for s in final_info.streams]
    return report


def _kept_fraction(model: nn.Module) -> float:
    """Fraction of all compressible weights that are non-zero."""
    layers = weight_layers(model).values()
    total = sum(m.weight.numel() for m in layers)
    return sum(int((m.weight != 0).sum()) for m in layers) / max(total, 1)


def _bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))
    return torch.equal(a, b)


def _evaluate_state(model: nn.Module, state: dict[str, torch.Tensor], evaluate: Callable[[nn.Module], float]) -> float:
    """Evaluate a fresh dense copy of ``model`` holding ``state`` (what a user gets from the file)."""
    fresh = strip_(copy.deepcopy(model))
    fresh.load_state_dict(state)
    return evaluate(fresh)
