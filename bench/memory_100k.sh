#!/usr/bin/env bash
# Peak memory (maximum resident set size) of training, evaluation and embedding over 100,000
# images.
# Usage (from the repository root): bash bench/memory_100k.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/out
export AMLCYTO_CACHE="$PWD/$out/cache"
python3 -m bench.make_100k
peak() { grep "Maximum resident set size" "$1" | awk '{printf "%.0f MB\n", $6/1024}'; }

# Training over the 70,000 train rows (cache of 100k images at 64 px built first), 2 minutes.
/usr/bin/time -v -o "$out/mem_train.txt" amlcyto train "$out/m100k_split.csv" --out "$out/mem_run" \
    --model cnn_small --task multiclass --epochs 1 --max-minutes 2 --force >/dev/null
echo "train (cache build + 2 min of training): $(peak "$out/mem_train.txt")"

# Evaluation of all 100,000 rows (no split column: every row), decoding on the fly with worker processes.
/usr/bin/time -v -o "$out/mem_eval.txt" amlcyto evaluate "$out/mem_run" --data "$out/m100k.csv" \
    --out "$out/mem_eval" --force >/dev/null
echo "evaluate 100,000 rows: $(peak "$out/mem_eval.txt")"

# Embedding all 100,000 rows with that run: features and probabilities streamed into HDF5.
/usr/bin/time -v -o "$out/mem_embed.txt" amlcyto embed "$out/mem_run" "$out/m100k.csv" \
    --out "$out/mem_cells.h5" --force >/dev/null
echo "embed 100,000 rows: $(peak "$out/mem_embed.txt")"
