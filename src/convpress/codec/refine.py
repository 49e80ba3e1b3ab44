"""Encoder-side latent refinement: per image, optimise the latents the encoder sends.

The analysis transform is amortised: trained to be good on average, it leaves rate and
distortion on the table for any one image. At encode time the latents themselves can be
optimised for the rate-distortion loss of *this* image, through the fixed decoder (Campos et
al. 2019; Yang, Bamler and Mandt, NeurIPS 2020, "Improving Inference for Neural Image
Compression"). The decoder and the file format do not change: the refined latents are coded
exactly as the analysis transform's would be.

Rounding has no useful gradient, so during the optimisation each latent is replaced by a
stochastic relaxation of rounding, *stochastic Gumbel annealing* (SGA): the latent becomes a
soft mix of its floor and its ceiling, drawn from a Gumbel-softmax whose logits favour the
nearer one; as the temperature ``tau`` anneals (see ``TAU_MAX`` and ``TAU_RATE``) the mix hardens
towards rounding, and the latents found are rounded for the final comparison and the coder. The
logits are SGA+'s *sigmoid scaled logit* (Perugachi-Diaz, Gansekoele and Bhulai 2024, "Robustly
overfitting latents for flexible neural image compression"): ``log sigmoid(-a logit(d)) / tau`` of
each side's distance d, rather than Yang et al.'s ``-atanh(d) / tau``, whose gradients that paper finds
prone to saturate and vanish (see ``SGA_SCALE``). The rate is the
model's own likelihood of the relaxed latents (the factorized prior for z, the Gaussian
conditional with the hyper-synthesis' scales for y); the distortion is the MSE of the synthesis
of the relaxed y, weighted by the model's training lambda (``lambda * 255^2 * MSE + bpp``).

:func:`refine_latents` runs ``iterations`` Adam steps (the effort); more steps cost time at
encode time only. With a time budget (``seconds``) the temperature anneals over whichever runs out
first, the iterations or the seconds, so that a budget too short for the iterations still ends cold.
The result is returned only if its actual (rounded) loss beats the analysis transform's, so
refinement never makes a file worse on its own objective (as evaluated in the iterations'
precision: with bfloat16 a refined file could be worse by that precision's rounding, far less
than the gains refinement is run for).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from convpress.core.cpu import native_bf16
from convpress.core.errors import ConfigError

if TYPE_CHECKING:  # the hyperprior calls refine_latents: a run-time import would be a cycle
    from convpress.codec.models.hyperprior import ScaleHyperprior

__all__ = ["RefineResult", "refine_latents", "sga_round", "logistic_noise", "temperature", "on_iteration", "current_callback"]

_ON_ITERATION: ContextVar[Callable[[], None] | None] = ContextVar("_ON_ITERATION", default=None)


@contextmanager
def on_iteration(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback()`` after every refinement iteration inside the block (a progress bar's
    advance), however deep in the encoder the refinement runs."""
    token = _ON_ITERATION.set(callback)
    try:
        yield
    finally:
        _ON_ITERATION.reset(token)


def current_callback() -> Callable[[], None] | None:
    """The callback :func:`on_iteration` set for this context (None outside one): encoders that
    iterate (refinement, fitting) call it once per iteration."""
    return _ON_ITERATION.get()


