"""Build the shipped ``pencil`` network (``gf-can24-tex``) from a ``gf-can24-res`` trained on flat tones.

The pencil drawing hatches its tones with a texture tile repeated over the image
(:func:`convpress.fip.operators.pencil.pencil_texture`). No convolution of the photo can know that
texture, so a network trained on the hatched output learns its mean and stays near 20 dB. Instead:

1. train ``gf-can24-res`` on the operator with ``texture=False`` (the drawing with flat tones)::

       python benchmarks/train_fip_weights.py --operators pencil --model gf-can24-res --param texture=false ...

2. wrap it here: the same weights in a ``gf-can24-tex`` whose exponent tile is
   :func:`~convpress.fip.operators.pencil.pencil_exponent`, which puts the hatching back::

       python benchmarks/make_textured_pencil.py BASE.safetensors OUT.safetensors

The wrapped network is checked against the hatched operator (``benchmarks/fip_weights_check.py pencil OUT``).
"""

from __future__ import annotations

import argparse
import sys

import torch

from convpress.fip.operators.pencil import TEXTURE_TILE, pencil_exponent
from convpress.fip.weights import load_network, save_network
from convpress.models import create_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base", help="gf-can24-res weights trained on pencil with texture=false")
    p.add_argument("out", help="where to write the gf-can24-tex network")
    args = p.parse_args(argv)
    base, info = load_network(args.base)
    if info["model"] != "gf-can24-res" or info["operator"] != "pencil" or info["operator_params"].get("texture") is not False:
        got = f"{info['model']} for {info['operator']} {info['operator_params']}"
        sys.exit(f"{args.base} is a {got}; want gf-can24-res for pencil, texture=false")
    kwargs = {**info["model_kwargs"], "tile": TEXTURE_TILE, "grey": True}  # the drawing is grey
    model = create_model("gf-can24-tex", **kwargs)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["exponent"] and not unexpected, (missing, unexpected)
    with torch.no_grad():
        model.exponent.copy_(torch.from_numpy(pencil_exponent()))
    extra = {k: v for k, v in info.items() if k not in ("model", "model_kwargs", "operator", "operator_params")}
    extra["base"] = "gf-can24-res trained on pencil with texture=false; exponent tile from pencil_exponent()"
    save_network(model, args.out, model_name="gf-can24-tex", operator="pencil", model_kwargs=kwargs, extra=extra)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
