"""Train the fip networks shipped in ``src/convpress/weights/fip/`` (run from the repository root).

    python benchmarks/train_fip_weights.py --operators rtv rof --work /tmp/fip-work

Pairs come from the bundled TRAIN photos (never coffee or rocket, the benchmark photos) plus
the photos of Debian's ``opencv-doc`` package when it is installed (and, with ``--wallpapers``,
the photographs among Debian's wallpaper packages), at long sides 384 and 512 by default
(references are cheap there: RTV costs about 36 s per megapixel). Each operator gets a
``--model`` network, by default ``gf-can24`` (CAN24 at low resolution + learned guided filter),
built through the model registry and trained with the settings below (``--eps``, ``--factor``
and ``--low-res`` are options of the guided-filter CANs; other models refuse them); training
resumes from ``--work`` if interrupted. Single-threaded by default because the machine is shared.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import torch

from convpress.data.photos import DEBIAN_TRAIN_WALLPAPERS

OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")
#: colour photos of opencv-doc used for training (others are drawings, charts or grey)
OPENCV_PHOTOS = [
    "aero1.jpg",
    "aero3.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "building.jpg",
    "butterfly.jpg",
    "fruits.jpg",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "orange.jpg",
    "starry_night.jpg",
    "lena.jpg",
    "HappyFish.jpg",
    "graf1.png",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "stuff.jpg",
    "basketball1.png",
    "board.jpg",
    "ela_original.jpg",
]
SETTINGS = {"epochs": 20, "steps": 100, "batch": 4, "crops": (192, 256, 320), "lr": 5e-4, "val_fraction": 0.15, "seed": 0}


def photos(upscale: int = 0, wallpapers: bool = False) -> list[tuple[str, object]]:
    """Training photos; with ``upscale`` > 0, also a 2x bicubic enlargement of each photo whose long
    side is at most ``upscale`` (scale augmentation: soft, enlarged photos are common inputs, and
    an operator such as L0 smoothing behaves differently on them). With ``wallpapers``, also the
    :data:`~convpress.data.photos.DEBIAN_TRAIN_WALLPAPERS` that are installed, each at long side 1024 and as a 2x enlargement of
    its 512 version (``apt-get install plasma-workspace-wallpapers mate-backgrounds``)."""
    import cv2
    import numpy as np

    from convpress.data.images import read_image
    from convpress.fip.pairs import resize_long_side, training_photos

    images = training_photos()
    for name in OPENCV_PHOTOS:
        p = OPENCV_DOC / name
        if p.is_file():
            images.append((name, read_image(p).permute(1, 2, 0).numpy()))
    if wallpapers:
        found = [p for p in DEBIAN_TRAIN_WALLPAPERS if p.is_file()]
        print(f"{len(found)} of {len(DEBIAN_TRAIN_WALLPAPERS)} wallpaper photos installed", flush=True)
        for p in found:
            img = read_image(p).permute(1, 2, 0).numpy()
            name = p.parents[2].name if "wallpapers" in p.parts else p.stem  # KDE: the wallpaper's folder
            images.append((name, np.ascontiguousarray(resize_long_side(img, 1024))))
            half = resize_long_side(img, 512)
            big = cv2.resize(half, (2 * half.shape[1], 2 * half.shape[0]), interpolation=cv2.INTER_CUBIC)
            images.append((f"{name}@512x2", np.ascontiguousarray(np.clip(big, 0, 1))))
    if upscale:
        for name, img in list(images):
            h, w = img.shape[:2]
            if max(h, w) <= upscale:
                big = cv2.resize(img, (2 * w, 2 * h), interpolation=cv2.INTER_CUBIC)
                images.append((f"{name}@2x", np.ascontiguousarray(np.clip(big, 0, 1))))
    return images


def main() -> None:
    from convpress.core.digest import state_digest
    from convpress.fip.pairs import build_pairs
    from convpress.fip.train import FipTrainConfig, train
    from convpress.fip.weights import WEIGHTS_DIR, save_network

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--operators", nargs="+", default=["l0", "rtv", "wls", "rof"])
    ap.add_argument("--work", default="/tmp/fip-work", help="pair cache and checkpoints")
    ap.add_argument("--out", default=str(WEIGHTS_DIR))
    ap.add_argument("--model", default="gf-can24", help="registered image-to-image model (gf-can24, gf-can24-res, lap-remap, ...)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[384, 512])
    ap.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    ap.add_argument("--steps", type=int, default=SETTINGS["steps"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--init", action="store_true", help="fine-tune: start from the weights already in --out")
    ap.add_argument("--lr", type=float, default=SETTINGS["lr"])
    ap.add_argument("--constant-lr", action="store_true", help="no cosine decay, keep the last epoch (the first rtv/wls runs)")
    ap.add_argument("--eps", type=float, help="guided-filter CANs: guided-filter eps (default: the model's)")
    ap.add_argument(
        "--factor", type=int, help="guided-filter CANs: minimum downscaling factor of the low-resolution CAN (default: the model's)"
    )
    ap.add_argument("--low-res", type=int, help="guided-filter CANs: largest long side of the low-resolution CAN (default: the model's)")
    ap.add_argument("--upscale", type=int, default=0, help="also train on 2x enlargements of photos with long side <= this")
    ap.add_argument(
        "--crops",
        type=int,
        nargs="+",
        help=f"crop sides (default: {SETTINGS['crops']}); gf-can24 runs its CAN on crops 4x smaller, so larger crops give it more context",
    )
    ap.add_argument("--batch", type=int, default=SETTINGS["batch"])
    ap.add_argument(
        "--wallpapers", action="store_true", help="also train on the photos among Debian's wallpapers (DEBIAN_TRAIN_WALLPAPERS)"
    )
    ap.add_argument("--rotate", action="store_true", help="rotate and reflect crops too (8 symmetries; operators that commute with them)")
    ap.add_argument("--only-pairs", action="store_true", help="build the pairs and stop (e.g. to build them in parallel processes)")
    ap.add_argument("--shard", type=int, nargs=2, metavar=("K", "N"), help="with --only-pairs: build only every N-th photo from the K-th")
    ap.add_argument("--whole", action="store_true", help="train on whole photos, one per step (models that read whole-image statistics)")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="operator parameter for the training pairs, VALUE as JSON (e.g. texture=false: pencil without its hatching)",
    )
    ap.add_argument("--suffix", default="", help="appended to the weights file name (e.g. -can24)")
    args = ap.parse_args()
    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"--param takes KEY=VALUE, got {item!r}")
        params[key] = json.loads(value)
    kwargs = {k: v for k, v in (("eps", args.eps), ("factor", args.factor), ("low_res", args.low_res)) if v is not None}
    from convpress.models import MODELS

    image_models = [n for n in MODELS.names() if MODELS.meta(n).get("task") == "image-to-image"]
    if args.model not in image_models:
        sys.exit(f"{args.model!r} is not an image-to-image model; choose one of {', '.join(image_models)}")
    accepted = inspect.signature(MODELS.get(args.model)).parameters
    refused = [f"--{k.replace('_', '-')}" for k in kwargs if k not in accepted]
    if refused:
        options = f"{' and '.join(refused)} {'is not an option' if len(refused) == 1 else 'are not options'}"
        sys.exit(f"{options} of model {args.model}; they configure the guided-filter CANs")
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before training: the weights are written at its end
    torch.set_num_threads(args.threads)
    images = photos(args.upscale, args.wallpapers)
    print(f"{len(images)} training photos", flush=True)
    if args.shard:
        images = images[args.shard[0] :: args.shard[1]]
    for op in args.operators:
        t0 = time.time()
        pairs = build_pairs(images, op, Path(args.work) / "pairs", sizes=args.sizes, params=params)
        print(f"{op}: {len(pairs)} pairs in {time.time() - t0:.0f} s", flush=True)
        if args.only_pairs:
            continue
        settings = {**SETTINGS, "epochs": args.epochs, "steps": args.steps, "lr": args.lr, "batch": args.batch}
        if args.crops:
            settings["crops"] = tuple(args.crops)
        if args.constant_lr:
            settings.update(cosine=False, keep_best=False)
        if args.rotate:
            settings["rotate"] = True
        if args.whole:
            settings.update(whole=True, batch=1)
        cfg = FipTrainConfig(operator=op, model=args.model, model_kwargs=kwargs, **settings)
        out = Path(args.out) / f"{op}{args.suffix}.safetensors"
        init = None
        if args.init:
            from convpress.fip.weights import load_network

            start, start_info = load_network(out)
            init = start.state_dict()
            if start_info["model"] != args.model:  # e.g. gf-can24 -> gf-can24-res: shared weights copied, the rest at their start
                from convpress.models import create_model

                torch.manual_seed(SETTINGS["seed"])
                model = create_model(args.model, **kwargs)
                missing, unexpected = model.load_state_dict(init, strict=False)
                if unexpected:
                    sys.exit(f"{out} ({start_info['model']}) has weights {args.model} lacks: {', '.join(unexpected[:5])}")
                print(f"{op}: starting {args.model} from {out} ({start_info['model']}); new at their start: {', '.join(missing)}")
                init = model.state_dict()
        tag = "".join(f"-{k.replace('_', '')}{v:g}" for k, v in kwargs.items())  # e.g. -eps1e-06
        tag += f"-up{args.upscale}" if args.upscale else ""
        tag += f"-crops{max(args.crops)}" if args.crops else ""
        tag += f"-b{args.batch}" if args.batch != SETTINGS["batch"] else ""
        tag += "-wall" if args.wallpapers else ""
        if init is not None:  # each fine-tune of a chain gets its own run folder (named after its start)
            tag += f"-from{state_digest(init)[:8]}"
        tag += "-rot" if args.rotate else ""
        tag += "-whole" if args.whole else ""
        tag += "".join(f"-{k}{json.dumps(v)}" for k, v in sorted(params.items()))
        t1 = time.time()
        res = train(pairs, cfg, work_dir=Path(args.work) / f"run-{op}-{args.model}{'-finetune' if args.init else ''}{tag}", init=init)
        for h in res.history:
            print(f"{op} epoch {h['epoch']}: loss {h['loss']:.3e} val PSNR {h['val_psnr']:.2f} dB", flush=True)
        save_network(
            res.model,
            out,
            model_name=args.model,
            operator=op,
            model_kwargs=kwargs,
            operator_params=params,
            extra={
                "val_psnr": res.best_psnr,
                "train": {**settings, "crops": list(cfg.crops), "pairs": len(pairs), "sizes": args.sizes, "finetuned": bool(args.init)},
            },
        )
        print(f"{op}: wrote {out} after {time.time() - t1:.0f} s of training", flush=True)


if __name__ == "__main__":
    main()
