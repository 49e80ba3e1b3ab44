"""Candidate weights where the narrow transform (levels 1-4) also serves level 5, in place of the wide one.

On the validation photos (:func:`convpress.data.photos.validation_photos`, effort 0, 2026-12-07) the shipped
narrow model (N=64, M=96) given a fifth level reaches a lower rate-distortion loss at level 5's lambda
(0.013) than the wide model (N=96, M=192) that encodes level 5 now, on all 8 photos (7% lower in total):
at that rate the wide model pays for its width on these mostly flat photos. This writes, into
``--out-dir``:

* ``varrate.safetensors``: the shipped narrow file with a level 5 whose gains are level 4's times
  ``sqrt(0.013 / 0.0067)`` (:func:`convpress.codec.train.regained_state`; its inverse gains divided by it),
  every other tensor as stored (int8 codes kept, :func:`convpress.codec.weights.save_weights`'s ``int8_codes``);
* ``varrate-mid.safetensors``: the shipped wide file without its level 5 (levels 6-7; the same tensors but
  the gain rows of level 5);
* ``varrate-top.safetensors``: a copy of the shipped one.

``benchmarks/codec_weights_check.py SHIPPED_DIR:varrate OUT_DIR:varrate`` compares the two: BD-rate -2.0% on
the validation photos at effort 0, level 5 -3.7% against WebP where the wide level 5 is +17.7%
(``benchmarks/results/codec_weights_check-narrow5.txt``). With ``--gains-from FILE`` level 5's gains come from
a file in which only they were trained instead; 2,000 such steps (the output's ``varrate.safetensors``)::

    python benchmarks/train_codec_weights.py --work-dir W --model varrate --context channels --qualities 5
        --init OUT_DIR/varrate.safetensors --n 64 --m 96 --mixed-quantization --int8
        --freeze g_a.,g_s.,h_a.,h_a_signed.,h_s.,h_m.,ctx_m.,ctx_s.,entropy_bottleneck.
        --finetune-steps 2000 --finetune-lr 3e-4 --fresh-lr-scale 1 --warmup 100 --chunk 1000 --crop 256
        --batch 2 --wallpapers --threads 2 --out-dir G

gave BD-rate -0.0% against the untrained gains (level 5 at 0.228 bpp / 36.92 dB instead of 0.232 / 36.97):
the regained gains are kept. (``--bf16`` made those steps about 10x slower on a CPU without AVX-512.)

Shipping it would move the replaced narrow and mid files to ``legacy-weights`` (their ids change, and the
files made with them must keep decoding).

    python benchmarks/codec_narrow_level5.py --out-dir /tmp/narrow5
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from convpress.codec.models import build_model
from convpress.codec.train import regained_state
from convpress.codec.weights import WEIGHTS_DIR, load_weights, save_weights, stored_int8_codes

NEW_LAMBDA = 0.013  # level 5's


def _rewritten(src: Path, out: Path, levels: dict[int, float], state_fn) -> str:  # type: ignore[no-untyped-def]
    """``src``'s model with ``levels`` (quality -> lambda) and the gains ``state_fn(state, old_lambdas)`` gives,
    written to ``out`` with its int8 codes kept; returns the new weights id."""
    model, meta = load_weights(src)
    old = {int(k): float(v) for k, v in json.loads(meta["levels"]).items()}
    state = state_fn(model.state_dict(), list(old.values()))
    cfg = {**model.config, "LEVELS": len(levels)}
    new = build_model(model.name, cfg)
    new.load_state_dict(state)
    codes = stored_int8_codes(src)
    keep = {k: v for k, v in meta.items() if k not in {"model", "config", "quality", "lambda", "weights_id", "decodes", "levels"}}
    keep["levels"] = json.dumps({str(q): v for q, v in levels.items()})
    top = max(levels)
    return save_weights(new, out, quality=top, lmbda=levels[top], extra=keep, int8="int8" in meta, int8_codes=codes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, help="folder to write the three candidate files into (created)")
    p.add_argument("--gains-from", help="a narrow variable-rate weights file whose level of quality 5 gives level 5's gains")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = Path(WEIGHTS_DIR)
    narrow_levels = {1: 0.0009, 2: 0.0018, 3: 0.0035, 4: 0.0067, 5: NEW_LAMBDA}

    def level5(st, lams):  # type: ignore[no-untyped-def]
        st = regained_state(st, lams, list(narrow_levels.values()))
        if args.gains_from:
            trained, meta = load_weights(args.gains_from)
            i = [int(q) for q in json.loads(meta["levels"])].index(5)
            st["gain"][4], st["inv_gain"][4] = trained.gain.detach()[i], trained.inv_gain.detach()[i]
        return st

    wid = _rewritten(src / "varrate.safetensors", out / "varrate.safetensors", narrow_levels, level5)
    print(f"varrate.safetensors: levels 1-5, weights {wid}")

    def drop_first(st, lams):  # type: ignore[no-untyped-def]
        return {**st, "gain": st["gain"][1:], "inv_gain": st["inv_gain"][1:]}

    wid = _rewritten(src / "varrate-mid.safetensors", out / "varrate-mid.safetensors", {6: 0.025, 7: 0.0483}, drop_first)
    print(f"varrate-mid.safetensors: levels 6-7, weights {wid}")
    shutil.copyfile(src / "varrate-top.safetensors", out / "varrate-top.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
