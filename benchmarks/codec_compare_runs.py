"""Per photo, how the codec's effort-0 curve of one `bench codec` run compares with another's.

    git show HEAD~1:benchmarks/results/codec.json > old.json
    python benchmarks/codec_compare_runs.py old.json benchmarks/results/codec.json

Prints, for every photo both runs measured, the BD-rate (PSNR, PCHIP) of the second run's curve
against the first's over the interval both cover, and each curve's top point: a change of
weights that helps on average can still hurt some photos, which the mean curves of the bench hide.
"""

from __future__ import annotations

import json
import sys

from convpress.codec.metrics import bd_rate


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (json.load(open(a))["points"]["ours"] for a in args)
    levels_old = sorted(old, key=lambda k: int(k[1:]))
    levels_new = sorted(new, key=lambda k: int(k[1:]))
    names = [p["image"] for p in new[levels_new[0]]]
    for i, name in enumerate(names):
        a = [(old[q][i]["bpp"], old[q][i]["psnr"]) for q in levels_old]
        b = [(new[q][i]["bpp"], new[q][i]["psnr"]) for q in levels_new]
        bd = bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in b], [p[1] for p in b])
        print(f"{name:40s} BD {bd:+6.1f}%   top: {a[-1][0]:.3f} bpp {a[-1][1]:.2f} dB -> {b[-1][0]:.3f} bpp {b[-1][1]:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
