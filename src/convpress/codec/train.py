"""Training of the codec models: rate-distortion loss, random crops, resumable checkpoints.

The loss is CompressAI's ``lambda * 255^2 * MSE + bpp`` with the rate estimated from the
likelihoods of the noisy latents. Batches are drawn from a generator seeded by ``(seed, step)``
and the quantization noise of image i of the batch from a generator seeded by
``(seed, step, i)``, so a run that is killed and resumed from its last checkpoint repeats
exactly the steps an uninterrupted run takes.

Under ``torchrun --nproc_per_node N`` (see :mod:`convpress.core.distributed`) every process draws the
same global batch and trains on its ``1/N`` share (``batch`` must be divisible by N) with the
noise those images get in a single process; DDP averages the gradients, so each step follows
the global-batch gradient, and the logged loss, rate and PSNR are means over all processes.
Only rank 0 writes checkpoints and draws the progress bar.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from convpress.codec.entropy_models import per_sample_noise
from convpress.codec.models import DEFAULT_MODEL, CodecModel, build_model, is_variable_rate
from convpress.codec.models.varrate import GAIN_MIN
from convpress.codec.weights import ENCODER_KEYS, from_int8, int8_kernels, int8_names
from convpress.core.digest import fingerprint, state_digest
from convpress.core.distributed import batch_share, sum_over_processes
from convpress.core.errors import ConfigError
from convpress.core.training import Step, TrainConfig, Trainer, step_generator
from convpress.data.images import read_image
from convpress.data.photos import DEBIAN_TRAIN_WALLPAPERS, TRAIN_PHOTOS, bundled_photo, load_folder, resize_long_side

__all__ = [
    "CodecTrainConfig",
    "DECODER_ONLY_KEYS",
    "ENTROPY_ONLY_FROZEN",
    "rounded_synthesis",
    "widened_state",
    "regained_state",
    "rd_loss",
    "random_batch",
    "train_codec",
    "QUALITY_LAMBDAS",
    "DEBIAN_PHOTOS",
    "training_images",
]

#: quality level -> lambda of the loss lambda * 255^2 * MSE + bpp (CompressAI's scale; levels 9 and 10 continue
#: its ratio of about 1.93 past its highest, for the 36-40 dB that photos need)
QUALITY_LAMBDAS: dict[int, float] = {
    1: 0.0009,
    2: 0.0018,
    3: 0.0035,
    4: 0.0067,
    5: 0.013,
    6: 0.025,
    7: 0.0483,
    8: 0.0932,
    9: 0.18,
    10: 0.35,
}

#: natural photos among the examples that Debian's ``opencv-doc`` package ships (BSD/Apache)
DEBIAN_PHOTO_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
DEBIAN_PHOTOS = [
    "aero1.jpg",
    "aero3.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "basketball1.png",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "fruits.jpg",
    "graf1.png",
    "HappyFish.jpg",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "orange.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
    "box_in_scene.png",
    "chicky_512.png",
    "lena.jpg",
]


@dataclass(kw_only=True)
class CodecTrainConfig(TrainConfig):
    """Settings of one training run (validated; part of the checkpoint fingerprint). ``batch``,
    ``lr`` (the peak learning rate) and ``seed`` are those of every :class:`~convpress.core.training.TrainConfig`."""

    model: str = DEFAULT_MODEL
    n: int = 64
    m: int = 96
    lmbda: float = 0.025
    steps: int = 2000
    batch: int = 8
    crop: int = 128
    lr: float = 5e-4
    lr_final: float = 1e-4
    checkpoint_every: int = 100
    #: steps of linear learning-rate warm-up; a fresh Adam state on trained weights otherwise
    #: takes steps of about ``lr`` per parameter at once (measured: PSNR 28 -> 24 dB at lr 3e-4)
    warmup: int = 0
    #: g_s sees rounded latents straight-through while the rate sees noisy ones (see
    #: ``CodecModel.mixed_quantization``); best as a final fine-tune
    mixed_quantization: bool = False
    #: learning-rate factor of the parameters that ``init`` does not hold (a part new to the model
    #: being fine-tuned, e.g. the mean-scale model's mean head started from a scale hyperprior)
    fresh_lr_scale: float = 1.0
    #: a variable-rate model's levels: the lambda of each (``lmbda`` is then unused; without them the
    #: model has one level, ``lmbda``); every step trains one level, drawn from the step's seed
    lambdas: tuple[float, ...] = ()
    #: the lambda that ``init`` was trained for: a variable-rate model's gains that ``init`` does
    #: not hold start from it (``VariableRateHyperprior.init_gains``); else they start at 1
    init_lmbda: float | None = None
    #: run the transforms' convolutions in bfloat16 (``torch.autocast``; the weights, the Adam state,
    #: the latents and the likelihoods stay float32): on a CPU with AVX512-BF16 or AMX a step takes
    #: about half the time (N=96, M=192, two 256-pixel crops: 0.15 s against 0.30 s, measured
    #: 2026-12-05 on this project's AMD EPYC); elsewhere it is emulated and slower
    bf16: bool = False
    #: train only the decoder side that never selects an entropy table (:data:`DECODER_ONLY_KEYS`:
    #: the synthesis g_s and a variable-rate model's inverse gains) on the actual rounded latents of
    #: the frozen analysis, hyper-analysis and entropy models, for the distortion alone: files encode
    #: to the same bytes and decode closer to the image. A final fine-tune of a trained model: the
    #: synthesis was trained on noisy latents, and learns here what rounding does to them (2026-12-05,
    #: 3,000 steps on the shipped top levels: +0.14 to +0.19 dB at the same bits on the check photos)
    decoder_only: bool = False
    #: train only the encoder side (:data:`~convpress.codec.weights.ENCODER_KEYS`: the analysis and
    #: hyper-analysis), the synthesis seeing the rounded latents straight-through (mixed quantization)
    #: and the decoder, the entropy model and the gains frozen: the same decoder, better latents at
    #: encoder effort 0. :func:`~convpress.codec.weights.with_encoder` writes the result so that it also
    #: decodes the files of the weights it starts from. (2026-12-07, levels 1-4 of the shipped
    #: ``varrate.safetensors``, 2,000 steps: -1.6% bits on the check photos with the rounded latents,
    #: +0.9% with noisy ones)
    encoder_only: bool = False
    #: train with the convolution weights as ``save_weights(int8=True)`` stores them (int8 codes with
    #: one float16 scale per kernel, :func:`~convpress.codec.weights.int8_kernels`), gradients
    #: passing straight through the rounding (quantisation-aware training): the int8 file then
    #: decodes as the trained model did. The returned model holds the rounded weights.
    int8: bool = False
    #: a variable-rate model's context (``VariableRateHyperprior(context=...)``): 0 (or False) none,
    #: 1 (or True) the checkerboard, the latents coded in two passes, the second predicted from the
    #: first's; 2 the checkerboard and two channel halves, four passes. Fine-tuned from weights with
    #: less context (``init``), the new context layers start at zero
    context: int = 0
    #: prefixes of parameter names kept as loaded from ``init`` (e.g. ``("g_a.", "g_s.", "gain", "inv_gain")``:
    #: the transforms and gains, so that a context model fine-tunes its entropy model alone and the
    #: latents and the synthesis stay those of the weights it starts from)
    frozen: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.checkpoint_every < 1:
            raise ConfigError("steps, batch and checkpoint_every must be positive")
        if not 0 <= self.warmup < self.steps:
            raise ConfigError(f"warmup must be in [0, steps), got {self.warmup}")
        if self.crop < 64 or self.crop % 64:
            raise ConfigError(f"crop must be a multiple of 64 (at least 64), got {self.crop}")
        if not (self.lmbda > 0 and self.lr_final > 0 and self.fresh_lr_scale > 0):
            raise ConfigError("lambda, learning rates and fresh_lr_scale must be positive")
        self.lambdas = tuple(float(v) for v in self.lambdas)
        self.frozen = tuple(str(k) for k in self.frozen)
        variable = is_variable_rate(self.model)
        if variable and not self.lambdas:  # one level: lmbda's (as `codec train --quality Q` of the default model)
            self.lambdas = (self.lmbda,)
        if variable and not (self.lambdas and all(v > 0 and math.isfinite(v) for v in self.lambdas)):
            raise ConfigError(f"the {self.model} model needs the positive lambdas of its levels (lambdas)")
        if self.lambdas and not variable:
            raise ConfigError(f"lambdas are for a variable-rate model; {self.model} has one rate (use lmbda)")
        if self.init_lmbda is not None and not self.init_lmbda > 0:
            raise ConfigError(f"init_lmbda must be positive, got {self.init_lmbda}")
        if self.decoder_only and self.model == "factorized":
            raise ConfigError("decoder_only needs a hyperprior model (its latents are rounded around the hyperprior's medians and means)")
        if self.frozen and not all(self.frozen):
            raise ConfigError("frozen holds parameter-name prefixes; an empty one would freeze every parameter")
        if self.context not in (0, 1, 2):  # True and False are 1 and 0
            raise ConfigError(f"context is 0 (none), 1 (checkerboard) or 2 (checkerboard and channels), got {self.context!r}")
        if self.context and not variable:
            raise ConfigError(f"the checkerboard context is a variable-rate model's (varrate), not {self.model}'s")
        if self.encoder_only and self.decoder_only:
            raise ConfigError("encoder_only and decoder_only train opposite sides; choose one")
        if self.decoder_only and self.mixed_quantization:
            raise ConfigError("decoder_only already trains the synthesis on rounded latents; drop mixed_quantization")

    def level_of_step(self, step: int) -> int:
        """The level a variable-rate model trains at ``step`` (0 for a fixed-rate one): uniform, from the step's seed."""
        if len(self.lambdas) < 2:
            return 0
        return int(torch.randint(len(self.lambdas), (1,), generator=torch.Generator().manual_seed(self.seed * 7_919 + step + 1)))

    def model_config(self) -> dict[str, int]:
        """The model's config for :func:`~convpress.codec.models.build_model`."""
        cfg = {"N": self.n, "M": self.m}
        if self.lambdas:
            cfg["LEVELS"] = len(self.lambdas)
        if self.context:
            cfg["CONTEXT"] = int(self.context)
        return cfg


