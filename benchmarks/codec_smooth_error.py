"""Where the codec loses to AVIF: the error of both at the same file size, split by spatial frequency.

``bench codec``'s per-photo table shows the gap to AVIF concentrated on a few smooth photos (sky, a
gradient, an out-of-focus ceiling). For each photo and level this encodes the photo with the shipped
codec (default format, ``--effort``), then with AVIF (Pillow's libavif, speed 4, 4:4:4, as in the
bench) at the highest quality whose file is no larger, and prints for both the bpp, the PSNR, the
mean squared error (8-bit units) and the part of it below a ``--window``-pixel box filter (the
low-frequency error: smooth areas reproduced with a wobble instead of their gradient).

It also estimates what a separate low-resolution error layer would buy, the obvious patch for such
a wobble: the decoded image's error averaged over ``s`` x ``s`` blocks (s = 8, 16, 32), rounded with
step ``d`` (0.5-6 levels), bilinearly upsampled and added back. Its cost is an *estimate* (the
symbols' empirical entropy, plus 8 bits per distinct symbol and 32 bits of header, no real coder),
and the best (s, d) is chosen per file at a slope of ``--bits-per-db`` percent of the file per dB;
the "net" column converts its PSNR gain to bits at that slope and subtracts its cost.

    python benchmarks/codec_smooth_error.py free_by_Peter_Nerlich Infinite-Sea_by_Aury88 Bridge_by_Sander_Klootwijk \
        life_by_Aitzol_Berasategi seeding_by_Clements_Engelhardt

Photos: the test set of ``convpress.data.photos.held_out_photos`` (long side 768: the bundled coffee,
rocket and motorcycle, and Debian's lomiri-wallpapers photographs when installed).
"""

from __future__ import annotations

import argparse
import io
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from convpress.codec.bitstream import decode_image, encode_image
from convpress.codec.metrics import psnr
from convpress.codec.weights import pretrained
from convpress.data.images import to_uint8
from convpress.data.photos import held_out_photos


