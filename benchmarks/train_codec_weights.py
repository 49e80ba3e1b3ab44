"""Train the shipped codec weights (``src/convpress/weights/codec/varrate*.safetensors``; the superseded
fixed-rate ``hyperprior-q*.safetensors`` are in ``legacy-weights/src/convpress_legacy_weights/codec``).

Trains the highest-rate model from scratch on the bundled TRAIN photos plus the natural photos
of Debian's ``opencv-doc`` package (when installed), then fine-tunes a copy for each lower
lambda, each starting from the previous one, which converges far faster than training from
scratch. Weights are exported after every chunk of steps, so usable weights exist early.
Resumable: rerun the same command and every stage continues from its checkpoint.

    PYTHONPATH=src python benchmarks/train_codec_weights.py --work-dir /tmp/codec-train

Under ``torchrun --nproc_per_node N`` every step takes the same global batch split over the N
processes (see :mod:`convpress.codec.train`), so a run can switch between one process and N
from its checkpoint; only rank 0 writes weights.

The shipped weights were made on a shared 2-core CPU in several sessions (single-threaded). Until
2026-12-02 there were four levels, numbered 1-4; they are now levels 3-6 (same lambdas), and
stages 1-3 below use the old numbers. "The check photos" of stages 6-21 are the 6 photos that
``benchmarks/codec_weights_check.py`` used until 2026-12-07, which are test photos of ``bench codec``
(coffee, rocket, Dragonfly, Wine, picosdeeuropa, Kleiber): those weights were chosen on part of the
test set. The check now uses 8 validation photos that are neither training nor test photos
(:data:`convpress.data.photos.VALIDATION_PHOTOS`; ``--photos legacy`` reproduces the old figures):

1. quality 4 from scratch (``--qualities 4 --base-steps 3000``); qualities 3, 2 and 1 each
   fine-tuned in a parallel process from a snapshot of quality 4 taken at step 1750
   (``--qualities Q --init q4-step1750.safetensors --finetune-steps 1200 --finetune-lr 5e-4``);
2. quality 4 trained 3000 more steps from its first-session weights
   (``--qualities 4 --init hyperprior-q4.safetensors --finetune-steps 3000 --finetune-lr 5e-4``),
   then qualities 3, 2, 1 fine-tuned in a chain from it
   (``--qualities 3,2,1 --init <new q4> --finetune-steps 800 --finetune-lr 3e-4 --chunk 200``).

3. (2026-12-02) quality 4 trained 7000 more steps with a warm-up
   (``--qualities 4 --init hyperprior-q4.safetensors --finetune-steps 7000 --finetune-lr 3e-4 --warmup 100 --chunk 500``,
   70 min), then qualities 3, 2, 1 fine-tuned in a chain from it
   (``--qualities 3,2,1 --init <new q4> --finetune-steps 800 --finetune-lr 3e-4 --warmup 50 --chunk 400``, 25 min).

4. (2026-12-02, new numbering; about 75 min of two single-threaded processes) two lower levels
   fine-tuned in a chain from level 3 (the old 1), 2000 steps each (``--qualities 2,1 --init
   hyperprior-q3.safetensors --finetune-steps 2000 --finetune-lr 3e-4 --warmup 50``); then every
   level trained further from its own weights with ``--qualities Q --init hyperprior-qQ.safetensors
   --finetune-lr 2e-4 --warmup 50`` and ``--finetune-steps`` 600 then 1200 (level 6), 1200 then 1000
   (levels 5, 4, 3) and 1000 (levels 2, 1).

   ``--mixed-quantization`` was tried on level 6 in the same 600 steps: 0.730 bpp / 29.60 dB on the
   benchmark photos against 0.733 bpp / 29.63 dB without it, i.e. no gain here, so it is not used.

5. (2026-12-03) the crop size matters: with 128-pixel crops z is 2x2 per crop, so the hyperprior
   learns from little context. Level 4 fine-tuned for 600 steps on 256-px crops, batch 2
   (``--crop 256 --batch 2``: the same pixels per step), needs 13% fewer bits than the level 4 of
   stage 4 at equal PSNR on 6 held-out photos (31.17 dB at 0.345 bpp against 31.18 at 0.396); the
   same 600 steps on 128-px crops, 3% fewer (31.20 at 0.384).

6. (2026-12-03, shipped; about 25 min of two single-threaded processes) every level fine-tuned
   from its own stage-4 weights on 256-px crops: ``--qualities Q --init hyperprior-qQ.safetensors
   --finetune-lr 2e-4 --warmup 50 --crop 256 --batch 2`` with ``--finetune-steps`` 1200 (levels 6
   and 5) or 800 (levels 4-1). ``benchmarks/codec_weights_check.py`` on its 6 held-out photos,
   effort 0: BD-rate -12.8% against stage 4, +16.4% against WebP (stage 4: +33.3%).

   Levels 7 and 8 (lambda 0.0483, 0.0932; a chain from the new level 6, 1200 steps each) were
   tried and dropped: level 7 reached 33.15 dB at 0.686 bpp against level 6's 32.76 at 0.616 on
   those photos. The ceiling is the transform, not the rate: with unquantized latents, g_s(g_a(x))
   of level 6 gives 30.5 dB on coffee and 34.8 dB on the dragonfly (level 7: 30.7 and 34.8), so
   higher levels need a wider model (N=64, M=96 now) trained for longer.

7. (2026-12-05, nothing shipped) a wider model for the top levels (N=96, M=192: 6.3 MB in float16),
   started from level 6 by ``--init hyperprior-q6.safetensors --n 96 --m 192`` (Net2Net-style
   widening, :func:`convpress.codec.train.widened_state`: the same reconstruction and coded
   latents at step 0), ``--wallpapers``, 256-px crops, batch 2, lr 2e-4. Measured on coffee and
   the dragonfly (effort 0, unquantized transform in brackets); level 6 as shipped: 29.49 dB at
   0.832 bpp (29.99) and 33.36 at 0.738 (34.65):

   * level 7 (lambda 0.0483), 2000 steps: 29.76 at 0.977 (30.14) and 33.93 at 0.837 (34.90);
     the narrow level 7 of stage 6 had reached 33.15 dB at 0.686 bpp on the 6 check photos, the
     wide one 32.13 at 0.707 after 1000 steps: worse;
   * level 9 (lambda 0.18), 2000 steps: 29.01 at 1.081 (29.25) and 32.54 at 0.928 (33.02):
     more bits for less PSNR, the transform itself got worse;
   * the new latent channels stayed unused: after 2000 steps 0.0-0.3% of them round to a
     non-zero value (with zero weights into the old synthesis channels, and after that fix with
     small ones); the new z channels cost about 0.035 bpp more (fresh entropy-model channels);
   * controls, 1200 steps at level 6's own lambda: the widened model 29.05 / 32.90 dB, and the
     narrow level 6 trained on (no widening, no wallpapers) 29.49 / 32.92: more steps at lr 2e-4
     and batch 2 do not improve the shipped levels either (noise, not learning).

   So the top levels need a wide model trained from scratch for long: started on 2026-12-05 as
   ``--qualities 8 --base-steps 60000 --chunk 2000 --crop 256 --batch 2 --n 96 --m 192
   --wallpapers`` (about 0.6 s per step on one core: many sessions; rerun the same command to
   resume from its checkpoint, or under ``torchrun --nproc_per_node 2``).

8. (2026-12-05) the from-scratch wide run of stage 7 reached step 6,800 (26.3 dB at 1.23 bpp on its
   training crops; 28.38 dB at 1.11 bpp on the 6 check photos, where the shipped level 6 gives
   32.76 at 0.62) and continues as the mean-scale hyperprior (:mod:`convpress.codec.models.meanscale`,
   Minnen et al.'s means without the context model), started from its step-6,800 weights
   (``--export-checkpoint --qualities 8 --n 96 --m 192 --work-dir <stage 7's>`` writes
   ``hyperprior-q8-step6800.safetensors``), two threads and
   channels-last training (0.30 s per step against 0.68 s single-threaded)::

       --model meanscale --qualities 8 --init hyperprior-q8-step6800.safetensors --finetune-steps 54000
       --finetune-lr 5e-4 --warmup 100 --fresh-lr-scale 10 --chunk 1000 --crop 256 --batch 2 --n 96
       --m 192 --wallpapers --threads 2

   (rerun the same command to resume). On the check photos: 28.53 dB at 1.17 bpp after 1,000 steps,
   31.51 at 1.21 after 5,000, 33.61 at 1.195 after 14,000 (kept in ``benchmarks/candidates/codec/``).

9. (2026-12-05) one variable-rate model for levels 1-6 (``--model varrate``, gain units, one 3.2 MB
   file where the six fixed-rate files are 18 MB), started from the shipped level 6 (gains at
   ``sqrt(lambda / 0.025)``; the mean head and signed hyper-analysis are new)::

       --model varrate --qualities 1,2,3,4,5,6 --init hyperprior-q6.safetensors --finetune-steps 8000
       --finetune-lr 2e-4 --warmup 100 --fresh-lr-scale 10 --chunk 500 --crop 256 --batch 2 --wallpapers --threads 2

   (0.2 s per step, 27 min). On the check photos (effort 0), BD-rate against the six fixed-rate
   files: +34.1% at step 0 (the level-6 transforms at every level), +43.8% at step 4,000 (the
   shared transforms first lose the top: level 6 at 30.84 dB), **+0.8% at step 8,000** (the end of
   the cosine decay), +12.0% against WebP (the fixed-rate files +16.4%): levels 3 and 4 are better
   than their fixed-rate files, level 6 reaches 32.00 dB at 0.543 bpp (the file: 32.76 at 0.616).
   (Kept as a candidate until the continuation below shipped; in git history.) The fixed-rate files stay
   shipped whatever happens: files made with them must keep decoding. It continues with a level 7
   (:func:`convpress.codec.train.regained_state` gives a new level the gains of its nearest one
   times the square root of the lambda ratio)::

       --model varrate --qualities 1,2,3,4,5,6,7 --init varrate-step8000.safetensors --finetune-steps 8000
       --finetune-lr 1.5e-4 --warmup 100 --chunk 500 --crop 256 --batch 2 --wallpapers --threads 2

   (27 min) and is shipped as ``varrate.safetensors``: BD-rate **-10.3%** against the six fixed-rate
   files, +3.2% against WebP (they: +16.4%); level 7 reaches 32.70 dB at 0.659 bpp (+58% bits
   against WebP there: the narrow transform's ceiling again). Output of ``codec_weights_check.py``
   in the git history of ``benchmarks/results/codec_weights_check.txt``. Two cosine cycles did what one 8,000-step
   cycle did not: most of each cycle's gain comes in its last, low-learning-rate quarter.

10. (2026-12-05) the wide mean-scale run of stage 8 continues in shorter annealed cycles, so that a
    session ends with a low-learning-rate snapshot (most of a cosine cycle's gain comes at its end, see
    stage 9): its step-16,400 checkpoint exported (``--export-checkpoint``), then::

        --model meanscale --qualities 8 --init meanscale-q8-step16400.safetensors --finetune-steps 12000
        --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --n 96 --m 192 --wallpapers --threads 2

    At step 9,000 of 12,000: 35.47 dB at 1.197 bpp on the check photos (effort 0; stage 8's step
    14,000: 33.61 at 1.195); at the end of the cycle **35.67 dB at 1.198 bpp**, +53.6% bits against
    WebP at that PSNR; kept in
    ``benchmarks/candidates/codec/meanscale-q8-wide.safetensors``.

11. (2026-12-05, running across sessions) a wide variable-rate model for the top levels 8-10 (lambda
    0.0932, 0.18, 0.35), shipped as ``varrate-top.safetensors`` beside the narrow
    ``varrate.safetensors`` (levels 1-7; :func:`convpress.codec.weights.variable_rate_files`), from
    the stage-10 candidate (its gains start at ``sqrt(lambda / 0.0932)``)::

        --model varrate --qualities 8,9,10 --init meanscale-q8-wide.safetensors --n 96 --m 192
        --finetune-steps 12000 --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --wallpapers --threads 2

    At the end of the cycle (weights 420ae7d5; ``codec_weights_check.py``, effort 0): level 8 35.85 dB
    at 1.206 bpp (+49% bits against WebP), level 9 36.35 at 1.478, level 10 36.67 at 1.788 (+88%):
    not shipped. The synthesis is the ceiling: latents optimised freely for the MSE through level
    10's g_s give 34.5 dB on a 384x256 crop of ``coffee`` (41.1 on ``Kleiber``), where WebP reaches
    36.8 dB at 2.0 bpp on the whole photo. Re-checked in format version 4 (escaped latents: the
    clamp of version 3 had cost up to 10 dB on some photos), the same check gives level 8 36.21 dB at
    1.207 bpp (+39.3% bits against WebP), 9 36.78 at 1.479 (+51.7%), 10 37.17 at 1.789 (+69.7%), and
    the 17 test photos of ``bench codec`` at effort 0 37.02 / 37.67 / 38.10 dB: shipped on
    2026-12-05 as ``varrate-top.safetensors`` so that the curve reaches 38 dB (figures in BENCHMARKS.md).

12. (2026-12-05) ``--bf16`` (bfloat16 autocast of g_a and g_s): two 800-step fine-tunes of the shipped
    ``varrate.safetensors`` on the same seeds (``--qualities 1,2,3,4,5,6,7 --init varrate.safetensors
    --finetune-steps 800 --finetune-lr 1.5e-4 --warmup 100 --chunk 800 --crop 256 --batch 2
    --wallpapers --threads 2``, with and without ``--bf16``): 84 s against 158 s, and on the check
    photos BD-rate +3.4% (bf16) and +5.8% (float32) against the shipped file. So bfloat16 costs
    nothing measurable, and a short cycle at lr 1.5e-4 undoes more than it gains on a converged model.

13. (2026-12-05) the wide transform for the middle levels 5-7, shipped as ``varrate-mid.safetensors``
    (a part file that takes those qualities over from ``varrate.safetensors``, whose levels 5-7 still
    decode the files made with them): the stage-11 weights (levels 8-10, 420ae7d5) with their gains
    regained to levels 5-7 (:func:`convpress.codec.train.regained_state`)::

        --model varrate --qualities 5,6,7 --init <stage-11 varrate.safetensors> --n 96 --m 192
        --finetune-steps 12000 --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --wallpapers
        --threads 2 --bf16

    About 55 minutes. On the check photos (effort 0), step 3,000 / 6,000 / 12,000: level 5 +29.7% /
    +25.1% / **+13.7%** bits against WebP (33.11 dB at 0.518 bpp), level 6 +34.8 / +30.7 / **+15.5%**
    (34.25 dB at 0.673), level 7 +48.0 / +42.0 / **+24.5%** (35.13 dB at 0.873); the narrow levels
    5-7: +11.8% at 0.393 bpp, +33.9% at 0.528, +58.1% at 0.659. Over the fixed-rate curve's PSNR
    interval (29.17-32.76 dB), narrow levels 1-4 with these need 0.8% fewer bits than WebP, where the
    narrow levels 1-7 needed 3.2% more (git history of ``benchmarks/results/codec_weights_check.txt``).

14. (2026-12-05, running across sessions) the top levels 8-10 with twice the latent channels (M=384,
    N=96: a latent of half as many numbers as the image has, where M=192 has a quarter; a per-image
    PCA of 16x16 blocks keeps 39.1 dB of ``coffee`` with 192 components and 50.3 with 384), widened
    from the stage-11 weights (:func:`convpress.codec.train.widened_state`)::

        --model varrate --qualities 8,9,10 --init <stage-11 varrate.safetensors> --n 96 --m 384
        --finetune-steps 12000 --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --wallpapers
        --threads 2 --bf16

    Stopped at step 7,000 (2026-12-05): on the check photos (effort 0, format version 4) level 8 35.72 dB
    at 1.173 bpp, 9 36.29 at 1.439, 10 36.62 at 1.754 (step 6,600), below stage 11 (36.21 / 36.78 / 37.17
    at 1.207 / 1.479 / 1.789) and below its own step 5,600 (36.03 / 36.61 / 37.03): twice the latent
    channels do not lift the top levels; the synthesis is the ceiling (stage 11). Not shipped.

15. (2026-12-05) the top levels with a wider synthesis and analysis (N=128, M=192; the synthesis costs
    1.78x), widened from the shipped ``varrate-top.safetensors`` (420ae7d5), one cycle::

        --model varrate --qualities 8,9,10 --init varrate-top.safetensors --n 128 --m 192 --finetune-steps 6000
        --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --wallpapers --threads 1 --bf16

    About 35 minutes. On the check photos (effort 0): level 8 36.31 dB at 1.201 bpp, 9 36.89 at 1.470, 10 37.29 at
    1.783, against 36.21 / 36.78 / 37.17 at 1.207 / 1.479 / 1.789: +0.10 to +0.13 dB for 1.78x the decoding
    work and 1.7x the file, about what stage 16 gets for nothing. Not shipped; the width is not the ceiling either.

16. (2026-12-05) decoder-only fine-tunes (``--decoder-only``, :class:`convpress.codec.train.CodecTrainConfig`):
    the synthesis and the inverse gains trained on the actual rounded latents of the frozen rest, for the
    distortion alone, so files encode to the same bytes and decode closer to the image (the synthesis
    was trained on noisy latents)::

        --model varrate --qualities 8,9,10 --init varrate-top.safetensors --n 96 --m 192 --decoder-only
        --finetune-steps 3000 --finetune-lr 1e-4 --chunk 1000 --crop 256 --batch 2 --wallpapers --threads 1

    (and ``--qualities 5,6,7 --init varrate-mid.safetensors``), about 15 minutes each. A first run of the same
    recipe (a script outside the repo, float32, cosine to 0) gave on the check photos +0.139 / +0.176 / +0.194 dB
    at levels 8 / 9 / 10 and +0.115 / +0.128 / +0.180 dB at levels 5 / 6 / 7 after 1,000 steps, at the same bits.
    Shipped (2026-12-06; the replaced files moved unchanged to ``legacy-weights``, so the files made with them
    keep decoding): levels 1-4 after these 3,000 steps (weights 32359fa2, from ``varrate.safetensors`` 60db9802
    with ``--qualities 1,2,3,4``), levels 5-7 and 8-10 after 10,000 steps (``--finetune-steps 10000 --chunk
    2500``; 03687bfa and 112fa825). On the check photos (``codec_weights_check.py``, effort 0, the same bits
    per level): levels 1-4 +0.10 / +0.12 / +0.11 / +0.07 dB; levels 5-7 +0.15 / +0.17 / +0.26 dB after
    3,000 steps and +0.17 / +0.19 / +0.27 after 10,000; levels 8-10 +0.13 / +0.18 / +0.20 and +0.16 / +0.21 /
    +0.23. The gain of refinement partly overlaps with theirs: ``codec_weights_check.py --effort 30`` gives
    -1.2% against WebP where the replaced files give -0.0% (BD-rate -1.9% between the two), at effort 0
    +8.2% and +12.0% (about -4%). In ``bench codec`` (17
    test photos): effort 0 from 9.7% to 6.0% more bits than WebP, effort 100 from 7.9% to 9.2% fewer, AVIF
    from 50.4% to 48.1% more.

17. (2026-12-06) one wide model for all ten levels, so that one 7.5 MB file could
    replace the three (18.2 MB): the shipped ``varrate-mid.safetensors`` (03687bfa, levels 5-7) with its gains
    regained to levels 1-10 (:func:`convpress.codec.train.regained_state`)::

        --model varrate --qualities 1,2,3,4,5,6,7,8,9,10 --init varrate-mid.safetensors --n 96 --m 192
        --finetune-steps 12000 --finetune-lr 3e-4 --warmup 100 --chunk 1000 --crop 256 --batch 2 --wallpapers
        --threads 1 --bf16

    (about 7 minutes per 1,000 steps on one thread, under 3 with two; rerun the same command to resume).
    Not shipped: after the 12,000 steps (weights b465a5fa) ``codec_weights_check.py`` gives BD-rate +16.6%
    against the three files (+18.0% against WebP where they give +8.2%); the low levels come close (level
    3 30.49 dB at 0.262 bpp against 30.38 dB at 0.222) but the top ones stall: levels 8-10 reach 35.51 /
    35.76 / 35.82 dB where the top file reaches 36.36 / 36.99 / 37.40 dB. One N=96 transform shared by all
    ten levels does not get there in this budget; the files shrink instead with int8 weights (stage 18).

18. (2026-12-06) int8 weights (:func:`convpress.codec.weights.int8_kernels`): the three shipped files
    rewritten with their convolution weights in int8, one float16 scale per kernel (the layers that touch
    the pixels stay float16), with no training::

        python benchmarks/train_codec_weights.py --refresh --int8 --model varrate --out-dir DIR   # DIR: copies of the files

    18.2 MB -> 10.8 MB. On the check photos (``codec_weights_check.py``, effort 0) against the float16
    files: BD-rate +0.1%, +8.2% against WebP for both. Tried first: one scale per output channel (dim 0)
    +1.3% (by layer group: the analysis +0.7%, of which its first layer +0.5%; the synthesis +0.8%, of
    which its inner layers +0.7%; the hyper-transforms +0.1%); per output channel with the pixel layers in
    float16 +0.9%; per output channel (dim 1) of the synthesis's transposed convolutions +1.5% for its inner
    layers alone (dim 0: +0.7%). Decoder-only fine-tunes with the weights so rounded (``--decoder-only
    --int8 --finetune-steps 3000 --finetune-lr 1e-4 --bf16``, straight-through gradients) won little:
    per output channel +0.6% (from +1.3%) and +0.8% (from +0.9%), per kernel +0.2% (from +0.1%). Shipped:
    the per-kernel files without training (94fbf7c8, 4188d64d, 0f401ba0); the float16 files moved
    unchanged to ``legacy-weights``.

19. (2026-12-06) the checkerboard context (``--context``; :mod:`convpress.codec.models.varrate`): each of the
    three int8 files fine-tuned with its context layers started at zero and its transforms and gains frozen
    (``--freeze g_a.,g_s.,gain,inv_gain``, as ``codec train --entropy-only``), so the latents and the decoder
    stay those of stage 18 and only the entropy model (hyper-analysis and -synthesis, means, factorized
    prior, context) learns::

        --model varrate --context --qualities 1,2,3,4 --init varrate.safetensors --n 64 --m 96
        --freeze g_a.,g_s.,gain,inv_gain --finetune-steps 4000 --finetune-lr 1e-4 --fresh-lr-scale 1 --warmup 100
        --chunk 1000 --crop 256 --batch 2 --wallpapers --threads 2 --bf16

    and ``--qualities 5,6,7 --init varrate-mid.safetensors`` and ``--qualities 8,9,10 --init
    varrate-top.safetensors`` with ``--n 96 --m 192 --finetune-steps 8000`` (about 3, 15 and 15 minutes
    with two threads), then ``--refresh --int8``. The runs were made with full 3x3 context kernels, whose
    five taps off the cross got no gradient and stayed exactly zero; they were rewritten as
    :class:`~convpress.codec.models.varrate.CrossConv` (the four taps), the same function, so rerunning
    the commands with this code trains the same model. Shipped (45858f0d, d6d9c683, 747ed109; the stage-18
    files moved unchanged to ``legacy-weights``). On the check photos (``codec_weights_check.py``, effort 0)
    against stage 18: BD-rate **-3.0%** over the ten levels (+5.0% against WebP, from +8.2%), the same PSNR
    within 0.01 dB, per level 0.110 -> 0.105 / 0.158 -> 0.153 / 0.222 -> 0.215 / 0.294 -> 0.286 / 0.518 -> 0.501 /
    0.673 -> 0.653 / 0.873 -> 0.848 / 1.207 -> 1.169 / 1.479 -> 1.438 / 1.789 -> 1.744 bpp; files 10.8 -> 11.8 MB.
    Tried on levels 1-4 (4,000 steps each, BD-rate against stage 18 on the check photos): the context
    learning rate 5x higher (``--finetune-lr 2e-4 --fresh-lr-scale 5``) -3.8%, but the same on levels 5-7
    made them 8% worse (a fresh layer of 192 x 192 x 4 weights under Adam moves too far per step:
    the second pass cost more than without context, on training crops too); 5x5 kernels -0.7% at that rate;
    the analysis trained as well (``--freeze g_s.,gain,inv_gain``) -3.1% (it trades PSNR for bits);
    per-channel (depthwise) context -2.1%; 12,000 steps instead of 4,000: -3.6% at 6,000 (stopped).

20. (2026-12-06) the channel context (``--context channels``, ``CONTEXT`` 2): each stage-19 file's entropy model
    fine-tuned again with the channel taps started at zero, transforms and gains frozen::

        --model varrate --context channels --qualities 1,2,3,4 --init varrate.safetensors --n 64 --m 96
        --freeze g_a.,g_s.,gain,inv_gain --finetune-steps 4000 --finetune-lr 1e-4 --fresh-lr-scale 1 --warmup 100
        --chunk 1000 --crop 256 --batch 2 --wallpapers --threads 1 --bf16

    and likewise ``--qualities 5,6,7 --init varrate-mid.safetensors`` and ``--qualities 8,9,10 --init
    varrate-top.safetensors`` with ``--n 96 --m 192`` (4,000 steps too; one thread each, run side by side and
    beside ``bench codec``), then ``--refresh --int8``. Shipped (2aa6738a, 79ecf3df, b0346fb7; the stage-19
    files moved unchanged to ``legacy-weights``). On the check photos (effort 0) against stage 19: BD-rate
    **-2.1%** (+2.7% against WebP, from +5.0%), per level 0.105 -> 0.103 / 0.153 -> 0.149 / 0.215 -> 0.210 /
    0.286 -> 0.280 / 0.501 -> 0.487 / 0.653 -> 0.636 / 0.848 -> 0.827 / 1.169 -> 1.134 / 1.438 -> 1.398 /
    1.744 -> 1.703 bpp at PSNRs within 0.02 dB; files 11.8 -> 12.1 MB. Measured first on levels 1-4 in float
    (estimated bits; 4,000 steps): a control trained as long without the channel context -0.6% (more steps
    alone), the anchors split -1.6%, both passes split -2.2% (so about 1.6 points are the context's).
    Tried: everything trained with the context (no ``--freeze``, ``--finetune-lr 3e-5``, 4,000 steps on levels
    1-4): +3.4% *worse* on the check photos (PSNR fell 0.1-0.5 dB).

21. (2026-12-07) encoder-only fine-tunes (``--encoder-only``,
    :class:`convpress.codec.train.CodecTrainConfig`): the analysis and hyper-analysis trained for the
    rate-distortion loss with the synthesis seeing the rounded latents (straight-through) and everything a
    decoder reads frozen, written with :func:`convpress.codec.weights.with_encoder` (the stage-20 file with
    only those tensors replaced, metadata ``decodes`` naming its weights id: the new file also decodes the
    files made with the old one, to the same pixels)::

        --model varrate --context channels --qualities 1,2,3,4 --init varrate.safetensors --n 64 --m 96
        --encoder-only --finetune-steps 8000 --finetune-lr 1e-4 --warmup 100 --chunk 2000 --crop 256 --batch 2
        --wallpapers --threads 1 --bf16 --int8

    (about 20 minutes on one thread) and ``--qualities 5,6,7 --init varrate-mid.safetensors`` and ``--qualities
    8,9,10 --init varrate-top.safetensors`` with ``--n 96 --m 192 --finetune-steps 6000``. On the check photos
    (``codec_weights_check.py``) against stage 20, levels 1-4: 2,000 steps -1.6% at effort 0 (-0.6% at
    effort 10), 8,000 steps **-2.3%** at effort 0 and **-0.8%** at effort 10; the same 2,000 steps with
    noisy latents for the synthesis (no straight-through rounding) +0.9%, and a stop half way through the
    8,000-step cycle (learning rate still high) -1.2%. The wide files gain nothing: after the 6,000 steps levels
    5-10 together -0.2% at effort 0 (levels 5-7 about -0.4%, 8-10 +0.0 to +0.3%; at step 2,000 +1.0%), so only
    levels 1-4 are a candidate: a second 8,000-step cycle from the first (``--init`` the first cycle's file,
    ``--threads 2``, 15 minutes; its ``decodes`` lists both earlier ids) gives **-2.9%** at effort 0 and **-1.1%**
    at effort 10 against stage 20 (weights 87f8c536), and a third (``--init`` the second's file, 8,000 steps,
    15 minutes) **-3.3%** at effort 0 and **-1.1%** at effort 10 (weights d2749151; ``decodes`` = "87f8c536
    6eb97254 2aa6738a"). Shipped as ``varrate.safetensors`` (no legacy copy: its decoder is 2aa6738a's, so it
    decodes that file's ``.cpi`` files itself).

That is about 15,000 steps of batch 8 for level 6: far from converged (published models train
for hundreds of thousands of steps); the codec's advantage over JPEG lies at the low rates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from convpress.cli.codec import CONTEXT_CHOICES, add_context_argument
from convpress.codec.models import CODEC_MODELS, DEFAULT_MODEL, CodecModel, is_variable_rate
from convpress.codec.train import QUALITY_LAMBDAS, CodecTrainConfig, plain_state, regained_state, train_codec, training_images
from convpress.codec.weights import WEIGHTS_DIR, save_weights, with_encoder
from convpress.core.distributed import is_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir")
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        choices=CODEC_MODELS.choices(),
        metavar="MODEL",
        help="codec model: %(choices)s (default: %(default)s)",
    )
    p.add_argument("--qualities", default="6,5,4,3,2,1", help="first one trained from scratch, then each fine-tuned from the previous")
    p.add_argument("--base-steps", type=int, default=2500)
    p.add_argument("--finetune-steps", type=int, default=800)
    p.add_argument("--chunk", type=int, default=250, help="export weights every CHUNK steps")
    p.add_argument("--crop", type=int, default=128, help="side of the random training crops (a multiple of 64)")
    p.add_argument("--batch", type=int, default=8, help="crops per step")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--m", type=int, default=96)
    p.add_argument(
        "--init",
        help="weights file to fine-tune the first quality from (instead of training it from scratch); "
        "if --n/--m are wider than its model, it is widened first, computing the same function",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--finetune-lr", type=float, default=2e-4, help="peak learning rate of fine-tuning (cosine decay to a quarter)")
    p.add_argument("--warmup", type=int, default=0, help="steps of linear learning-rate warm-up of every stage (use ~100 when fine-tuning)")
    p.add_argument(
        "--fresh-lr-scale",
        type=float,
        default=1.0,
        help="learning-rate factor of the parameters the --init weights do not hold (10: a meanscale model from hyperprior weights)",
    )
    p.add_argument(
        "--wallpapers",
        action="store_true",
        help="also train on the photos among Debian's plasma and mate wallpapers "
        "(apt-get install plasma-workspace-wallpapers mate-backgrounds)",
    )
    p.add_argument("--mixed-quantization", action="store_true", help="decoder sees rounded latents straight-through (fine-tuning)")
    p.add_argument(
        "--decoder-only",
        action="store_true",
        help="train only g_s (and a variable-rate model's inverse gains) on the rounded latents of the frozen rest: "
        "files encode to the same bytes and decode closer to the image (a final fine-tune; one process)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="train with the convolution weights rounded to int8 as the written files store them "
        "(one float16 scale per kernel; files about half the size)",
    )
    p.add_argument(
        "--encoder-only",
        action="store_true",
        help="train only the analysis and hyper-analysis (the synthesis sees rounded latents) and write the --init "
        "file with them (convpress.codec.weights.with_encoder): the same decoder, which also decodes --init's files",
    )
    add_context_argument(p)
    p.add_argument(
        "--freeze",
        default="",
        help="comma-separated prefixes of parameter names kept as --init holds them "
        "(g_a.,g_s.,gain,inv_gain: fine-tune a --context model's entropy model alone)",
    )
    p.add_argument("--bf16", action="store_true", help="transforms in bfloat16 autocast: about 2x faster steps on AVX512-BF16 CPUs")
    p.add_argument("--out-dir", default=str(WEIGHTS_DIR))
    p.add_argument(
        "--export-checkpoint",
        action="store_true",
        help="only write the weights of each --qualities level's checkpoint in --work-dir (the step it "
        "reached) to --out-dir as MODEL-qQ-stepS.safetensors (a variable-rate model: MODEL-stepS.safetensors), "
        "e.g. to start another run from them",
    )
    p.add_argument(
        "--refresh",
        action="store_true",
        help="only rebuild the tables of the weights in --out-dir with this version's update() "
        "(with --int8: and store their convolution weights in int8)",
    )
    args = p.parse_args(argv)
    if args.refresh:
        from convpress.codec.weights import refresh_weights

        files = {*Path(args.out_dir).glob(f"{args.model}-*.safetensors"), *Path(args.out_dir).glob(f"{args.model}.safetensors")}
        for f in sorted(files):  # a variable-rate model's part files (MODEL-PART) as well as fixed-rate levels (MODEL-qQ)
            print(f"{f.name}: weights {refresh_weights(f, int8=True if args.int8 else None)}")
        return 0
    torch.set_num_threads(args.threads)
    if not args.work_dir:
        p.error("--work-dir is required for training")
    if args.export_checkpoint:
        return _export_checkpoints(args)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)  # before training: it is written after the first chunk
    images = training_images(wallpapers=args.wallpapers)
    print(f"{len(images)} training images", flush=True)
    qualities = [int(q) for q in args.qualities.split(",")]
    init = None
    if args.init:
        from convpress.codec.weights import load_weights

        start, start_meta = load_weights(args.init)
        init_lmbda = start.lmbda
        if (start.config["N"], start.config["M"]) != (args.n, args.m):  # a wider model starts as this one (Net2Net-style widening)
            from convpress.codec.train import widened_state

            init = widened_state(start, args.n, args.m)
            print(f"widened {Path(args.init).name} from N={start.config['N']}, M={start.config['M']} to N={args.n}, M={args.m}", flush=True)
        else:
            init = start.state_dict()
        if "levels" in start_meta and is_variable_rate(args.model):
            # a variable-rate model for other levels: levels it has keep their gains, new ones start from the nearest
            have = [float(v) for v in json.loads(start_meta["levels"]).values()]
            init = regained_state(init, have, [QUALITY_LAMBDAS[q] for q in sorted(qualities)])
    if is_variable_rate(args.model):
        return _train_variable_rate(args, images, sorted(qualities), init, init_lmbda if args.init else None)
    for i, q in enumerate(qualities):
        base = i == 0 and init is None
        init_name = "scratch" if base else (f"q{qualities[i - 1]}" if i else Path(args.init).name)
        cfg = _config(args, base=base, seed=q, init_name=init_name, lmbda=QUALITY_LAMBDAS[q])
        model = _train_in_chunks(args, cfg, images, init, f"q{q}", quality=q)
        init = {k: v for k, v in model.state_dict().items()}
    return 0


def _config(args: argparse.Namespace, *, base: bool, seed: int, init_name: str, **fields: Any) -> CodecTrainConfig:
    """The settings of one training run from the command line: ``base`` trains from scratch, else
    it fine-tunes from ``init_name`` (recorded); ``fields`` are the run's own (lambda or lambdas)."""
    return CodecTrainConfig(
        model=args.model,
        n=args.n,
        m=args.m,
        crop=args.crop,
        batch=args.batch,
        steps=args.base_steps if base else args.finetune_steps,
        lr=5e-4 if base else args.finetune_lr,
        lr_final=1e-4 if base else args.finetune_lr / 4,
        seed=seed,
        warmup=args.warmup,
        mixed_quantization=args.mixed_quantization,
        fresh_lr_scale=args.fresh_lr_scale,
        bf16=args.bf16,
        decoder_only=args.decoder_only,
        encoder_only=args.encoder_only,
        int8=args.int8,
        context=CONTEXT_CHOICES.get(args.context, 0),
        frozen=tuple(k for k in args.freeze.split(",") if k),
        extra={"init": init_name, **({"wallpapers": True} if args.wallpapers else {})},
        **fields,
    )


