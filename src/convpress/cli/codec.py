"""``convpress codec encode | decode | info | compare | qualities | train``: learned image compression into ``.cpi`` files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convpress.cli._common import check_output, subcommand_main
from convpress.codec.models import CODEC_MODELS, DEFAULT_EFFORT, DEFAULT_MODEL, is_variable_rate
from convpress.core.errors import ConfigError

#: ``codec train --context``: its names of the variable-rate model's contexts (config ``CONTEXT``, see
#: :data:`convpress.codec.models.varrate.CONTEXTS`); the codec modules load lazily, after the parser
CONTEXT_CHOICES = {"checkerboard": 1, "channels": 2}
#: refinement iterations of ``codec encode --seconds S`` without ``--effort``: a cap the budget reaches first
#: on most photos (about 0.2 s per iteration per 0.4 MP)
SECONDS_ITERATIONS = 1000


def add_context_argument(parser: argparse.ArgumentParser) -> None:
    """``--context [checkerboard|channels]`` (``codec train`` and ``benchmarks/train_codec_weights.py``);
    ``CONTEXT_CHOICES.get(args.context, 0)`` is the model's context."""
    parser.add_argument(
        "--context",
        nargs="?",
        const="checkerboard",
        choices=sorted(CONTEXT_CHOICES),
        help="a variable-rate model (varrate) with a context: 'checkerboard' (the default) codes the latents in two "
        "passes, the second predicted from the first; 'channels' splits each pass again into two channel halves, "
        "the second predicted from the first too (four passes). From --init weights with less context, the new "
        "context layers start at zero",
    )


__all__ = ["register", "main"]

