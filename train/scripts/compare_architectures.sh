#!/usr/bin/env bash
# Trains the other architectures of the model card on the default model's corpus, with the
# default model's recipe (native-resolution 224 crops, the same augmentations, bf16), and
# evaluates each on the same held-out sets, with operating points chosen on validation reals:
#   resnet18-gen-e5    ResNet18 from scratch, 8,000 images seen (the default's image budget)
#   resnet18-gen-e25   ResNet18 from scratch, 40,000 images seen (about the default's CPU time)
#   vit-tiny-gen-e5    ViT-Tiny/16 from scratch, 8,000 images seen
# No ImageNet weights for these two are available offline, hence from scratch.
#
# Usage: train/scripts/compare_architectures.sh WORK
#   WORK  the folder build_default_model.sh filled (it reads WORK/corpus, writes WORK/compare)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [[ $# -lt 1 ]]; then
    sed -n 2,12p "$0" >&2
    exit 2
fi
work=$(cd "$1" && pwd)
c=$work/corpus
out=$work/compare
mkdir -p "$out"
source "$here/recipe.sh"

for spec in resnet18:resnet18-gen-e5:5 resnet18:resnet18-gen-e25:25 vit_tiny_patch16_224:vit-tiny-gen-e5:5; do
    IFS=: read -r model name epochs <<<"$spec"
    run -m train fit --data-path "$c/train/data.csv" --val-data-path "$c/val/data.csv" \
        --model "$model" --lr 1e-3 --epochs "$epochs" --max-steps 50 "${recipe[@]}" \
        --output-dir "$out/runs/$name"
    run -m train export "$out/runs/$name/checkpoint.pth" --out "$out/$name" --no-fp16 --version 0.0.0
    run -m train evaluate "$out/$name.json" "${held_out[@]}" --calibrate val \
        --out "$out/$name.eval.json"
done
