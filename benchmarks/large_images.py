"""Peak memory and time of ``codec encode``, ``codec decode`` and ``fip apply`` on a 24-megapixel photo.

    python benchmarks/large_images.py [--width 6000] [--height 4000] [--quality 1] [--operator l0]
                                      [--out benchmarks/results/large-images.json]

The image is natural-looking but synthetic: a mosaic of 1000x1000 cells cut from the bundled skimage
photos (each resized so that its short side is 1000, centre-cropped, some mirrored), written as PNG.
Every command runs as ``python -m convpress ...`` in a fresh process; its peak memory is that
process's own ``ru_maxrss`` (from ``wait4``, so nothing else on the machine counts) and its time is
wall time including start-up (the 1-minute load average before each command is recorded: on a shared
2-core machine other jobs can slow a command several times). For comparison the JSON also records
the peak of a process that only imports convpress and loads the weights (``convpress codec
qualities``), and the estimates with which encoding untiled or applying a plain CAN would be refused
on a machine with less memory. One run, no repetitions: memory is deterministic enough, and times on
a shared machine are indicative only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def mosaic(height: int, width: int, cell: int = 1000) -> np.ndarray:
    """(height, width, 3) uint8 BGR: cells of the bundled photos, resized and centre-cropped."""
    import cv2

    from convpress.data.photos import PHOTO_NAMES, bundled_photo

    cells = []
    for i, name in enumerate(PHOTO_NAMES):
        rgb = (bundled_photo(name).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        h, w = rgb.shape[:2]
        s = cell / min(h, w)
        rgb = cv2.resize(rgb, (max(cell, round(w * s)), max(cell, round(h * s))), interpolation=cv2.INTER_CUBIC)
        top, left = (rgb.shape[0] - cell) // 2, (rgb.shape[1] - cell) // 2
        c = rgb[top : top + cell, left : left + cell, ::-1]
        cells += [c, c[:, ::-1]] if i % 2 else [c[:, ::-1], c]
    rows, cols = -(-height // cell), -(-width // cell)
    grid = [np.concatenate([cells[(r * cols + k) % len(cells)] for k in range(cols)], axis=1) for r in range(rows)]
    return np.ascontiguousarray(np.concatenate(grid, axis=0)[:height, :width])


def main() -> None:
    import cv2

    from convpress.bench._common import environment, run_measured, write_json
    from convpress.codec.bitstream import DEFAULT_TILE
    from convpress.codec.bitstream import estimate_memory as codec_estimate
    from convpress.codec.weights import pretrained
    from convpress.fip.apply import estimate_memory as fip_estimate
    from convpress.fip.weights import load_network, shipped_weights
    from convpress.models import create_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--quality", type=int, default=1)
    ap.add_argument("--operator", default="rtv", help="an operator whose shipped network is a gf-can24 (l0 was one until 2026-12-04)")
    ap.add_argument("--out", default="benchmarks/results/large-images.json")
    args = ap.parse_args()
    h, w = args.height, args.width

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="large-images-") as tmp:
        d = Path(tmp)
        png, cpi = d / "large.png", d / "large.cpi"
        cv2.imwrite(str(png), mosaic(h, w))
        commands = {
            "baseline (import, load weights)": ["codec", "qualities"],
            f"codec encode (tiles of {DEFAULT_TILE})": ["codec", "encode", str(png), str(cpi), "-q", str(args.quality)],
            "codec decode": ["codec", "decode", str(cpi), str(d / "decoded.png")],
            "fip apply gf-can24 (default strips)": ["fip", "apply", "--operator", args.operator, str(png), str(d / "fip.png")],
            "fip apply gf-can24 --tile-rows 256": [
                "fip",
                "apply",
                "--operator",
                args.operator,
                str(png),
                str(d / "fip256.png"),
                "--tile-rows",
                "256",
            ],
        }
        for label, argv in commands.items():
            load = os.getloadavg()[0]  # other jobs on the machine slow the times, not the memory
            r = run_measured(argv)
            if r["returncode"] != 0:
                raise SystemExit(f"{label} failed: {r['stderr'].strip()}")
            row = {
                "command": label,
                "argv": ["convpress", *[a.replace(tmp, "TMP") for a in argv]],
                "peak_rss_mb": round(r["peak_rss_bytes"] / 2**20, 1),
                "seconds": round(r["seconds"], 2),
                "load_average_before": round(load, 2),
            }
            if label.startswith("codec encode"):
                row["file_bytes"] = cpi.stat().st_size
                row["bpp"] = round(8 * cpi.stat().st_size / (h * w), 4)
            runs.append(row)
            print(f"{label:<40} peak RSS {row['peak_rss_mb']:8.1f} MB  {row['seconds']:7.1f} s  (load {load:.1f})")

    model, _ = pretrained(args.quality)
    gf, _ = load_network(shipped_weights(args.operator))  # type: ignore[arg-type]
    estimates = {
        f"codec encode/decode, tiles of {DEFAULT_TILE}": codec_estimate(model, h, w, DEFAULT_TILE),
        "codec encode/decode untiled (one tile)": codec_estimate(model, h, w, max(h, w) + 64),
        "fip apply gf-can24 (default strips)": fip_estimate(gf, h, w),
        "fip apply gf-can24 untiled (--tile-rows = height)": fip_estimate(gf, h, w, h),
        "fip apply plain can24 (cannot be tiled)": fip_estimate(create_model("can24"), h, w),
    }
    result = {
        "benchmark": "large-images",
        "image": {
            "height": h,
            "width": w,
            "megapixels": round(h * w / 1e6, 2),
            "content": "mosaic of 1000x1000 cells of the bundled skimage photos, PNG",
        },
        "quality": args.quality,
        "operator": args.operator,
        "runs": runs,
        "estimates_mb_beyond_model": {k: round(v / 2**20, 1) for k, v in estimates.items()},
        "environment": environment(),
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()


# --- the text that quotes these figures (rendered by benchmarks/make_benchmarks_md.py) -----------------------
# The JSON stores mebibytes (peak_rss_mb = bytes / 2**20); the text states gibibytes, one unit throughout.
_ROWS = {
    "codec encode (tiles of 1024)": "`codec encode -q {quality}` (tiles of 1024; {bpp:.2f} bpp; the level then numbered 1 is "
    "today's level 3, same architecture)",
    "codec decode": "`codec decode`",
    "fip apply gf-can24 (default strips)": "`fip apply --operator {operator}` (gf-can24, strips of about 1 MP)",
    "fip apply gf-can24 --tile-rows 256": "`fip apply --operator {operator} --tile-rows 256`",
}


def _gib(mib: float) -> str:
    return f"{mib / 1024:.2f} GiB"


def _runs(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["command"]: r for r in result["runs"]}


def to_markdown(result: dict[str, Any]) -> str:
    """RELIABILITY.md's table of the large-image run: peak RSS, RSS above the baseline, time."""
    runs = _runs(result)
    base = runs["baseline (import, load weights)"]["peak_rss_mb"]
    img = result["image"]
    loads = [r["load_average_before"] for r in result["runs"]]
    lines = [
        f"Measured on a {img['megapixels']:g}-megapixel image ({img['width']}x{img['height']} mosaic of the bundled photos, PNG), "
        "each command in a fresh process, peak RSS of that process (`benchmarks/large_images.py`, results in "
        f"`benchmarks/results/large-images.json`; 2-core machine, load average {min(loads):.1f}-{max(loads):.1f}; "
        "1 GiB = 2^30 bytes):",
        "",
        f"| command | peak RSS | above the {_gib(base)} of importing convpress and loading weights | time |",
        "|---|---|---|---|",
    ]
    enc = runs["codec encode (tiles of 1024)"]
    for key, label in _ROWS.items():
        r = runs[key]
        text = label.format(quality=result["quality"], operator=result["operator"], bpp=enc.get("bpp", 0.0))
        lines.append(f"| {text} | {_gib(r['peak_rss_mb'])} | {_gib(r['peak_rss_mb'] - base)} | {r['seconds']:.1f} s |")
    est = result["estimates_mb_beyond_model"]
    float_image = img["height"] * img["width"] * 3 * 4 / 2**30
    lines += [
        "",
        f"For comparison, the estimates (beyond the model) with which these requests would be checked: untiled codec "
        f"{_gib(est['codec encode/decode untiled (one tile)'])}, gf-can24 in one full-resolution pass "
        f"{_gib(est['fip apply gf-can24 untiled (--tile-rows = height)'])}, plain CAN24 "
        f"{_gib(est['fip apply plain can24 (cannot be tiled)'])}. "
        f"The float32 image alone is {float_image:.2f} GiB; what remains of the peak is its transient copies while reading "
        "and writing the PNG, one tile's (or strip's) activations, and freed blocks that the program keeps for reuse "
        "(since 2026-12-06: README, Freed memory kept).",
    ]
    return "\n".join(lines) + "\n"


def readme_summary(result: dict[str, Any]) -> str:
    """The README's sentence quoting the large-image run."""
    runs = _runs(result)
    base = runs["baseline (import, load weights)"]["peak_rss_mb"]
    enc, dec = runs["codec encode (tiles of 1024)"], runs["codec decode"]
    fip = runs["fip apply gf-can24 (default strips)"]
    est = result["estimates_mb_beyond_model"]["codec encode/decode untiled (one tile)"]
    img = result["image"]
    return (
        f"Measured on a {img['width']}×{img['height']} photo mosaic (`python benchmarks/large_images.py` → "
        f"`benchmarks/results/large-images.json`): encoding peaks at {_gib(enc['peak_rss_mb'])} and decoding at "
        f"{_gib(dec['peak_rss_mb'])} of RSS, {_gib(max(enc['peak_rss_mb'], dec['peak_rss_mb']) - base)} above importing "
        f"convpress — the image and its copies, not the {_gib(est)} an untiled pass would need; `fip apply` with gf-can24 "
        f"at {_gib(fip['peak_rss_mb'])} (details in RELIABILITY.md)."
    )
