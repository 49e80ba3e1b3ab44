"""Shipped codec weights: one safetensors file per quality level under ``convpress/weights/codec``.

Each file holds the trained parameters *and* the integer entropy tables and the shifts and
biases of the fixed-point hyper-synthesis computed once by ``update()``, so encoding and
decoding never recompute them. What a model can derive exactly is not stored (its
``derived_keys``): the hyperprior's fixed-point weights were a quarter of each file, and
:func:`load_weights` has the model rebuild them (``derive_state()``) from the stored float16
weights and shifts, ``round(w * 2**shift)``, which is exact integer arithmetic in float64 on
every IEEE-754 machine.
Its metadata records the model name, N, M, quality, lambda and a ``weights_id`` (a hash of the
tensors) that every ``.cpi`` file carries: a file made with other weights is refused.

A variable-rate model (``variable_rate``, :mod:`convpress.codec.models.varrate`) is one file,
``{model}.safetensors``, for many levels: its metadata ``levels`` maps each quality to its
level's lambda (JSON ``{"quality": lambda}``, in level order), and :func:`pretrained` returns the
model set to the level of the quality asked for. Its levels may be split over several files,
``{model}.safetensors`` and ``{model}-{part}.safetensors``, each with its own transform size: the
top levels need a wider transform than the low ones (CompressAI's models widen likewise above
their fourth quality), which would only cost the low levels time. A part file may also carry a
quality of the main file and then encodes it (:func:`variable_rate_files`); a ``.cpi`` header's
weights tag still names the level's weights, so the main file's level decodes the files made with
it (:func:`decoding_weights`).

A file may store its convolution weights in 8 bits (``save_weights(int8=True)``): each kernel
(k x k) of a weight as int8 codes in [-127, 127] with one float16 scale, the scales under
``{key}.int8_scale`` (:func:`int8_kernels`). The layers that touch the pixels (3 input or output channels,
:func:`int8_names`) stay float16: they are tiny, and on the shipped variable-rate files (measured
2026-12-06 with ``codec_weights_check.py``) rounding every convolution with one scale per output
channel cost BD-rate +1.3%, of which +0.5% came from the analysis's first layer alone (the analysis
+0.7%, the synthesis +0.8%, the hyper-transforms +0.1%); one scale per kernel costs +0.1%, and
files of about 60% of the float16 size. ``CodecTrainConfig.int8`` trains with the weights so
rounded. Loading turns them back into float32, ``code * scale``, which is exact (8 x 11
significant bits fit float32's 24), so the fixed-point hyper-synthesis derived from them is the
same on every machine. Deep Compression's k-means weight sharing (:mod:`convpress.compress.quantize`)
was tried first: 256 shared values per tensor cost +6.7%, 64 cost +61%; a codec's transforms need
each kernel's own range.

Superseded weights live in an optional package, ``convpress-legacy-weights`` (``legacy-weights/`` in
the source tree; import name ``convpress_legacy_weights``): weights that no quality encodes with
any more but that files made before still name. Keeping them in convpress itself would make every
install carry every model ever shipped (the six fixed-rate hyperprior files alone are 18 MB). When
the package is installed, :func:`pretrained` finds fixed-rate levels there and
:func:`decoding_weights` finds the variable-rate files there that match a file's weights tag; when
it is not, asking for them fails with one line that names the package.

A better *encoder* needs no new decoder: :func:`with_encoder` writes a copy of a weights file with only
its analysis side replaced (:data:`ENCODER_KEYS`: the analysis and hyper-analysis transforms, which
no decoder reads), every other tensor kept byte for byte. The copy records the weights ids whose
decoder it holds (metadata ``decodes``), and :func:`decoding_weights` gives it to the files made with
them: files made before keep decoding, to the same pixels, without the superseded file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from convpress.codec.models import CODEC_MODELS, DEFAULT_MODEL, CodecModel, build_model, is_variable_rate
from convpress.core.atomic import atomic_write_bytes
from convpress.core.container import loads_json
from convpress.core.digest import state_digest
from convpress.core.errors import ConfigError, FileFormatError
from convpress.core.statedict import state_mismatch

__all__ = [
    "WEIGHTS_DIR",
    "LEGACY_DISTRIBUTION",
    "legacy_weights_dir",
    "legacy_note",
    "weights_folders",
    "weights_id",
    "INT8_SCALE",
    "int8_kernels",
    "int8_names",
    "from_int8",
    "save_weights",
    "load_weights",
    "refresh_weights",
    "available_qualities",
    "pretrained",
    "at_quality",
    "variable_rate_files",
    "variable_rate_candidates",
    "decoding_weights",
    "ENCODER_KEYS",
    "with_encoder",
    "decoded_ids",
]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "codec"

#: the optional distribution with the superseded weights, and its import name
LEGACY_DISTRIBUTION = "convpress-legacy-weights"
_LEGACY_PACKAGE = "convpress_legacy_weights"
#: how to install it, for error messages (it is built from this repository, not downloaded)
_LEGACY_INSTALL = "pip install ./legacy-weights in convpress's source tree"


def legacy_weights_dir() -> Path | None:
    """The codec weights folder of the optional package ``convpress-legacy-weights``, or None if it is not installed.

    Found without importing it (``importlib.util.find_spec``): it holds data only.
    """
    spec = importlib.util.find_spec(_LEGACY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "codec"
    return folder if folder.is_dir() else None


def legacy_note() -> str:
    """ "" when the legacy package is installed, else the sentence that error messages add: where
    superseded weights are and how to install them."""
    if legacy_weights_dir() is not None:
        return ""
    return f"superseded weights are in the optional package {LEGACY_DISTRIBUTION}, not installed ({_LEGACY_INSTALL})"


def weights_folders() -> list[Path]:
    """Where shipped weights are looked for, in order: convpress's own, then the legacy package's if installed."""
    legacy = legacy_weights_dir()
    return [Path(WEIGHTS_DIR), *([legacy] if legacy is not None else [])]


#: suffix of the key of the per-kernel scales of a weight stored in int8 (``save_weights(int8=True)``)
INT8_SCALE = ".int8_scale"


def int8_names(model: torch.nn.Module) -> list[str]:
    """The parameters an int8 weights file stores in int8: the convolution weights (4-D), except
    those of layers with 3 or fewer input or output channels (the ones that touch the pixels)."""
    return [k for k, p in model.named_parameters() if p.dim() == 4 and min(p.shape[0], p.shape[1]) > 3]


def int8_kernels(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution weight w (A, B, kh, kw) -> (codes (A, B, kh, kw) int8 in [-127, 127], scales (A, B)
    float16), w ~ codes * scales[a, b].

    Each kernel's scale is its largest magnitude / 127, rounded to float16 (an all-zero kernel gets
    scale 1); codes are round(w / scale), halves to even. Symmetric, like PyTorch's int8 weight
    quantisation, but with one scale per kernel, not per output channel: on the shipped
    variable-rate files (check photos, 2026-12-06) per-channel scales (dim 0) cost BD-rate +0.9%
    against the float16 files, per-kernel ones +0.1% for 8% more bytes (a scale per 25 codes).
    (PyTorch's quantised tensors, ``torch.quantize_per_channel``, are deprecated and have no
    per-kernel form.)

    Raises:
        ConfigError: if w is not 4-D, or has a value that is not finite or too large for a float16 scale.
    """
    if w.dim() != 4:
        raise ConfigError(f"int8 storage is for convolution weights (4-D), got shape {tuple(w.shape)}")
    w = w.detach().float()
    scales = (w.abs().amax((2, 3)) / 127).half()
    if not bool(torch.isfinite(scales).all()):
        raise ConfigError(f"a weight of shape {tuple(w.shape)} has values that cannot be stored in int8 (not finite or above 8e6)")
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(w / scales.float()[:, :, None, None]).clamp(-127, 127)
    return codes.to(torch.int8).contiguous(), scales


