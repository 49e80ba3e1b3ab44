"""``convpress bench codec``: rate-distortion of the learned codec against JPEG and WebP.

On the TEST photos (never used for training): for every shipped quality, the image is encoded
into real ``.cpi`` bytes and bpp is computed from their length (header and checksums included);
the decoded 8-bit image gives PSNR and MS-SSIM. JPEG and WebP go through Pillow with default
settings (only ``quality`` varies). Curves are averaged over the images per setting, and
Bjøntegaard delta rates (PCHIP and cubic) are computed against each baseline. Also reported:
estimated (likelihood) vs actual bits, and encode / decode times of a 768x512 image.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, median_time
from convpress.codec.bitstream import decode_image, encode_image, pad_image
from convpress.codec.metrics import bd_rate, ms_ssim, ms_ssim_db, psnr
from convpress.codec.models import DEFAULT_MODEL
from convpress.codec.weights import available_qualities, pretrained
from convpress.core.progress import progress_bar
from convpress.data.images import to_uint8
from convpress.data.photos import TEST_PHOTOS, bundled_photo

__all__ = ["run", "to_markdown", "write_figures"]

JPEG_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
WEBP_QUALITIES = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
MAX_EST_DIFF = 2.0
JPEG_TARGET = -20.0
TIME_TARGET = 2.0
#: the codec model measured: the one with shipped weights
MODEL = DEFAULT_MODEL


def _pillow(rgb: np.ndarray, fmt: str, quality: int) -> tuple[int, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality)
    data = buf.getvalue()
    return len(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _point(rgb: np.ndarray, nbytes: int, decoded: np.ndarray) -> dict[str, float]:
    h, w = rgb.shape[:2]
    m = ms_ssim(rgb, decoded)
    return {"bytes": nbytes, "bpp": 8.0 * nbytes / (h * w), "psnr": psnr(rgb, decoded), "ms_ssim": m, "ms_ssim_db": ms_ssim_db(m)}


def _mean_curve(points: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    out = []
    for setting, per_image in points.items():
        row: dict[str, Any] = {"setting": setting}
        for k in ("bpp", "psnr", "ms_ssim", "ms_ssim_db"):
            row[k] = float(np.mean([p[k] for p in per_image]))
        out.append(row)
    return sorted(out, key=lambda r: r["bpp"])


def _bd(anchor: list[dict[str, Any]], test: list[dict[str, Any]], key: str, method: str,
        part: tuple[float, float] = (0.0, 1.0)) -> float | None:
    """BD-rate in percent, or None when a curve has fewer than 4 points or the curves do not overlap."""
    import math

    if min(len(anchor), len(test)) < 4:
        return None
    v = bd_rate([r["bpp"] for r in anchor], [r[key] for r in anchor], [r["bpp"] for r in test], [r[key] for r in test], method=method, part=part)
    return None if math.isnan(v) else v


def run(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    import torch

    t_start = time.time()
    qualities = available_qualities(MODEL)
    if not qualities:
        raise RuntimeError("no shipped codec weights")
    images = {n: bundled_photo(n) for n in TEST_PHOTOS}
    if quick:
        images = {n: im[:, :192, :256].contiguous() for n, im in list(images.items())[:1]}
    jpeg_q = JPEG_QUALITIES[::3] + [95] if quick else JPEG_QUALITIES
    webp_q = WEBP_QUALITIES[::3] + [95] if quick else WEBP_QUALITIES
    ours: dict[str, list[dict[str, float]]] = {}
    jpeg: dict[str, list[dict[str, float]]] = {}
    webp: dict[str, list[dict[str, float]]] = {}
    estimate = []
    steps = len(images) * (len(qualities) + len(jpeg_q) + len(webp_q))
    with progress_bar(steps, "bench codec", enabled=progress) as bar:
        for name, x in images.items():
            rgb = to_uint8(x)
            src = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0  # the 8-bit image every codec sees
            for q in qualities:
                model, meta = pretrained(q, MODEL)
                data = encode_image(src, model, quality=q, weights_id=meta["weights_id"])
                y, head = decode_image(data, resolver=lambda n, qq, m=model, mt=meta: (m, mt))
                p = _point(rgb, len(data), to_uint8(y))
                with torch.no_grad():
                    lik = model(pad_image(src, model.stride))["likelihoods"]
                est_bits = sum(float(-torch.log2(v).sum()) for v in lik.values())
                p["estimated_bits"] = est_bits
                ours.setdefault(f"q{q}", []).append({**p, "image": name})
                streams = sum(head["sections"])  # bytes of the rANS sections, without the container
                estimate.append({"image": name, "quality": q, "estimated_bits": est_bits, "actual_bits": 8 * len(data), "stream_bits": 8 * streams})
                bar.advance(1, f"{name} q{q}: {p['bpp']:.3f} bpp {p['psnr']:.2f} dB")
            for fmt, qs, store in (("JPEG", jpeg_q, jpeg), ("WEBP", webp_q, webp)):
                for q in qs:
                    n, dec = _pillow(rgb, fmt, q)
                    store.setdefault(f"q{q}", []).append({**_point(rgb, n, dec), "image": name})
                    bar.advance(1)
    curves = {"ours": _mean_curve(ours), "jpeg": _mean_curve(jpeg), "webp": _mean_curve(webp)}
    bd = {}
    for base in ("jpeg", "webp"):
        for key in ("psnr", "ms_ssim_db"):
            for method in ("pchip", "cubic"):
                bd[f"vs_{base}_{key}_{method}"] = _bd(curves[base], curves["ours"], key, method)
        # where along the curve the codec wins: BD-rate over the lower and upper half of the shared PSNR interval
        bd[f"vs_{base}_psnr_pchip_lower_half"] = _bd(curves[base], curves["ours"], "psnr", "pchip", (0.0, 0.5))
        bd[f"vs_{base}_psnr_pchip_upper_half"] = _bd(curves[base], curves["ours"], "psnr", "pchip", (0.5, 1.0))
    per_quality_est = []
    for q in qualities:
        rows = [e for e in estimate if e["quality"] == q]
        est = sum(r["estimated_bits"] for r in rows)
        act = sum(r["actual_bits"] for r in rows)
        streams = sum(r["stream_bits"] for r in rows)
        per_quality_est.append({"quality": q, "estimated_bits": est, "actual_bits": act, "diff_percent": 100.0 * (act - est) / est,
                                "stream_bits": streams, "stream_diff_percent": 100.0 * (streams - est) / est})
    # timing on a 768x512 image (the first test photo resized), best quality (largest streams)
    import torch.nn.functional as F

    big = F.interpolate(images[next(iter(images))][None], size=(512, 768), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    qmax = max(qualities)
    model, meta = pretrained(qmax, MODEL)
    data = encode_image(big, model, quality=qmax, weights_id=meta["weights_id"])
    repeat = 1 if quick else 5
    enc_t = median_time(lambda: encode_image(big, model, quality=qmax, weights_id=meta["weights_id"]), warmup=1, repeat=repeat)
    dec_t = median_time(lambda: decode_image(data, resolver=lambda n, q: (model, meta)), warmup=1, repeat=repeat)
    def _le(v: float | None, target: float) -> bool:
        return v is not None and v <= target

    def _r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    worst_est = max(abs(r["diff_percent"]) for r in per_quality_est)
    checks = [
        {"name": f"estimated vs actual bits within {MAX_EST_DIFF}% (every quality)", "value": round(worst_est, 2), "target": MAX_EST_DIFF, "passed": worst_est <= MAX_EST_DIFF},
        {"name": f"BD-rate vs JPEG (PSNR, PCHIP) <= {JPEG_TARGET}%", "value": _r(bd["vs_jpeg_psnr_pchip"]), "target": JPEG_TARGET, "passed": _le(bd["vs_jpeg_psnr_pchip"], JPEG_TARGET)},
        {"name": "goal: BD-rate vs WebP (PSNR, PCHIP) < 0%", "value": _r(bd["vs_webp_psnr_pchip"]), "target": 0.0, "passed": _le(bd["vs_webp_psnr_pchip"], -1e-9), "goal": True},
        {"name": f"encode 768x512 <= {TIME_TARGET} s", "value": round(enc_t, 3), "target": TIME_TARGET, "passed": enc_t <= TIME_TARGET},
        {"name": f"decode 768x512 <= {TIME_TARGET} s", "value": round(dec_t, 3), "target": TIME_TARGET, "passed": dec_t <= TIME_TARGET},
    ]
    weights = {}
    for q in qualities:
        _, meta = pretrained(q, MODEL)
        weights[f"q{q}"] = {k: meta.get(k) for k in ("weights_id", "lambda", "config", "steps")}
    return {
        "benchmark": "codec",
        "quick": quick,
        "environment": environment(),
        "seconds": time.time() - t_start,
        "images": {n: list(im.shape[1:]) for n, im in images.items()},
        "model": MODEL,
        "weights": weights,
        "points": {"ours": ours, "jpeg": jpeg, "webp": webp},
        "curves": curves,
        "bd_rate_percent": bd,
        "estimate_vs_actual": per_quality_est,
        "timing_768x512": {"quality": qmax, "encode_s": enc_t, "decode_s": dec_t, "bytes": len(data), "threads": torch.get_num_threads()},
        "checks": checks,
    }


def write_figures(result: dict[str, Any], json_path: str | Path) -> list[Path]:
    """The RD plot (PSNR and MS-SSIM vs bpp) as ``<json stem>.png`` beside the JSON."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(json_path).with_suffix(".png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {"ours": (f"convpress codec ({result.get('model', MODEL)})", "o-", "C3"), "jpeg": ("JPEG (Pillow)", "s--", "C0"), "webp": ("WebP (Pillow)", "^--", "C2")}
    for ax, key, label in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "ms_ssim_db", "MS-SSIM (dB)")):
        for name, (lab, fmt, color) in style.items():
            c = result["curves"][name]
            ax.plot([r["bpp"] for r in c], [r[key] for r in c], fmt, color=color, label=lab, ms=4)
        top = max(r["bpp"] for r in result["curves"]["ours"]) * 1.6
        ax.set_xlim(0, top)
        ax.set_xlabel("bits per pixel (actual file size)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    names = ", ".join(result["images"])
    fig.suptitle(f"Rate-distortion on {names} (mean per setting; not used for training)")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return [out]


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env = result["environment"]
    bd = result["bd_rate_percent"]
    lines = ["## Learned image compression (`convpress bench codec`)", "",
             f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}; {result['seconds']:.0f} s"
             f"{' (QUICK smoke run)' if result['quick'] else ''}. Images: "
             + ", ".join(f"{n} ({s[1]}x{s[0]})" for n, s in result["images"].items())
             + " — never used for training. bpp from the actual `.cpi` file size (header and checksums included).", "",
             "| codec | setting | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) |", "|---|---|---|---|---|---|"]
    for name in ("ours", "jpeg", "webp"):
        for r in result["curves"][name]:
            lines.append(f"| {name} | {r['setting']} | {r['bpp']:.3f} | {r['psnr']:.2f} | {r['ms_ssim']:.4f} | {r['ms_ssim_db']:.2f} |")
    lines += ["", "**BD-rate of the codec** (negative = fewer bits at equal quality; PCHIP / cubic fit of log-rate):", "",
              "| anchor | PSNR | MS-SSIM |", "|---|---|---|"]
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.1f}%"

    for base in ("jpeg", "webp"):
        lines.append(f"| {base.upper()} | {pct(bd[f'vs_{base}_psnr_pchip'])} / {pct(bd[f'vs_{base}_psnr_cubic'])} | "
                     f"{pct(bd[f'vs_{base}_ms_ssim_db_pchip'])} / {pct(bd[f'vs_{base}_ms_ssim_db_cubic'])} |")
    if "vs_jpeg_psnr_pchip_lower_half" in bd:  # results written before the split lack it
        lines += ["", "Where the codec wins: PSNR BD-rate (PCHIP) over the lower and the upper half of the PSNR interval "
                  "that both curves cover:", "", "| anchor | lower half | upper half |", "|---|---|---|"]
        for base in ("jpeg", "webp"):
            lines.append(f"| {base.upper()} | {pct(bd[f'vs_{base}_psnr_pchip_lower_half'])} | {pct(bd[f'vs_{base}_psnr_pchip_upper_half'])} |")
    lines += ["", "**Estimated (likelihoods) vs actual (file) bits**, summed over the images; the coded streams are the "
              "file without its header and checksum (28-30 bytes per one-tile file since format version 3), i.e. what the rANS coder wrote:", "",
              "| quality | estimated | actual file | difference | coded streams | difference |", "|---|---|---|---|---|---|"]
    for r in result["estimate_vs_actual"]:
        streams = f"{r['stream_bits']:,} | {r['stream_diff_percent']:+.2f}%" if "stream_bits" in r else "n/a | n/a"
        lines.append(f"| {r['quality']} | {r['estimated_bits']:,.0f} | {r['actual_bits']:,} | {r['diff_percent']:+.2f}% | {streams} |")
    t = result["timing_768x512"]
    lines += ["", f"768x512 image, quality {t['quality']}, {t['threads']} threads: encode {t['encode_s']:.3f} s, "
              f"decode {t['decode_s']:.3f} s (median; in-process, model loaded).", ""]
    lines += checks_table(result["checks"])
    return "\n".join(lines) + "\n"


