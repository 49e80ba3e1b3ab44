"""The shipped variable-rate levels on images outside the test set: each level of each weights
file (not only the one that encodes it), beside WebP (method 6), per image.

    python benchmarks/codec_unseen_images.py Altai Kite MilkyWay Canopee Cascade Shell

Images: KDE wallpapers from Debian's ``plasma-workspace-wallpapers`` (``/usr/share/wallpapers/NAME``,
the largest size, long side 1024), mostly digital art, none of them trained on (the training
wallpapers are listed in ``convpress.data.photos.DEBIAN_TRAIN_WALLPAPERS``). Prints ``FILE LEVEL:
bpp/PSNR`` for the narrow ``varrate.safetensors`` (saf) levels 4-7 and ``varrate-mid.safetensors``
(mid) levels 5-7, then WebP at qualities 50-90.
"""

import glob
import io
import sys

import numpy as np
import torch
from PIL import Image

from convpress.codec.bitstream import decode_image, encode_image
from convpress.codec.metrics import psnr
from convpress.codec.weights import at_quality, load_weights


def main(names: list[str]) -> int:
    """Print the levels and WebP's points for each KDE wallpaper in ``names``."""
    torch.set_num_threads(2)
    nets = {f: load_weights("src/convpress/weights/codec/" + f) for f in ("varrate.safetensors", "varrate-mid.safetensors")}
    for name in names:
        f = sorted(glob.glob(f"/usr/share/wallpapers/{name}/contents/images/*"))[-1]
        im = Image.open(f).convert("RGB")
        im.thumbnail((1024, 1024), Image.LANCZOS)
        a = np.asarray(im).copy()
        x = torch.from_numpy(a).permute(2, 0, 1).float() / 255
        pts = {}
        for fn, (net, meta) in nets.items():
            for q in (4, 5, 6, 7) if fn.startswith("varrate.") else (5, 6, 7):
                n, m = at_quality(net, meta, q)
                d = encode_image(x, n, quality=q, weights_id=m["weights_id"])
                y, _ = decode_image(d, resolver=lambda nm, qq, n=n, m=m: (n, m))
                yy = (y.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
                pts[(fn[8:11], q)] = (8 * len(d) / (a.shape[0] * a.shape[1]), psnr(yy, a))
        web = []
        for q in (50, 60, 70, 80, 90):
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, "WEBP", quality=q, method=6)
            yv = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            web.append((8 * buf.tell() / (a.shape[0] * a.shape[1]), psnr(yv, a)))
        print(
            name,
            a.shape[:2],
            " ".join(f"{k[0]}{k[1]}:{v[0]:.3f}/{v[1]:.2f}" for k, v in pts.items()),
            "| webp",
            " ".join(f"{b:.3f}/{p:.2f}" for b, p in web),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/codec_unseen_images.py NAME [NAME ...] (folders of /usr/share/wallpapers)")
    sys.exit(main(sys.argv[1:]))