#: prefixes of the parameters an entropy-only fine-tune keeps as loaded (``CodecTrainConfig.frozen``,
#: ``codec train --entropy-only``): the transforms and a variable-rate model's gains, so the latents and the
#: decoder stay those of the weights it starts from and only the entropy model learns (fewer bits, the same image)
ENTROPY_ONLY_FROZEN: tuple[str, ...] = ("g_a.", "g_s.", "gain", "inv_gain")

#: prefixes of the parameters a decoder-only fine-tune trains: none of them selects an entropy table
#: or changes a coded symbol (the gains, means and hyper-synthesis do), so the files stay the same bytes
DECODER_ONLY_KEYS: tuple[str, ...] = ("g_s.", "inv_gain")


def rounded_synthesis(model: CodecModel, x: Tensor) -> dict[str, Any]:
    """The model's output on x (B, 3, H, W) with the latents rounded as the coder rounds them.

    z is rounded around the entropy bottleneck's medians, y (in the coder's domain) around the
    means predicted from that z; only the synthesis (and a variable-rate model's inverse gains) is
    differentiated. The likelihoods are those of the rounded latents (the actual rate, constant
    in a decoder-only fine-tune). Needs a hyperprior model (``hyper_analysis``, ``prior``).
    """
    net = cast(Any, model)  # a hyperprior model (checked by CodecTrainConfig)
    with torch.no_grad():
        y = net.g_a(x).float()
        z = net.hyper_analysis(y)
        med = net.entropy_bottleneck.medians().detach().reshape(1, -1, 1, 1)
        z_hat = torch.round(z - med) + med
        r, scales, mu = net.quantise_latents(net.to_coded(y), z_hat, torch.round)
        likelihoods = {"y": net.gaussian_conditional.likelihood(r, scales), "z": net.entropy_bottleneck.likelihood(z_hat)}
    return {"x_hat": net.g_s(net.from_coded(r + mu)), "likelihoods": likelihoods}


