#!/bin/sh
# The exact invocations that produced src/convpress/weights/fip/*.safetensors (run from the repository
# root; processes A, B and C ran in parallel, single-threaded, on a shared 2-core machine, about an hour).
set -e
W=${1:-/tmp/fip-work}
# A: rtv (constant lr, then a short fine-tune with cosine decay), then rof
python benchmarks/train_fip_weights.py --operators rtv --work "$W" --constant-lr --epochs 20
python benchmarks/train_fip_weights.py --operators rtv --work "$W" --init --epochs 4 --lr 2e-4
python benchmarks/train_fip_weights.py --operators rof --work "$W" --epochs 12
# B: l0
python benchmarks/train_fip_weights.py --operators l0 --work "$W" --epochs 14
# C: wls with a smaller guided-filter eps (keeps fine texture; eps 1e-4 gave a network close to the identity)
python benchmarks/train_fip_weights.py --operators wls --work "$W" --epochs 10 --eps 1e-6
