#!/bin/sh
# The exact invocations that produced src/convpress/weights/fip/*.safetensors (two processes in parallel,
# single-threaded, on a shared 2-core machine; about 50 minutes in all).
set -e
W=${1:-/tmp/fip-work}
# process A
python benchmarks/train_fip_weights.py --operators rtv --work "$W" --constant-lr --epochs 20
python benchmarks/train_fip_weights.py --operators rtv --work "$W" --init --epochs 4 --lr 2e-4
python benchmarks/train_fip_weights.py --operators rof --work "$W" --epochs 12
# process B
python benchmarks/train_fip_weights.py --operators wls --work "$W" --constant-lr --epochs 20
python benchmarks/train_fip_weights.py --operators wls --work "$W" --init --epochs 4 --lr 2e-4
python benchmarks/train_fip_weights.py --operators l0 --work "$W" --epochs 14