# argparse joins an argument's choices whenever it prints help, so a subcommand's --help loads the
# registered models (and torch); building the parser (and ``convpress --help``) does not
MODEL_HELP = "codec model: %(choices)s (default: %(default)s)"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "codec",
        help="learned image compression: encode images to .cpi files, decode them, train models",
        description=(
            "Learned image compression with a real rANS bitstream: by default a trained mean-scale hyperprior "
            "with per-level gains (--model varrate; ten quality levels, see 'convpress codec qualities'; "
            "--effort refines each image's latents at encode time), or a decoder overfitted to each image and sent "
            "with it (--model overfit, the Cool-chic / C3 line: nothing shipped, slow to encode, fast to decode). "
            "Images with an alpha channel are composited over white (or see --alpha), grayscale images "
            "are coded as RGB, and 16-bit images are reduced to 8 bits per channel by the codec."
        ),
    )
    cs = p.add_subparsers(dest="codec_command", metavar="ACTION", required=True)

    e = cs.add_parser(
        "encode",
        help="compress an image into a .cpi file",
        epilog="examples: convpress codec encode photo.png photo.cpi --quality 3\n"
        "          convpress codec encode photo.png photo.cpi --target-psnr 34 --effort 30\n"
        "          convpress codec encode photo.png photo.cpi --target-size 40000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("input", help="image file (PNG, JPEG, TIFF, BMP, WebP; 8 or 16 bit; gray, RGB or RGBA)")
    e.add_argument("output", help="the .cpi file to write")
    level = e.add_mutually_exclusive_group(required=True)
    level.add_argument("--quality", "-q", type=int, help="quality level (see 'convpress codec qualities')")
    level.add_argument(
        "--target-psnr",
        type=float,
        metavar="DB",
        help="instead of a level: the lowest level whose file decodes to at least DB dB of PSNR on this image "
        "(each level is tried and measured, as cwebp -psnr does)",
    )
    level.add_argument(
        "--target-size",
        type=int,
        metavar="BYTES",
        help="instead of a level: the highest level whose file takes at most BYTES bytes (as cwebp -size does)",
    )
    e.add_argument("--model", default=DEFAULT_MODEL, choices=CODEC_MODELS.choices(), metavar="MODEL", help=MODEL_HELP)
    e.add_argument(
        "--alpha",
        choices=["composite", "drop", "error"],
        default="composite",
        help="images with alpha: composite over white (default), drop the alpha, or refuse",
    )
    e.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="code images larger than N x N pixels as independent N x N tiles, bounding memory (a multiple of 64; default: 1024)",
    )
    e.add_argument(
        "--effort",
        "--iterations",
        dest="effort",
        type=int,
        default=None,
        metavar="ITERATIONS",
        help="encode budget in iterations. hyperprior models: refine the latents of each image for this many "
        f"iterations before coding (about 0.2 s per iteration per 0.4 MP on 2 cores): a smaller file for the "
        f"same decoder (default: {DEFAULT_EFFORT}; 0 is the fastest, no refinement; 30-100 give smaller files "
        "still). overfit: fit the decoder and latents to each image (tile) for this many steps (default, or 0: "
        "1000; about 0.3 s per step per 0.2 MP on 2 cores; more steps give smaller, better files)",
    )
    e.add_argument(
        "--seconds",
        type=float,
        default=None,
        metavar="S",
        help="encode budget in seconds per tile, even before --iterations (the file is still complete "
        "and valid, only less compact). overfit: stop fitting each tile after S seconds. hyperprior: "
        "refine the latents of each tile for S seconds (at most --effort iterations; without --effort "
        f"at most {SECONDS_ITERATIONS}); the refinement anneals within the budget",
    )
    e.add_argument(
        "--format-version",
        type=int,
        choices=[5, 4, 3, 2],
        default=None,
        metavar="V",
        help=".cpi format version to write. 5 (default for the transform models) adds to each tile a "
        "per-image correction of the decoder's last layer (least squares, fitted by the encoder), sent only "
        "where it pays for its bits: about 2%% fewer bits at equal PSNR on photos of 768 pixels, about 7%% on "
        "full 1024-pixel tiles, for 2-3.4x the encoding time at --effort 0 (bench codec); 4 (default for "
        "--model overfit) codes the same latents without it, for convpress before format 5; 3 clamps "
        "latents outside the coder's tables (up to 4 dB worse on some photos) for convpress before format 4; "
        "2 is the legacy layout for convpress before format 3",
    )
    e.add_argument("--correct", action="store_true", help="same as --format-version 5 (the default of the transform models)")
    e.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    e.set_defaults(func=_encode)

    d = cs.add_parser("decode", help="decompress a .cpi file into an image", epilog="example: convpress codec decode photo.cpi photo.png")
    d.add_argument("input", help="a .cpi file")
    d.add_argument("output", help="the image to write (.png, .bmp, .tif, .webp, .jpg)")
    d.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    d.set_defaults(func=_decode)

    i = cs.add_parser(
        "info",
        help="show what a .cpi file holds (checks it; decodes nothing)",
        description="Print a .cpi file's format version, model, quality, image size, tiling, weights "
        "and its bytes: the rANS streams and the header and checksum around them. The "
        "file's structure, checksum and fields are verified; the pixels are not decoded.",
        epilog="example: convpress codec info photo.cpi",
    )
    i.add_argument("input", help="a .cpi file")
    i.set_defaults(func=_info)

    c = cs.add_parser(
        "compare",
        help="measure this codec against JPEG, WebP and AVIF on your own image (table, BD-rates, plot)",
        description="Encode an image at every shipped level (real .cpi bytes, decoded) and with Pillow's JPEG, WebP "
        "(method 6) and AVIF (speed 4, 4:4:4) at a sweep of qualities, as 'convpress bench codec' does on its test "
        "photos; print each file's bytes, bits per pixel, PSNR, MS-SSIM and encoding time, and the BD-rate (PSNR) of "
        "this codec against each anchor on this image: negative means fewer bits than the anchor at equal PSNR. "
        "Nothing is written unless --plot or --json is given. About a minute for a 768x512 photo on 2 cores.",
        epilog="example: convpress codec compare photo.png --plot rd.png",
    )
    c.add_argument("input", help="image file (PNG, JPEG, TIFF, BMP, WebP; 8 or 16 bit; gray, RGB or RGBA)")
    c.add_argument("--effort", type=int, default=DEFAULT_EFFORT, help=f"encoder effort of this codec (default: {DEFAULT_EFFORT})")
    c.add_argument("--qualities", help="comma-separated levels (default: every shipped level; BD-rates need at least 4)")
    c.add_argument("--anchors", default="jpeg,webp,avif", help="comma-separated: jpeg, webp, avif (default: all three)")
    c.add_argument("--plot", metavar="FILE", help="write the PSNR-bpp curves to this .png, .svg or .pdf")
    c.add_argument("--json", metavar="FILE", help="write every measured point to this JSON file")
    c.add_argument("--force", action="store_true", help="overwrite --plot / --json if they exist")
    c.set_defaults(func=_compare)

    q = cs.add_parser("qualities", help="list the quality levels with shipped weights")
    q.add_argument("--model", default=DEFAULT_MODEL, choices=CODEC_MODELS.choices(), metavar="MODEL", help=MODEL_HELP)
    q.set_defaults(func=_qualities)

    t = cs.add_parser(
        "train",
        help="train a codec model (resumable; progress bar)",
        description="Train a codec model for one quality (lambda) on random crops of photos, with Adam. Rerun the "
        "same command with the same --work-dir to resume from its last checkpoint. Runs data-parallel "
        "under 'torchrun --nproc_per_node N' (each process trains on 1/N of every batch).",
        epilog="example: convpress codec train --work-dir runs/q3 --quality 3 --steps 3000 --out q3.safetensors",
    )
    t.add_argument("--work-dir", required=True, help="folder of the resumable checkpoint")
    t.add_argument(
        "--quality",
        required=True,
        help="quality level: picks lambda (1-10; 1 is the lowest rate); for a variable-rate model (--model varrate) "
        "the comma-separated levels it is to serve, e.g. 1,2,3,4,5,6 (each step trains one of them)",
    )
    t.add_argument("--out", required=True, help="weights file to write (.safetensors)")
    t.add_argument("--model", default=DEFAULT_MODEL, choices=CODEC_MODELS.choices(), metavar="MODEL", help=MODEL_HELP)
    t.add_argument("--hidden-channels", dest="n", type=int, default=64, help="hidden channels N (default: %(default)s)")
    t.add_argument("--latent-channels", dest="m", type=int, default=96, help="latent channels M (default: %(default)s)")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument(
        "--crop",
        type=int,
        default=128,
        help="random crop size, a multiple of 64 (default: %(default)s); larger crops give the hyperprior more context: "
        "the shipped levels were fine-tuned with --crop 256 --batch 2 (the same pixels per step), 12%% fewer bits",
    )
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--images", action="append", default=[], help="extra folder of training images (repeatable)")
    t.add_argument("--no-debian", action="store_true", help="do not use the opencv-doc photos even if installed")
    t.add_argument("--init", help="weights file to start from (fine-tuning for another quality)")
    t.add_argument(
        "--warmup", type=int, default=None, metavar="STEPS", help="steps of linear learning-rate warm-up (default: 100 with --init, else 0)"
    )
    t.add_argument(
        "--mixed-quantization",
        action="store_true",
        help="decoder sees rounded latents (straight-through), the rate noisy ones; best for a final fine-tune with --init",
    )
    t.add_argument(
        "--decoder-only",
        action="store_true",
        help="with --init: train only the synthesis (and a variable-rate model's inverse gains) on the rounded latents "
        "of the frozen rest, for the distortion: files encode to the same bytes and decode closer to the image",
    )
    t.add_argument(
        "--bf16",
        action="store_true",
        help="run the transforms in bfloat16 (autocast; weights and likelihoods stay float32): about 2x faster "
        "steps on CPUs with AVX512-BF16 or AMX, slower elsewhere",
    )
    t.add_argument(
        "--int8",
        action="store_true",
        help="train with the convolution weights rounded to 8 bits (one scale per kernel) and write them so: "
        "weights files about 60%% of the float16 size (rounding the shipped float16 weights so cost 0.1%% more bits)",
    )
    add_context_argument(t)
    t.add_argument(
        "--entropy-only",
        action="store_true",
        help="with --init: keep the analysis, the synthesis and the gains as loaded and train the entropy model "
        "(hyperprior, means, context) alone: the same latents and decoder, fewer bits (how the context was added "
        "to the shipped levels)",
    )
    t.add_argument(
        "--encoder-only",
        action="store_true",
        help="with --init: train only the analysis (and hyper-analysis), the synthesis seeing rounded latents, "
        "everything the decoder reads kept as loaded: better files at encoder effort 0 from the same decoder; "
        "the weights written also decode the files made with --init's (same model, --n/--m, --quality levels and --context as --init)",
    )
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.set_defaults(func=_train)
    p.set_defaults(func=lambda a: 0)


