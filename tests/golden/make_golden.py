"""Write the golden files that tests/golden/test_golden.py compares the current code against.

Run once, at a commit whose behaviour is the reference (it was run at 2b0aac0, before the
ground-floor refactoring of issue 16), with two threads::

    OMP_NUM_THREADS=2 python tests/golden/make_golden.py

It writes, next to this script:

* ``lenet5-{ans,huffman,none}.cpz``: a seeded LeNet-5, pruned and weight-shared, saved with each coder;
* ``hyperprior-q{1..6}.cpi`` and ``hyperprior-q3-v2.cpi``: a 64x96 crop of the test photo
  ``coffee`` encoded with every shipped quality level (and once in the legacy layout), with
  ``*.png`` of their decoded pixels;
* ``varrate-q{1..7}.cpi`` and ``.png``: the same crop with every level of the shipped variable-rate
  model (added 2026-12-05 with its weights, ``--new-varrate``);
* ``varrate-q{5,6,7}-60db9802.cpi`` and ``.png``: the files of levels 5-7 of ``varrate.safetensors``
  (weights 60db9802), renamed by hand when ``varrate-mid.safetensors`` took those levels over
  (2026-12-05): they must keep decoding with the main file's levels;
* ``varrate-q{1..4}-60db9802``, ``varrate-q{5,6,7}-3d807ad8`` and ``varrate-q{8,9,10}-420ae7d5`` (``.cpi``
  and ``.png``): the files of every level's weights before their decoder-only fine-tunes (stage 16 of
  ``benchmarks/train_codec_weights.py``), renamed by hand when those took over; the old weights moved
  to ``legacy-weights`` and must keep decoding them to the same pixels (``--new-varrate``, ``--new-v3``
  and ``escape_goldens`` then wrote the files of the new weights);
* ``varrate-q{1..4}-32359fa2``, ``varrate-q{5,6,7}-03687bfa`` and ``varrate-q{8,9,10}-112fa825``: the
  same for the decoder-only weights, renamed when their int8 rewrites (stage 18, 2026-12-06) took over;
  ``--new-varrate``, ``--new-v3`` and ``escape_goldens`` wrote the files of the int8 weights (the
  colorwheel crop still has escaped latents at level 7: 42.4 dB in version 4, 40.3 in version 3);
* ``varrate-q{1..4}-94fbf7c8``, ``varrate-q{5,6,7}-4188d64d`` and ``varrate-q{8,9,10}-0f401ba0``: the
  same for the int8 weights, renamed when their checkerboard-context fine-tunes (stage 19, 2026-12-06)
  took over; ``--new-varrate``, ``--new-v3`` and ``escape_goldens`` wrote the files of the context weights;
* ``varrate-q{1..4}-45858f0d``, ``varrate-q{5,6,7}-d6d9c683`` and ``varrate-q{8,9,10}-747ed109``: the
  same for the checkerboard-context weights, renamed when their channel-context fine-tunes (stage 20,
  2026-12-06) took over; the same three commands wrote the files of the channel-context weights;
* ``varrate-q{1..4}-2aa6738a``: the channel-context files of levels 1-4, renamed when the encoder-only
  fine-tune (stage 21, weights d2749151, 2026-12-07) took over; no legacy copy: the new file keeps
  2aa6738a's decoder byte for byte and names it in its metadata ``decodes``, so it decodes them itself;
  the same three commands wrote the new files (levels 5-10 and the escaped file came out byte for byte
  as before);
* ``hyperprior-q*-v3.cpi`` and ``varrate-q*-v3.cpi`` (and ``.png``): the files of format version 3
  (latents clamped to the tables), renamed by hand from ``MODEL-qQ.cpi`` when format version 4
  (escaped latents) became the default (2026-12-05, ``--new-format`` then wrote the version-4
  files): they must keep decoding to the same pixels, and ``version=3`` must still write them;
* ``varrate-q7-escaped.cpi`` and ``.png``: a 64x96 crop of the synthetic ``colorwheel`` at level 7,
  a version-4 file with latents outside the coder's tables (escaped; ``--new-format``);
* ``fip-{operator}.png``: every shipped fip network applied to a 64x96 crop of ``rocket``;
* ``training.json``: loss histories of short, seeded runs of the three training loops. Its
  ``finetune`` entry alone was re-measured when ``load_mnist`` began to return its digits in a
  seeded shuffled order (the 256 digits it trains on had all been zeros); on the old order the
  loop still gave the reference history just before, so only the data changed.

Test photos only (``coffee``, ``rocket``), never trained on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def lenet5() -> torch.nn.Module:
    import convpress as cp

    torch.manual_seed(0)
    model = cp.create_model("lenet-5")
    cp.prune_(model, {"conv1": 0.4, "conv2": 0.9, "fc1": 0.97, "fc2": 0.8})
    cp.quantize_(model, cp.bits_by_type(model, conv=5, linear=4))
    return model


def coffee_crop() -> torch.Tensor:
    from convpress.data.photos import bundled_photo

    return bundled_photo("coffee")[:, 100:164, 200:296].contiguous()  # (3, 64, 96)


def colorwheel_crop() -> torch.Tensor:
    """(3, 64, 96) of the synthetic ``colorwheel``, whose latents the variable-rate model's level 7
    (varrate-mid 3d807ad8, and its decoder-only fine-tune, which codes the same latents) predicts badly:
    some fall outside the coder's tables (escaped in format version 4, clamped in version 3: 42.2 vs
    40.6 dB with 3d807ad8)."""
    from convpress.data.photos import bundled_photo

    return bundled_photo("colorwheel")[:, 128:192, 144:240].contiguous()


def escape_goldens() -> None:
    """Write ``varrate-q7-escaped.cpi``/``.png``: ``colorwheel_crop`` at level 7 in format version 4,
    a file with escaped latents (``python tests/golden/make_golden.py --new-format``)."""
    from convpress.codec.bitstream import decode_image, encode_image
    from convpress.codec.weights import pretrained
    from convpress.data.images import write_image

    torch.set_num_threads(2)
    m, meta = pretrained(7, "varrate")
    data = encode_image(colorwheel_crop(), m, quality=7, weights_id=meta["weights_id"], version=4)
    (HERE / "varrate-q7-escaped.cpi").write_bytes(data)
    write_image(HERE / "varrate-q7-escaped.png", decode_image(data)[0], overwrite=True)


def version3_goldens(model: str = "varrate") -> None:
    """Write ``MODEL-q*-v3.cpi``/``.png``: ``coffee_crop`` with every shipped level of ``model`` in
    format version 3, for new weights of those levels (``python tests/golden/make_golden.py --new-v3``;
    levels whose weights did not change get the same bytes again)."""
    from convpress.codec.bitstream import decode_image, encode_image
    from convpress.codec.weights import available_qualities, pretrained
    from convpress.data.images import write_image

    torch.set_num_threads(2)
    for q in available_qualities(model):
        m, meta = pretrained(q, model)
        data = encode_image(coffee_crop(), m, quality=q, weights_id=meta["weights_id"], version=3)
        (HERE / f"{model}-q{q}-v3.cpi").write_bytes(data)
        write_image(HERE / f"{model}-q{q}-v3.png", decode_image(data)[0], overwrite=True)


def rocket_crop() -> torch.Tensor:
    from convpress.data.photos import bundled_photo

    return bundled_photo("rocket")[:, 150:214, 200:296].contiguous()  # (3, 64, 96)


def training_runs(tmp: Path) -> dict[str, list[float]]:
    """Loss histories of a few seeded steps of finetune, fip training and codec training."""
    from torch.utils.data import DataLoader, Subset

    import convpress as cp
    from convpress.codec.train import CodecTrainConfig as CodecConfig
    from convpress.codec.train import train_codec
    from convpress.data.mnist import load_mnist
    from convpress.data.photos import bundled_photo
    from convpress.fip.pairs import build_pairs
    from convpress.fip.train import FipTrainConfig as FipConfig
    from convpress.fip.train import train as train_fip

    out: dict[str, list[float]] = {}
    torch.manual_seed(0)
    model = cp.create_model("lenet-300-100")
    data = Subset(load_mnist("train"), range(256))
    loader = DataLoader(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    cp.prune_(model, 0.5)
    res = cp.finetune(model, loader, torch.nn.functional.cross_entropy, epochs=2, lr=1e-3, progress=False)
    out["finetune"] = res.epoch_losses
    crops = []
    for name in ("astronaut", "chelsea", "immunohistochemistry"):
        img = bundled_photo(name).permute(1, 2, 0).numpy()
        crops.append((name, np.ascontiguousarray(img[100:172, 100:196])))
    pairs = build_pairs(crops, "rof", tmp / "pairs", sizes=(64, 96))
    fcfg = FipConfig(operator="rof", model="gf-can24", epochs=3, steps=2, batch=2, crops=(32, 48), lr=1e-3, seed=0)
    hist = train_fip(pairs, fcfg).history
    out["fip"] = [h["loss"] for h in hist] + [h["val_psnr"] for h in hist]
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 80, 90, generator=g), torch.rand(3, 70, 70, generator=g)]
    ccfg = CodecConfig(model="hyperprior", n=8, m=12, lmbda=0.01, steps=6, batch=2, crop=64, lr=1e-3, checkpoint_every=3)
    _, chist = train_codec(ccfg, images, progress=False, log_every=2)
    out["codec"] = [h["loss"] for h in chist] + [h["bpp"] for h in chist] + [h["psnr"] for h in chist]
    return out


def new_fip_goldens() -> None:
    """Write ``fip-{operator}.png`` only for shipped networks that have none yet (a new operator's
    network), leaving every existing golden file as it was: ``python tests/golden/make_golden.py --new-fip``."""
    from convpress.data.images import write_image
    from convpress.fip.apply import apply_network
    from convpress.fip.weights import load_network, shipped_operators, shipped_weights

    torch.set_num_threads(2)
    for op in shipped_operators():
        out = HERE / f"fip-{op}.png"
        weights = shipped_weights(op)
        if not out.is_file() and weights is not None:
            write_image(out, apply_network(load_network(weights)[0], rocket_crop()))
            print(f"wrote {out}")


def variable_rate_goldens() -> None:
    """Write ``varrate-q*.cpi``/``.png`` for every level of the shipped variable-rate model, leaving
    every other golden file as it was (``python tests/golden/make_golden.py --new-varrate``)."""
    codec_goldens("varrate", legacy=False)


def codec_goldens(model: str = "hyperprior", *, legacy: bool = True) -> None:
    """Write ``MODEL-q*.cpi``/``.png`` for every shipped level (and, with ``legacy``, the legacy-layout
    file), leaving every other golden file as it was: for new shipped codec weights, whose files the
    old ones cannot decode (``python tests/golden/make_golden.py --new-codec``)."""
    from convpress.codec.bitstream import decode_image, encode_image
    from convpress.codec.weights import available_qualities, pretrained
    from convpress.data.images import write_image

    torch.set_num_threads(2)
    x = coffee_crop()
    for q in available_qualities(model):
        m, meta = pretrained(q, model)
        data = encode_image(x, m, quality=q, weights_id=meta["weights_id"], version=4)
        (HERE / f"{model}-q{q}.cpi").write_bytes(data)
        write_image(HERE / f"{model}-q{q}.png", decode_image(data)[0], overwrite=True)
    if not legacy:
        return
    m, meta = pretrained(3, "hyperprior")
    data = encode_image(x, m, quality=3, weights_id=meta["weights_id"], version=2)
    (HERE / "hyperprior-q3-v2.cpi").write_bytes(data)
    write_image(HERE / "hyperprior-q3-v2.png", decode_image(data)[0], overwrite=True)


def main() -> None:
    import convpress as cp
    from convpress.data.images import write_image
    from convpress.fip.apply import apply_network
    from convpress.fip.weights import load_network, shipped_operators, shipped_weights

    torch.set_num_threads(2)
    model = lenet5()
    for coder in ("ans", "huffman", "none"):
        cp.save(model, HERE / f"lenet5-{coder}.cpz", coder=coder, arch="lenet-5")
    codec_goldens()
    variable_rate_goldens()
    y = rocket_crop()
    for op in shipped_operators():
        net, _ = load_network(shipped_weights(op))
        write_image(HERE / f"fip-{op}.png", apply_network(net, y), overwrite=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = training_runs(Path(tmp))
    (HERE / "training.json").write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    if "--new-fip" in sys.argv[1:]:
        new_fip_goldens()
    elif "--new-codec" in sys.argv[1:]:
        codec_goldens()
    elif "--new-varrate" in sys.argv[1:]:
        variable_rate_goldens()
    elif "--new-v3" in sys.argv[1:]:
        version3_goldens()
    elif "--new-format" in sys.argv[1:]:
        codec_goldens(legacy=False)
        variable_rate_goldens()
        escape_goldens()
    else:
        main()
