#!/usr/bin/env bash
# The GPU measurements of this project in one table (bench/gpu.py): reference loop vs ours on ViT-B-32 in bf16,
# DDP 2 processes vs 1 at 2x the batch (needs 2 GPUs), an end-to-end UEO run with GPU utilisation.
# Run it whenever a GPU machine is available and put its table in the README. Sized for < 8 minutes.
#   bash bench/gpu.sh                       # on a CUDA machine
#   bash bench/gpu.sh --device cpu --small  # smoke run of the same script on a CPU (tiny model)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh   # the locked packages in .venv (a first install takes a few minutes)
exec timeout 480 "${UEO_VENV:-.venv}/bin/python" bench/gpu.py "$@"
