"""How many latents the coder clamps, and what that costs, per test photo and shipped level.

The Gaussian conditional's tables cover a range of about 5 predicted standard deviations; a latent
beyond its table is clamped to the table's edge (encoder and decoder agree, so the stream stays
exact, but the decoded latent is not the one the encoder meant). This prints, for each photo and
level, the clamped symbols, their largest change, the PSNR of the real file's decode, and the
PSNR of the model's forward pass in eval mode (the same rounding, no clamp):

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
                    enc = model.compress(xp)
                    dec = model.decompress(enc["strings"], enc["shape"])
                    y = model.g_a(xp)
                    z_q = model.entropy_bottleneck.compress(model.hyper_analysis(y))[1]
                    want = torch.round(model.to_coded(y) - model.y_means(model.entropy_bottleneck.dequantize(z_q)))
                    diff = dec["symbols"].float() - want
                    forward = model(xp)["x_hat"][0, :, :h, :w]
                print(
                    f"{name} {path.name} q{q}: {int((diff != 0).sum())} of {diff.numel()} symbols clamped "
                    f"(by up to {float(diff.abs().max()):.0f}); file {_psnr(dec['x_hat'][0, :, :h, :w], x):.2f} dB, "
                    f"forward pass {_psnr(forward, x):.2f} dB",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
