"""Entropy models of the latents: the factorized prior and the Gaussian conditional.

Both follow the CompressAI split between training and coding: ``forward`` returns the
quantization stand-in (additive uniform noise while training, rounding in eval mode) and the
likelihood of every element, from which the rate term ``-log2 p`` of the loss is computed;
``update()`` freezes the model into integer frequency tables (saved with the weights) that
``compress`` / ``decompress`` code with rANS (:mod:`convpress.core.rans`): every table is built from
the same integers on both sides, so decoding never depends on floating-point rounding.

* :class:`EntropyBottleneck`: Ballé et al. 2018 (appendix 6.1), a learned, per-channel,
  non-parametric density: the cumulative is a small monotone network (softplus matrices,
  tanh gates) and the likelihood of a quantization bin is the difference of two cumulatives.
  Medians and tails are found by bisection on that cumulative at ``update()``.
* :class:`GaussianConditional`: a zero-mean Gaussian per element whose scale comes from the
  hyperprior; coding quantizes the scale to the nearest (in log scale) of 128 log-spaced
  levels from 0.11 to 64 (about 5% apart), each with its own precomputed table.

Values outside a table's range (probability below ``TAIL_MASS`` under the model) are *escaped*
(``escape=True``, ``.cpi`` format version 4): every table gets one more symbol at each end, of
``ESCAPE_COUNT`` in ``2**16``, taken from its most probable symbol in integer arithmetic (see
:func:`escape_counts`), so the stored tables and the weights ids stay as they were. A value past
an edge is coded as that end's escape symbol, and its distance past the edge (1 to
``2**ESCAPE_BITS - 1``; farther values stop there) with an Elias-gamma code after all the
latents: the bit length under a uniform model, then the bits below the leading one. A latent the
hyperprior predicted badly so costs about 20-30 bits instead of being decoded wrong.
With ``escape=False`` (format versions 1-3) such values are clamped to the table's edge, as files
of those versions were written: encoder and decoder agree on the clamp, so those bitstreams stay
exact, but the decoded latent is wrong by the clamped distance (measured: up to 4.2 dB lost on a
photo whose latents the wide models mispredict, see ``benchmarks/codec_clamped_symbols.py``).

The training noise comes from PyTorch's global generator, or, inside :func:`per_sample_noise`,
from one generator per image of the batch, so that an image's noise does not depend on which
other images share its batch (data-parallel shards of a global batch get the noise of the
whole batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convpress.codec.gdn import lower_bound
from convpress.core import rans
from convpress.core.rans import pmf_to_counts

__all__ = [
    "EntropyBottleneck",
    "GaussianConditional",
    "scale_table",
    "per_sample_noise",
    "encode_groups",
    "decode_groups",
    "TAIL_MASS",
    "LIKELIHOOD_BOUND",
    "ESCAPE_COUNT",
    "ESCAPE_BITS",
    "escape_counts",
    "ste_round",
]

TAIL_MASS = 1e-9
LIKELIHOOD_BOUND = 1e-9
SCALE_MIN = 0.11


SCALE_LEVELS = 128

#: count, out of ``2**PMF_PRECISION``, of each of a table's two escape symbols (a probability of
#: 2**-14, about 14 bits per escape; the in-table symbols lose 8 counts of 65,536 in all)
ESCAPE_COUNT = 4
#: an escaped value's distance past its table's edge is coded in at most this many bits
ESCAPE_BITS = 16
_ESCAPE_MAX = (1 << ESCAPE_BITS) - 1


def scale_table(levels: int = SCALE_LEVELS, low: float = SCALE_MIN, high: float = 64.0) -> Tensor:
    """(levels,) log-spaced scales from ``low`` to ``high`` (float64)."""
    return torch.exp(torch.linspace(math.log(low), math.log(high), levels, dtype=torch.float64))


_SAMPLE_GENERATORS: ContextVar[Sequence[torch.Generator] | None] = ContextVar("_SAMPLE_GENERATORS", default=None)


@contextmanager
def per_sample_noise(generators: Sequence[torch.Generator]) -> Iterator[None]:
    """Draw the training noise of image i of every batch from ``generators[i]`` (CPU generators).

    Raises (inside the block):
        ValueError: if a batch does not have ``len(generators)`` images.
    """
    token = _SAMPLE_GENERATORS.set(list(generators))
    try:
        yield
    finally:
        _SAMPLE_GENERATORS.reset(token)


def _uniform_noise(x: Tensor) -> Tensor:
    """Uniform noise in [-0.5, 0.5) shaped like x (B, ...)."""
    gens = _SAMPLE_GENERATORS.get()
    if gens is None:
        return torch.empty_like(x).uniform_(-0.5, 0.5)
    if len(gens) != x.shape[0]:
        raise ValueError(f"per_sample_noise has {len(gens)} generators for a batch of {x.shape[0]}")
    noise = [torch.empty(x.shape[1:], dtype=x.dtype).uniform_(-0.5, 0.5, generator=g) for g in gens]
    return torch.stack(noise).to(x.device)


def ste_round(x: Tensor, center: Tensor | float | None = None) -> Tensor:
    """round(x) in the forward pass (with ``center``, broadcastable to x: ``round(x - center) + center``),
    the identity's gradient in the backward pass (straight-through)."""
    if center is None:
        return x + (torch.round(x) - x).detach()
    return x + (torch.round(x - center) + center - x).detach()


