#!/usr/bin/env bash
# GPU check for a machine with no network: PyTorch, torchvision and Lightning installed there;
# amlcyto's other needs (safetensors, ...) travel as wheels in .whl/ if missing.
# Usage (from the repository root): bash bench/gpu_check.sh [--steps 60 --batch-size 256]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
PYTHONUNBUFFERED=1 python3 -m bench.gpu_check "$@"