def _encode(args: argparse.Namespace) -> int:
    from convpress.data.imagesize import check_image_fits

    # the image's size from its header before torch and the model load: a bomb is refused at once
    check_image_fits(args.input)
    import copy
    import math

    from convpress.codec.bitstream import CORRECTION_VERSION, DEFAULT_TILE, encode_image, tile_grid, write_cpi
    from convpress.codec.refine import on_iteration
    from convpress.codec.weights import pretrained
    from convpress.core.progress import progress_bar
    from convpress.data.images import read_image

    if args.effort is not None and args.effort < 0:
        raise ConfigError(f"--effort must be a non-negative number of iterations, got {args.effort}")
    if args.correct and args.format_version not in (None, CORRECTION_VERSION):
        raise ConfigError(f"--correct writes .cpi format 5; it cannot be combined with --format-version {args.format_version}")
    args.format_version = CORRECTION_VERSION if args.correct else args.format_version
    if args.seconds is not None and not (args.seconds > 0 and math.isfinite(args.seconds)):
        raise ConfigError(f"--seconds must be a positive number, got {args.seconds}")
    out = check_output(args.output, force=args.force, inputs=[args.input])
    if args.quality is None:
        return _encode_to_target(args, out)
    model, meta = pretrained(args.quality, args.model)
    per_image = bool(getattr(model, "per_image", False))
    refines = hasattr(model, "seconds")  # the per-image models and the refining hyperpriors take a time budget
    if args.seconds is not None and not refines:
        raise ConfigError(
            f"--seconds bounds an encoder that iterates (--model overfit, or a hyperprior's refinement), not the {args.model} model"
        )
    x = read_image(args.input, alpha=args.alpha)
    tile = DEFAULT_TILE if args.tile is None else args.tile
    iterations = _iterations(args.effort, model, args.seconds)
    if refines:
        model = copy.copy(model)  # pretrained() caches the model: the time limit is this call's
        model.seconds = args.seconds
    tiles = len(tile_grid(int(x.shape[1]), int(x.shape[2]), tile))
    # with a time budget the iterations run are not known ahead: the bar counts them without a total
    steps = iterations * tiles if iterations and args.seconds is None else None
    what = "fitting the decoder" if per_image else "refining latents"
    ran = [0]

    def advance() -> None:
        ran[0] += 1
        bar.advance()

    with progress_bar(steps, what, enabled=bool(iterations)) as bar, on_iteration(advance):
        data = encode_image(
            x, model, quality=args.quality, weights_id=meta["weights_id"], tile=tile, effort=iterations, version=args.format_version
        )
    write_cpi(out, data, overwrite=args.force)
    h, w = x.shape[1:]
    budget = (
        f", {ran[0]:,} iteration{'s' * (ran[0] != 1)} within {args.seconds:g} s per tile, {tiles} tile{'s' * (tiles > 1)}"
        if args.seconds is not None
        else ""
    )
    if not budget and refines and not per_image:
        budget = f", effort {iterations}"
    print(f"wrote {out}: {len(data):,} bytes, {8 * len(data) / (h * w):.4f} bpp ({w}x{h}, quality {args.quality}{budget})")
    return 0


