#!/usr/bin/env bash
# CPU scaling study: ResNet18 and ViT-tiny, one process with 1 and 2 intra-op threads,
# the default single-process run, and 2-process DDP over gloo. All rows go into one
# runs.csv (speedup is computed against the 1-thread run), then the charts are drawn.
#
#   train/scripts/cpu_study.sh DATA_DIR OUT_DIR [extra train flags, e.g. --max-steps 5]
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 DATA_DIR OUT_DIR [train flags...]" >&2
  exit 2
fi
data=$(realpath "$1")
out=$(realpath -m "$2")
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
runs="$out/runs.csv"
mkdir -p "$out"

# From train/, so that `-m train` is the package and not the project folder around it.
py() { (cd "$here" && uv run python "$@"); }
common=(--data-path "$data" --device cpu --runs-csv "$runs" --print-freq 50 "$@")

for model in resnet18 vit_tiny_patch16_224; do
  # The baselines come first so every later row finds them.
  for threads in 1 2; do
    OMP_NUM_THREADS=$threads py -m train fit "${common[@]}" --model "$model" --mode cpu \
      --cpu-threads "$threads" --output-dir "$out/$model-cpu$threads"
  done
  py -m train fit "${common[@]}" --model "$model" --mode single --output-dir "$out/$model-single"
  # One intra-op thread per process so two processes share two cores without oversubscribing.
  OMP_NUM_THREADS=1 py -m torch.distributed.run --standalone --nproc_per_node 2 \
    -m train fit "${common[@]}" --model "$model" --mode ddp --cpu-threads 1 \
    --output-dir "$out/$model-ddp2"
done

py -m train plots "$runs" --output-dir "$out/plots"