def readme_summary(result: dict[str, Any]) -> str:
    """The README's one-paragraph summary of this result (inserted by benchmarks/make_benchmarks_md.py)."""
    bd = result["bd_rate_percent"]

    def more(v: float | None) -> str:
        if v is None:
            return "not comparable (the curves do not overlap)"
        return f"{abs(v):.1f}% {'more' if v > 0 else 'fewer'} bits"

    names = " and ".join(result["images"])
    rows = result["estimate_vs_actual"]
    diff = max(abs(r["diff_percent"]) for r in rows)
    stream_diff = max(abs(r["stream_diff_percent"]) for r in rows) if all("stream_diff_percent" in r for r in rows) else None
    container = sum(r["actual_bits"] - r.get("stream_bits", 0) for r in rows) / 8 / (len(rows) * len(result["images"]))
    t = result["timing_768x512"]
    return (f"Measured (`benchmarks/results/codec.json`, {names}, never used for training): against JPEG the codec "
            f"needs {more(bd['vs_jpeg_psnr_pchip'])} at equal PSNR ({more(bd['vs_jpeg_ms_ssim_db_pchip'])} at equal "
            f"MS-SSIM); against WebP {more(bd['vs_webp_psnr_pchip'])} at equal PSNR. "
            + (f"The saving is not uniform: against JPEG the codec needs {more(bd['vs_jpeg_psnr_pchip_lower_half'])} over the lower "
               f"half of the PSNR range both curves cover and {more(bd['vs_jpeg_psnr_pchip_upper_half'])} over its upper half. "
               if "vs_jpeg_psnr_pchip_lower_half" in bd else "")
            + f"Estimated and actual bits agree within {diff:.1f}%"
            + (f" (the rANS streams alone within {stream_diff:.1f}%; the rest is the container's header and checksums, "
               f"{container:.0f} bytes per file on average)" if stream_diff is not None else "")
            + f", and a 768x512 image encodes in {t['encode_s']:.2f} s and decodes in "
            f"{t['decode_s']:.2f} s on {t['threads']} threads.")


BENCHMARKS.register("codec", Benchmark(run, to_markdown, "rate-distortion of the learned codec against JPEG and WebP; encode and decode time", write_figures=write_figures, readme_summary=readme_summary))
