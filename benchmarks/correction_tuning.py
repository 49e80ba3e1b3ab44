"""Tuning of the synthesis correction (:mod:`convpress.codec.correction`) on training photos: the change of the
rate-distortion loss ``lambda * 255^2 * MSE + bpp`` against format 4 (effort 0) of variants of its fit.

Eight Debian wallpapers that are training photos (never test photos), at long side 768 or, with ``--crop N``,
their central N x N pixels at their own resolution (every other one of the eight). Variants: the modes tried
(1, 2: 1x1 maps shared or per phase; 3, 4: 3x3 maps; 5: a cross of five positions per phase), per-row
quantisation steps scaled by each feature's energy (an oracle: the decoder would need the scales), and the
ridge term. What it measured (2026-12-07) is recorded in README's "Synthesis correction".

    python benchmarks/correction_tuning.py 3,6,9
    python benchmarks/correction_tuning.py 9 --crop 1024
"""

import argparse
import json
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from codec_weights_check import _level_models

from convpress.codec import correction as corr
from convpress.codec.bitstream import pad_image
from convpress.codec.overfit import param_cost, quantize_group
from convpress.codec.weights import WEIGHTS_DIR
from convpress.data.images import read_image
from convpress.data.photos import DEBIAN_TRAIN_WALLPAPERS, resize_long_side

torch.set_num_threads(2)
ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("levels", help="comma-separated levels, e.g. 3,6,9")
ap.add_argument("--crop", type=int, help="central N x N pixels at native resolution instead of long side 768")
args = ap.parse_args()
levels = [int(v) for v in args.levels.split(",")]
NAMES = ["ColorfulCups", "FallenLeaf", "Path", "Volna", "Dune", "GreenMeadow", "LadyBird", "Wood"]
walls = [p for p in DEBIAN_TRAIN_WALLPAPERS if any(n in str(p) for n in NAMES)]
if args.crop:
    walls = walls[::2]
nets = dict(_level_models(str(WEIGHTS_DIR), "varrate"))


def design(f, h, w, a, b, taps):
    """rows for phase (a,b): features at (m+dm, n+dn) for (dm,dn) in taps, zero padded, + ones."""
    C, Hf, Wf = f.shape
    hh, ww = len(range(a, h, 2)), len(range(b, w, 2))
    fp = F.pad(f, (1, 1, 1, 1))
    cols = [fp[:, 1 + dm : 1 + dm + hh, 1 + dn : 1 + dn + ww].reshape(C, -1) for dm, dn in taps]
    X = torch.cat(cols + [torch.ones(1, hh * ww, dtype=f.dtype)])
    return X


def fit(f, out, x, h, w, lmbda, modes, ridge=1e-4, scaled=False):
    f = f[0].double()
    r_all = x[0].double() - out[0].double()
    npx = h * w
    count = 3 * npx
    sys_cache = {}
    for a, b in corr.PHASES:
        r = r_all[:, a:h:2, b:w:2].reshape(3, -1)
        sys_cache[(a, b)] = r
    sse0 = float(sum((r * r).sum() for r in sys_cache.values()))
    best = (lmbda * 255**2 * sse0 / count, None)
    for mode in modes:
        shared, taps = {
            "1": (True, [(0, 0)]),
            "2": (False, [(0, 0)]),
            "3": (True, [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]),
            "4": (False, [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]),
            "5": (False, [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)]),
        }[mode]
        parts = []
        for a, b in corr.PHASES:
            X = design(f, h, w, a, b, taps)
            r = sys_cache[(a, b)]
            parts.append((X @ X.T, X @ r.T, (r * r).sum(1)))
        if shared:
            parts = [tuple(sum(p[i] for p in parts) for i in range(3))]
        sols = []
        for A, B, _rr in parts:
            mu = ridge * float(A.diagonal().mean())
            sols.append(torch.linalg.solve(A + mu * torch.eye(A.shape[0], dtype=A.dtype), B))
        sol = torch.stack(sols)
        scale = torch.ones_like(sol)
        if scaled:  # oracle per-row scale: step proportional to 1/sqrt(A_ii)
            d = torch.stack([p[0].diagonal() for p in parts])  # (P, R)
            s = (d / d.mean(1, keepdim=True)).clamp_min(1e-12) ** -0.5
            scale = s[..., None].expand_as(sol)
        for k in range(2, 18):
            (ints,) = quantize_group([sol / scale], k)
            j, bits = param_cost([ints])
            if j < 0:
                continue
            wq = ints * 2.0**-k * scale
            sse = sum(float((rr - 2 * (wp * B).sum(0) + (wp * (A @ wp)).sum(0)).sum()) for wp, (A, B, rr) in zip(wq, parts, strict=False))
            loss = lmbda * 255**2 * max(sse, 0) / count + (bits + 44) / npx
            if loss < best[0]:
                best = (loss, (mode, k, sol.numel()))
    return best


variants = {
    "cur": dict(modes="12"),
    "scaled": dict(modes="12", scaled=True),
    "+3x3": dict(modes="1234"),
    "+cross": dict(modes="125"),
    "ridge1e-3": dict(modes="12", ridge=1e-3),
    "ridge1e-5": dict(modes="12", ridge=1e-5),
}
if args.crop:  # the 3x3 fits of a megapixel take minutes each: the two that matter
    variants = {"cur": variants["cur"], "+3x3": variants["+3x3"]}
for level in levels:
    net = nets[level]
    tot = {v: 0.0 for v in variants}
    base_tot = 0.0
    picks = {v: [] for v in variants}
    for p in walls:
        x = read_image(p)
        if args.crop:
            hh, ww = x.shape[1:]
            top, left = (hh - args.crop) // 2, (ww - args.crop) // 2
            x = x[:, top : top + args.crop, left : left + args.crop].contiguous()
        else:
            x = resize_long_side(x, 768)
        h, w = x.shape[1:]
        xp = pad_image(x, net.stride)
        enc = net.compress(xp, effort=0)
        bits = 8 * sum(len(s) for st in enc["strings"] for s in st)
        with torch.no_grad(), corr.captured(net) as seen:
            net.decompress(enc["strings"], enc["shape"])
        mse0 = float(((seen["out"].clamp(0, 1)[0, :, :h, :w] - x) ** 2).mean())
        base = net.lmbda * 255**2 * mse0 + bits / (h * w)
        base_tot += base
        for v, kw in variants.items():
            loss_v, pick = fit(seen["features"], seen["out"], xp, h, w, net.lmbda, **kw)
            # loss_v uses unclamped sse; shift to the clamped base
            l0 = fit(seen["features"], seen["out"], xp, h, w, net.lmbda, modes="")[0]
            tot[v] += base + (loss_v - l0)
            picks[v].append(pick)
    print(f"level {level}: " + " | ".join(f"{v} {100 * (tot[v] / base_tot - 1):+.2f}%" for v in variants), flush=True)
    print("  picks", json.dumps({v: picks[v] for v in ("cur", "+3x3")}), flush=True)