class _Int8Weight(torch.nn.Module):
    """A parametrization (``torch.nn.utils.parametrize``): the weight as an int8 weights file holds
    it, with the gradient passed straight through the rounding."""

    def forward(self, w: Tensor) -> Tensor:
        rounded = from_int8(*int8_kernels(w))
        return w + (rounded - w).detach()


def int8_weights_(model: torch.nn.Module) -> list[str]:
    """Make the trainable weights an int8 file rounds (:func:`~convpress.codec.weights.int8_names`) read
    as their int8 rounding (:class:`_Int8Weight`), in place; returns their names. Undone by
    :func:`plain_weights_`. Frozen weights stay exactly as loaded: rounding is not idempotent for a kernel
    whose float16 scale is subnormal (below 6.1e-5; the shipped context layers have such kernels), so
    rounding a frozen weight loaded from an int8 file again could move it, and the decoder with it."""
    from torch.nn.utils import parametrize

    names = [n for n in int8_names(model) if model.get_parameter(n).requires_grad]
    for name in names:
        owner, attr = name.rsplit(".", 1)
        parametrize.register_parametrization(model.get_submodule(owner), attr, _Int8Weight())
    return names


def plain_weights_(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Undo :func:`int8_weights_`: the weights keep their int8 rounding as plain parameters."""
    from torch.nn.utils import parametrize

    for name in names:
        owner, attr = name.rsplit(".", 1)
        parametrize.remove_parametrizations(model.get_submodule(owner), attr, leave_parametrized=True)
    with torch.no_grad():  # w + (rounded - w) is the rounded weight only up to float rounding
        for name in names:
            w = model.get_parameter(name)
            w.copy_(from_int8(*int8_kernels(w)))


def plain_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A checkpoint's model state with the names :func:`int8_weights_` gave its weights
    (``conv.parametrizations.weight.original``) back to the plain ones (``conv.weight``)."""
    return {_plain_name(k): v for k, v in state.items()}


def _plain_name(key: str) -> str:
    """``conv.parametrizations.weight.original`` -> ``conv.weight``; other names unchanged."""
    return key.replace(".parametrizations.", ".").removesuffix(".original") if ".parametrizations." in key else key


def rd_loss(out: dict[str, Any], x: Tensor, lmbda: float) -> tuple[Tensor, Tensor, Tensor]:
    """-> (loss, bpp, mse) for a model output on x (B, 3, H, W)."""
    b, _, h, w = x.shape
    bits = cast(Tensor, sum(-torch.log2(v).sum() for v in out["likelihoods"].values()))  # a model has likelihoods
    bpp = bits / (b * h * w)
    mse = F.mse_loss(out["x_hat"].float(), x)  # x_hat is bfloat16 under autocast
    return lmbda * 255.0**2 * mse + bpp, bpp, mse


def widened_state(narrow: CodecModel, n: int, m: int, *, seed: int = 0, new_latent_gain: float = 0.1) -> dict[str, Tensor]:
    """The parameters of a wider model (N = ``n``, M = ``m``) that computes what ``narrow`` computes.

    Net2Net-style widening (Chen et al. 2016), so a wider transform starts from a trained one
    instead of from scratch (on this CPU, a model trained from scratch at a high rate is at
    18 dB after 600 steps). Every weight of ``narrow`` keeps its place; the new channels get a
    fresh model's initial weights from every input, and the weights from new channels into old
    ones are 0 (but for the new latent channels, see below). So old channels compute exactly what
    they did, new channels are active (their outgoing weights get gradients at once: no two zero
    parts in series), and the output, the latents and their scales are unchanged. GDN couples no old channel to a new one. The new
    channels of y and z get their incoming weights scaled by ``new_latent_gain`` so that they
    start near 0 and cost few bits; the new y channels reach the old synthesis channels through
    fresh weights scaled the same way, so their quantised value (0) leaves the decoded image
    unchanged while, in training, their noisy value has a path to the image with a gradient.
    Buffers (entropy tables) are left out: ``update()`` rebuilds them. A variable-rate model keeps
    its levels; the gains and inverse gains of its new latent channels start at each level's
    geometric mean over the old channels, so they are quantised like the others.

    Args:
        narrow: a trained model (its config gives the old N and M).
        n, m: the new widths, at least the old ones.
        seed: seed of the fresh weights of the new channels.

    Returns:
        The wide model's parameters (a state dict without buffers), for ``train_codec(init=...)``.
    """
    old = dict(narrow.config)
    if n < old["N"] or m < old["M"]:
        raise ConfigError(f"widening needs N >= {old['N']} and M >= {old['M']}; got N={n}, M={m}")
    torch.manual_seed(seed)
    wide = build_model(narrow.name, {**old, "N": n, "M": m})
    src = dict(narrow.named_parameters())
    out: dict[str, Tensor] = {}
    modules = dict(wide.named_modules())
    for key, fresh in wide.named_parameters():
        w = fresh.detach().clone()
        if key not in src:
            out[key] = w
            continue
        o = src[key].detach()
        if key in ("gain", "inv_gain"):  # (levels, M): a variable-rate model's per-level gains
            w[:, : o.shape[1]] = o
            w[:, o.shape[1] :] = o.clamp_min(GAIN_MIN).log().mean(dim=1, keepdim=True).exp()
            out[key] = w
            continue
        owner = modules[key.rsplit(".", 1)[0]]
        # (out, in) channel dims of the tensor; a transposed convolution stores (in, out)
        dims: tuple[int, int | None]
        if isinstance(owner, torch.nn.ConvTranspose2d) and key.endswith("weight"):
            dims = (1, 0)
        elif o.dim() >= 2 and not key.startswith("entropy_bottleneck"):
            dims = (0, 1)  # convolutions and GDN's gamma
        else:
            dims = (0, None)  # biases, GDN's beta, per-channel entropy-model parameters
        d_out, d_in = dims
        if key.startswith(("g_a.6.", "h_a.4.")) and o.shape[d_out] < w.shape[d_out]:  # y and z: new channels start small
            w.narrow(d_out, o.shape[d_out], w.shape[d_out] - o.shape[d_out]).mul_(new_latent_gain)
        if d_in is not None and o.shape[d_in] < w.shape[d_in]:
            new_to_old = w.narrow(d_in, o.shape[d_in], w.shape[d_in] - o.shape[d_in]).narrow(d_out, 0, o.shape[d_out])
            if key == "g_s.0.weight":
                # the new latent channels reach the old synthesis channels through small weights, not
                # zeros: a new y channel starts below 0.5 (rounded to 0 when coded, so decoding is
                # unchanged), and in training its noisy value would otherwise reach the image only
                # through more zero weights, so neither side would learn (measured: after 2000 steps
                # every new channel still rounded to 0)
                new_to_old.mul_(new_latent_gain)
            elif "gamma" in key:  # GDN's gamma is stored reparametrised: the fresh off-diagonal value is a zero
                new_to_old.fill_(fresh.detach()[0, 1])
            else:
                new_to_old.zero_()
        region = w
        for d, size in enumerate(o.shape):
            region = region.narrow(d, 0, size)
        region.copy_(o)
        out[key] = w
    return out


def regained_state(state: dict[str, Tensor], lambdas: Sequence[float], new_lambdas: Sequence[float]) -> dict[str, Tensor]:
    """A variable-rate model's parameters ``state`` (levels of ``lambdas``) for the levels ``new_lambdas``.

    A level whose lambda the model has keeps its gains; a new one starts from the gains of the
    level nearest in log-lambda, times ``sqrt(new / old)`` (inverse gains divided by it), the
    high-rate rule of :meth:`~convpress.codec.models.varrate.VariableRateHyperprior.init_gains`.
    So a trained model gains levels (or loses some) without training from scratch.

    Raises:
        ConfigError: if ``state`` has no gains for ``lambdas`` or a lambda is not positive.
    """
    gain, inv = state.get("gain"), state.get("inv_gain")
    if gain is None or inv is None or gain.shape[0] != len(lambdas) or not all(v > 0 for v in (*lambdas, *new_lambdas)):
        raise ConfigError(f"regained_state needs a variable-rate model's gains for its {len(lambdas)} positive lambdas")
    rows, inv_rows = [], []
    for v in new_lambdas:
        k = min(range(len(lambdas)), key=lambda i: abs(math.log(lambdas[i] / v)))
        factor = math.sqrt(v / lambdas[k])
        rows.append(gain[k] * factor)
        inv_rows.append(inv[k] / factor)
    return {**state, "gain": torch.stack(rows), "inv_gain": torch.stack(inv_rows)}


def training_images(*, debian: bool = True, wallpapers: bool = False, extra_dirs: Sequence[str | os.PathLike[str]] = ()) -> list[Tensor]:
    """The bundled TRAIN photos, the Debian photos if installed, and images of ``extra_dirs``.

    With ``wallpapers``, also the installed :data:`~convpress.data.photos.DEBIAN_TRAIN_WALLPAPERS`
    (photos among Debian's plasma and mate wallpapers, never test photos), each at long side 1024.
    Large photos also enter at half size, so crops see both fine and coarse detail.
    """
    images = [bundled_photo(n) for n in TRAIN_PHOTOS]
    if debian and DEBIAN_PHOTO_DIR.is_dir():
        images += [read_image(DEBIAN_PHOTO_DIR / n) for n in DEBIAN_PHOTOS if (DEBIAN_PHOTO_DIR / n).is_file()]
    if wallpapers:
        images += [resize_long_side(read_image(p), 1024) for p in DEBIAN_TRAIN_WALLPAPERS if p.is_file()]
    for d in extra_dirs:
        images += load_folder(d)
    halves = [F.interpolate(im[None], scale_factor=0.5, mode="area")[0] for im in images if min(im.shape[1:]) >= 512]
    return images + halves


def random_batch(images: Sequence[Tensor], batch: int, crop: int, gen: torch.Generator) -> Tensor:
    """(batch, 3, crop, crop) random crops with random horizontal flips; small images are reflect-padded."""
    out = []
    for _ in range(batch):
        im = images[int(torch.randint(len(images), (1,), generator=gen))]
        _, h, w = im.shape
        if h < crop or w < crop:
            im = F.pad(im[None], (0, max(0, crop - w), 0, max(0, crop - h)), mode="replicate")[0]
            _, h, w = im.shape
        top = int(torch.randint(h - crop + 1, (1,), generator=gen))
        left = int(torch.randint(w - crop + 1, (1,), generator=gen))
        c = im[:, top : top + crop, left : left + crop]
        if bool(torch.randint(2, (1,), generator=gen)):
            c = c.flip(-1)
        out.append(c)
    return torch.stack(out)


def _lr(cfg: CodecTrainConfig, step: int) -> float:
    """Learning rate of ``step``: linear warm-up over ``cfg.warmup`` steps, then cosine decay from lr to lr_final."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / (cfg.warmup + 1)
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup - 1)
    return cfg.lr_final + 0.5 * (cfg.lr - cfg.lr_final) * (1 + math.cos(math.pi * t))


def _batch_generator(cfg: CodecTrainConfig, step: int) -> torch.Generator:
    """Generator of the crops of ``step``'s global batch (this formula predates :func:`step_generator`
    and is kept so that runs repeat the ones before the shared training loop)."""
    return torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)


def train_codec(
    cfg: CodecTrainConfig,
    images: Sequence[Tensor],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    init: dict[str, Tensor] | None = None,
    progress: bool = True,
    log_every: int = 50,
    stop_after: int | None = None,
) -> tuple[CodecModel, list[dict[str, float]]]:
    """Train (or resume training) a codec model with convpress's training loop.

    Args:
        cfg: settings.
        images: training images, each (3, H, W) in [0, 1].
        work_dir: folder for ``checkpoint.ckpt``; a matching checkpoint there is resumed.
        init: a state dict to start from (fine-tuning from another lambda).
        progress: draw a progress bar.
        log_every: steps between entries of the returned history.
        stop_after: stop (after checkpointing) once this many steps are done; for tests.

    Returns:
        (model in eval mode with entropy tables updated, history of {step, loss, bpp, psnr}).
    """
    if not images:
        raise ConfigError("no training images")
    rank, size = batch_share(cfg.batch)
    if cfg.decoder_only and size > 1:  # it calls the synthesis past the DDP wrapper, whose hooks average the gradients
        raise ConfigError("decoder_only trains in one process (a short fine-tune); run it without torchrun")
    torch.manual_seed(cfg.seed)  # the initial weights
    model = build_model(cfg.model, cfg.model_config())
    fresh: set[str] = set()
    if init is not None:
        fresh = set(model.load_state_dict(init, strict=False).missing_keys)
    init_gains = getattr(model, "init_gains", None)
    if init_gains is not None and cfg.init_lmbda is not None and "gain" in fresh:
        init_gains(cfg.lambdas, cfg.init_lmbda)
    model.mixed_quantization = cfg.mixed_quantization
    if cfg.decoder_only:  # the rest stays exactly as loaded: the coded symbols cannot change
        for k, p in model.named_parameters():
            p.requires_grad_(k.startswith(DECODER_ONLY_KEYS))
    if cfg.encoder_only:  # the decoder stays exactly as loaded: it decodes the files of the weights started from
        model.mixed_quantization = True
        for k, p in model.named_parameters():
            p.requires_grad_(k.startswith(ENCODER_KEYS))
    if cfg.frozen:
        for k, p in model.named_parameters():
            if k.startswith(cfg.frozen):
                p.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):  # e.g. decoder_only with the synthesis frozen
        raise ConfigError(
            "these settings leave no parameter to train (decoder_only trains only the synthesis, encoder_only only the analysis; "
            "frozen keeps them as loaded)"
        )
    rounded = int8_weights_(model) if cfg.int8 else []
    # channels-last convolutions: a training step of N=96, M=192 on two 256-pixel crops took 0.29 s
    # against 0.35 s with two threads (0.54 s either way with one), measured 2026-12-05
    model.to(memory_format=torch.channels_last)
    named = [(_plain_name(k), p) for k, p in model.named_parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": [p for k, p in named if k not in fresh]}]
    if any(k in fresh for k, _ in named):
        groups.append({"params": [p for k, p in named if k in fresh], "lr_scale": cfg.fresh_lr_scale})
    settings = asdict(cfg)
    # runs from before a setting existed keep their fingerprint
    for flag in ("bf16", "decoder_only", "encoder_only", "int8", "context", "frozen"):
        if not settings[flag]:
            del settings[flag]
    if settings.get("context") == 1:  # and runs from when the context was a bool (True)
        settings["context"] = True
    run_id = fingerprint({"cfg": settings, "init": state_digest(init) if init is not None else None})
    trainer = Trainer(
        model,
        torch.optim.Adam(groups, lr=cfg.lr),
        kind="codec-train",
        run_id=run_id,
        checkpoint=Path(work_dir) / "checkpoint.ckpt" if work_dir is not None else None,
        lr=lambda step: _lr(cfg, step),
        clip_grad_norm=1.0,
        checkpoint_every=cfg.checkpoint_every,
        progress=progress,
        description=f"train {cfg.model} " + (f"{len(cfg.lambdas)} levels" if cfg.lambdas else f"lambda={cfg.lmbda}"),
    )
    trainer.records = {"history": []}
    trainer.restore()
    history: list[dict[str, float]] = trainer.records["history"]
    acc = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "n": 0}
    t0 = time.time()

    def batches(epoch: int) -> Iterator[int]:
        return iter(range(cfg.steps))  # a step's crops and noise come from its own seeds (see loss)

    def loss(net: torch.nn.Module, step_index: int, step: Step) -> Tensor:
        x = step.share(random_batch(images, cfg.batch, cfg.crop, _batch_generator(cfg, step.index)))
        x = x.contiguous(memory_format=torch.channels_last)
        lmbda = cfg.lmbda
        if cfg.lambdas:
            level = cfg.level_of_step(step.index)
            model.set_level(level)  # type: ignore[operator]  # a variable-rate model (checked by the config)
            lmbda = cfg.lambdas[level]
        with per_sample_noise([step_generator(cfg.seed, step.index, i) for i in range(rank, cfg.batch, size)]):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                out = rounded_synthesis(model, x) if cfg.decoder_only else net(x)
            value, bpp, mse = rd_loss(out, x, lmbda)
        acc["bpp"] += bpp.item()
        acc["mse"] += mse.item()
        return value

    def after_step(step: Step, value: Tensor, _: Any) -> None:
        acc["loss"] += value.item()
        acc["n"] += 1
        done = step.index + 1
        if done % log_every == 0 or done == end:
            n = acc["n"] * size  # means of the shard means = means over the global batches
            loss_sum, bpp_sum, mse_sum = sum_over_processes([acc["loss"], acc["bpp"], acc["mse"]])
            history.append(
                {
                    "step": done,
                    "loss": loss_sum / n,
                    "bpp": bpp_sum / n,
                    "psnr": 10 * math.log10(1.0 / max(mse_sum / n, 1e-12)),
                    "seconds": time.time() - t0,
                }
            )
            acc.update(loss=0.0, bpp=0.0, mse=0.0, n=0)

    def status() -> str:
        return f"loss {history[-1]['loss']:.3f} bpp {history[-1]['bpp']:.3f} PSNR {history[-1]['psnr']:.2f}" if history else ""

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    trainer.fit(epochs=1, steps_per_epoch=cfg.steps, batches=batches, loss=loss, after_step=after_step, status=status, stop_at=end)
    model.eval()
    plain_weights_(model, rounded)
    if cfg.lambdas:
        model.set_level(len(cfg.lambdas) - 1)  # type: ignore[operator]  # the training steps left it at a random level
    model.update()
    return model, history
