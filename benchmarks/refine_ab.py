"""Encode time of two versions of the latent refinement, interleaved in one process (an A/B).

    git show REV:src/convpress/codec/refine.py > /tmp/refine_a.py
    python benchmarks/refine_ab.py /tmp/refine_a.py src/convpress/codec/refine.py [--effort 10]

Loads each file as its own module and encodes the same photo with the installed codec at levels
2, 6 and 9 (the narrow, mid and top weights of the variable-rate default), alternating A and B
four times each, 2 threads; prints per level the fastest and the median encode time of each, the
file sizes, and B's fastest time over A's. Interleaving in one process keeps this machine's drift
out of the ratio. The photo is opencv-doc's building.jpg (``/usr/share/doc/opencv-doc/examples/data``,
a training photo of the codec, not a test photo) at long side 768, cropped to 768x512: the size of
``bench codec``'s speed photo.

Measured on 2026-12-06 (AMD EPYC with AVX512-BF16, 2 cores), effort 10, A = session 28's refine.py
(bfloat16 synthesis in the iterations, float32 before/after comparison, two Gumbel draws per latent
and context pass), B = the comparison and the context model in bfloat16 too, one logistic draw per
latent and iteration::

    level 2: B/A 0.86   level 6: B/A 0.83   level 9: B/A 0.79   (1.46 -> 1.26, 3.24 -> 2.69, 3.52 -> 2.77 s)
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

PHOTO = Path("/usr/share/doc/opencv-doc/examples/data/building.jpg")
LEVELS = (2, 6, 9)
REPEATS = 4


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    import torch

    import convpress.codec.models.hyperprior as hyperprior
    from convpress.codec.bitstream import encode_image
    from convpress.codec.weights import pretrained
    from convpress.data.images import read_image
    from convpress.data.photos import resize_long_side

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="refine.py of version A")
    p.add_argument("b", type=Path, help="refine.py of version B")
    p.add_argument("--effort", type=int, default=10, help="refinement iterations (default 10, the command line's default)")
    args = p.parse_args()
    if not PHOTO.is_file():
        raise SystemExit(f"{PHOTO} is missing: apt-get install opencv-doc")
    versions = {"A": _load(args.a, "_refine_a"), "B": _load(args.b, "_refine_b")}
    torch.set_num_threads(2)
    x = resize_long_side(read_image(PHOTO), 768)[:, :512, :768]
    for q in LEVELS:
        model, meta = pretrained(q)
        encode_image(x, model, quality=q, weights_id=meta["weights_id"], effort=1)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in versions}
        sizes: dict[str, int] = {}
        for _ in range(REPEATS):
            for k, module in versions.items():
                hyperprior.refine_latents = module.refine_latents  # type: ignore[attr-defined]
                t = time.perf_counter()
                data = encode_image(x, model, quality=q, weights_id=meta["weights_id"], effort=args.effort)
                times[k].append(time.perf_counter() - t)
                sizes[k] = len(data)
        fastest = {k: min(v) for k, v in times.items()}
        median = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        print(
            f"level {q}: A {fastest['A']:.2f} s (median {median['A']:.2f}), {sizes['A']:,} B; "
            f"B {fastest['B']:.2f} s (median {median['B']:.2f}), {sizes['B']:,} B; B/A {fastest['B'] / fastest['A']:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
