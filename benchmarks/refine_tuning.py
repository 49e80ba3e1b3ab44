"""Settings of the latent refinement (SGA) tried on photos that are not test photos.

    python benchmarks/refine_tuning.py '[{"effort": 30}, {"effort": 30, "lr": 0.05}, {"effort": 100}]'

Encodes six opencv-doc photos (``/usr/share/doc/opencv-doc/examples/data``: baboon, fruits,
building, butterfly, messi5, home; training photos of the codec, never its test photos) at long
side 512, levels 2, 4, 6 and 9 (2, 4 and 6 before 2026-12-05), with each setting given (``effort``; ``lr``, ``tau_max``,
``tau_rate``, ``tau_min`` of :mod:`convpress.codec.refine`; ``context_gradient``) and with effort 0, from real files,
and prints per level the mean change of the rate-distortion loss ``lambda * 255^2 * MSE + bpp``
against effort 0, of PSNR and of the file size. Measured on 2026-12-04 (one thread each):

    effort 30 (lr 0.02, tau 0.5 -> 0.02):  loss -5.3% / -4.7% / -5.0% at levels 2 / 4 / 6
    effort 30, lr 0.05:                     0.0% / -1.2% / -3.9% (often worse than effort 0, so not kept)
    effort 30, lr 0.01:                    -4.8% / -3.4% (levels 2 and 4 of 6 photos)
    effort 30, tau_max 0.3:                -4.7% / -3.9% / -4.1%
    effort 100:                            -7.7% / -7.1% / -7.5%

Measured on 2026-12-05 with the variable-rate weights (levels 2 / 4 / 6 / 9: narrow, narrow, mid, top):

    effort 30 (tau_rate 4, tau 0.5 -> 0.02):   -2.84% / -4.38% / -5.69% / -7.27%
    effort 30, tau_rate 2:                      -4.26% / -5.57% / -7.11% / -8.56%
    effort 30, tau_rate 1 (0.5 -> 0.18):        -4.56% / -5.80% / -7.32% / -9.09%   (the default since)
    effort 100 (tau_rate 4):                    -4.92% / -6.64% / -8.87% / -10.33%
    effort 100, tau_rate 1:                     -6.51% / -8.22% / -10.76% / -12.17%

Measured on 2026-12-06 with the channel-context weights (stage 20; seconds per photo, one thread each,
the two runs side by side)::

    python benchmarks/refine_tuning.py '[{"effort": 30, "context_gradient": true}]'
    python benchmarks/refine_tuning.py '[{"effort": 30}]'

    effort 30, gradient through the context:    -3.60% / -5.56% / -5.63% / -6.74%   (3.8 / 3.2 / 6.8 / 6.6 s)
    effort 30, none (the default since):        -3.37% / -5.53% / -5.84% / -7.43%   (3.4 / 3.0 / 6.0 / 5.7 s)

Short efforts, 2026-12-06 (same weights; two runs beside a ``bench codec``, so their seconds are not comparable
with the above)::

    effort 5:                                   -0.71% / -1.82% / -1.50% / -2.39%
    effort 10:                                  -1.44% / -3.01% / -2.66% / -3.95%
    effort 10, lr 0.04:                         -0.60% / -2.46% / -2.38% / -5.24%
    effort 10, tau_max 0.2:                     -0.95% / -2.62% / -2.53% / -3.06%
    effort 10, lr 0.04, tau_max 0.2:            -0.24% / -1.46% / -1.45% / -3.50%
    effort 10, tau_rate 3:                      -0.98% / -2.61% / -2.28% / -3.36%

so the defaults also suit short runs (a larger step helps the top level only).

2026-12-06, before and after the comparison and the context model moved to bfloat16 and SGA to one logistic
draw per latent and iteration (the two runs side by side, another machine: AMD EPYC)::

    effort 10, before:                          -1.42% / -3.00% / -2.64% / -4.03%
    effort 10, after:                           -1.39% / -3.03% / -2.69% / -3.97%
    effort 30, before:                          -3.35% / -5.55% / -5.84% / -7.41%
    effort 30, after:                           -3.56% / -5.46% / -5.89% / -7.45%
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

PHOTOS = ["baboon.jpg", "fruits.jpg", "building.jpg", "butterfly.jpg", "messi5.jpg", "home.jpg"]
FOLDER = Path("/usr/share/doc/opencv-doc/examples/data")
LEVELS = (2, 4, 6, 9)  # narrow, narrow, mid and top model of the variable-rate default


def main() -> None:
    import convpress.codec  # noqa: F401  (registers the models)
    import convpress.codec.models.hyperprior as hyperprior
    import convpress.codec.refine as refine
    from convpress.codec.bitstream import decode_image, encode_image
    from convpress.codec.weights import pretrained
    from convpress.data.images import read_image
    from convpress.data.photos import resize_long_side

    torch.set_num_threads(1)
    if not FOLDER.is_dir():
        raise SystemExit(f"{FOLDER} is missing: apt-get install opencv-doc")
    images = {}
    for n in PHOTOS:
        images[n] = resize_long_side(read_image(FOLDER / n), 512)
    settings = [{"effort": 0}, *json.loads(sys.argv[1] if len(sys.argv) > 1 else '[{"effort": 30}]')]
    defaults = (refine.TAU_MAX, refine.TAU_RATE, refine.TAU_MIN)
    rows = []
    for cfg in settings:
        refine.TAU_MAX = cfg.get("tau_max", defaults[0])
        refine.TAU_RATE = cfg.get("tau_rate", defaults[1])
        refine.TAU_MIN = cfg.get("tau_min", defaults[2])
        hyperprior.refine_latents = functools.partial(
            refine.refine_latents, lr=cfg.get("lr", 2e-2), context_gradient=cfg.get("context_gradient", False)
        )
        for q in LEVELS:
            model, meta = pretrained(q)
            for n, x in images.items():
                t = time.perf_counter()
                data = encode_image(x, model, quality=q, weights_id=meta["weights_id"], effort=cfg.get("effort", 30))
                t = time.perf_counter() - t
                xh, _ = decode_image(data)
                mse = float(((xh.clamp(0, 1) * 255).round() / 255 - x).pow(2).mean())
                bpp = len(data) * 8 / (x.shape[1] * x.shape[2])
                rows.append(
                    {
                        "cfg": json.dumps(cfg),
                        "q": q,
                        "img": n,
                        "bpp": bpp,
                        "psnr": 10 * np.log10(1 / mse),
                        "loss": model.lmbda * 255**2 * mse + bpp,
                        "s": t,
                    }
                )
    base = {(r["q"], r["img"]): r for r in rows if r["cfg"] == json.dumps({"effort": 0})}
    for cfg in settings[1:]:
        parts = []
        for q in LEVELS:
            mine = [r for r in rows if r["cfg"] == json.dumps(cfg) and r["q"] == q]
            dl = np.mean([r["loss"] / base[(q, r["img"])]["loss"] - 1 for r in mine]) * 100
            dp = np.mean([r["psnr"] - base[(q, r["img"])]["psnr"] for r in mine])
            db = np.mean([r["bpp"] / base[(q, r["img"])]["bpp"] - 1 for r in mine]) * 100
            parts.append(f"q{q}: loss {dl:+.2f}% PSNR {dp:+.3f} dB size {db:+.1f}% ({np.mean([r['s'] for r in mine]):.1f} s)")
        print(json.dumps(cfg), " | ".join(parts))


if __name__ == "__main__":
    main()