#: SGA temperature schedule: tau(t) = TAU_MAX * exp(-TAU_RATE * t / iterations), floored at TAU_MIN.
#: TAU_MAX 1.0 since SGA+'s logits (``SGA_SCALE``) replaced the atanh ones, 0.5 before (see there).
#: TAU_RATE 1 (down to TAU_MAX / e at the last iteration, 0.18 when TAU_MAX was 0.5) rather than 4: with the tens
#: of iterations an encoder can afford, annealing slowly finds better latents; the final
#: comparison rounds them anyway. ``benchmarks/refine_tuning.py`` on six training photos, effort 30,
#: levels 2 / 4 / 6 / 9: loss -4.56 / -5.80 / -7.32 / -9.09% against -2.84 / -4.38 / -5.69 / -7.27%
#: with TAU_RATE 4 (2026-12-05)
TAU_MAX = 1.0
TAU_MIN = 0.02
TAU_RATE = 1.0
#: SGA+'s scale a of the sigmoid scaled logit: the floor's logit is ``log sigmoid(-a logit(down))``,
#: the ceiling's ``log sigmoid(-a logit(up))`` (a = 1: the floor is drawn with probability 1 - down,
#: linear). ``benchmarks/refine_tuning.py`` on six training photos, levels 2 / 4 / 6 / 9, one thread
#: each (2026-12-07), loss against effort 0, SGA+ (a 2.3, TAU_MAX 1) against atanh (TAU_MAX 0.5):
#:
#:     effort 10:   -3.08 / -4.73 / -4.95 / -5.20%    against  -1.39 / -3.03 / -2.69 / -3.97%
#:     effort 30:   -4.54 / -6.93 / -7.68 / -8.74%    against  -3.56 / -5.46 / -5.89 / -7.45%
#:     effort 100:  -6.40 / -8.70 / -10.34 / -11.55%  against  -5.69 / -8.05 / -9.19 / -10.71%
#:
#: Tried there too: a = 1, 1.6, 3; the cosine logits; three-class rounding; TAU_MAX 0.7 and 1.4 (1.4 did
#: better at efforts 30 and 100, worse at the default effort 10).
SGA_SCALE = 2.3


def temperature(step: int, iterations: int, progress: float | None = None) -> float:
    """The SGA temperature of ``step`` of ``iterations``: ``TAU_MAX`` annealed exponentially (to ``TAU_MAX / e``), floored at 0.02.
    ``progress`` (in [0, 1]; a time budget's elapsed share) moves the schedule on where it is ahead of ``step / iterations``."""
    done = step / max(1, iterations)
    if progress is not None:
        done = max(done, progress)
    return max(TAU_MIN, TAU_MAX * math.exp(-TAU_RATE * done))


