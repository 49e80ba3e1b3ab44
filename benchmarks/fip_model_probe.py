"""Capacity probe for choosing a fip model per operator: can the model imitate the operator on one photo?

    python benchmarks/fip_model_probe.py OPERATOR MODEL [STEPS] [--kwargs "eps=1e-6"]

Overfits ``MODEL`` (e.g. gf-can24, gf-can24-res) on a single training pair, the bundled TRAIN photo
astronaut at long side 384 (never a test photo), for ``STEPS`` Adam steps, and prints the PSNR of
the network against the operator beside the untouched input's. A model that cannot even overfit
one photo lacks the capacity for the operator; one that can but then fails on the test photos
lacks the information (e.g. whole-image statistics that crops do not show). One thread.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    import torch
    import torch.nn.functional as F

    from convpress.data.photos import bundled_photo, resize_long_side
    from convpress.fip.apply import run_reference
    from convpress.fip.train import psnr
    from convpress.models import create_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("operator")
    ap.add_argument("model")
    ap.add_argument("steps", type=int, nargs="?", default=300)
    ap.add_argument("--kwargs", default="", help='model arguments, e.g. "eps=1e-6"')
    args = ap.parse_args()
    kwargs = {k: float(v) for k, v in (kv.split("=") for kv in args.kwargs.split(",") if kv)}
    torch.set_num_threads(1)
    x = resize_long_side(bundled_photo("astronaut"), 384)
    y = run_reference(args.operator, x)
    torch.manual_seed(0)
    model = create_model(args.model, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    t0 = time.time()
    for _ in range(args.steps):
        loss = F.mse_loss(model(x[None]), y[None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x[None])[0].clamp(0, 1)
    print(
        f"{args.operator} {args.model} {kwargs or ''} {args.steps} steps: network {psnr(out, y):.2f} dB, "
        f"input {psnr(x, y):.2f} dB, {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