def _train_in_chunks(
    args: argparse.Namespace,
    cfg: CodecTrainConfig,
    images: list[torch.Tensor],
    init: dict[str, torch.Tensor] | None,
    name: str,
    *,
    quality: int,
    extra: dict[str, str] | None = None,
) -> CodecModel:
    """Train ``cfg`` in ``--work-dir/name``, writing the weights to ``--out-dir`` after every
    ``--chunk`` steps (``MODEL-qQ.safetensors``; a variable-rate model's ``MODEL.safetensors``)."""
    variable = bool(cfg.lambdas)
    out = Path(args.out_dir) / (f"{args.model}.safetensors" if variable else f"{args.model}-q{quality}.safetensors")
    done = 0
    while done < cfg.steps:
        done = min(cfg.steps, done + args.chunk)
        model, hist = train_codec(cfg, images, work_dir=Path(args.work_dir) / name, init=init, progress=False, stop_after=done)
        if hist:  # a resumed run starts at its checkpoint, past the chunks already done
            done = max(done, int(hist[-1]["step"]))
        if is_main():  # under torchrun, only rank 0 writes
            if args.encoder_only:  # the --init file with the trained analysis: it decodes --init's files too
                wid = with_encoder(args.init, model, out, extra={"encoder_steps": str(done)})
            else:
                meta = {"steps": str(done), **(extra or {})}
                wid = save_weights(model, out, quality=quality, lmbda=cfg.lmbda, extra=meta, int8=args.int8)
            last = hist[-1]
            mix = " (a mix of levels)" if variable else ""
            print(
                f"{name} step {done}/{cfg.steps}: loss {last['loss']:.3f} bpp {last['bpp']:.3f} PSNR {last['psnr']:.2f}{mix} -> "
                f"{out.name} ({wid})",
                flush=True,
            )
    return model