def _noise_or_round(x: Tensor, training: bool, center: Tensor | None = None) -> Tensor:
    if training:
        return x + _uniform_noise(x)
    if center is None:
        return torch.round(x)
    return torch.round(x - center) + center


def _onto(onto: bytes | None) -> np.ndarray | None:
    return None if onto is None else rans.words_from_bytes(onto, what="latent stream")


def encode_groups(groups: Sequence[tuple[np.ndarray, np.ndarray]], *, onto: bytes | None = None) -> bytes:
    """rANS bytes of several groups of symbols, each ``(symbols in [0, len(counts)), integer counts)``;
    pushed onto the stream ``onto`` if given (decoding reads these groups first, then leaves it)."""
    return rans.words_to_bytes(rans.encode([(s, rans.categorical(c)) for s, c in groups], onto=_onto(onto)))


def _expects_symbols(specs: Sequence[tuple[int, np.ndarray]]) -> bool:
    """Whether ``specs`` (count, counts) ask for any symbol: then the stream cannot be empty (an empty
    rANS stream would decode to symbols of the coder's initial state instead of being refused)."""
    return any(n > 0 for n, _ in specs)


def decode_groups(data: bytes, specs: Sequence[tuple[int, np.ndarray]], *, rest: bool = False) -> Any:
    """Inverse of :func:`encode_groups` given ``(count, counts)`` per group: the symbols per group,
    or with ``rest`` (a stream coded ``onto`` another) ``(symbols, the other stream's bytes)``.

    Raises:
        FileFormatError: for a stream that is not whole words, is empty where symbols are expected, ends
            early or (without ``rest``) has data left over.
    """
    words = rans.words_from_bytes(data, what="latent stream", allow_empty=not _expects_symbols(specs))
    out, left = rans.decode(words, [(n, rans.categorical(c)) for n, c in specs], exhaust=not rest, what="latent stream")
    return (out, rans.words_to_bytes(left)) if rest else out


def escape_counts(counts: np.ndarray) -> np.ndarray:
    """(L,) integer counts summing to ``2**PMF_PRECISION`` -> (L + 2,) counts with an escape symbol
    of ``ESCAPE_COUNT`` at each end, the mass taken from the (first) largest count. Integer
    arithmetic on the stored table, so every machine derives the same table from the same weights."""
    counts = np.asarray(counts, dtype=np.int64)
    out = np.empty(len(counts) + 2, dtype=np.int64)
    out[0] = out[-1] = ESCAPE_COUNT
    out[1:-1] = counts
    top = 1 + int(np.argmax(counts))
    if out[top] <= 2 * ESCAPE_COUNT:  # impossible for a table of fewer than 2**16 / 9 symbols
        raise ValueError(f"a table whose largest count is {out[top]} has no room for escape symbols")
    out[top] -= 2 * ESCAPE_COUNT
    return out


def _bit_length(e: np.ndarray) -> np.ndarray:
    """Bit lengths of positive integers below 2**53 (int64): frexp's exponent is exact for them."""
    return np.frexp(e.astype(np.float64))[1].astype(np.int64)


