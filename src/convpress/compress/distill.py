"""Knowledge distillation: Hinton soft targets and FitNets-style feature hints.

``finetune(model, ..., distill=Distill(teacher))`` trains the student on a mix of the task loss
and the teacher's outputs: for classifiers the KL divergence between temperature-softened
distributions (scaled by T², Hinton et al. 2015), for image-to-image networks the MSE to the
teacher's output; ``hints`` add an MSE between chosen intermediate features, through a learned
1 x 1 adapter where the channel counts differ (a pruned student has fewer channels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from convpress.core.errors import ConfigError

__all__ = ["Distill", "DistillState"]


@dataclass
class Distill:
    """Distillation settings.

    Attributes:
        teacher: the (dense) model to imitate; it is kept in eval mode and never trained.
        alpha: weight of the teacher term; ``1 - alpha`` weights the task loss.
        temperature: softening temperature T for "logits" mode.
        mode: "logits" (KL of softened class distributions) or "output" (MSE of outputs).
        hints: ``{student_module: teacher_module}`` feature pairs to match.
        hint_weight: weight of the summed hint losses.
    """

    teacher: nn.Module
    alpha: float = 0.7
    temperature: float = 4.0
    mode: Literal["logits", "output"] = "logits"
    hints: dict[str, str] = field(default_factory=dict)
    hint_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ConfigError(f"distillation temperature must be positive, got {self.temperature}")
        if self.mode not in ("logits", "output"):
            raise ConfigError(f"distillation mode must be 'logits' or 'output', got {self.mode!r}")


class DistillState(nn.Module):
    """Hooks and adapters for one distillation run (adapters are trained with the student)."""

    def __init__(self, cfg: Distill, student: nn.Module, example_inputs: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        s_mods, t_mods = dict(student.named_modules()), dict(cfg.teacher.named_modules())
        bad = [n for n in cfg.hints if n not in s_mods] + [n for n in cfg.hints.values() if n not in t_mods]
        if bad:
            raise ConfigError(f"unknown hint layer(s): {', '.join(bad)}")
        self._feats: dict[str, torch.Tensor] = {}
        self._hooks = []
        for s_name, t_name in cfg.hints.items():
            self._hooks.append(s_mods[s_name].register_forward_hook(self._grab(f"s:{s_name}")))
            self._hooks.append(t_mods[t_name].register_forward_hook(self._grab(f"t:{t_name}")))
        cfg.teacher.eval()
        for p in cfg.teacher.parameters():
            p.requires_grad_(False)
        self.adapters = nn.ModuleDict()
        if cfg.hints:
            with torch.no_grad():
                was = student.training
                student.eval()
                student(example_inputs)
                cfg.teacher(example_inputs)
                student.train(was)
            for s_name, t_name in cfg.hints.items():
                fs, ft = self._feats[f"s:{s_name}"], self._feats[f"t:{t_name}"]
                if fs.shape[2:] != ft.shape[2:]:
                    raise ConfigError(f"hint {s_name} -> {t_name}: feature sizes {tuple(fs.shape[2:])} and {tuple(ft.shape[2:])} differ")
                key = s_name.replace(".", "_")
                if fs.shape[1] != ft.shape[1]:
                    conv = nn.Conv2d if fs.ndim == 4 else nn.Linear
                    self.adapters[key] = conv(fs.shape[1], ft.shape[1], 1) if conv is nn.Conv2d else nn.Linear(fs.shape[1], ft.shape[1])
                else:
                    self.adapters[key] = nn.Identity()

    def _grab(self, key: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            self._feats[key] = out

        return hook

    def loss(self, student_out: torch.Tensor, task_loss: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Mix ``task_loss`` with the teacher terms for this batch (the student forward already ran)."""
        cfg = self.cfg
        with torch.no_grad():
            teacher_out = cfg.teacher(inputs)
        if cfg.mode == "logits":
            t = cfg.temperature
            soft = F.kl_div(F.log_softmax(student_out / t, dim=1), F.softmax(teacher_out / t, dim=1), reduction="batchmean") * t * t
        else:
            soft = F.mse_loss(student_out, teacher_out)
        total = (1 - cfg.alpha) * task_loss + cfg.alpha * soft
        for s_name, t_name in cfg.hints.items():
            fs = self.adapters[s_name.replace(".", "_")](self._feats[f"s:{s_name}"])
            total = total + cfg.hint_weight * F.mse_loss(fs, self._feats[f"t:{t_name}"].detach())
        return total

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
