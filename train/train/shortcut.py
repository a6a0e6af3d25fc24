"""The format-only shortcut check: can a classifier tell the classes apart from the file's
format, pixel size and JPEG quality alone, without looking at a single pixel value?

    python -m train shortcut CORPUS/index.csv [--out shortcut.json]

If it can, a detector trained on the corpus may learn those instead of generator traces. It
reads what a scanner would see in each file (sniffed format, width, height, JPEG quality
estimated from the luminance quantization table), fits gradient-boosted trees on the ``train``
split and reports the ROC-AUC on ``val`` and on every held-out split, plus a 5-fold cross
validation over train + val grouped by source picture. Near 0.5 means no shortcut.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

FORMATS = ("JPEG", "PNG", "WEBP")
# The JPEG standard's luminance table (Annex K), in the zigzag order PIL reports.
_STD_LUMA = np.array(
    [16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35,
     37, 29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109,
     81, 87, 95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99],
    dtype=np.float64,
)  # fmt: skip


def jpeg_quality(table: Sequence[int]) -> float:
    """libjpeg's quality scaling, inverted: the quality whose scaled table is closest."""
    scale = float(np.mean(np.asarray(table, dtype=np.float64) / _STD_LUMA)) * 100.0
    return (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale


# Counting colours beyond this tells nothing more: a palette-quantized picture has at most 256.
MAX_COLOURS = 4096


def colour_count(im: Image.Image) -> int:
    """Distinct RGB colours, capped: low for a picture that was palette-quantized once, even
    after re-encoding."""
    rgb = np.asarray(im.convert("RGB"), dtype=np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return min(MAX_COLOURS, len(np.unique(packed)))


def file_features(path: Path) -> list[float]:
    with Image.open(path) as im:
        fmt = im.format or ""
        quality = 0.0
        if fmt == "JPEG" and isinstance(im, JpegImageFile):
            quality = jpeg_quality(im.quantization[0])
        w, h = im.size
        colours = colour_count(im)
    return [*(float(fmt == f) for f in FORMATS), float(w), float(h), quality, float(colours)]


FEATURES = (
    *(f"format_{f.lower()}" for f in FORMATS),
    "width",
    "height",
    "jpeg_quality",
    "colours",
)


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def check(index: Path, seed: int = 0) -> dict[str, Any]:
    base = index.parent
    with index.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    x = np.array([file_features(base / r["file_name"]) for r in rows])
    y = np.array([int(r["label"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    groups = np.array([r["picture"] for r in rows])

    def model() -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(max_iter=200, random_state=seed)

    fit_mask = np.isin(split, ["train", "val"])
    cv_scores = np.zeros(int(fit_mask.sum()))
    xf, yf, gf = x[fit_mask], y[fit_mask], groups[fit_mask]
    for tr, te in GroupKFold(n_splits=5).split(xf, yf, gf):
        cv_scores[te] = model().fit(xf[tr], yf[tr]).predict_proba(xf[te])[:, 1]
    trained = model().fit(x[split == "train"], y[split == "train"])
    result: dict[str, Any] = {
        "features": list(FEATURES),
        "classifier": "HistGradientBoostingClassifier(max_iter=200)",
        "cv5_grouped_roc_auc_train_val": _auc(yf, cv_scores),
        "roc_auc": {},
    }
    real_holdout = split == "holdout_source"
    camera_holdout = split == "holdout_camera"
    for name in sorted(set(split) - {"train", "holdout_source", "holdout_camera"}):
        mask = split == name
        if name.startswith("holdout_"):
            # A held-out generator against each held-out real source.
            for suffix, reals in (("", real_holdout), ("_vs_camera", camera_holdout)):
                if reals.any():
                    both = mask | reals
                    result["roc_auc"][name + suffix] = _auc(
                        y[both], trained.predict_proba(x[both])[:, 1]
                    )
            continue
        result["roc_auc"][name] = _auc(y[mask], trained.predict_proba(x[mask])[:, 1])
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("index", type=Path, help="the corpus's index.csv")
    p.add_argument("--out", type=Path, default=None)


def run(a: argparse.Namespace) -> int:
    text = json.dumps(check(a.index), indent=2) + "\n"
    if a.out:
        a.out.write_text(text)
    sys.stdout.write(text)
    return 0