def encode_escaped(groups: Sequence[tuple[np.ndarray, np.ndarray]], *, onto: bytes | None = None) -> bytes:
    """rANS bytes of several groups of symbols with escapes (format version 4), each
    ``(offsets into the table, integer counts of the table)``; offsets may lie outside
    ``[0, len(counts))`` by up to ``2**ESCAPE_BITS - 1`` (the caller clamps farther ones, see
    :func:`_escape_range`).

    The stream holds every group under its escape-augmented table (:func:`escape_counts`), then
    the bit lengths minus one of the escaped values' distances past the edge (uniform over
    ``ESCAPE_BITS``), then, for each length n >= 2 in turn, the n - 1 bits below the leading one
    of the distances of that length (uniform), all in the order the escapes occur. With ``onto``,
    all this is pushed onto that stream: decoding reads it first, then leaves the other.
    """
    coded: list[tuple[np.ndarray, Any]] = []
    past = []
    for rel, counts in groups:
        n = len(counts)
        rel = np.asarray(rel, dtype=np.int64)
        coded.append((np.clip(rel, -1, n) + 1, rans.categorical(escape_counts(counts))))
        out = (rel < 0) | (rel >= n)
        past.append(np.where(rel < 0, -rel, rel - (n - 1))[out])
    dist = np.concatenate(past) if past else np.zeros(0, dtype=np.int64)
    if dist.size and int(dist.max()) > _ESCAPE_MAX:
        raise ValueError(f"an escaped value lies {int(dist.max())} past its table (at most {_ESCAPE_MAX})")
    bits = _bit_length(dist)
    coded.append((bits - 1, rans.uniform(ESCAPE_BITS)))
    coded += [(dist[bits == b] - (1 << (b - 1)), rans.uniform(1 << (b - 1))) for b in range(2, ESCAPE_BITS + 1)]
    return rans.words_to_bytes(rans.encode(coded, onto=_onto(onto)))


def decode_escaped(data: bytes, specs: Sequence[tuple[int, np.ndarray]], *, rest: bool = False) -> Any:
    """Inverse of :func:`encode_escaped` given ``(count, counts)`` per group: offsets into each
    table (int64), those of escaped values outside ``[0, len(counts))``; with ``rest`` (a stream
    coded ``onto`` another), ``(offsets, the other stream's bytes)``.

    Raises:
        FileFormatError: for a stream that is not whole words, is empty where symbols are expected, ends
            early or (without ``rest``) has data left over.
    """
    words = rans.words_from_bytes(data, what="latent stream", allow_empty=not _expects_symbols(specs))
    parts, rest_words = rans.decode(words, [(n, rans.categorical(escape_counts(c))) for n, c in specs], exhaust=False, what="latent stream")
    low = [p == 0 for p in parts]
    high = [p == len(c) + 1 for p, (_, c) in zip(parts, specs, strict=True)]
    escapes = sum(int(lo.sum() + hi.sum()) for lo, hi in zip(low, high, strict=True))
    (bits,), rest_words = rans.decode(rest_words, [(escapes, rans.uniform(ESCAPE_BITS))], exhaust=False, what="latent stream")
    bits = bits + 1
    rests, left = rans.decode(
        rest_words,
        [(int((bits == b).sum()), rans.uniform(1 << (b - 1))) for b in range(2, ESCAPE_BITS + 1)],
        exhaust=not rest,
        what="latent stream",
    )
    dist = np.left_shift(1, bits - 1).astype(np.int64)
    for b, r in zip(range(2, ESCAPE_BITS + 1), rests, strict=True):
        dist[bits == b] += r
    out, start = [], 0
    for p, lo, hi, (_, c) in zip(parts, low, high, specs, strict=True):
        rel = p - 1
        esc = lo | hi
        d = dist[start : start + int(esc.sum())]
        start += int(esc.sum())
        rel[esc] = np.where(lo[esc], -d, len(c) - 1 + d)
        out.append(rel)
    return (out, rans.words_to_bytes(left)) if rest else out


def _escape_range(q: Tensor, lo: Tensor, hi: Tensor, escape: bool) -> Tensor:
    """Integer values q clamped elementwise to the codable range: ``[lo, hi]`` (the table) without
    escapes, ``[lo, hi]`` widened by ``2**ESCAPE_BITS - 1`` with them."""
    if escape:
        lo, hi = lo - _ESCAPE_MAX, hi + _ESCAPE_MAX
    return torch.maximum(torch.minimum(q, hi), lo)