def _iterations(effort: int | None, model: Any, seconds: float | None) -> int:
    """The iterations ``codec encode`` runs: ``--effort`` where given, else the model's default (a
    per-image model's fitting steps, :data:`DEFAULT_EFFORT` for a refining hyperprior, 0 for the rest);
    with ``--seconds`` and no iterations, :data:`SECONDS_ITERATIONS` (the budget ends them first)."""
    per_image = bool(getattr(model, "per_image", False))
    refines = hasattr(model, "seconds")
    if per_image and not effort:  # --effort 0 means the default for a per-image model: it cannot skip fitting
        iterations: int = getattr(model, "DEFAULT_ITERATIONS", 0)
    elif effort is None:
        iterations = DEFAULT_EFFORT if refines and seconds is None else 0
    else:
        iterations = effort
    if seconds is not None and not iterations:
        iterations = SECONDS_ITERATIONS  # a time budget alone: refine until it runs out
    return iterations


def _encode_to_target(args: argparse.Namespace, out: Path) -> int:
    """``encode --target-psnr`` / ``--target-size``: the level chosen by measuring each."""
    from convpress.codec.bitstream import DEFAULT_TILE, tile_grid, write_cpi
    from convpress.codec.refine import on_iteration
    from convpress.codec.target import encode_to_target
    from convpress.codec.weights import available_qualities, pretrained
    from convpress.core.progress import progress_bar
    from convpress.data.images import read_image

    if args.seconds is not None:
        raise ConfigError("--seconds bounds the encoding of one level: it takes --quality, not a target")
    x = read_image(args.input, alpha=args.alpha)
    tile = DEFAULT_TILE if args.tile is None else args.tile
    levels = available_qualities(args.model)
    effort = args.effort
    if effort is None:  # the default of a refining model's levels (encode_to_target refuses per-image models)
        per_image = getattr(CODEC_MODELS.get(args.model), "per_image", False)
        effort = _iterations(None, pretrained(levels[0], args.model)[0], None) if levels and not per_image else 0
    # a step per level tried, and per refinement iteration of at most two refined files (a bound: the bar may end early)
    steps = len(levels) + 2 * effort * len(tile_grid(int(x.shape[1]), int(x.shape[2]), tile))
    with progress_bar(steps, "trying levels") as bar, on_iteration(bar.advance):
        res = encode_to_target(
            x,
            psnr=args.target_psnr,
            size=args.target_size,
            model=args.model,
            effort=effort,
            tile=tile,
            on_level=lambda _q: bar.advance(),
            version=args.format_version,
        )
    write_cpi(out, res.data, overwrite=args.force)
    h, w = x.shape[1:]
    refined = f", effort {res.effort}" if res.effort else (" (the refined file missed the target: unrefined)" if effort else "")
    print(
        f"wrote {out}: {len(res.data):,} bytes, {8 * len(res.data) / (h * w):.4f} bpp, {res.psnr:.2f} dB "
        f"({w}x{h}, quality {res.quality}{refined})"
    )
    return 0