def from_int8(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """codes (A, B, kh, kw) int8, scales (A, B) float16 -> the weight (A, B, kh, kw) float32; exact (8 x 11 bits)."""
    return codes.float() * scales.float()[:, :, None, None]


def _dequantised(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A stored state with its int8 weights (and their scales) turned into float32 weights.

    Raises:
        FileFormatError: for an int8 tensor without valid scales, or scales without their int8 tensor.
    """
    out = {k: v for k, v in state.items() if not k.endswith(INT8_SCALE)}
    for key, scales in state.items():
        if not key.endswith(INT8_SCALE):
            continue
        name = key[: -len(INT8_SCALE)]
        codes = state.get(name)
        if codes is None or codes.dtype != torch.int8 or codes.dim() != 4:
            raise FileFormatError(f"{path} has int8 scales {key} without an int8 convolution weight {name}")
        valid = scales.dtype == torch.float16 and tuple(scales.shape) == tuple(codes.shape[:2])
        if not (valid and bool((scales > 0).all() & scales.isfinite().all())):
            shape = "x".join(map(str, codes.shape[:2]))
            raise FileFormatError(f"{path}: the int8 scales {key} are not {shape} positive float16 numbers")
        out[name] = from_int8(codes, scales)
    stray = [k for k, v in out.items() if v.dtype == torch.int8]
    if stray:
        raise FileFormatError(f"{path} has an int8 weight without its scales ({stray[0]}{INT8_SCALE})")
    return out


#: prefixes of the parameters that only the encoder uses: the analysis g_a, the hyper-analysis h_a and
#: the mean-scale models' signed hyper-analysis. The decoder reads every other tensor of a weights
#: file (synthesis, hyper-synthesis, entropy models, gains, context, tables).
ENCODER_KEYS: tuple[str, ...] = ("g_a.", "h_a.", "h_a_signed.")


def weights_id(state: dict[str, torch.Tensor]) -> str:
    """The first 8 hex digits of the weights' :func:`~convpress.core.digest.state_digest`."""
    return state_digest(state)[:8]


def save_weights(
    model: CodecModel,
    path: str | os.PathLike[str],
    *,
    quality: int,
    lmbda: float,
    extra: dict[str, str] | None = None,
    int8: bool = False,
    int8_codes: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> str:
    """Write ``model`` as safetensors with metadata; returns its weights id.

    Parameters are stored in float16, or with ``int8`` the convolution weights (:func:`int8_names`) in
    int8 with one float16 scale per kernel (:func:`int8_kernels`; metadata ``int8``). They are
    rounded in the model first and ``update()`` is run on the rounded values, so the stored tables
    and fixed-point layers belong exactly to the stored parameters.

    ``int8_codes`` (name -> (codes, scales), as a file stores them) are kept as they are for the
    parameters they give exactly, instead of being rounded again: :func:`int8_kernels` is not
    idempotent where a kernel's float16 scale is subnormal (its largest code can end below 127, and
    the next rounding picks a smaller scale), so a file rewritten without them would change.
    """
    from safetensors.torch import save

    if is_variable_rate(model.name):
        try:
            _levels_of({"levels": (extra or {}).get("levels", "")}, model, Path(path))
        except FileFormatError as exc:
            raise ConfigError(str(exc)) from None
    model = copy.deepcopy(model)
    coded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    rounded = set(int8_names(model)) if int8 else set()
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k in rounded:
                kept = (int8_codes or {}).get(k)
                coded[k] = kept if kept is not None and torch.equal(from_int8(*kept), p.detach().float()) else int8_kernels(p)
                p.copy_(from_int8(*coded[k]))
            else:
                p.copy_(p.half().float())
    model.update()
    params = {k for k, _ in model.named_parameters()}
    # parameters in float16 (or int8) halve the files; tables and medians keep their exact dtypes
    state: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        if model.is_derived(k):
            continue
        if k in coded:
            state[k], state[k + INT8_SCALE] = coded[k]
        else:
            state[k] = (v.detach().half() if k in params else v.detach()).cpu().contiguous()
    wid = weights_id(state)
    meta = {"model": model.name, "config": json.dumps(model.config), "quality": str(quality), "lambda": repr(lmbda), "weights_id": wid}
    meta.update({k: v for k, v in (extra or {}).items() if k != "int8"})
    if coded:
        meta["int8"] = f"{len(coded)} convolution weights, one float16 scale per kernel"
    atomic_write_bytes(path, save(state, metadata=meta))
    return wid


def load_weights(path: str | os.PathLike[str]) -> tuple[CodecModel, dict[str, str]]:
    """(model in eval mode, metadata) from a weights file written by :func:`save_weights`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(p))
    try:
        with safe_open(str(p), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        stored = load_file(str(p))
        model = build_model(meta["model"], loads_json(meta["config"], name=str(p), what="its config"))
    except (KeyError, ValueError, OSError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"{p} is not a convpress codec weights file ({exc})") from None
    state = _dequantised(stored, p)
    try:
        model.load_state_dict(state, strict=False)  # the entropy tables adopt their stored sizes here
    except RuntimeError as exc:
        raise FileFormatError(
            f"{p} does not match its model {meta.get('model')} {meta.get('config')} ({str(exc).splitlines()[-1].strip()[:160]})"
        ) from None
    problem = state_mismatch(model.state_dict(), state, optional=model.is_derived)
    if problem:
        raise FileFormatError(f"{p} does not match its model: {problem}")
    model.eval()
    model.derive_state()
    model.lmbda = _lambda_of(meta, p)
    if is_variable_rate(model.name):
        _levels_of(meta, model, p)  # refuses a file whose levels do not match its model
    model.to(memory_format=torch.channels_last)  # faster CPU convolutions (see CodecModel.compress)
    meta.setdefault("weights_id", weights_id(stored))
    return model, meta


def _lambda_of(meta: dict[str, str], path: Path) -> float | None:
    """The training lambda a weights file records (None if it records none)."""
    if "lambda" not in meta:
        return None
    try:
        value = float(meta["lambda"])
    except ValueError:
        raise FileFormatError(f"{path} records a lambda that is not a number ({meta['lambda'][:40]!r})") from None
    if not value > 0:
        raise FileFormatError(f"{path} records a lambda that is not positive ({value})")
    return value


def _levels_of(meta: dict[str, str], model: CodecModel, path: Path) -> dict[int, float]:
    """Quality -> lambda of each level of a variable-rate model, from its metadata ``levels``.

    Raises:
        FileFormatError: unless it is a JSON object of one positive lambda per level, keyed by distinct qualities 1-255.
    """
    try:
        raw = json.loads(meta["levels"])
        levels = {int(q): float(v) for q, v in raw.items()}
    except (KeyError, ValueError, TypeError, AttributeError, json.JSONDecodeError):
        raise FileFormatError(f"{path}: a {model.name} weights file needs its levels ({{quality: lambda}} as JSON)") from None
    if len(levels) != model.config.get("LEVELS") or not all(1 <= q <= 255 and v > 0 for q, v in levels.items()):
        raise FileFormatError(
            f"{path}: its levels {sorted(levels)} do not give one quality (1-255) with a positive lambda "
            f"for each of the model's {model.config.get('LEVELS')} levels"
        )
    return levels


def _load_variable_rate(path: Path) -> tuple[CodecModel, dict[str, str]]:
    """(model, metadata) of a variable-rate weights file (cached: every level shares it; a file
    rewritten since is read again)."""
    st = path.stat()
    return _load_cached(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load_cached(path: Path, mtime_ns: int, size: int) -> tuple[CodecModel, dict[str, str]]:
    """:func:`load_weights` cached by the file's path, modification time and size."""
    return load_weights(path)


def at_quality(model: CodecModel, meta: dict[str, str], quality: int) -> tuple[CodecModel, dict[str, str]]:
    """A variable-rate ``model`` with its weights' metadata ``meta`` -> the model set to the level of
    ``quality`` (sharing the parameters and tables), and metadata naming that quality and its lambda.

    Raises:
        ConfigError: for a quality the weights have no level for.
        FileFormatError: if ``meta`` holds no valid levels for the model.
    """
    levels = _levels_of(meta, model, Path(f"{model.name} weights"))
    if quality not in levels:
        raise ConfigError(f"no quality {quality} for the {model.name} model; available qualities: {', '.join(map(str, sorted(levels)))}")
    net = copy.copy(model)  # shares the parameters and tables; only the level and lambda are its own
    net.set_level(list(levels).index(quality))  # type: ignore[operator]  # a variable-rate model has set_level
    net.lmbda = levels[quality]
    # every level has its own weights id: the .cpi header's weights tag then binds the quality
    # field, so a file whose quality was altered (and its checksum redone) is refused, not decoded
    # at another level into a wrong image
    wid = f"{meta.get('weights_id')}.q{quality}"
    level = {**meta, "quality": str(quality), "lambda": repr(levels[quality]), "weights_id": wid}
    if meta.get("decodes"):  # the files of the levels this one took the decoder of (with_encoder)
        level["decodes"] = " ".join(f"{d}.q{quality}" for d in meta["decodes"].split())
    return net, level


def _per_image(model: str) -> Any:
    """The class of ``model`` if it is fitted per image (nothing shipped: ``per_image``), else None."""
    cls = CODEC_MODELS.get(model)
    return cls if getattr(cls, "per_image", False) else None


def available_qualities(model: str = DEFAULT_MODEL, folder: str | os.PathLike[str] | None = None) -> list[int]:
    """Quality levels with weights files ``{model}-q{level}.safetensors`` in ``folder`` (default: the
    shipped weights, the legacy package's included for fixed-rate models; a variable-rate model: the
    qualities convpress's own files encode; a model fitted per image: its levels)."""
    per_image = _per_image(model)
    if per_image is not None:
        return sorted(per_image.LAMBDAS)
    if is_variable_rate(model):
        return sorted(variable_rate_files(model, folder))
    out: set[int] = set()
    for d in weights_folders() if folder is None else [Path(folder)]:
        for f in d.glob(f"{model}-q*.safetensors"):
            try:
                out.add(int(f.stem.split("-q")[-1]))
            except ValueError:
                continue
    return sorted(out)


@lru_cache(maxsize=16)
def pretrained(quality: int, model: str = DEFAULT_MODEL) -> tuple[CodecModel, dict[str, str]]:
    """The shipped model for ``quality`` (cached), and its metadata.

    A model fitted per image ships nothing: it comes fresh, set for the quality's lambda, with
    its family's ``FORMAT_ID`` as weights id.

    A fixed-rate level is looked for in convpress's weights, then in the optional legacy package's
    (:func:`weights_folders`; the metadata of weights found there has ``source`` set to its name).

    Raises:
        ConfigError: if no weights are shipped for that quality (naming the legacy package when it
            is not installed and convpress has no weights of ``model`` at all).
    """
    per_image = _per_image(model)
    if per_image is not None:
        fresh = per_image.for_quality(quality)
        return fresh, {"model": model, "quality": str(quality), "lambda": str(fresh.lmbda), "weights_id": per_image.FORMAT_ID}
    if is_variable_rate(model):
        return _variable_rate_level(model, quality)
    for folder in weights_folders():
        path = folder / f"{model}-q{quality}.safetensors"
        if path.is_file():
            return _sourced(load_weights(path), legacy=folder != Path(WEIGHTS_DIR))
    have = available_qualities(model)
    if not have and (note := legacy_note()):
        raise ConfigError(f"no {model} weights are installed; {note}")
    raise ConfigError(f"no {model} weights for quality {quality}; available qualities: {', '.join(map(str, have)) or 'none'}")


def variable_rate_files(model: str, folder: str | os.PathLike[str] | None = None) -> dict[int, Path]:
    """Quality -> the file in ``folder`` that encodes that level of the variable-rate ``model``, in
    quality order; the folder defaults to the shipped weights. See :func:`variable_rate_candidates`:
    a part file ``{model}-{part}.safetensors`` overrides the main file ``{model}.safetensors``.

    Raises:
        FileFormatError: if a file is not valid weights of ``model``, or two part files carry one quality.
    """
    return {q: paths[0] for q, paths in variable_rate_candidates(model, folder).items()}


def variable_rate_candidates(model: str, folder: str | os.PathLike[str] | None = None) -> dict[int, list[Path]]:
    """Quality -> every file in ``folder`` that carries that level of the variable-rate ``model``,
    the one that encodes it first, in quality order.

    Levels may be split over the main file ``{model}.safetensors`` and part files
    ``{model}-{part}.safetensors`` (transforms of different widths). A part file may also carry a
    quality that the main file carries: it then encodes that quality, and the main file's level
    still decodes the files made with it (a ``.cpi`` header's weights tag names the weights of its
    level, :func:`decoding_weights`), so better levels ship without breaking files made before.

    Raises:
        FileFormatError: if a file is not valid weights of ``model``, or two part files carry one
            quality (neither would be the one that encodes it).
    """
    folder = Path(WEIGHTS_DIR if folder is None else folder)
    main = folder / f"{model}.safetensors"
    parts: dict[int, Path] = {}
    base: dict[int, Path] = {}
    for path in [main, *sorted(folder.glob(f"{model}-*.safetensors"))]:
        if not path.is_file():
            continue
        net, meta = _load_variable_rate(path)
        if net.name != model:
            raise FileFormatError(f"{path} holds weights of the {net.name} model, not of {model}")
        for q in _levels_of(meta, net, path):
            if path == main:
                base[q] = path
            elif q in parts:
                raise FileFormatError(f"quality {q} of the {model} model is in two part files: {parts[q].name} and {path.name}")
            else:
                parts[q] = path
    return {q: [p for p in (parts.get(q), base.get(q)) if p is not None] for q in sorted(parts.keys() | base.keys())}


def _sourced(loaded: tuple[CodecModel, dict[str, str]], *, legacy: bool) -> tuple[CodecModel, dict[str, str]]:
    """``loaded`` (model, metadata), its metadata naming the legacy package as ``source`` if it came from there."""
    return (loaded[0], {**loaded[1], "source": LEGACY_DISTRIBUTION}) if legacy else loaded


def decoding_weights(model: str, quality: int, matches: Callable[[str], bool]) -> tuple[CodecModel, dict[str, str]]:
    """The shipped weights that decode a file of ``model`` at ``quality`` whose header's weights
    tag ``matches`` a weights id (their own or one whose decoder they hold, :func:`decoded_ids`; the
    metadata returned names the id that matched): the encoding weights (:func:`pretrained`) if they match, else a
    variable-rate model's other file carrying that quality whose level matches (convpress's own,
    then the legacy package's ``{model}*.safetensors``); else the encoding weights, which the
    decoder then refuses with the mismatch (adding :func:`legacy_note`).

    Raises:
        ConfigError: if no weights are shipped for that quality.
    """
    net, meta = pretrained(quality, model)
    if (found := _decoding(net, meta, matches)) is not None or not is_variable_rate(model):
        return found or (net, meta)
    legacy = legacy_weights_dir()
    superseded = sorted(legacy.glob(f"{model}*.safetensors")) if legacy is not None else []
    for path in [*variable_rate_candidates(model).get(quality, [])[1:], *superseded]:
        loaded = _load_variable_rate(path)
        if loaded[0].name != model or quality not in _levels_of(loaded[1], loaded[0], path):
            continue
        if (found := _decoding(*at_quality(*loaded, quality), matches)) is not None:
            return _sourced(found, legacy=path in superseded)
    return net, meta


def _decoding(net: CodecModel, meta: dict[str, str], matches: Callable[[str], bool]) -> tuple[CodecModel, dict[str, str]] | None:
    """(net, its metadata naming the id that ``matches``) if ``net`` decodes a file whose tag matches
    its own weights id or one it :func:`decoded_ids`; else None."""
    for wid in decoded_ids(meta):
        if matches(wid):
            return net, {**meta, "weights_id": wid}
    return None


def _variable_rate_level(model: str, quality: int) -> tuple[CodecModel, dict[str, str]]:
    """The shipped variable-rate ``model`` set to the level of ``quality`` (see :func:`at_quality`)."""
    files = variable_rate_files(model)
    if not files:
        raise ConfigError(f"no {model} weights are shipped ({model}.safetensors is missing)")
    if quality not in files:
        raise ConfigError(f"no quality {quality} for the {model} model; available qualities: {', '.join(map(str, files))}")
    return at_quality(*_load_variable_rate(files[quality]), quality)


def decoded_ids(meta: dict[str, str]) -> list[str]:
    """The weights ids whose files a weights file's decoder decodes: its own first, then those of the
    files it took the decoder of (metadata ``decodes``, see :func:`with_encoder`)."""
    return [str(meta.get("weights_id")), *meta.get("decodes", "").split()]


def with_encoder(
    base: str | os.PathLike[str], model: CodecModel, path: str | os.PathLike[str], *, extra: dict[str, str] | None = None
) -> str:
    """Write to ``path`` the weights file ``base`` with the encoder's tensors (:data:`ENCODER_KEYS`)
    taken from ``model``, stored as ``base`` stores them (int8 or float16), and every other tensor
    and metadata entry kept exactly (``extra`` adds entries); returns the new weights id. The new file's
    metadata ``decodes`` lists ``base``'s weights id (and those ``base`` decodes): it decodes their files
    to the same pixels.

    ``model`` is a model fine-tuned from ``base`` with its decoder side frozen (``codec train
    --encoder-only``).

    Raises:
        ConfigError: if ``model`` is not ``base``'s model or its decoder-side parameters differ from
            ``base``'s (then a decoder would not decode ``base``'s files the same).
        FileFormatError: if ``base`` is not a valid weights file.
    """
    from safetensors.torch import load_file, save

    base = Path(base)
    old_model, meta = load_weights(base)  # validates the file; its metadata, with its weights id
    if model.name != old_model.name or model.config != old_model.config:
        raise ConfigError(f"the model ({model.name} {json.dumps(model.config)}) is not {base}'s ({meta['model']} {meta['config']})")
    stored = load_file(str(base))  # as stored (int8 codes and scales), which the new file keeps
    old = old_model.state_dict()
    new = model.state_dict()
    params = {k for k, _ in old_model.named_parameters()}
    for k in sorted(params):
        if not k.startswith(ENCODER_KEYS) and not torch.equal(new[k].detach().float().cpu(), old[k].float()):
            raise ConfigError(f"the model's decoder-side parameter {k} differs from {base.name}'s: only {', '.join(ENCODER_KEYS)} may")
    out = dict(stored)
    for k in sorted(params):
        if not k.startswith(ENCODER_KEYS):
            continue
        value = new[k].detach().float().cpu()
        if k + INT8_SCALE in stored:
            out[k], out[k + INT8_SCALE] = int8_kernels(value)
        else:
            out[k] = value.to(stored[k].dtype).contiguous()
    wid = weights_id(out)
    decodes = " ".join(dict.fromkeys(decoded_ids(meta)))
    meta = {**meta, **(extra or {}), "weights_id": wid, "decodes": decodes}
    atomic_write_bytes(path, save(out, metadata=meta))
    return wid


def stored_int8_codes(path: str | os.PathLike[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A weights file's int8 convolution weights as it stores them: name -> (codes, scales), for
    :func:`save_weights`' ``int8_codes`` (empty for a float16 file)."""
    from safetensors.torch import load_file

    stored = load_file(str(path))
    return {k[: -len(INT8_SCALE)]: (stored[k[: -len(INT8_SCALE)]], v) for k, v in stored.items() if k.endswith(INT8_SCALE)}


def refresh_weights(path: str | os.PathLike[str], *, int8: bool | None = None) -> str:
    """Recompute a weights file's tables with this version's ``update()``; returns the new weights id.

    ``int8`` True rewrites its convolution weights in int8 (:func:`save_weights`), False in float16;
    None keeps how the file stores them.
    """
    model, meta = load_weights(path)
    # "decodes" goes too: new tables make another decoder, which need not decode the files those ids name
    keep = {k: v for k, v in meta.items() if k not in {"model", "config", "quality", "lambda", "weights_id", "decodes"}}
    rounded = "int8" in meta if int8 is None else int8
    codes = stored_int8_codes(path)  # kept as they are (see save_weights' int8_codes)
    return save_weights(model, path, quality=int(meta["quality"]), lmbda=float(meta["lambda"]), extra=keep, int8=rounded, int8_codes=codes)