def _unsaturated_side(lower: Tensor, upper: Tensor) -> Tensor:
    """+-1 per element: the side of the median on which the difference of two sigmoids of the
    cumulative logits is evaluated without saturating. A bin centred exactly on the median
    (``lower + upper == 0``, which bisection can hit exactly) takes +1: ``torch.sign`` would
    give 0 there, and with it a zero likelihood for the most probable bin."""
    return torch.where(lower + upper > 0, -1.0, 1.0).to(lower.dtype)


class _TableMixin(nn.Module):
    """Integer frequency tables stored as resizable buffers ``_pmf`` (K, L), ``_lengths``, ``_offsets``."""

    def _init_tables(self) -> None:
        self.register_buffer("_pmf", torch.zeros(0, 0, dtype=torch.int32))
        self.register_buffer("_lengths", torch.zeros(0, dtype=torch.int32))
        self.register_buffer("_offsets", torch.zeros(0, dtype=torch.int32))

    def _set_tables(self, pmfs: list[np.ndarray], offsets: list[int]) -> None:
        width = max(len(p) for p in pmfs)
        table = np.zeros((len(pmfs), width), dtype=np.int32)
        for i, p in enumerate(pmfs):
            table[i, : len(p)] = pmf_to_counts(p)
        self._pmf = torch.from_numpy(table)
        self._lengths = torch.tensor([len(p) for p in pmfs], dtype=torch.int32)
        self._offsets = torch.tensor(offsets, dtype=torch.int32)

    @property
    def ready(self) -> bool:
        """True once ``update()`` has built the integer tables."""
        return self._pmf.numel() > 0

    def _counts(self, k: int) -> np.ndarray:
        return self._pmf[k, : int(self._lengths[k])].numpy().astype(np.int64)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # tables change size with the model's statistics: adopt the stored shapes
        for name in ("_pmf", "_lengths", "_offsets", "_medians"):
            key = prefix + name
            if key in state_dict and hasattr(self, name):
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class EntropyBottleneck(_TableMixin):
    """Factorized (per-channel, i.i.d. over space) learned prior.

    Args:
        channels: C, the number of latent channels.
        filters: hidden widths of the per-channel cumulative network.
        init_scale: expected spread of the initial density.
    """

    def __init__(self, channels: int, *, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self._init_tables()
        self.register_buffer("_medians", torch.zeros(0))

    def _logits_cumulative(self, x: Tensor) -> Tensor:
        """(C, 1, n) points -> (C, 1, n) logits of the cumulative distribution."""
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]  # (C, f_{i+1}, n)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, y: Tensor) -> Tensor:
        """Probability mass of the unit bin around every element of y (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)  # (C, 1, B*H*W)
        lower = self._logits_cumulative(v - 0.5)
        upper = self._logits_cumulative(v + 0.5)
        sign = _unsaturated_side(lower, upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lower_bound(lik, LIKELIHOOD_BOUND)
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def _quantile(self, logit: float) -> Tensor:
        """(C,) points where the cumulative logit equals ``logit``, by bisection."""
        lo = torch.full((self.channels, 1, 1), -1e4, dtype=torch.float32)
        hi = torch.full((self.channels, 1, 1), 1e4, dtype=torch.float32)
        for _ in range(60):
            mid = (lo + hi) / 2
            above = self._logits_cumulative(mid) > logit
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        return ((lo + hi) / 2).reshape(-1)

    def medians(self) -> Tensor:
        """(C,) medians: the stored ones after ``update()``, else computed now."""
        if self._medians.numel():
            return self._medians
        return self._quantile(0.0)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y (B, C, H, W) -> (y_hat or noisy y, likelihoods), both (B, C, H, W), float32 (also
        under bfloat16 autocast: noise of +-0.5 and probabilities need more than bfloat16's 8 bits)."""
        with torch.autocast("cpu", enabled=False):
            center = None if self.training else self.medians().detach().reshape(1, -1, 1, 1)
            y_hat = _noise_or_round(y.float(), self.training, center)
            return y_hat, self.likelihood(y_hat)

    @torch.no_grad()
    def update(self) -> None:
        """Freeze medians and per-channel integer tables over [median + lo, median + hi]."""
        self._medians = torch.zeros(0)
        medians = self._quantile(0.0)
        tail = math.log(2.0 / TAIL_MASS - 1.0)
        lows = torch.floor(self._quantile(-tail) - medians)
        highs = torch.ceil(self._quantile(tail) - medians)
        lows = lows.clamp(-2048, 0).long()
        highs = highs.clamp(0, 2048).long()
        lo_all, hi_all = int(lows.min()), int(highs.max())
        k = torch.arange(lo_all, hi_all + 1, dtype=torch.float32)
        pts = medians.reshape(-1, 1, 1) + k.reshape(1, 1, -1)  # (C, 1, L)
        lower = self._logits_cumulative(pts - 0.5)
        upper = self._logits_cumulative(pts + 0.5)
        sign = _unsaturated_side(lower, upper)
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0]  # (C, L)
        pmfs, offsets = [], []
        for c in range(self.channels):
            lo, hi = int(lows[c]), int(highs[c])
            pmfs.append(lik[c, lo - lo_all : hi - lo_all + 1].double().numpy())
            offsets.append(lo)
        self._set_tables(pmfs, offsets)
        self._medians = medians.clone()

    def symbols(self, y: Tensor, *, escape: bool = True) -> Tensor:
        """y (B, C, H, W) -> integer offsets from the medians (int64), clamped to what the coder
        codes: each channel's table, widened by the escape range with ``escape``."""
        q = torch.round(y - self._medians.reshape(1, -1, 1, 1)).long()
        lo = self._offsets.long().reshape(1, -1, 1, 1)
        hi = lo + self._lengths.long().reshape(1, -1, 1, 1) - 1
        return _escape_range(q, lo, hi, escape)

    def dequantize(self, q: Tensor) -> Tensor:
        """Integer offsets (B, C, H, W) -> float latents around the medians."""
        return q.float() + self._medians.reshape(1, -1, 1, 1)

    def compress(self, y: Tensor, *, escape: bool = True) -> tuple[list[bytes], Tensor]:
        """y (B, C, H, W) -> (one byte string per image, integer offsets q (B, C, H, W)); values
        outside a table are escaped (``escape``, format version 4) or clamped to it (versions 1-3)."""
        q = self.symbols(y, escape=escape)
        idx = (q - self._offsets.long().reshape(1, -1, 1, 1)).numpy()
        code = encode_escaped if escape else encode_groups
        strings = []
        for b in range(q.shape[0]):
            strings.append(code([(idx[b, c].reshape(-1), self._counts(c)) for c in range(self.channels)]))
        return strings, q

    def decompress(self, strings: list[bytes], size: tuple[int, int], *, escape: bool = True) -> Tensor:
        """Byte strings -> integer offsets q (B, C, h, w) (exact inverse of :meth:`compress` with the same ``escape``)."""
        h, w = size
        out = torch.empty(len(strings), self.channels, h, w, dtype=torch.long)
        decode = decode_escaped if escape else decode_groups
        for b, s in enumerate(strings):
            parts = decode(s, [(h * w, self._counts(c)) for c in range(self.channels)])
            for c, part in enumerate(parts):
                out[b, c] = torch.from_numpy(part).reshape(h, w) + int(self._offsets[c])
        return out


