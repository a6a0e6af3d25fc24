#!/usr/bin/env bash
# Builds the default model, efficientnet-lite0-gen, from scratch: sources, corpus, shortcut
# check, training, export, evaluation and the figures in its manifest and card.
#
# Usage: train/scripts/build_default_model.sh GALLERIES WORK [MODELS]
#
#   GALLERIES  a folder holding git checkouts of the three permissively licensed generator
#              galleries the corpus is built from (names as on GitHub):
#                AI-Horde-Styles                (amiantos/AI-Horde-Styles, CC0-1.0)
#                StableDiffusion-CheatSheet     (SupaGruen/StableDiffusion-CheatSheet, MIT)
#                Artists-SD35L                  (EnragedAntelope/Artists-SD35L, MIT)
#   WORK       where photos, corpus, runs and evaluations go (several GB)
#   MODELS     where the model is written (default: the repository's models/)
#
# About an hour and a half on two CPU cores, most of it training; a GPU makes training minutes
# (pass DEVICE=cuda). Set EPOCHS / MAX_STEPS to train longer.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [[ $# -lt 2 ]]; then
    sed -n 2,17p "$0" >&2
    exit 2
fi
galleries=$(cd "$1" && pwd)
work=$(mkdir -p "$2" && cd "$2" && pwd)
models=${3:-$repo/models}
name=efficientnet-lite0-gen
run() { (cd "$repo/train" && uv run --frozen python "$@"); }

"$here/fetch_photos.sh" --real-corpus "$work/photos"
[[ -f "$work/corpus/index.csv" ]] ||
    run -m train.corpus --generators "$galleries" --photos "$work/photos" --out "$work/corpus"
run -m train.shortcut "$work/corpus/index.csv" --out "$work/corpus/shortcut.json"

run -m train --data-path "$work/corpus/train/data.csv" --val-data-path "$work/corpus/val/data.csv" \
    --model efficientnet_lite0 --weights imagenet --input-mode crop --image-size 224 \
    --epochs "${EPOCHS:-5}" --max-steps "${MAX_STEPS:-50}" -b 32 --lr 3e-4 \
    --lr-scheduler cosineannealinglr --amp bf16 --channels-last \
    --jpeg-aug 65-100 --webp-aug 0.3 --aug-prob 0.5 --rescale-aug --blur-aug --hflip \
    -j 1 --device "${DEVICE:-cpu}" --output-dir "$work/runs/$name"

run -m train.export "$work/runs/$name/checkpoint.pth" --out "$models/$name" --no-fp16 \
    --card-json "$repo/train/cards/$name.json" --parity-images "$repo/samples" \
    --version "${VERSION:-1.1.0}" --tiles "${TILES:-1}"

# Operating points from the validation split's real images (never the held-out sets), then
# every figure of the card at the 5% point.
c=$work/corpus
run -m train.evaluate "$models/$name.json" val="$c/val/data.csv" \
    sd35="$c/holdout_stable_diffusion_3_5_large_vs_real.csv" holdout_source="$c/holdout_source/data.csv" \
    samples="$repo/samples" --calibrate val --write-manifest \
    --perturb jpeg75,downscale50,webp75 --perturb-sets val,sd35 --out "$work/$name.eval.json"

# The INT8 variant, calibrated on training images, listed only if it passes its gate. The stem
# and the first block (three convolutions) stay in float: they lose the most signal-to-noise.
run -m train.quantize "$models/$name.json" --calib "$c/train/data.csv" --calib-split all --float-convs 3 \
    --split all --eval val="$c/val/data.csv" --eval sd35="$c/holdout_stable_diffusion_3_5_large_vs_real.csv" \
    --eval holdout_source="$c/holdout_source/data.csv" || echo "INT8 variant not shipped: it failed its gate"
