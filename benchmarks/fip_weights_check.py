"""Quick check of fip networks while training them: the held-out gain of weights files side by side.

For one operator, applies each weights file given to the 17 held-out photos at long side 768
(``convpress bench fip``'s quality set, never trained on) and prints, per file, the mean PSNR
against the operator's reference, the mean gain over the untouched input (the bench's figure) and
the worst photo's gain. References are cached in ``--work-dir`` exactly as the bench caches them,
so passing the bench's work folder reuses its references. Minutes where the bench takes an hour;
the bench stays the reference for published figures (it also times the networks).

    python benchmarks/fip_weights_check.py pencil src/convpress/weights/fip/pencil.safetensors \\
        /path/to/new/pencil.safetensors --work-dir /tmp/fipbench
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from convpress.bench.fip import _reference, test_photos
from convpress.fip.apply import apply_network
from convpress.fip.operators import operator_names
from convpress.fip.train import psnr
from convpress.fip.weights import load_network


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("operator", choices=operator_names())
    p.add_argument("weights", nargs="+", help="weights files of networks for OPERATOR")
    p.add_argument("--work-dir", help="cache of the references (the bench's --work-dir)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    nets = {w: load_network(w)[0] for w in args.weights}  # fails early on a bad file
    cache = Path(args.work_dir) if args.work_dir else None
    gains: dict[str, list[float]] = {w: [] for w in nets}
    psnrs: dict[str, list[float]] = {w: [] for w in nets}
    inputs = []
    for name, img in test_photos().items():
        ref, _ = _reference(args.operator, img, cache)
        base = psnr(img, ref)
        inputs.append(base)
        line = [f"{name[:24]:24s} input {base:5.2f}"]
        for w, net in nets.items():
            got = psnr(apply_network(net, img), ref)
            psnrs[w].append(got)
            gains[w].append(got - base)
            line.append(f"{got:5.2f}")
        print(" | ".join(line), flush=True)
    print(f"{len(inputs)} photos, input {sum(inputs) / len(inputs):.2f} dB")
    for w in nets:
        n = len(gains[w])
        print(f"{w}: PSNR {sum(psnrs[w]) / n:.2f} dB, gain {sum(gains[w]) / n:+.2f} dB (worst photo {min(gains[w]):+.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
