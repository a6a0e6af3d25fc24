# Sourced by build_default_model.sh and compare_architectures.sh, so that the architectures of
# the model card are trained and evaluated exactly as the default model is.
# Needs $repo (the repository root) and $c (the corpus folder build_default_model.sh fills).

# Python from the training package's locked environment.
run() { (cd "$repo/train" && uv run --frozen python "$@"); }

# The default model's recipe, beyond the model, its start, the learning rate and the schedule's
# length: native-resolution 224 px crops, the augmentations of both classes, bf16.
recipe=(--input-mode crop --image-size 224 -b 32 --lr-scheduler cosineannealinglr --amp bf16
    --channels-last --jpeg-aug 65-100 --webp-aug 0.3 --aug-prob 0.5 --rescale-aug --blur-aug
    --hflip -j 1 --device "${DEVICE:-cpu}")

# What every model is evaluated on: the validation split; the held-out generator against the
# held-out wallpaper source and against the held-out camera source; those sources alone; the
# held-out camera files as the phones wrote them; and the evaluation-only generator families,
# as their repositories hold them, against those camera files.
held_out=(val="$c/val/data.csv" sd35="$c/holdout_stable_diffusion_3_5_large_vs_real.csv"
    sd35_vs_camera="$c/holdout_stable_diffusion_3_5_large_vs_camera.csv"
    holdout_source="$c/holdout_source/data.csv" holdout_camera="$c/holdout_camera/data.csv"
    native_camera="$c/native_camera/data.csv" eval_only="$c/eval_only/data.csv")
