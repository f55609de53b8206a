#!/usr/bin/env bash
# GPU check for a machine with no network, where PyTorch, torchvision, Lightning and the rest of
# amlcyto's needs are installed (amlcyto itself runs from src/, not installed).
#   1. bench.gpu_check: CPU/GPU agreement and model-only speeds, fp32 and bf16.
#   2. bench a end to end on the GPU (the real `train` and `evaluate`, bf16-mixed, channels_last):
#      first with the CPU run's settings (6 epochs, lr 1e-4: bf16 on GPU against fp32 on CPU),
#      then with EPOCHS epochs.
#   3. `amlcyto demo` on the GPU.
# Every step writes into $OUT (default bench/out); one failing step does not stop the others.
# bench a reads $AMLCYTO_BENCH_DATA/pbc (default ../shared/data/pbc): it needs ig/ and neutrophil/.
# Usage (from the repository root): [AMLCYTO_BENCH_DATA=DIR] bash bench/gpu_check.sh [EPOCHS]
set -uo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-30}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export AMLCYTO_CACHE=${AMLCYTO_CACHE:-/tmp/amlcyto-cache}
ERR="$OUT/progress.err"  # progress bars; the reports and each error's last lines are printed
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    echo "cores: $(nproc)"
    python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
} 2>&1 | tee "$OUT/gpu_check.log"

if [ -z "${SKIP_MODEL_CHECK:-}" ]; then  # SKIP_MODEL_CHECK=1: only the end-to-end steps
    timeout 150 python3 -m bench.gpu_check --seconds 2 --out "$OUT" 2>&1 | tee -a "$OUT/gpu_check.log"
    echo "gpu_check exit ${PIPESTATUS[0]}"
fi

bench_a() {  # EPOCHS LR MAX_SECONDS
    local start=$SECONDS
    echo "== bench a: $1 epochs, lr $2"
    timeout "$3" python3 -m bench.poster_protocol --epochs "$1" --lr "$2" --max-minutes 2.5 \
        2>>"$ERR" | tee -a "$OUT/bench_a.log"
    echo "bench a ($1 epochs) exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
    tail -c 400 "$ERR"
    cp bench/out/poster_protocol.json "$OUT/bench_a_$1_epochs.json"
}
bench_a 6 1e-4 90
bench_a "$EPOCHS" 1e-4 180

rm -rf /tmp/amlcyto-demo
start=$SECONDS
timeout 100 python3 -m amlcyto demo --out /tmp/amlcyto-demo 2>>"$ERR" | tee "$OUT/demo.log"
echo "demo exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
tail -c 400 "$ERR"
