#!/usr/bin/env bash
# Leave-families-out: how the default model's recipe does on generator families it never saw.
# For each fold, a model is trained with the default's recipe, but without the generated images
# of the fold's family groups (and a shorter schedule: two CPU cores), calibrated on its own
# validation reals, and scored on the left-out families against the held-out camera source.
#
# Usage: train/scripts/leave_families_out.sh WORK
#   WORK  the folder build_default_model.sh filled (it reads WORK/corpus, writes WORK/folds)
#
# FOLDS (space-separated, groups joined by commas) and EPOCHS / MAX_STEPS override the defaults.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [[ $# -lt 1 ]]; then
    sed -n 2,10p "$0" >&2
    exit 2
fi
work=$(cd "$1" && pwd)
c=$work/corpus
out=$work/folds
mkdir -p "$out"
source "$here/recipe.sh"

for fold in ${FOLDS:-gpt4o,nano_banana midjourney,model_repos}; do
    name=${fold//,/_}
    run -m train corpus --out "$c" --family-fold "$fold"
    run -m train fit --data-path "$c/fold_${name}_train.csv" --val-data-path "$c/fold_${name}_val.csv" \
        --model efficientnet_lite0 --weights imagenet --lr 3e-4 \
        --epochs "${EPOCHS:-3}" --max-steps "${MAX_STEPS:-40}" "${recipe[@]}" \
        --output-dir "$out/runs/$name"
    run -m train export "$out/runs/$name/checkpoint.pth" --out "$out/without-$name" --no-fp16 \
        --version 0.0.0
    sets=(val="$c/fold_${name}_val.csv" left_out="$c/fold_${name}_test.csv")
    for group in ${fold//,/ }; do sets+=("$group=$c/fold_${name}_test_${group}.csv"); done
    run -m train evaluate "$out/without-$name.json" "${sets[@]}" --calibrate val \
        --out "$out/without-$name.eval.json"
done
