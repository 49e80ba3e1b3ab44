"""The one resumable training loop: seeds per step, checkpoints, resume, fingerprint, DDP, progress.

``finetune`` (Deep Compression's retraining), fip training and codec training are all a
:class:`Trainer` plus what is their own: where a step's batch comes from and what its loss is.
The loop owns the rest, once:

* **steps and epochs**: ``epochs`` of ``steps_per_epoch`` optimiser steps; a step's learning
  rate comes from ``lr(step)`` or a torch scheduler, gradients may be clipped;
* **seeds per step**: :meth:`Step.generator` gives a generator seeded by ``(keys..., step)``,
  so a step's randomness does not depend on how the run got there (resumed or not);
* **checkpoints**: every ``checkpoint_every`` steps and at every epoch end, the model, optimiser,
  scheduler, registered stateful objects, the task's records and the random states are written
  atomically to one checksummed file (:mod:`convpress.core.checkpoint`);
* **resume**: :meth:`Trainer.restore` reloads that file when its fingerprint is this run's
  (:func:`~convpress.core.digest.fingerprint` of the settings), refuses another run's by name,
  and training continues at the next step; a run stopped at a checkpoint and resumed ends with
  the same weights as an uninterrupted one. A resume in the middle of an epoch rewinds the
  registered generators to the epoch's start and replays its data source up to the step;
* **DDP**: under ``torchrun`` the model is wrapped in ``DistributedDataParallel`` (gradients
  averaged); each process trains on its share of every global batch (:meth:`Step.share`), only
  rank 0 writes checkpoints and draws the progress bar, and all processes meet at the end;
* **progress**: one bar over all steps, with the task's status line;
* **divergence**: a NaN or infinite loss stops training with an :class:`InputError` naming the step.

Checkpoints name their ``kind`` (``"finetune"``, ``"fip-train"``, ``"codec-train"``); a file
of another kind, another run or an older layout is refused with one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from convpress.core.checkpoint import load_checkpoint, save_checkpoint
from convpress.core.distributed import barrier, data_parallel, sum_over_processes, world
from convpress.core.errors import ConfigError, FileFormatError, InputError
from convpress.core.progress import progress_bar

__all__ = ["Trainer", "Step", "Stateful", "Scheduler", "TrainConfig", "step_generator", "CHECKPOINT_FORMAT"]

#: ``format`` of the payload the loop writes; version 2 is the shared loop's layout
CHECKPOINT_FORMAT = ("convpress.training", 2)


class Stateful(Protocol):
    """Anything with ``state_dict()`` and ``load_state_dict(state)`` (schedulers, adapter modules, ...)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any) -> Any: ...


class Scheduler(Stateful, Protocol):
    """A learning-rate scheduler: :class:`Stateful` and stepped once per optimiser step (torch's schedulers)."""

    def step(self) -> Any: ...


