#!/usr/bin/env bash
# Build the demo models end to end: fetch the source photos, build the demo corpus, train
# ResNet18 and ViT-tiny from scratch on the CPU, export them to models/, evaluate them with
# train.evaluate and write the figures into each manifest's model card.
#
#   train/scripts/build_demo_models.sh [WORK_DIR]       (default WORK_DIR: out/demo-models)
#
# ResNet18 trains in two stages: 3 epochs with strong augmentation (random rescale, JPEG
# 50-95, flips), then 1 epoch from those weights with mild augmentation (JPEG 70-95, flips).
# The rescale augmentation puts resampling traces on real photos too, which is the very signal
# the model looks for; the second stage recovers the accuracy it costs while keeping most of
# the robustness. ViT-tiny trains one epoch with the mild augmentation (its budget).
#
# Steps whose output already exists are skipped (photos, corpus, finished training stages), so
# a rerun after an interruption resumes. Environment overrides, with their defaults:
#   THREADS=2 LOADER_WORKERS=1 BATCH=32 SEED=0 MODELS_DIR=<repo>/models
#   RN18_THRESHOLD=0.5 VIT_THRESHOLD=0.5
#   ONLY="resnet18-demo vit-tiny-demo"            which models to build
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)   # train/
repo=$(cd "$here/.." && pwd)
work=$(realpath -m "${1:-$repo/out/demo-models}")
models=${MODELS_DIR:-$repo/models}
photos=$work/photos
corpus=$work/corpus
runs=$work/runs
evals=$work/eval
threads=${THREADS:-2}
seed=${SEED:-0}
export OMP_NUM_THREADS=$threads
mkdir -p "$work" "$runs" "$evals" "$models"

py() { (cd "$here" && uv run python "$@"); }

if [[ ! -f $photos/.done ]]; then
  "$here/scripts/fetch_photos.sh" "$photos"
  touch "$photos/.done"
fi
if [[ ! -f $corpus/build_info.json ]]; then
  py -m train.demo_data --out "$corpus" --sources "$photos" --seed "$seed"
fi

strong=(--hflip --jpeg-aug 50-95 --rescale-aug)
mild=(--hflip --jpeg-aug 70-95)

# train_stage OUT_DIR ARCH EPOCHS LR [train flags...]; skipped once OUT_DIR/done exists.
train_stage() {
  local out=$1 arch=$2 epochs=$3 lr=$4
  shift 4
  [[ -f $out/done ]] && return 0
  local resume=()
  # Resume an interrupted stage from its last finished epoch.
  [[ -f $out/checkpoint.pth ]] && resume=(--resume "$out/checkpoint.pth")
  py -m train --data-path "$corpus/train.csv" --model "$arch" --device cpu \
    --cpu-threads "$threads" -j "${LOADER_WORKERS:-1}" -b "${BATCH:-32}" --epochs "$epochs" \
    --lr "$lr" --seed "$seed" --print-freq 20 --output-dir "$out" "${resume[@]}" "$@"
  touch "$out/done"
}

# name architecture threshold
specs=(
  "resnet18-demo resnet18 ${RN18_THRESHOLD:-0.5}"
  "vit-tiny-demo vit_tiny_patch16_224 ${VIT_THRESHOLD:-0.5}"
)

