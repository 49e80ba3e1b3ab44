"""The synthesis correction (``.cpi`` format 5, ``codec encode --correct``) against format 4: BD-rate on photos never trained on.

Encodes the 6 held-out photos of ``codec_weights_check.py`` (long side 768) at every shipped level
of the default model, as format 4 and as format 5 (the same latents plus a least-squares correction
of the decoder's last layer per image, :mod:`convpress.codec.correction`), with the same encoder
effort, through real files; prints both curves, the BD-rate (PSNR on 8-bit pixels) of format 5
against format 4 and of both against WebP (Pillow, ``method=6``, same run), and the encode times.
A few minutes per effort on 2 cores; ``convpress bench codec`` stays the reference for the
published codec figures. ``--crop 1024`` measures one full tile of larger held-out photos instead,
where the correction may use its 3x3 maps.

    python benchmarks/correction_check.py --effort 0 --json benchmarks/results/correction_check-e0.json
    python benchmarks/correction_check.py --effort 0 --crop 1024 --json benchmarks/results/correction_check-e0-1024.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from codec_weights_check import PHOTOS, _level_models, webp_curve  # noqa: E402

from convpress.codec import metrics  # noqa: E402
from convpress.codec.bitstream import CORRECTION_VERSION, VERSION, decode_image, encode_image  # noqa: E402
from convpress.codec.metrics import bd_rate  # noqa: E402
from convpress.codec.weights import WEIGHTS_DIR  # noqa: E402
from convpress.data.photos import held_out_photos  # noqa: E402

Curve = list[tuple[float, float]]


def _bd(anchor: Curve, test: Curve) -> float:
    return bd_rate([p[0] for p in anchor], [p[1] for p in anchor], [p[0] for p in test], [p[1] for p in test])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--effort", type=int, default=0, help="encoder effort (latent refinement iterations) of both formats")
    p.add_argument("--model", default="varrate")
    p.add_argument(
        "--crop",
        type=int,
        help="instead of the 6 photos at long side 768: the central N x N pixels of the first 6 held-out photos at least "
        "N pixels on each side, at their own resolution (one tile of the default 1024 when N <= 1024)",
    )
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.crop:
        n = args.crop
        big = {k: v for k, v in held_out_photos(long_side=None).items() if min(v.shape[1:]) >= n}
        images = {}
        for k, v in list(big.items())[:6]:
            top, left = (v.shape[1] - n) // 2, (v.shape[2] - n) // 2
            images[k] = v[:, top : top + n, left : left + n]
    else:
        images = {k: v for k, v in held_out_photos(long_side=768).items() if k in PHOTOS}
    u8 = {k: np.round(v.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for k, v in images.items()}
    curves: dict[int, Curve] = {VERSION: [], CORRECTION_VERSION: []}
    seconds = dict.fromkeys(curves, 0.0)
    for q, net in _level_models(str(WEIGHTS_DIR), args.model):
        for version in curves:
            bpp, psnr = [], []
            for k in images:
                x = torch.from_numpy(u8[k]).permute(2, 0, 1).float() / 255  # (3, H, W), exactly the 8-bit photo
                t0 = time.perf_counter()
                data = encode_image(x, net, quality=q, weights_id="check", version=version, effort=args.effort)
                seconds[version] += time.perf_counter() - t0
                y, _ = decode_image(data, resolver=lambda name, qq, net=net: (net, {"weights_id": "check"}))
                out = np.round(y.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                bpp.append(8 * len(data) / (x.shape[1] * x.shape[2]))
                psnr.append(metrics.psnr(out, u8[k]))
            curves[version].append((float(np.mean(bpp)), float(np.mean(psnr))))
        (b4, p4), (b5, p5) = curves[VERSION][-1], curves[CORRECTION_VERSION][-1]
        gain = f"{p5 - p4:+.3f} dB, {100 * (b5 / b4 - 1):+.2f}% bits"
        print(f"level {q:2d}: format 4 {p4:.3f} dB at {b4:.4f} bpp, format 5 {p5:.3f} dB at {b5:.4f} bpp ({gain})", flush=True)
    webp = webp_curve(u8)
    res = {
        "effort": args.effort,
        "crop": args.crop,
        "photos": sorted(images),
        "bd_rate_5_vs_4": _bd(curves[VERSION], curves[CORRECTION_VERSION]),
        "bd_rate_4_vs_webp": _bd(webp, curves[VERSION]),
        "bd_rate_5_vs_webp": _bd(webp, curves[CORRECTION_VERSION]),
        "encode_seconds": {str(v): s for v, s in seconds.items()},
        "curves": {str(v): c for v, c in curves.items()},
    }
    slower = seconds[CORRECTION_VERSION] / seconds[VERSION]
    print(
        f"effort {args.effort}: format 5 against format 4 BD-rate {res['bd_rate_5_vs_4']:+.2f}%; against WebP format 4 "
        f"{res['bd_rate_4_vs_webp']:+.2f}%, format 5 {res['bd_rate_5_vs_webp']:+.2f}%; encoding {slower:.2f}x format 4's time"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