@dataclass(kw_only=True)
class TrainConfig:
    """Settings every training run has (the fip and codec configs extend it; keyword-only).

    Attributes:
        batch: images (or samples) per optimiser step, over all processes.
        lr: (peak) learning rate of Adam.
        seed: seed of the initial weights and of every step's randomness.
    """

    batch: int = 8
    lr: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch must be a positive integer, got {self.batch!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")


def step_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded by ``keys`` through NumPy's ``SeedSequence`` (well-mixed, any number of keys)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class Step:
    """What the loop tells a task about the step it is computing.

    Attributes:
        index: the global step number, from 0.
        epoch: the epoch it belongs to, from 0.
        in_epoch: its position within the epoch, from 0.
        rank: this process's rank; ``world`` processes in all (1 outside ``torchrun``).
    """

    index: int
    epoch: int
    in_epoch: int
    rank: int
    world: int

    def generator(self, *keys: int) -> torch.Generator:
        """A generator seeded by ``(*keys, index)``: the same for this step in any run that reaches it."""
        return step_generator(*keys, self.index)

    def share(self, batch: Any) -> Any:
        """This process's share ``batch[rank::world]`` of a global batch (the batch itself in one process)."""
        return batch if self.world == 1 else batch[self.rank :: self.world]


class Trainer:
    """The one training loop (see the module docstring).

    Args:
        model: the module to train (in place).
        optimizer: its optimiser.
        kind: what trains (``"finetune"``, ``"fip-train"``, ...), stored in and checked against checkpoints.
        run_id: the run's fingerprint; a checkpoint of another run is refused.
        checkpoint: the checkpoint file; None trains without one.
        scheduler: a torch LR scheduler stepped after every optimiser step (saved and restored).
        lr: ``lr(step)``, the learning rate set on every parameter group before each step (times the
            group's ``"lr_scale"`` where it has one: e.g. parameters new to a fine-tuned model).
        clip_grad_norm: clip the gradients' global norm to this value.
        checkpoint_every: also checkpoint every this many steps (epoch ends always checkpoint).
        stateful: other objects whose state is saved and restored by name (adapters, ...).
        generators: random generators the data source draws from (a DataLoader's): their
            states are saved, and a resume in the middle of an epoch rewinds them to its start.
        save_torch_rng: also save and restore PyTorch's global random state (dropout, ...).
        progress: draw a progress bar (rank 0 only).
        description: the bar's label.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        kind: str,
        run_id: str,
        checkpoint: str | os.PathLike[str] | None = None,
        scheduler: Scheduler | None = None,
        lr: Callable[[int], float] | None = None,
        clip_grad_norm: float | None = None,
        checkpoint_every: int | None = None,
        stateful: Mapping[str, Stateful] | None = None,
        generators: Sequence[torch.Generator] = (),
        save_torch_rng: bool = False,
        progress: bool = False,
        description: str = "train",
    ) -> None:
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be positive, got {checkpoint_every}")
        self.model = model
        self.optimizer = optimizer
        self.kind = kind
        self.run_id = run_id
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.scheduler = scheduler
        self.lr = lr
        self.clip_grad_norm = clip_grad_norm
        self.checkpoint_every = checkpoint_every
        self.stateful = dict(stateful or {})
        self.generators = list(generators)
        self.save_torch_rng = save_torch_rng
        self.progress = progress
        self.description = description
        #: the task's own records (histories, best weights, ...), saved with every checkpoint
        self.records: dict[str, Any] = {}
        #: optimiser steps and epochs done, counting those of a restored checkpoint
        self.step = 0
        self.epochs_done = 0
        #: mean training loss of the last finished epoch, over its steps and over all processes
        #: (each process's loss being the mean over its equal share of the batch); NaN before the
        #: first epoch ends. After a resume mid-epoch it covers the steps run since the resume.
        self.epoch_loss = math.nan
        self._loss_sum, self._loss_steps = 0.0, 0
        self._epoch_first_step = 0
        self._epoch_start_generators: list[torch.Tensor] = [g.get_state() for g in self.generators]

    # ------------------------------------------------------------------ checkpoints

    def restore(self) -> int:
        """Resume from the checkpoint file if there is one; returns the steps already done.

        Raises:
            ConfigError: if the file belongs to another run (other settings, data or starting weights).
            FileFormatError: if it is damaged, of another kind or layout, or does not fit the model.
        """
        if self.checkpoint is None or not self.checkpoint.is_file():
            return self.step
        path = self.checkpoint
        payload = load_checkpoint(path, self.kind)  # CRC-checked, tensors only (no pickled code)
        if (payload.get("format"), payload.get("version")) != CHECKPOINT_FORMAT:
            raise FileFormatError(f"{path} was written by an older convpress training loop; remove it or use another work folder")
        if payload.get("run") != self.run_id:
            raise ConfigError(
                f"{path} was written by a different training run (other settings, data or starting weights); "
                "remove it or use another work folder"
            )
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            for name, obj in self.stateful.items():
                obj.load_state_dict(payload["stateful"][name])
            starts = list(payload["epoch_start_generators"])
            if len(starts) != len(self.generators):
                raise ValueError(f"{len(starts)} saved generator states for {len(self.generators)} generators")
            for g, state in zip(self.generators, starts, strict=True):
                g.set_state(state)
            self._epoch_start_generators = starts
            if self.save_torch_rng:
                torch.set_rng_state(payload["torch_rng"])
            self.records = dict(payload["records"])
            self.step, self.epochs_done = int(payload["step"]), int(payload["epochs_done"])
            self._epoch_first_step = self.step
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise FileFormatError(f"{path} does not match this training run ({str(exc).splitlines()[0][:160]})") from None
        return self.step

    def _save(self) -> None:
        if self.checkpoint is None or world()[0] != 0:
            return
        fmt, version = CHECKPOINT_FORMAT
        payload = {
            "format": fmt,
            "version": version,
            "run": self.run_id,
            "step": self.step,
            "epochs_done": self.epochs_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "stateful": {name: obj.state_dict() for name, obj in self.stateful.items()},
            "epoch_start_generators": self._epoch_start_generators,
            "torch_rng": torch.get_rng_state() if self.save_torch_rng else None,
            "records": self.records,
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.checkpoint, self.kind, payload)

    # ------------------------------------------------------------------ best epoch

    def remember_best(self, score: float, *, score_key: str = "best_score", state_key: str = "best") -> bool:
        """Keep a copy of the model's weights in :attr:`records` when ``score`` (higher is better)
        beats the recorded ``records[score_key]`` (a NaN never does); returns whether it did.

        The copy is saved with every checkpoint, so a resumed run keeps the same best epoch.
        """
        if not score > self.records.get(score_key, -math.inf):
            return False
        self.records[score_key] = score
        self.records[state_key] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return True

    def load_best(self, *, state_key: str = "best") -> bool:
        """Load the weights :meth:`remember_best` kept, if any; returns whether it did."""
        best = self.records.get(state_key)
        if best is None:
            return False
        self.model.load_state_dict(best)
        return True

    # ------------------------------------------------------------------ the loop

    def fit(
        self,
        *,
        epochs: int,
        steps_per_epoch: int | None,
        batches: Callable[[int], Iterable[Any]],
        loss: Callable[[nn.Module, Any, Step], torch.Tensor],
        after_step: Callable[[Step, torch.Tensor, Any], None] | None = None,
        after_epoch: Callable[[int], None] | None = None,
        status: Callable[[], str] | None = None,
        stop_at: int | None = None,
    ) -> int:
        """Train from step ``self.step`` to the end of epoch ``epochs`` (or to step ``stop_at``).

        Args:
            epochs: number of epochs of the whole run.
            steps_per_epoch: optimiser steps per epoch; None: an epoch is one pass over
                ``batches(epoch)``, however long (then checkpoints are written at epoch ends only).
            batches: ``batches(epoch)`` iterates the epoch's batches (``steps_per_epoch`` of them;
                one more is drawn and dropped if there are more); called once per epoch, after
                the generators are rewound to its start.
            loss: ``loss(net, batch, step)`` -> this process's scalar loss on its share of the
                batch, with ``net`` the model (DDP-wrapped under torchrun); runs in train mode.
            after_step: ``after_step(step, loss, batch)`` after each optimiser step (metrics).
            after_epoch: ``after_epoch(epoch)`` at each epoch end, before its checkpoint
                (validation, records).
            status: the text shown after the progress bar.
            stop_at: stop once this many steps are done (after checkpointing); for tests that
                simulate an interruption.

        Returns:
            The number of steps done.

        Raises:
            ConfigError: for ``checkpoint_every`` without a known epoch length.
            InputError: if the loss becomes NaN or infinite, or the data of an epoch runs out early.
        """
        spe = steps_per_epoch
        if spe is None and self.checkpoint_every:
            raise ConfigError("checkpoints between epoch ends need a known number of steps per epoch")
        total = epochs * spe if spe is not None else None
        end = min(x for x in (total, stop_at, math.inf) if x is not None)
        if self.step >= end or self.epochs_done >= epochs:
            return self.step  # a finished run: the restored weights are the result
        rank, size = world()
        net = data_parallel(self.model)
        self.model.train()
        with progress_bar(total, self.description, enabled=self.progress and rank == 0) as bar:
            bar.advance(self.step)
            while self.step < end and self.epochs_done < epochs:
                epoch, first = divmod(self.step, spe) if spe is not None else (self.epochs_done, 0)
                # where the epoch's data starts: the states a checkpoint of this epoch records, so an
                # uninterrupted run draws what a resumed one replays (even if the generators were used
                # between the Trainer's construction and this call)
                for g, state in zip(self.generators, self._epoch_start_generators, strict=True):
                    g.set_state(state)
                ended = True
                source = iter(batches(epoch))
                for batch in islice(source, first, spe):
                    info = Step(self.step, epoch, self.step - (epoch * spe if spe is not None else self._epoch_first_step), rank, size)
                    self._one_step(net, batch, info, loss, after_step)
                    bar.advance(1, status() if status is not None else None)
                    if spe is not None and info.in_epoch == spe - 1:
                        # let the source finish its epoch: a DataLoader's sampler draws from its
                        # generator once more when its iterator runs out
                        next(source, None)
                        break  # the epoch ends below
                    if (self.checkpoint_every and self.step % self.checkpoint_every == 0) or self.step >= end:
                        self._save()
                    if self.step >= end:
                        ended = False
                        break
                else:
                    if spe is not None:
                        raise InputError(f"the data of epoch {epoch + 1} ran out after {self.step - epoch * spe} of {spe} steps")
                if ended:
                    self._end_epoch(epoch, after_epoch)
                    if status is not None:
                        bar.set_info(status())
        barrier()
        return self.step

    def _end_epoch(self, epoch: int, after_epoch: Callable[[int], None] | None) -> None:
        total, count = sum_over_processes([self._loss_sum, self._loss_steps])
        self.epoch_loss = total / count if count else math.nan
        self._loss_sum, self._loss_steps = 0.0, 0
        if after_epoch is not None:
            after_epoch(epoch)
        self.epochs_done = epoch + 1
        self._epoch_first_step = self.step
        self._epoch_start_generators = [g.get_state() for g in self.generators]  # where the next epoch starts
        self._save()

    def _one_step(
        self,
        net: nn.Module,
        batch: Any,
        info: Step,
        loss_fn: Callable[..., torch.Tensor],
        after_step: Callable[[Step, torch.Tensor, Any], None] | None,
    ) -> None:
        if self.lr is not None:
            rate = self.lr(info.index)
            for group in self.optimizer.param_groups:  # a group may scale the schedule by its "lr_scale"
                group["lr"] = rate * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net, batch, info)
        if not torch.isfinite(loss.detach()):
            raise InputError(
                f"training diverged: loss is {loss.item()} at epoch {info.epoch + 1}, step {info.index + 1} "
                "(check the data for NaN or infinite values, or lower the learning rate)"
            )
        loss.backward()  # type: ignore[no-untyped-call]  # torch's stubs leave Tensor.backward untyped
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        self._loss_sum += float(loss.detach())
        self._loss_steps += 1
        if after_step is not None:
            after_step(info, loss.detach(), batch)