for spec in "${specs[@]}"; do
  read -r name arch threshold <<<"$spec"
  [[ " ${ONLY:-resnet18-demo vit-tiny-demo} " == *" $name "* ]] || continue
  run=$runs/$name
  if [[ $arch == resnet18 ]]; then
    # Stage 1 with strong augmentation, then fine-tuning with mild augmentation at falling
    # learning rates (1.0.0 stopped after stage 2 at validation accuracy 0.815; 1.1.0 added
    # stages 3 and 4 and reached 0.92; 1.2.0 adds stage 5 and reaches 0.933).
    train_stage "$runs/$name-stage1" "$arch" 3 1e-3 "${strong[@]}"
    train_stage "$runs/$name-stage2" "$arch" 1 3e-4 "${mild[@]}" \
      --init-from "$runs/$name-stage1/checkpoint.pth"
    train_stage "$runs/$name-stage3" "$arch" 2 2e-4 "${mild[@]}" \
      --init-from "$runs/$name-stage2/checkpoint.pth"
    train_stage "$runs/$name-stage4" "$arch" 1 1e-4 "${mild[@]}" \
      --init-from "$runs/$name-stage3/checkpoint.pth"
    train_stage "$run" "$arch" 2 5e-5 "${mild[@]}" \
      --init-from "$runs/$name-stage4/checkpoint.pth"
  else
    # No warm-up in the schedule: a from-scratch ViT is unstable at the ResNet's 1e-3.
    train_stage "$run" "$arch" 1 5e-4 "${mild[@]}"
  fi

  # The FP16 conversion of timm's ViT attention fails ONNX's full check (Cast type
  # inference), so the ViT ships FP32 only until the converter handles it.
  export_flags=(--parity-images "$repo/samples" --threshold "$threshold")
  [[ $arch == resnet18 ]] && export_flags+=(--version 1.2.0)
  [[ $arch == vit_* ]] && export_flags+=(--no-fp16)

  # First export: evaluation needs the ONNX file and the manifest's training section.
  py -m train.export "$run/checkpoint.pth" --out "$models/$name" "${export_flags[@]}"

  eval_cmd=(-m train.evaluate "$models/$name.json"
    "val=$corpus/train.csv" "holdout_family=$corpus/holdout_family"
    "holdout_source=$corpus/holdout_source" "samples=$repo/samples"
    --split val --perturb jpeg75,downscale50 --perturb-sets val --out "$evals/$name.json")
  py "${eval_cmd[@]}" >/dev/null

  # The card: what the model is, what it was and was not trained on, and the figures.
  py - "$evals/$name.json" "$work/$name.card.json" "$corpus/build_info.json" <<'EOF'
import json
import sys
from pathlib import Path

result = json.loads(Path(sys.argv[1]).read_text())
info = json.loads(Path(sys.argv[3]).read_text())
sets = result["datasets"]
keep = ("n", "n_real", "n_fake", "accuracy", "roc_auc", "precision", "recall", "fpr_real",
        "tpr_fake", "best_threshold")
card = {
    "intended_use": (
        "Demonstration of the scanner end to end. It detects simulated generator artefacts "
        "(the up-sampling traces of small autoencoders), not any particular commercial "
        "image generator; do not use its verdicts on real-world images."
    ),
    "trained_on": {
        "corpus": "train/train/demo_data.py demo corpus (train.csv)",
        "real": "photo patches from Debian wallpaper packages and scikit-image sample photos",
        "fake_families": info["train_families"],
        "seed": info["config"]["seed"],
    },
    "not_trained_on": {
        "generator_family": info["config"]["holdout_family"],
        "source_package": info["config"]["holdout_source"],
        "note": "both are only used as held-out test sets",
    },
    "limitations": (
        "Figures come from a small synthetic corpus; on real-world data (other cameras, "
        "other generators, diffusion models, edited or re-shared images) they will be worse."
    ),
    "evaluation": {
        "threshold": result["threshold"],
        "precision": result["precision"],
        "command": "train/scripts/build_demo_models.sh (python -m train.evaluate ...)",
        "validation": {k: sets["val"][k] for k in keep},
        "holdout_family": {k: sets["holdout_family"][k] for k in keep},
        "holdout_source_fpr": sets["holdout_source"]["fpr_real"],
        "val_jpeg75": {k: sets["val+jpeg75"][k] for k in ("accuracy", "roc_auc")},
        "val_downscale50": {k: sets["val+downscale50"][k] for k in ("accuracy", "roc_auc")},
        "samples_accuracy": sets["samples"]["accuracy"],
    },
}
Path(sys.argv[2]).write_text(json.dumps(card, indent=2) + "\n")
EOF

  # Second export with the card; the weights are the same checkpoint, so the figures hold.
  py -m train.export "$run/checkpoint.pth" --out "$models/$name" "${export_flags[@]}" \
    --card-json "$work/$name.card.json"

  # CNNs also ship an INT8 variant for the CPU, when it passes its gate against FP32
  # (calibrated on the training split, gated on validation and the held-out sets).
  if [[ $arch != vit_* ]]; then
    py -m train.quantize "$models/$name.json" --calib "$corpus/train.csv" \
      --eval "val=$corpus/train.csv" --eval "holdout_family=$corpus/holdout_family" \
      --eval "holdout_source=$corpus/holdout_source" ||
      echo "$name: the INT8 variant failed its gate and is not shipped (see card.int8)"
  fi
  echo "$name: manifest $models/$name.json, evaluation $evals/$name.json"
done
