"""Encode and decode time with glibc's default malloc settings (A) and with freed memory kept (B),
in alternating processes (a process-wide setting can only be compared across processes).

    python benchmarks/malloc_ab.py [--rounds 4]

glibc serves blocks above its mmap threshold (at most 32 MB by its dynamic rule) with fresh
``mmap`` pages and returns them to the OS on ``free``, so every large temporary of the codec's
transforms (a (1, 96, 256, 384) float32 activation is 38 MB) is page-faulted in again, zeroed by
the kernel, on each use. B sets ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` to 1 GiB with
``mallopt`` (:func:`convpress.core.cpu.keep_freed_memory`, what the ``convpress`` program does)
before the work. Each child process times, after a warm-up on a 256x256 crop, the encode at efforts
0 and 10 (``--efforts``) and the decode of one photo at levels 2, 6 and 9 (``--levels``; the narrow,
mid and top weights of the variable-rate default), 2 threads, in tiles of 1024 like the command
line; the parent runs A and B alternately ``--rounds`` times each and prints per level and operation
the fastest and the median time of each and B's fastest over A's, and the processes' peak RSS. The
photo is opencv-doc's building.jpg (``/usr/share/doc/opencv-doc/examples/data``, a training photo of
the codec, not a test photo) at long side 768, cropped to 768x512 (the size of ``bench codec``'s
speed photo), or ``--photo`` as it is.

Measured on 2026-12-06 (AMD EPYC, 2 cores, glibc 2.36), B/A of the fastest times::

    building.jpg, 6 rounds (levels 2 / 6 / 9):
        encode e0 0.87 / 0.80 / 1.03   encode e10 0.85 / 0.89 / 0.98   decode 0.95 / 0.96 / 0.98   peak RSS 1032 -> 1042 MB
        (an earlier version, warming up on the whole photo: e0 0.96 / 0.93 / 0.92, e10 0.88 / 0.89 / 0.89, decode 0.93 / 0.97 / 0.88)
    --photo /usr/share/wallpapers/Volna/contents/images/5120x2880.jpg (plasma-workspace-wallpapers) --levels 6 --efforts 0 --rounds 2:
        encode e0 0.84   decode 0.78   peak RSS 1384 -> 1682 MB
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PHOTO = Path("/usr/share/doc/opencv-doc/examples/data/building.jpg")
LEVELS = "2,6,9"
EFFORTS = "0,10"


def child(keep: bool, photo: Path | None, levels: list[int], efforts: list[int]) -> None:
    """Time one round in this process and print it as JSON ({"<op> q<level>": seconds, "peak_rss_mb": MB})."""
    import resource

    import torch

    from convpress.codec.bitstream import decode_image, encode_image
    from convpress.codec.weights import pretrained
    from convpress.core.cpu import keep_freed_memory
    from convpress.data.images import read_image
    from convpress.data.photos import resize_long_side

    if keep and not keep_freed_memory():
        raise SystemExit("mallopt is not available here (not glibc)")
    torch.set_num_threads(2)
    x = read_image(photo) if photo else resize_long_side(read_image(PHOTO), 768)[:, :512, :768]
    out: dict[str, float] = {}
    for q in levels:
        model, meta = pretrained(q)
        encode_image(x[:, :256, :256], model, quality=q, weights_id=meta["weights_id"], effort=1)  # warm-up
        data = b""
        for effort in efforts:
            t = time.perf_counter()
            data = encode_image(x, model, quality=q, weights_id=meta["weights_id"], effort=effort)
            out[f"encode e{effort} q{q}"] = time.perf_counter() - t
        t = time.perf_counter()
        decode_image(data, resolver=lambda *_, m=model, d=meta: (m, d))
        out[f"decode q{q}"] = time.perf_counter() - t
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4, help="processes of each kind (default 4)")
    p.add_argument("--photo", type=Path, help="a photo to code as it is (default: building.jpg at 768x512)")
    p.add_argument("--levels", default=LEVELS, help=f"levels, comma-separated (default {LEVELS})")
    p.add_argument("--efforts", default=EFFORTS, help=f"encoder efforts, comma-separated (default {EFFORTS})")
    p.add_argument("--child", choices=("A", "B"), help=argparse.SUPPRESS)
    args = p.parse_args()
    levels, efforts = [int(v) for v in args.levels.split(",")], [int(v) for v in args.efforts.split(",")]
    if args.child:
        child(args.child == "B", args.photo, levels, efforts)
        return 0
    if not (args.photo or PHOTO).is_file():
        raise SystemExit(f"{args.photo or PHOTO} is missing" + ("" if args.photo else ": apt-get install opencv-doc"))
    forwarded = ["--levels", args.levels, "--efforts", args.efforts, *(["--photo", str(args.photo)] if args.photo else [])]
    times: dict[str, dict[str, list[float]]] = {"A": {}, "B": {}}  # and the peak RSS
    for r in range(args.rounds):
        for k in ("A", "B") if r % 2 == 0 else ("B", "A"):
            run = subprocess.run([sys.executable, __file__, "--child", k, *forwarded], capture_output=True, text=True, check=True)
            for op, s in json.loads(run.stdout.strip().splitlines()[-1]).items():
                times[k].setdefault(op, []).append(s)
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    for op in times["A"]:
        a, b = sorted(times["A"][op]), sorted(times["B"][op])
        if op == "peak_rss_mb":
            print(f"peak RSS         A {a[-1]:.0f} MB  B {b[-1]:.0f} MB (the largest of the processes)")
            continue
        print(f"{op:16s} A {a[0]:.3f} s (median {a[len(a) // 2]:.3f})  B {b[0]:.3f} s (median {b[len(b) // 2]:.3f})  B/A {b[0] / a[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
