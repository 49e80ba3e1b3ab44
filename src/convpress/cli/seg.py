"""``convpress seg train | apply``: real-time semantic segmentation (ShuffleSeg)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convpress.cli._common import add_train_run_arguments, check_output, check_outputs, subcommand_main
from convpress.core.errors import ConfigError
from convpress.core.registry import lazy_choices

__all__ = ["register", "main"]

_SEG_MODELS = lazy_choices("convpress.models:MODELS", where=lambda meta: meta.get("task") == "segmentation")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "seg",
        help="real-time semantic segmentation: train ShuffleSeg, apply it to images",
        description=(
            "ShuffleSeg (Gamal, Siam et al. 2018): a ShuffleNet encoder with a skip decoder. Train it on the "
            "bundled demonstration set (digits pasted onto photos, 11 classes) or on a Cityscapes, Pascal VOC "
            "or images/ + masks/ folder, and write class masks and overlays."
        ),
    )
    fs = p.add_subparsers(dest="seg_command", metavar="ACTION", required=True)
    t = fs.add_parser(
        "train",
        help="train a segmentation network (resumable, mIoU validated every epoch)",
        description="Cross-entropy and Adam on random crops (random rescaling, crop, horizontal flip); the mean IoU "
        "on held-out images after every epoch, the best epoch's weights kept. Checkpoints in --work-dir: rerunning "
        "the same command resumes. Runs data-parallel under 'torchrun --nproc_per_node N' (each process trains "
        "on 1/N of every batch; --batch must be divisible by N; only the first process writes files). Every "
        "mask is checked against its image and the classes before training starts.",
    )
    t.add_argument(
        "--data",
        default="demo",
        help="'demo' (the bundled set) or a folder: Cityscapes (leftImg8bit/ + gtFine/ labelTrainIds), "
        "VOC (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/) or images/ + masks/ (default: %(default)s)",
    )
    t.add_argument("--layout", default="auto", choices=["auto", "cityscapes", "voc", "folder"], help="folder layout (default: %(default)s)")
    t.add_argument("--num-classes", type=int, help="classes of the masks (default: 19 Cityscapes, 21 VOC, 11 demo, else from the masks)")
    t.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    t.add_argument("--work-dir", help="checkpoint folder (rerun the same command to resume)")
    t.add_argument(
        "--model", default="shuffleseg", choices=_SEG_MODELS, metavar="MODEL", help="network: %(choices)s (default: %(default)s)"
    )
    t.add_argument("--width", type=float, help="encoder width multiplier (default: the model's)")
    t.add_argument("--init", help="start from these weights (a 'seg train' output with the same classes)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--steps", type=int, default=100, help="steps per epoch (default: %(default)s)")
    t.add_argument("--batch", type=int, default=8, help="crops per step, over all torchrun processes (default: %(default)s)")
    t.add_argument("--crop", type=int, nargs=2, default=[96, 128], metavar=("H", "W"), help="crop size (default: 96 128)")
    t.add_argument(
        "--scales", type=float, nargs=2, default=[0.75, 1.5], metavar=("MIN", "MAX"), help="random rescaling (default: 0.75 1.5)"
    )
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--demo-count", type=int, default=2000, help="training samples of the demo set (default: %(default)s)")
    d = t.add_argument_group("Data Distillation (with --unlabelled)")
    d.add_argument(
        "--unlabelled",
        metavar="DIR",
        help="a folder of unlabelled images (any layout, any sizes): a teacher labels them under four views (the image, "
        "its mirror, scales 0.75 and 1.25; per-pixel probabilities mapped back and averaged), confident pixels become "
        "labels (the others are ignored), and the network is trained on batches mixing labelled and pseudo-labelled "
        "crops. The unlabelled images are held in memory",
    )
    d.add_argument(
        "--teacher",
        metavar="WEIGHTS",
        help="the teacher: a 'seg train' weights file with the data's classes (default: trained first on the labelled data "
        "with the same settings, checkpointed in --work-dir/teacher). The student starts from the teacher's weights when "
        "it is the same model, else from --init or from scratch",
    )
    d.add_argument("--confidence", type=float, default=0.9, help="averaged probability a pixel needs to be kept (default: %(default)s)")
    d.add_argument("--ratio", type=float, default=1.0, help="labelled crops per pseudo-labelled crop in a batch (default: %(default)s)")
    add_train_run_arguments(t)
    t.set_defaults(func=_train)

    a = fs.add_parser(
        "apply",
        help="segment an image: a class-mask PNG and an overlay PNG",
        description="Run the network in WEIGHTS on INPUT and write the class of every pixel as a palette PNG "
        "(pixel value = class index) to -o, and the mask's colours over the image to --overlay "
        "(default: the mask's name with -overlay).",
    )
    a.add_argument("weights", help="a 'convpress seg train' weights file")
    a.add_argument("input", help="image to segment")
    a.add_argument("-o", "--output", required=True, help="mask PNG to write")
    a.add_argument("--overlay", help="overlay PNG to write (default: OUTPUT's name + -overlay.png)")
    a.add_argument("--force", action="store_true", help="overwrite the outputs (never the input)")
    a.set_defaults(func=_apply)


def _datasets(args: argparse.Namespace) -> tuple[Any, Any, int, list[str], Any]:
    """(train, val, num_classes, class names, data id), every mask checked."""
    from convpress.seg.data import DEMO_CLASSES, DemoDigits

    if args.data != "demo":
        return _folders(args)
    if args.num_classes not in (None, len(DEMO_CLASSES)):
        raise ConfigError(f"the demo set has {len(DEMO_CLASSES)} classes, not {args.num_classes}")
    if args.demo_count < 1:
        raise ConfigError(f"--demo-count must be positive, got {args.demo_count}")
    train, val = DemoDigits("train", count=args.demo_count, seed=args.seed), DemoDigits("val", count=200, seed=args.seed)
    return train, val, len(DEMO_CLASSES), list(DEMO_CLASSES), {"demo": args.demo_count, "seed": args.seed}


def _folders(args: argparse.Namespace) -> tuple[Any, Any, int, list[str], Any]:
    from convpress.seg.data import SegFolder

    if args.num_classes is not None and args.num_classes < 2:
        raise ConfigError(f"--num-classes must be at least 2, got {args.num_classes}")
    train = SegFolder(args.data, layout=args.layout, split="train", num_classes=args.num_classes)
    if train.layout == "folder":
        train.check()  # the class count comes from all masks, held-out ones included
        train, val = train.split_held_out()
    else:
        val = SegFolder(args.data, layout=train.layout, split="val", num_classes=train.num_classes)
        train.check()
    val.check()
    n = int(train.num_classes or 0)
    ids = [str(p[1].relative_to(train.root)) for p in train.pairs + val.pairs]
    return train, val, n, [str(c) for c in range(n)], {"layout": train.layout, "files": ids}


def _train(args: argparse.Namespace) -> int:
    import torch

    from convpress.core.distributed import is_main
    from convpress.seg.train import SegTrainConfig, train_segmenter
    from convpress.seg.weights import load_segmenter, save_segmenter

    out = check_output(args.out, force=args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {} if args.width is None else {"width": args.width}
    cfg = SegTrainConfig(
        num_classes=2,  # checked again below with the data's count; validates the other settings first
        model=args.model,
        model_kwargs=kwargs,
        epochs=args.epochs,
        steps=args.steps,
        batch=args.batch,
        crop=tuple(args.crop),
        scales=tuple(args.scales),
        lr=args.lr,
        seed=args.seed,
    )
    init = None
    if args.init:
        init_model, info = load_segmenter(args.init)
        init = init_model.state_dict()
    train, val, n, classes, data_id = _datasets(args)
    if args.init and info["num_classes"] != n:
        raise ConfigError(f"{args.init} has {info['num_classes']} classes but the data has {n}; train from scratch or give matching data")
    if args.init and (info["model"], info["model_kwargs"]) != (args.model, {"num_classes": n, **kwargs}):
        raise ConfigError(f"{args.init} is a {info['model']} {info['model_kwargs']}; pass the same --model and --width")
    cfg.num_classes = n
    if args.unlabelled is not None:
        res = _distill(args, train, val, cfg, data_id, init)
    elif args.teacher is not None:
        raise ConfigError("--teacher labels the --unlabelled images; give --unlabelled DIR too")
    else:
        res = train_segmenter(train, val, cfg, data_id=data_id, work_dir=args.work_dir, progress=not args.no_progress, init=init)
    if not is_main():  # under torchrun only rank 0 prints and writes
        return 0
    for h in res.history:
        print(f"epoch {h['epoch']}: loss {h['loss']:.4f}  validation mIoU {100 * h['val_miou']:.2f}")
    save_segmenter(
        res.model, out, model_name=args.model, model_kwargs={"num_classes": n, **kwargs}, classes=classes, extra={"val_miou": res.best_miou}
    )
    print(f"wrote {out}")
    return 0


def _distill(args: argparse.Namespace, train: Any, val: Any, cfg: Any, data_id: Any, init: Any) -> Any:
    """``--unlabelled``: the teacher (given or trained first), its pseudo-labels, the student on the mix."""
    from convpress.compress.pseudo_labels import Confidence
    from convpress.core.distributed import is_main
    from convpress.core.errors import InputError
    from convpress.data.images import read_image
    from convpress.data.photos import image_folder
    from convpress.seg.distill import SEG_TRANSFORMS, distill_segmenter
    from convpress.seg.weights import load_segmenter

    rule = Confidence(args.confidence)  # checked before any image is read
    teacher = None
    if args.teacher:
        teacher, info = load_segmenter(args.teacher)
        if info["num_classes"] != cfg.num_classes:
            raise ConfigError(f"--teacher {args.teacher} predicts {info['num_classes']} classes but the data has {cfg.num_classes}")
    try:
        files = image_folder(args.unlabelled)
        images = [read_image(f) for f in files]  # every image read before any training
    except InputError as exc:
        raise ConfigError(f"--unlabelled: {exc}") from None
    res = distill_segmenter(
        train,
        images,
        val,
        cfg,
        data_id=data_id,
        unlabelled_id=[str(f.relative_to(args.unlabelled)) for f in files],
        teacher=teacher,
        transforms=SEG_TRANSFORMS,
        rule=rule,
        ratio=args.ratio,
        init=init,
        work_dir=args.work_dir,
        progress=not args.no_progress,
    )
    rep = res.pseudo_labels
    if is_main():
        if res.teacher_result is not None:
            print(f"teacher (labelled data only): validation mIoU {100 * res.teacher_result.best_miou:.2f}")
        print(
            f"pseudo-labelled {100 * rep.kept_fraction:.1f}% of the pixels of {rep.images} unlabelled images from "
            f"{args.unlabelled} ({len(SEG_TRANSFORMS)} views, confidence >= {args.confidence:g}); "
            f"student started from {'--init' if res.student_init == 'init' else res.student_init}"
        )
    return res.student


def _apply(args: argparse.Namespace) -> int:
    from convpress.data.imagesize import check_image_fits

    check_image_fits(args.input)  # the header's size first: a decompression bomb is refused before any work
    overlay_path = args.overlay or str(Path(args.output).with_name(Path(args.output).stem + "-overlay.png"))
    if Path(args.output).suffix.lower() != ".png" or Path(overlay_path).suffix.lower() != ".png":
        raise ConfigError("the mask and the overlay are written as .png files")
    mask_out, overlay_out = check_outputs([args.output, overlay_path], force=args.force, inputs=[args.input, args.weights])
    assert mask_out is not None and overlay_out is not None
    from convpress.data.images import read_image, write_image
    from convpress.seg.apply import overlay, write_mask
    from convpress.seg.train import predict
    from convpress.seg.weights import load_segmenter

    model, _info = load_segmenter(args.weights)
    image = read_image(args.input)
    mask = predict(model, image)
    write_mask(mask_out, mask)
    write_image(overlay_out, overlay(image, mask), overwrite=True, protect=(args.input,))
    print(f"wrote {mask_out} and {overlay_out}", file=sys.stderr)
    return 0


main = subcommand_main("seg")