def _train_variable_rate(
    args: argparse.Namespace,
    images: list[torch.Tensor],
    qualities: list[int],
    init: dict[str, torch.Tensor] | None,
    init_lmbda: float | None,
) -> int:
    """One run of a variable-rate model whose levels are ``qualities`` (ascending), written to
    ``--out-dir/MODEL.safetensors`` after every chunk; resumable from ``--work-dir/MODEL``."""
    lambdas = tuple(QUALITY_LAMBDAS[q] for q in qualities)
    base = init is None
    init_name = "scratch" if base else Path(args.init).name
    cfg = _config(args, base=base, seed=0, init_name=init_name, lmbda=lambdas[-1], lambdas=lambdas, init_lmbda=init_lmbda)
    levels = json.dumps({str(q): v for q, v in zip(qualities, lambdas, strict=True)})
    _train_in_chunks(args, cfg, images, init, args.model, quality=qualities[-1], extra={"levels": levels})
    return 0


def _export_checkpoints(args: argparse.Namespace) -> int:
    """Write the model of each level's checkpoint in ``--work-dir`` as weights in ``--out-dir``."""
    from convpress.codec.models import build_model
    from convpress.core.checkpoint import load_checkpoint

    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    qualities = [int(q) for q in args.qualities.split(",")]
    if is_variable_rate(args.model):  # one run, one file for its levels
        qualities = sorted(qualities)
        levels = {str(q): QUALITY_LAMBDAS[q] for q in qualities}
        runs = [(args.model, {"N": args.n, "M": args.m, "LEVELS": len(qualities)}, qualities[-1], {"levels": json.dumps(levels)})]
    else:
        runs = [(f"q{q}", {"N": args.n, "M": args.m}, q, {}) for q in qualities]
    for name, config, q, extra in runs:
        ckpt = load_checkpoint(Path(args.work_dir) / name / "checkpoint.ckpt", "codec-train")
        model = build_model(args.model, config)
        model.load_state_dict(plain_state(ckpt["model"]))  # an --int8 run's weights are stored int8 below
        model.eval()
        model.update()
        stem = args.model if name == args.model else f"{args.model}-{name}"  # varrate-stepS, MODEL-qQ-stepS
        out = Path(args.out_dir) / f"{stem}-step{ckpt['step']}.safetensors"
        wid = save_weights(model, out, quality=q, lmbda=QUALITY_LAMBDAS[q], extra={"steps": str(ckpt["step"]), **extra}, int8=args.int8)
        print(f"{name}: step {ckpt['step']} -> {out} ({wid})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
