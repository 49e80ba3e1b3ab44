"""How many latents fall outside the coder's tables, and what clamping them cost, per test photo and level.

The Gaussian conditional's tables cover a range of about 6 predicted standard deviations. Format
version 3 clamped a latent beyond its table to the table's edge (encoder and decoder agree, so the
stream stays exact, but the decoded latent is not the one the encoder meant); version 4 (the
default) escapes it and codes it exactly. This prints, for each photo and level, the latents
outside the tables, their largest distance, the bytes and PSNR of the real file's decode in both
versions, and the PSNR of the model's forward pass in eval mode (the same rounding, no table):

    python benchmarks/codec_clamped_symbols.py Infinite-Sea_by_Aury88 Picture_0B_by_freespace Kleiber_by_Lukas_Baubkus
    python benchmarks/codec_clamped_symbols.py Infinite-Sea_by_Aury88 --folder /path/to/weights   # other weights

Photos: the test set of ``convpress.data.photos.held_out_photos`` (long side 768).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from convpress.codec.bitstream import pad_image
from convpress.codec.weights import at_quality, load_weights, variable_rate_candidates
from convpress.data.photos import held_out_photos


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / float(((a.clamp(0, 1) - b) ** 2).mean()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", help="names of test photos (file stems)")
    p.add_argument("--folder", help="a folder of variable-rate weights files (default: the shipped ones)")
    args = p.parse_args(argv)
    names = args.photos
    torch.set_num_threads(2)
    photos = held_out_photos()
    files = {path for paths in variable_rate_candidates("varrate", args.folder).values() for path in paths}
    nets = {path: load_weights(path) for path in sorted(files)}
    for name in names:
        x = photos[name]
        h, w = x.shape[1:]
        xp = pad_image(x, 64)
        for path, (net, meta) in nets.items():
            for q in (int(k) for k in json.loads(meta["levels"])):
                model, _ = at_quality(net, meta, q)
                model.eval()
                with torch.no_grad():
                    coded = {}
                    for escape in (False, True):
                        enc = model.compress(xp, escape=escape)
                        dec = model.decompress(enc["strings"], enc["shape"], escape=escape)
                        size = sum(len(s[0]) for s in enc["strings"])
                        coded[escape] = (size, _psnr(dec["x_hat"][0, :, :h, :w], x), dec["symbols"])
                    y = model.g_a(xp)
                    z_q = model.entropy_bottleneck.compress(model.hyper_analysis(y))[1]
                    # the unclamped symbols (with the checkerboard context, its second pass sees the unclamped anchors)
                    want = model.quantise_latents(model.to_coded(y), model.entropy_bottleneck.dequantize(z_q), torch.round)[0]
                    diff = coded[False][2].float() - want
                    forward = model(xp)["x_hat"][0, :, :h, :w]
                (b3, p3, _), (b4, p4, _) = coded[False], coded[True]
                print(
                    f"{name} {path.name} q{q}: {int((diff != 0).sum())} of {diff.numel()} latents outside the tables "
                    f"(by up to {float(diff.abs().max()):.0f}); version 3 (clamped) {b3} bytes {p3:.2f} dB, "
                    f"version 4 (escaped) {b4} bytes {p4:.2f} dB, forward pass {_psnr(forward, x):.2f} dB",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
