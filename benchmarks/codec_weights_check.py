"""Quick check of codec weights while training them: rate-distortion on 8 validation photos.

Encodes the validation photos (:func:`convpress.data.photos.validation_photos`, long side 768: never
trained on, and not test photos of ``bench codec``, so that choosing weights by this check does not tune
them to the test set) with every level of each weights folder given (files ``MODEL-q*.safetensors``, or a
variable-rate model's ``MODEL.safetensors``; effort 0, real files through ``compress``/``decompress``;
``--effort N`` refines each image's latents first), and with WebP (Pillow, ``method=6``) and AVIF (speed 4,
4:4:4, the issue's goal) in the same run, then prints each folder's curve and its BD-rate (PSNR on 8-bit
pixels, PCHIP) against WebP, AVIF and the first folder. A few minutes on one core, where ``convpress
bench codec`` takes most of an hour; the bench stays the reference for published figures.

Until 2026-12-07 the check used 6 of the bench's test photos (``--photos legacy``: coffee, rocket,
Dragonfly, Wine, picosdeeuropa, Kleiber), so the weights shipped before then were chosen on part of the
test set; the figures that ``benchmarks/train_codec_weights.py`` quotes up to its stage 21 are on those.

    python benchmarks/codec_weights_check.py src/convpress/weights/codec:hyperprior /path/to/new-weights

Its output for the shipped weights is kept in ``benchmarks/results/codec_weights_check-validation.txt``
(``codec_weights_check.txt`` and ``codec_weights_check-encoder.txt`` hold the last checks on the legacy photos).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from convpress.codec import metrics
from convpress.codec.bitstream import pad_image
from convpress.codec.metrics import bd_rate
from convpress.codec.models import CODEC_MODELS, CodecModel, is_variable_rate
from convpress.codec.weights import at_quality, available_qualities, load_weights, variable_rate_files
from convpress.data.photos import held_out_photos, validation_photos

#: the photos of the check until 2026-12-07 (test photos of bench codec; ``--photos legacy``)
LEGACY_PHOTOS = [
    "coffee",
    "rocket",
    "Dragonfly_by_Bolly",
    "Wine_by_Jakkub_Mede",
    "picosdeeuropa_by_Aitzol_Berasategi",
    "Kleiber_by_Lukas_Baubkus",
]
WEBP_QUALITIES = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
AVIF_QUALITIES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)
MIN_VALIDATION = 6

Curve = list[tuple[float, float]]  # (mean bpp, mean PSNR) per setting


def model_curve(folder: str, images: dict[str, np.ndarray], model: str = "hyperprior", effort: int = 0) -> Curve:
    """Mean (bpp, PSNR) over ``images`` (H, W, 3) uint8 of each level in ``folder``, lowest first;
    ``effort`` refinement iterations per image (models that refine; 0: the analysis transform's latents)."""
    points = []
    for _, net in _level_models(folder, model):
        bpp, psnr = [], []
        for img in images.values():
            x = torch.from_numpy(img).permute(2, 0, 1).float() / 255  # (3, H, W)
            h, w = x.shape[1:]
            enc = net.compress(pad_image(x, net.stride), effort=effort)  # refinement needs gradients: not under no_grad
            with torch.no_grad():
                dec = net.decompress(enc["strings"], enc["shape"])["x_hat"][0, :, :h, :w]
            out = np.round(dec.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            bpp.append(8 * sum(len(s) for stream in enc["strings"] for s in stream) / (h * w))
            psnr.append(metrics.psnr(out, img))
        points.append((sum(bpp) / len(bpp), sum(psnr) / len(psnr)))
    return points


def _level_models(folder: str, model: str) -> Iterator[tuple[int, CodecModel]]:
    """(quality, model in eval mode) of each level in ``folder``, lowest first: one file per level,
    or a variable-rate model's files ``MODEL.safetensors`` (and ``MODEL-PART.safetensors``) set to each of their levels."""
    if is_variable_rate(model):
        loaded: dict[Path, tuple[CodecModel, dict[str, str]]] = {}  # each file once, whatever its levels
        for q, path in variable_rate_files(model, folder).items():
            if path not in loaded:
                loaded[path] = load_weights(path)
            yield q, at_quality(*loaded[path], q)[0]
        return
    for q in available_qualities(model, folder):
        yield q, load_weights(f"{folder}/{model}-q{q}.safetensors")[0]


def webp_curve(images: dict[str, np.ndarray], fmt: str = "WEBP") -> Curve:
    """Mean (bpp, PSNR) over ``images`` of WebP (method 6) at each of ``WEBP_QUALITIES``, or with ``fmt`` "AVIF"
    of AVIF (speed 4, 4:4:4, as in ``bench codec``) at each of ``AVIF_QUALITIES``."""
    options: dict[str, object] = {"method": 6} if fmt == "WEBP" else {"speed": 4, "subsampling": "4:4:4"}
    points = []
    for q in WEBP_QUALITIES if fmt == "WEBP" else AVIF_QUALITIES:
        bpp, psnr = [], []
        for img in images.values():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, fmt, quality=q, **options)
            out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            bpp.append(8 * len(buf.getvalue()) / (img.shape[0] * img.shape[1]))
            psnr.append(metrics.psnr(out, img))
        points.append((sum(bpp) / len(bpp), sum(psnr) / len(psnr)))
    return points


def _bd(anchor: Curve, test: Curve) -> str:
    if min(len(anchor), len(test)) < 4:
        return "n/a (fewer than 4 levels)"
    return f"{bd_rate([p[0] for p in anchor], [p[1] for p in anchor], [p[0] for p in test], [p[1] for p in test]):+.1f}%"


def _vs_webp(webp: Curve, bpp: float, psnr: float) -> str:
    """This point's rate against WebP's at the same PSNR (log-rate interpolated; None outside WebP's range)."""
    q = [p[1] for p in webp]
    if not min(q) <= psnr <= max(q):
        return "outside WebP's range"
    order = sorted(range(len(webp)), key=lambda i: webp[i][1])
    log_rate = float(np.interp(psnr, [webp[i][1] for i in order], [math.log(webp[i][0]) for i in order]))
    return f"{100 * (bpp / math.exp(log_rate) - 1):+.1f}% bits vs WebP"


def _folder_model(folder: str) -> str:
    """The codec model whose ``MODEL-qN.safetensors`` files ``folder`` holds (exactly one)."""
    names = {f.name.rsplit("-q", 1)[0] for f in Path(folder).glob("*-q*.safetensors")}
    names |= {n for n in CODEC_MODELS.names() if is_variable_rate(n) and variable_rate_files(n, folder)}
    if len(names) != 1:
        raise SystemExit(
            f"{folder}: expected the weights of one model (MODEL-qN.safetensors, or a variable-rate MODEL.safetensors), "
            f"found {sorted(names) or 'none'}"
        )
    return names.pop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "folders",
        nargs="+",
        help="weights folders, each optionally FOLDER:MODEL (for a folder with the weights of several models); the first is the reference",
    )
    p.add_argument("--model", help="model name in the weights file names (default: each folder's, e.g. hyperprior or meanscale)")
    p.add_argument(
        "--effort",
        type=int,
        default=0,
        help="refinement iterations per image and level (default: 0; 30 takes about 5 s per photo and level, "
        "so about 5 minutes per folder of ten levels)",
    )
    p.add_argument(
        "--photos",
        choices=("validation", "legacy"),
        default="validation",
        help="validation: the validation photos (default); legacy: the 6 test photos the check used until 2026-12-07",
    )
    args = p.parse_args(argv)
    if args.effort < 0:
        raise SystemExit(f"--effort must be a non-negative number of iterations, got {args.effort}")
    torch.set_num_threads(1)
    if args.photos == "legacy":
        test = held_out_photos(long_side=768)
        photos = {n: test[n] for n in LEGACY_PHOTOS}
    else:
        photos = validation_photos(long_side=768)
        if len(photos) < MIN_VALIDATION:
            raise SystemExit(
                f"only {len(photos)} validation photos are installed (apt-get install opencv-doc plasma-workspace-wallpapers "
                "lomiri-wallpapers)"
            )
    print("photos: " + ", ".join(f"{n} ({im.shape[2]}x{im.shape[1]})" for n, im in photos.items()))
    images = {n: np.round(im.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for n, im in photos.items()}
    webp = webp_curve(images)
    avif = webp_curve(images, "AVIF")
    specs = [f.rsplit(":", 1) if ":" in f else [f, args.model or _folder_model(f)] for f in args.folders]
    folders = {f"{path}:{model}": path for path, model in specs}
    models = {f"{path}:{model}": model for path, model in specs}
    curves = {f: model_curve(folders[f], images, models[f], args.effort) for f in folders}
    print("webp: " + " ".join(f"{b:.3f}/{q:.2f}" for b, q in webp) + " (bpp/dB)")
    print("avif: " + " ".join(f"{b:.3f}/{q:.2f}" for b, q in avif) + " (bpp/dB)")
    for f, c in curves.items():
        pts = " ".join(f"{b:.3f}/{q:.2f}" for b, q in c)
        print(f"{f}: {pts} (bpp/dB) | BD-rate vs WebP {_bd(webp, c)}, vs AVIF {_bd(avif, c)}")
        for q, (b, psnr) in zip(available_qualities(models[f], folders[f]), c, strict=True):
            print(f"  level {q}: {b:.3f} bpp, {psnr:.2f} dB: {_vs_webp(webp, b, psnr)}")
    first, *rest = folders
    for f in rest:
        print(f"{f} vs {first}: BD-rate {_bd(curves[first], curves[f])}")
        print(
            f"{f} vs WebP over the PSNR interval of {first} (a longer curve is not penalised): {_bd_within(webp, curves[f], curves[first])}"
        )
    return 0


def _bd_within(webp: Curve, test: Curve, reference: Curve) -> str:
    """BD-rate of ``test`` against WebP over the part of their common PSNR interval that WebP and
    ``reference`` also share: curves of different reach compared over one interval."""
    if min(len(test), len(reference)) < 4:
        return "n/a (fewer than 4 levels)"
    lo_t, hi_t = max(min(p[1] for p in test), min(p[1] for p in webp)), min(max(p[1] for p in test), max(p[1] for p in webp))
    lo = max(lo_t, min(p[1] for p in reference))
    hi = min(hi_t, max(p[1] for p in reference))
    if not lo < hi:
        return "n/a (no common interval)"
    part = ((lo - lo_t) / (hi_t - lo_t), (hi - lo_t) / (hi_t - lo_t))
    value = bd_rate([p[0] for p in webp], [p[1] for p in webp], [p[0] for p in test], [p[1] for p in test], part=part)
    return f"{value:+.1f}% ({lo:.2f}-{hi:.2f} dB)"


if __name__ == "__main__":
    sys.exit(main())
