"""Latent refinement in float32 and in bfloat16 on the same crops: gain and time of each.

    python benchmarks/refine_bf16.py

Three 384x256 crops of test photos (rocket, Kleiber, Wine; never trained on), levels 2 and 6 of
the shipped variable-rate model, 30 iterations, one thread. Prints each crop's loss before and
after refinement and the seconds taken, in both precisions, then the mean gain and the time ratio.
The figures in ``convpress.codec.refine.refine_latents``' docstring and the README come from it.
"""

from __future__ import annotations

import time

import torch

from convpress.codec.bitstream import pad_image
from convpress.codec.refine import refine_latents
from convpress.codec.weights import pretrained
from convpress.data.photos import held_out_photos

PHOTOS = ("rocket", "Kleiber_by_Lukas_Baubkus", "Wine_by_Jakkub_Mede")
LEVELS = (2, 6)


def main() -> int:
    torch.set_num_threads(1)
    photos = held_out_photos()
    gains: dict[bool, list[float]] = {False: [], True: []}
    seconds: dict[bool, float] = {False: 0.0, True: 0.0}
    for name in PHOTOS:
        x = pad_image(photos[name][:, :256, :384], 64)
        for q in LEVELS:
            net, _ = pretrained(q, "varrate")
            with torch.no_grad():
                y = net.g_a(x)
                z = net.hyper_analysis(y)
                y = net.to_coded(y)
            for bf16 in (False, True):
                t = time.perf_counter()
                r = refine_latents(net, x, y, z, iterations=30, lmbda=float(net.lmbda or 0), bf16=bf16)
                seconds[bf16] += time.perf_counter() - t
                gains[bf16].append(r.loss_after / r.loss_before - 1)
                print(
                    f"{name} q{q} {'bf16' if bf16 else 'fp32'}: {r.loss_before:.4f} -> {r.loss_after:.4f} ({100 * gains[bf16][-1]:+.2f}%)"
                )
    for bf16 in (False, True):
        print(f"{'bf16' if bf16 else 'fp32'}: mean {100 * sum(gains[bf16]) / len(gains[bf16]):+.2f}% of the loss, {seconds[bf16]:.1f} s")
    print(f"time bf16 / fp32: {seconds[True] / seconds[False]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