def _avif(rgb: np.ndarray, max_bytes: int) -> tuple[int, int, np.ndarray]:
    """(quality, bytes, decoded (H, W, 3) uint8) of the highest AVIF quality whose file has at most ``max_bytes``."""
    from PIL import Image

    def enc(q: int) -> tuple[bytes, np.ndarray]:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="AVIF", quality=q, speed=4, subsampling="4:4:4")
        data = buf.getvalue()
        return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    lo, hi = 0, 100  # bytes grow with quality; bisect for the last quality within the budget
    best = (0, *enc(0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        data, dec = enc(mid)
        if len(data) <= max_bytes:
            lo, best = mid, (mid, data, dec)
        else:
            hi = mid - 1
    q, data, dec = best
    return q, len(data), dec


def _mse(err: np.ndarray) -> float:
    return float(np.mean(err**2))


def _lowpass_mse(err: np.ndarray, window: int) -> float:
    """Mean squared error left after a ``window`` x ``window`` box filter of the (H, W, 3) error."""
    t = torch.from_numpy(err).permute(2, 0, 1)[None].double()
    lp = F.avg_pool2d(F.pad(t, [window // 2] * 4, mode="replicate"), window, stride=1)[..., : t.shape[-2], : t.shape[-1]]
    return float((lp**2).mean())


def _entropy_bits(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum()) + 8 * len(counts) + 32


def _error_layer(rgb: np.ndarray, dec: np.ndarray, file_bits: int, bits_per_db: float) -> dict[str, float]:
    """The best block-mean error layer (estimated cost) for one decoded file; see the module docstring."""
    src = rgb.astype(np.float64)
    err = torch.from_numpy(src - dec).permute(2, 0, 1)[None]
    p0 = psnr(rgb, dec)
    best: dict[str, float] = {"block": 0, "step": 0, "bits_percent": 0.0, "psnr_gain_db": 0.0, "net_percent": 0.0}
    for s in (8, 16, 32):
        means = F.avg_pool2d(err, s, ceil_mode=True)
        for d in (0.5, 1.0, 2.0, 3.0, 4.0, 6.0):
            q = torch.round(means / d)
            up = F.interpolate(q * d, size=err.shape[-2:], mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
            new = np.clip(np.round(dec + up), 0, 255).astype(np.uint8)
            bits = 100 * _entropy_bits(q.numpy()) / file_bits
            gain = psnr(rgb, new) - p0
            net = gain * bits_per_db - bits  # positive: the layer saves that share of the file
            if net > best["net_percent"]:
                best = {"block": s, "step": d, "bits_percent": bits, "psnr_gain_db": gain, "net_percent": net}
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="names of test photos (file stems)")
    p.add_argument("--qualities", default="1,3,6", help="codec levels (default: 1,3,6)")
    p.add_argument("--effort", type=int, default=10, help="encoder effort (default: 10, the command line's)")
    p.add_argument("--window", type=int, default=16, help="box filter of the low-frequency error, pixels (default: 16)")
    p.add_argument(
        "--bits-per-db", type=float, default=15.0, help="slope for the error layer's net figure, %% of bits per dB (default: 15)"
    )
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    photos = held_out_photos(long_side=768)
    missing = [n for n in args.photos if n not in photos]
    if missing:
        print(f"error: not test photos here: {', '.join(missing)} (have: {', '.join(photos)})", file=sys.stderr)
        return 2
    rows = []
    print(
        f"{'photo':32s} lvl | {'ours bpp':>8s} {'PSNR':>6s} {'MSE':>6s} {f'lp{args.window}':>6s} | "
        f"{'AVIF q':>6s} {'bpp':>6s} {'PSNR':>6s} {'MSE':>6s} {f'lp{args.window}':>6s} | error layer: s, d, +bits, +dB, net"
    )
    for name in args.photos:
        rgb = to_uint8(photos[name])
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255)  # the 8-bit photo, as the bench codes it
        npx = rgb.shape[0] * rgb.shape[1]
        for q in (int(v) for v in args.qualities.split(",")):
            model, meta = pretrained(q)
            data = encode_image(x, model, quality=q, weights_id=meta["weights_id"], effort=args.effort)
            ours = to_uint8(decode_image(data)[0])
            aq, abytes, avif = _avif(rgb, len(data))
            e_ours, e_avif = rgb.astype(np.float64) - ours, rgb.astype(np.float64) - avif
            layer = _error_layer(rgb, ours, 8 * len(data), args.bits_per_db)
            row = {
                "photo": name,
                "quality": q,
                "ours_bpp": 8 * len(data) / npx,
                "ours_psnr": psnr(rgb, ours),
                "ours_mse": _mse(e_ours),
                "ours_lowpass_mse": _lowpass_mse(e_ours, args.window),
                "avif_quality": aq,
                "avif_bpp": 8 * abytes / npx,
                "avif_psnr": psnr(rgb, avif),
                "avif_mse": _mse(e_avif),
                "avif_lowpass_mse": _lowpass_mse(e_avif, args.window),
                "error_layer": layer,
            }
            rows.append(row)
            print(
                f"{name[:32]:32s} {q:3d} | {row['ours_bpp']:8.3f} {row['ours_psnr']:6.2f} {row['ours_mse']:6.2f} "
                f"{row['ours_lowpass_mse']:6.2f} | {aq:6d} {row['avif_bpp']:6.3f} {row['avif_psnr']:6.2f} {row['avif_mse']:6.2f} "
                f"{row['avif_lowpass_mse']:6.2f} | {layer['block']:.0f}, {layer['step']}, {layer['bits_percent']:+.1f}%, "
                f"{layer['psnr_gain_db']:+.2f}, {layer['net_percent']:+.1f}%",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"effort": args.effort, "window": args.window, "bits_per_db": args.bits_per_db, "rows": rows}, f, indent=1)
    share = {c: float(np.median([r[f"{c}_lowpass_mse"] / max(r[f"{c}_mse"], 1e-12) for r in rows])) for c in ("ours", "avif")}
    print(f"low-frequency share of the squared error, median over these files: ours {share['ours']:.0%}, AVIF {share['avif']:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