class GaussianConditional(_TableMixin):
    """Zero-mean Gaussian per element with a given scale (Ballé et al. 2018).

    Args:
        levels: size of the fixed scale table used for coding.
    """

    def __init__(self, levels: int = SCALE_LEVELS) -> None:
        super().__init__()
        self.register_buffer("scale_table", scale_table(levels))
        self._init_tables()

    @staticmethod
    def likelihood(y: Tensor, scales: Tensor) -> Tensor:
        """Mass of the unit bin around y under N(0, scale^2); y and scales (B, C, H, W)."""
        s = lower_bound(scales, SCALE_MIN)
        v = torch.abs(y)
        # upper tail of the smaller side: numerically stable far from zero
        upper = torch.special.ndtr((0.5 - v) / s)
        lower = torch.special.ndtr((-0.5 - v) / s)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(self, y: Tensor, scales: Tensor) -> tuple[Tensor, Tensor]:
        """-> (y_hat or noisy y, likelihoods), (B, C, H, W) each, float32 (also under bfloat16 autocast)."""
        with torch.autocast("cpu", enabled=False):
            y_hat = _noise_or_round(y.float(), self.training)
            return y_hat, self.likelihood(y_hat, scales.float())

    @torch.no_grad()
    def update(self) -> None:
        """Integer tables for every scale level over [-L, L], L = ceil(tail bound * scale) >= 4."""
        self.scale_table = scale_table(SCALE_LEVELS)  # the code's table, also for older checkpoints
        tail = -float(torch.special.ndtri(torch.tensor(TAIL_MASS / 2, dtype=torch.float64)))
        pmfs, offsets = [], []
        for s in self.scale_table.tolist():
            half = max(4, int(math.ceil(tail * s)))
            k = torch.arange(-half, half + 1, dtype=torch.float64)
            p = torch.special.ndtr((k + 0.5) / s) - torch.special.ndtr((k - 0.5) / s)
            pmfs.append(p.numpy())
            offsets.append(-half)
        self._set_tables(pmfs, offsets)

    def boundaries(self) -> Tensor:
        """(levels - 1,) float64 decision boundaries: geometric means of neighbouring levels."""
        t = self.scale_table.double()
        return torch.sqrt(t[:-1] * t[1:])

    def indexes_from_scales(self, scales: Tensor) -> Tensor:
        """Float scales -> table levels (int64): the level nearest in log scale."""
        return torch.searchsorted(self.boundaries().to(scales.dtype), scales.contiguous(), right=False)

    def symbols(self, y: Tensor, indexes: Tensor, *, escape: bool = True) -> Tensor:
        """round(y) (int64, same shape) clamped to what the coder codes: the table range of each
        element's level, widened by the escape range with ``escape``."""
        q = torch.round(y).long()
        lo = self._offsets.long()[indexes]
        hi = lo + self._lengths.long()[indexes] - 1
        return _escape_range(q, lo, hi, escape)

    def compress(
        self, y: Tensor, indexes: Tensor, *, escape: bool = True, onto: Sequence[bytes] | None = None
    ) -> tuple[list[bytes], Tensor]:
        """y, indexes (B, C, H, W) -> (one byte string per image, integer symbols q); values outside
        a table are escaped (``escape``, format version 4) or clamped to it (versions 1-3). With
        ``onto`` (a byte string per image), each image's symbols are pushed onto its stream there:
        ``decompress(..., rest=True)`` reads them and returns that stream (two passes in one stream,
        no length field)."""
        q = self.symbols(y, indexes, escape=escape)
        rel = (q - self._offsets.long()[indexes]).numpy()
        ind = indexes.numpy()
        code = encode_escaped if escape else encode_groups
        strings = []
        for b in range(q.shape[0]):
            flat_i, flat_r = ind[b].reshape(-1), rel[b].reshape(-1)
            order = np.argsort(flat_i, kind="stable")  # groups by level, raster order inside
            bounds = np.searchsorted(flat_i[order], np.arange(len(self.scale_table) + 1))
            groups = [(flat_r[order[bounds[k] : bounds[k + 1]]], self._counts(k)) for k in range(len(self.scale_table))]
            strings.append(code(groups, onto=None if onto is None else onto[b]))
        return strings, q

    def decompress(self, strings: list[bytes], indexes: Tensor, *, escape: bool = True, rest: bool = False) -> Any:
        """Byte strings and the same indexes (B, C, H, W) -> integer symbols q (B, C, H, W) (exact
        inverse of :meth:`compress` with the same ``escape``); with ``rest``, ``(q, the byte string
        per image that they were pushed onto)``."""
        out = torch.empty(indexes.shape, dtype=torch.long)
        left = []
        ind = indexes.numpy()
        levels = len(self.scale_table)
        decode = decode_escaped if escape else decode_groups
        for b, s in enumerate(strings):
            flat_i = ind[b].reshape(-1)
            order = np.argsort(flat_i, kind="stable")
            bounds = np.searchsorted(flat_i[order], np.arange(levels + 1))
            specs = [(int(bounds[k + 1] - bounds[k]), self._counts(k)) for k in range(levels)]
            if rest:
                parts, other = decode(s, specs, rest=True)
                left.append(other)
            else:
                parts = decode(s, specs)
            flat = np.empty(flat_i.shape, dtype=np.int64)
            for k, part in enumerate(parts):
                flat[order[bounds[k] : bounds[k + 1]]] = part + int(self._offsets[k])
            out[b] = torch.from_numpy(flat).reshape(ind.shape[1:])
        return (out, left) if rest else out