def logistic_noise(
    shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Standard logistic noise ``log(u) - log(1 - u)`` (u uniform), shaped ``shape``: what a two-way
    Gumbel-softmax needs. SGA's relaxed one-hot over floor and ceiling depends on its two Gumbel
    draws only through their difference, and the difference of two independent standard Gumbel
    variables is a standard logistic one: one uniform draw per latent instead of two (tested
    against the Gumbel difference's distribution)."""
    u = torch.rand(shape, generator=generator, dtype=dtype).clamp_min(1e-10)  # in [1e-10, 1): both logs finite
    return torch.log(u) - torch.log1p(-u)


def sga_round(v: Tensor, tau: float, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Stochastic Gumbel annealing of rounding (SGA+'s sigmoid scaled logit): a differentiable draw between floor(v) and ceil(v).

    Args:
        v: latents, any shape.
        tau: temperature (> 0); near 0 the draw is the nearer integer, at 1 it is soft.
        generator: source of the noise (for reproducible encoding), where ``noise`` is not given.
        noise: the draw's logistic noise, shaped like ``v`` (:func:`logistic_noise`); drawn here if None.
            The difference of the ceiling's and the floor's Gumbel noise of Yang et al.'s form.

    Returns:
        A tensor shaped like ``v`` between ``floor(v)`` and ``floor(v) + 1``.
    """
    if noise is None:
        noise = logistic_noise(v.shape, generator, v.dtype)
    floor = torch.floor(v.detach())
    down = (v - floor).clamp(1e-6, 1.0 - 1e-6)  # distance to the floor, in (0, 1); the ceiling's is 1 - down
    # logits log sigmoid(-a logit(down)) / tau (floor) and log sigmoid(-a logit(1 - down)) / tau (ceil), each
    # with Gumbel noise; the relaxed one-hot's ceil weight is a softmax over the two, i.e. the sigmoid of their
    # difference (3.4x faster than softmax over a last dimension of 2, forward and backward, 2026-12-06),
    # whose noise is the Gumbel draws' difference: logistic. As logit(1 - d) = -logit(d) and
    # log sigmoid(s) - log sigmoid(-s) = s, the logits' difference is a * logit(down) / tau
    diff = SGA_SCALE * (torch.log(down) - torch.log1p(-down)) / tau + noise
    return floor + torch.sigmoid(diff / tau)


@dataclass
class RefineResult:
    """Refined latents and what they are worth on the model's training objective.

    Attributes:
        y: (1, M, h, w) latents to code.
        z: (1, N, h/4, w/4) hyper-latents to code.
        loss_before: ``lambda * 255^2 * MSE + bpp`` of the rounded analysis latents.
        loss_after: the same of the rounded refined latents (never above ``loss_before``).
        improved: whether the refined latents are returned (else the analysis ones).
        iterations: the iterations run (fewer than asked where a time budget ran out first).
    """

    y: Tensor
    z: Tensor
    loss_before: float
    loss_after: float
    improved: bool
    iterations: int = 0


def _rounded_loss(model: ScaleHyperprior, x: Tensor, y: Tensor, z: Tensor, lmbda: float, bf16: bool = False) -> float:
    """The objective with hard rounding, as the decoder will see it (float hyper-synthesis), in the
    iterations' precision (``bf16``: the same transforms in bfloat16, as :func:`_loss` runs them)."""
    with torch.no_grad():
        med = model.entropy_bottleneck.medians().detach().reshape(1, -1, 1, 1)
        z_hat = torch.round(z - med) + med
        return float(_loss(model, x, y, z_hat, lmbda, torch.round, bf16=bf16))


class _Adam:
    """Adam (Kingma and Ba 2015) with ``torch.optim.Adam``'s defaults and its single-tensor update, op for op
    (the one it runs on CPU tensors: the same latents, bit for bit; tested). Written here because
    ``torch.optim.Optimizer``'s constructor imports ``torch._dynamo`` (1.65 s of a cProfile of the first
    refined encode in a process, 2026-12-06): about as long as the command line's default 10 iterations take
    on a 0.4 MP photo, paid by every process."""

    def __init__(self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps, self.step_count = params, lr, betas, eps, 0
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        step = float(self.step_count)  # torch keeps the step as a float
        step_size = self.lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            grad = p.grad
            if grad is None:
                continue
            m.lerp_(grad, 1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(self.eps), value=-step_size)


def _loss(
    model: ScaleHyperprior,
    x: Tensor,
    y: Tensor,
    z_hat: Tensor,
    lmbda: float,
    rounding: Callable[[Tensor], Tensor],
    bf16: bool = False,
    context_gradient: bool = True,
) -> Tensor:
    """``lambda * 255^2 * MSE + bpp`` of one image x (1, 3, H, W) coded with latents y and
    quantised (or relaxed) hyper-latents z_hat; y is coded as ``rounding(y - mu) + mu`` around
    the means mu the model predicts from z_hat (zero for the scale hyperprior)."""
    pixels = x.shape[-1] * x.shape[-2]
    bits_z = -torch.log2(model.entropy_bottleneck.likelihood(z_hat)).sum()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # the hyper-synthesis and the context's convolutions
        r_hat, scales, mu = model.quantise_latents(y, z_hat, rounding, context_gradient=context_gradient)
    r_hat, scales = r_hat.float(), scales.float()
    mu = mu.float() if isinstance(mu, Tensor) else mu
    bits_y = -torch.log2(model.gaussian_conditional.likelihood(r_hat, scales)).sum()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        x_hat = model.g_s(model.from_coded(r_hat + mu)).float()
    return lmbda * 255.0**2 * F.mse_loss(x_hat, x) + (bits_y + bits_z) / pixels


def refine_latents(
    model: ScaleHyperprior,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    *,
    iterations: int,
    lmbda: float,
    lr: float = 2e-2,
    seed: int = 0,
    bf16: bool | None = None,
    seconds: float | None = None,
    context_gradient: bool = False,
) -> RefineResult:
    """Optimise the latents of one image for the rate-distortion loss (SGA, see the module docstring).

    Args:
        model: a scale or mean-scale hyperprior (``g_s``, ``prior``, ``from_coded``, ``entropy_bottleneck``,
            ``gaussian_conditional``).
        x: the padded image (1, 3, H, W) in [0, 1].
        y: its analysis latents in the coder's domain (1, M, H/16, W/16) (``model.to_coded(g_a(x))``).
        z: its hyper-latents (1, N, H/64, W/64).
        iterations: Adam steps (0 returns the latents unchanged).
        lmbda: the model's lambda (the weight of ``255^2 * MSE`` against bits per pixel).
        lr: Adam's learning rate on the latents.
        seed: seed of the Gumbel noise (encoding is reproducible).
        bf16: run the transforms of the iterations in bfloat16 (autocast: the synthesis, the
            hyper-synthesis and a context model's convolutions; the likelihoods and the latents stay
            float32), and so the comparison of the refined latents with the analysis ones, which
            then costs two bfloat16 syntheses instead of two float32 ones. None: where the CPU does
            it natively (:func:`convpress.core.cpu.native_bf16`). Measured on this project's CPU by
            ``benchmarks/refine_bf16.py`` (30 iterations, three 384x256 crops, the shipped levels 2
            and 6, one thread; 2026-12-06): 0.52x the time for the same gain (-3.22% of the loss on
            average, -3.34% in float32). Running the comparison and the context model in bfloat16
            too (the synthesis alone before) took the command line's default effort 0.79-0.86x the
            time at levels 2, 6 and 9 (``benchmarks/refine_ab.py``).
        seconds: a time budget for the iterations (None: the iterations alone bound them). At least one
            iteration runs; the temperature follows the elapsed share of the budget where that is
            ahead of the iterations' share, so the latents found are annealed either way. The result
            then depends on the machine's speed (the file is valid whatever it is).
        context_gradient: let the gradient reach the latents through a context model's predictions
            too (how a decoded latent changes its neighbours' rates). Off by default: measured by
            ``benchmarks/refine_tuning.py`` (effort 30, six training photos at long side 512, levels 2 /
            4 / 6 / 9, one thread each, 2026-12-06), without it the loss fell by 3.37 / 5.53 / 5.84 /
            7.43% in 0.88x the time, with it by 3.60 / 5.56 / 5.63 / 6.74%.

    Raises:
        ConfigError: for a negative iteration count, a non-positive lambda or a non-positive budget.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ConfigError(f"refinement iterations (effort) must be a non-negative integer, got {iterations!r}")
    if not lmbda > 0:
        raise ConfigError(f"refinement needs the model's lambda (> 0), got {lmbda!r}")
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"the refinement's time budget must be a positive number of seconds, got {seconds!r}")
    if iterations == 0:
        before = _rounded_loss(model, x, y, z, lmbda)
        return RefineResult(y, z, before, before, False)
    if bf16 is None:
        bf16 = native_bf16()
    before = _rounded_loss(model, x, y, z, lmbda, bf16)
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    med = model.entropy_bottleneck.medians().detach().reshape(1, -1, 1, 1)
    y_var = y.detach().clone().requires_grad_(True)
    z_var = (z.detach() - med).clone().requires_grad_(True)  # z relative to the medians it is rounded around
    opt = _Adam([y_var, z_var], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    tick = _ON_ITERATION.get()
    start, done = time.perf_counter(), 0
    try:
        for step in range(iterations):
            elapsed = None if seconds is None else (time.perf_counter() - start) / seconds
            if step and elapsed is not None and elapsed >= 1.0:
                break
            tau = temperature(step, iterations, elapsed)
            z_hat = sga_round(z_var, tau, gen) + med
            # one draw per latent and iteration, shared by a context model's passes: each latent is taken
            # from the one pass that codes it, so it still sees one independent draw (and the noise is not
            # drawn for the whole grid once per pass)
            rounding = partial(sga_round, tau=tau, noise=logistic_noise(y_var.shape, gen))
            loss = _loss(model, x, y_var, z_hat, lmbda, rounding, bf16=bf16, context_gradient=context_gradient)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if tick is not None:
                tick()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    y_new, z_new = y_var.detach(), z_var.detach() + med
    after = _rounded_loss(model, x, y_new, z_new, lmbda, bf16)
    if after < before:
        return RefineResult(y_new, z_new, before, after, True, done)
    return RefineResult(y, z, before, before, False, done)
