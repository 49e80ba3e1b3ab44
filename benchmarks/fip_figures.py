"""Side-by-side figures ``docs/fip/<operator>.png``: input | reference operator | shipped network.

    python benchmarks/fip_figures.py [--size 512] [--photo coffee]

Uses a TEST photo (never seen in training). Both PSNRs against the reference operator are written
in the titles: the untouched input's (the trivial baseline) and the network's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def panel(img: np.ndarray, label: str) -> np.ndarray:
    """(H, W, 3) float RGB -> uint8 BGR with a caption bar on top."""
    import cv2

    bgr = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)[:, :, ::-1].copy()
    bar = np.full((28, bgr.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, bgr], axis=0)


def main() -> None:
    import cv2
    import torch

    from convpress.data.photos import bundled_photo
    from convpress.fip.apply import apply_network, run_reference
    from convpress.fip.pairs import resize_long_side
    from convpress.fip.train import psnr
    from convpress.fip.weights import load_network, shipped_operators, shipped_weights

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512, help="long side of each panel")
    ap.add_argument("--photo", default="coffee")
    ap.add_argument("--out", default="docs/fip")
    args = ap.parse_args()
    img = resize_long_side(bundled_photo(args.photo).permute(1, 2, 0).numpy(), args.size)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    for op in shipped_operators():
        model, info = load_network(shipped_weights(op))  # type: ignore[arg-type]
        ref, net = run_reference(op, x), apply_network(model, x)
        gap = np.full((img.shape[0] + 28, 6, 3), 255, np.uint8)
        row = np.concatenate(
            [
                panel(img, f"input: {psnr(x, ref):.1f} dB"),
                gap,
                panel(ref.permute(1, 2, 0).numpy(), f"{op} (reference)"),
                gap,
                panel(net.permute(1, 2, 0).numpy(), f"{info['model']}: {psnr(net, ref):.1f} dB"),
            ],
            axis=1,
        )
        out = Path(args.out) / f"{op}.png"
        cv2.imwrite(str(out), row)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