def _decode(args: argparse.Namespace) -> int:
    from convpress.codec.bitstream import read_cpi
    from convpress.data.images import write_image

    out = check_output(args.output, force=args.force, inputs=[args.input])
    if out.suffix.lower() not in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}:
        raise ConfigError(f"cannot write images with suffix {out.suffix or '(none)'!r}; use .png, .jpg, .bmp, .tif or .webp")
    image, head = read_cpi(args.input)
    write_image(out, image, overwrite=args.force, protect=(args.input,))
    print(f"wrote {out} ({head['w']}x{head['h']})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from convpress.codec.bitstream import CORRECTION_VERSION, WHAT, format_version, read_header, tile_grid, weights_match
    from convpress.codec.weights import available_qualities, decoded_ids, decoding_weights, legacy_note, pretrained
    from convpress.core.errors import FileFormatError

    legacy = f"; {note}" if (note := legacy_note()) else ""  # where superseded weights are, if not installed
    p = Path(args.input)
    if p.is_dir():
        raise FileFormatError(f"{p} is a directory, not a {WHAT}")
    data = p.read_bytes()
    head, sections = read_header(data, name=str(p))
    version = format_version(data)
    h, w, q = head["h"], head["w"], head["q"]
    streams = sum(head["sections"])
    tiles = f"tiles of {head['t']}x{head['t']}, {len(tile_grid(h, w, head['t']))} tiles" if "t" in head else "one tile"
    if getattr(CODEC_MODELS.get(head["m"]), "per_image", False):
        weights = f"{head['v']} (decoder fitted to this image, carried in the file)"
    elif q in available_qualities(head["m"]):
        # the weights that decode it: those encoding this level now, or an older shipped file's level
        meta = decoding_weights(head["m"], q, lambda wid: weights_match(head["v"], wid, version))[1]
        found = meta["weights_id"]
        source = f", from {meta['source']}" if "source" in meta else ""
        if not weights_match(head["v"], found, version):
            weights = f"{head['v']} (NOT the shipped weights: cannot decode here{legacy})"
        elif found == (current := pretrained(q, head["m"])[1])["weights_id"]:
            weights = f"{head['v']} (the shipped weights of this level{source})"
        elif found in decoded_ids(current):  # an id whose decoder the current file holds (with_encoder)
            weights = f"{head['v']} (an earlier encoder of the shipped weights of this level; their decoder decodes it)"
        else:
            weights = f"{head['v']} (shipped weights that no longer encode this level{source}; they still decode it)"
    else:
        weights = f"{head['v']} (no weights installed for quality {q}{legacy})"
    coding = {
        5: " (latents coded exactly, with a synthesis correction)",
        4: " (latents coded exactly)",
        3: " (latents clamped to the coder's tables)",
    }.get(int(version or 0), " (legacy layout)")
    print(f"{p}: {WHAT}, format version {version}{coding}")
    print(f"  image    {w}x{h}, {tiles}")
    print(f"  model    {head['m']}, quality {q}")
    print(f"  weights  {weights}")
    names = CODEC_MODELS.get(head["m"]).streams
    per_tile = ", ".join(names)
    if version == CORRECTION_VERSION:  # each tile's last section: its correction, empty where none paid for its bits
        per_tile += ", correction"
        fixes = sections[len(names) :: len(names) + 1]
        print(
            f"  decoder  synthesis correction on {sum(map(bool, fixes))} of {len(fixes)} tile{'s' * (len(fixes) != 1)} "
            f"({sum(map(len, fixes)):,} bytes)"
        )
    print(
        f"  size     {len(data):,} bytes = {8 * len(data) / (h * w):.4f} bpp: rANS streams {streams:,} bytes in "
        f"{len(sections)} sections ({per_tile} per tile), header and checksums {len(data) - streams:,} bytes"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from convpress.data.imagesize import check_image_fits

    check_image_fits(args.input)
    import json

    from convpress.core.atomic import atomic_write_bytes

    def numbers(text: str | None, what: str) -> list[int] | None:
        if text is None:
            return None
        try:
            return [int(v) for v in text.split(",")]
        except ValueError:
            raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None

    qualities = numbers(args.qualities, "--qualities")
    anchors = tuple(a.strip().lower() for a in args.anchors.split(",") if a.strip())
    if args.plot is not None and Path(args.plot).suffix.lower() not in {".png", ".svg", ".pdf"}:
        raise ConfigError(f"--plot writes .png, .svg or .pdf, not {args.plot!r}")
    outs = [check_output(p, force=args.force, inputs=[args.input]) if p is not None else None for p in (args.plot, args.json)]
    if outs[0] is not None and outs[0] == outs[1]:
        raise ConfigError("--plot and --json name the same file")
    from convpress.bench.codec import compare_image, write_comparison_plot
    from convpress.data.images import read_image

    x = read_image(args.input)
    result = compare_image(x, qualities=qualities, effort=args.effort, anchors=anchors)
    h, w = result["size"]
    print(f"{args.input}: {w}x{h}; convpress (ours, effort {args.effort}) against {', '.join(anchors)}")
    print(f"{'codec':8s} {'setting':>7s} {'bytes':>10s} {'bpp':>7s} {'PSNR':>6s} {'MS-SSIM':>7s} {'encode s':>8s}")
    for name, per in result["points"].items():
        label = "ours" if name == result["mode"] else name
        for setting, (pt,) in per.items():
            m = "n/a" if pt["ms_ssim"] is None else f"{pt['ms_ssim']:.4f}"
            print(f"{label:8s} {setting:>7s} {pt['bytes']:>10,} {pt['bpp']:7.3f} {pt['psnr']:6.2f} {m:>7s} {pt['encode_s']:8.2f}")
    parts = []
    for a, v in result["bd_rate_percent"].items():
        name = {"jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}[a]
        parts.append(f"{name}: n/a (the curves do not overlap, or fewer than 4 points)" if v is None else f"{name}: {v:+.1f}%")
    print(f"BD-rate (PSNR) of this codec at effort {args.effort} on this image (negative: fewer bits) against " + ", ".join(parts))
    if outs[0] is not None:
        write_comparison_plot(result, outs[0], f"{Path(args.input).name} ({w}x{h})")
        print(f"wrote {outs[0]}")
    if outs[1] is not None:
        atomic_write_bytes(outs[1], (json.dumps({"input": str(args.input), **result}, indent=1) + "\n").encode())
        print(f"wrote {outs[1]}")
    return 0


def _qualities(args: argparse.Namespace) -> int:
    from convpress.codec.models.varrate import CONTEXTS
    from convpress.codec.weights import available_qualities, legacy_note, pretrained

    qualities = available_qualities(args.model)
    if not qualities:
        print(f"no {args.model} weights are installed" + (f"; {note}" if (note := legacy_note()) else ""))
    for q in qualities:
        model, meta = pretrained(q, args.model)
        size = ", ".join(f"{k}={model.config[k]}" for k in ("N", "M") if k in model.config)
        stored = "int8 convolutions" if "int8" in meta else "float16"
        context = f", {CONTEXTS[model.config['CONTEXT']]}" if model.config.get("CONTEXT") else ""
        print(f"quality {q}: lambda {meta.get('lambda')}, weights {meta.get('weights_id')} ({size}, {stored}{context})")
    return 0


def _train(args: argparse.Namespace) -> int:
    import json

    import torch

    from convpress.codec.train import ENTROPY_ONLY_FROZEN, QUALITY_LAMBDAS, CodecTrainConfig, train_codec, training_images
    from convpress.codec.weights import load_weights, save_weights, with_encoder

    if getattr(CODEC_MODELS.get(args.model), "per_image", False):
        raise ConfigError(
            f"the {args.model} model is fitted to each image when it is encoded: it has nothing to train "
            f"(use 'convpress codec encode --model {args.model}')"
        )
    try:
        qualities = sorted({int(q) for q in str(args.quality).split(",")})
    except ValueError:
        raise ConfigError(f"--quality takes a level or a comma-separated list of levels, got {args.quality!r}") from None
    unknown = [q for q in qualities if q not in QUALITY_LAMBDAS]
    if unknown:
        raise ConfigError(f"unknown quality {unknown[0]}; choose from {', '.join(map(str, QUALITY_LAMBDAS))}")
    variable = is_variable_rate(args.model)
    if len(qualities) > 1 and not variable:
        raise ConfigError(f"the {args.model} model has one rate: give one --quality (a list of levels is for a variable-rate model)")
    lambdas = tuple(QUALITY_LAMBDAS[q] for q in qualities) if variable else ()
    if args.decoder_only and not args.init:
        raise ConfigError("--decoder-only fine-tunes trained weights: give them with --init")
    if args.entropy_only and not args.init:
        raise ConfigError("--entropy-only fine-tunes trained weights: give them with --init")
    if args.encoder_only and not args.init:
        raise ConfigError("--encoder-only fine-tunes trained weights: give them with --init")
    if args.encoder_only and (args.decoder_only or args.entropy_only):
        raise ConfigError("--encoder-only trains the analysis alone; it cannot be combined with --decoder-only or --entropy-only")
    out = check_output(args.out, force=args.force)
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup = args.warmup
    if warmup is None:  # fine-tuning starts a fresh Adam state on trained weights: warm up
        warmup = min(100, args.steps - 1) if args.init else 0
    init, init_lmbda = None, None
    int8 = args.int8
    if args.init:
        init_model, init_meta = load_weights(args.init)
        init, init_lmbda = init_model.state_dict(), init_model.lmbda
        if args.encoder_only:
            int8 = int8 or "int8" in init_meta  # train the analysis as the written file will store it
    cfg = CodecTrainConfig(
        model=args.model,
        n=args.n,
        m=args.m,
        lmbda=QUALITY_LAMBDAS[qualities[-1]],
        lambdas=lambdas,
        init_lmbda=init_lmbda if variable else None,
        steps=args.steps,
        batch=args.batch,
        crop=args.crop,
        lr=args.lr,
        lr_final=min(args.lr, 1e-4),
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        extra={"init": args.init or ""},
        warmup=warmup,
        mixed_quantization=args.mixed_quantization,
        bf16=args.bf16,
        decoder_only=args.decoder_only,
        int8=int8,
        context=CONTEXT_CHOICES.get(args.context, 0),
        frozen=ENTROPY_ONLY_FROZEN if args.entropy_only else (),
        encoder_only=args.encoder_only,
    )
    if args.encoder_only:
        _check_same_decoder(args, cfg, init_model, init_meta)
    images = training_images(debian=not args.no_debian, extra_dirs=args.images)
    model, hist = train_codec(cfg, images, work_dir=args.work_dir, init=init, progress=sys.stderr.isatty())
    from convpress.core.distributed import is_main

    if not is_main():  # under torchrun only rank 0 writes
        return 0
    levels = {"levels": json.dumps({str(q): v for q, v in zip(qualities, lambdas, strict=True)})} if variable else None
    if args.encoder_only:  # the --init file with the new analysis: it still decodes the files made with --init
        wid = with_encoder(args.init, model, out)
    else:
        wid = save_weights(model, out, quality=qualities[-1], lmbda=cfg.lmbda, extra=levels, int8=args.int8)
    last = hist[-1] if hist else {}
    print(f"wrote {out} (weights {wid}); last {last.get('step', 0)} steps: bpp {last.get('bpp', 0):.3f}, PSNR {last.get('psnr', 0):.2f} dB")
    return 0


def _check_same_decoder(args: argparse.Namespace, cfg: Any, init_model: Any, init_meta: dict[str, str]) -> None:
    """Refuse an --encoder-only run (settings ``cfg``) whose model would not be --init's, trained at its lambdas
    (its decoder is kept as loaded)."""
    import json

    config = cfg.model_config()
    if init_model.name != cfg.model or init_model.config != config:
        raise ConfigError(
            f"--encoder-only keeps {args.init}'s decoder, a {init_model.name} model {json.dumps(init_model.config)}; "
            f"these options make a {cfg.model} model {json.dumps(config)} (give its --model, --n, --m, --quality levels and --context)"
        )
    levels = json.loads(init_meta["levels"]) if "levels" in init_meta else {init_meta.get("quality", "?"): init_model.lmbda}
    if [float(v) if v is not None else None for v in levels.values()] != list(cfg.lambdas or (cfg.lmbda,)):
        raise ConfigError(f"--encoder-only trains {args.init}'s levels at their lambdas: give --quality {','.join(levels)}")


main = subcommand_main("codec")
