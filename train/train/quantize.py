"""INT8 variant of an exported model: static QDQ quantization with per-channel weights,
calibrated on real images, shipped only when it passes a quality gate against FP32.

python -m train quantize MODELS/NAME.json --calib DATA [--calib-images 256] [--calib-split train]
    --eval [NAME=]DATA [--eval [NAME=]DATA ...] [--split val]
    [--calib-method minmax] [--float-convs N]
    [--min-agreement 0.99] [--max-auc-change 0.005] [--manifest-out FILE]

DATA is what `train.evaluate` reads (a `train.csv` or its folder, or a folder with `real/`
and/or `fake/`); `--calib` also takes any folder of images. Every image goes through the
manifest's own preprocessing (the same code as `train.evaluate`). With `--calib-split train`
(the default) a training CSV is re-split like the run that produced the model and only its
training part calibrates, so the evaluation sets stay unseen.

The gate, on every evaluation set: labels at the manifest threshold agree with FP32 on at least
`--min-agreement` of the images, and ROC-AUC moves by at most `--max-auc-change` (where the set
has both classes); the largest score change is recorded too. The figures go into the card
(`card.int8`). A variant that passes is written as NAME.int8.onnx and listed in `variants`; one
that fails is deleted, not listed, and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from sklearn.metrics import roc_auc_score

from train import options
from train.data import IMAGE_EXTENSIONS, Preprocess, Sample
from train.evaluate import (
    _batches,
    discover_any,
    fake_scores,
    load_manifest,
    parse_dataset,
    select_split,
)
from train.export import describe, sha256_file
from train.metrics import cpu_model

log = logging.getLogger("train.quantize")

PRECISION = "int8"
MIN_AGREEMENT = 0.99
MAX_AUC_CHANGE = 0.005
CALIB_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


# onnxruntime ships no type information, so its base class is Any to mypy.
class ImageCalibration(CalibrationDataReader):  # type: ignore[misc]
    """Feeds the calibrator batches of real images, preprocessed as the scanner does."""

    def __init__(self, manifest: dict[str, Any], samples: Sequence[Sample], batch: int) -> None:
        pre = Preprocess.from_manifest(manifest["input"])
        self.input_name = str(manifest["input"]["name"])
        self.images = 0
        self._batches: Iterator[tuple[np.ndarray, list[int], list[int], int]] = _batches(
            samples, pre, batch, None
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        for x, kept, _, _ in self._batches:
            if kept:
                self.images += len(kept)
                return {self.input_name: x}
        return None


def calibration_samples(
    data: Path, manifest: dict[str, Any], split: str, limit: int, seed: int = 0
) -> tuple[list[Sample], str]:
    """Up to `limit` images from DATA, spread over the whole set (a fixed shuffle, so a CSV
    sorted by class still calibrates on both), and the split they came from."""
    try:
        samples, layout = discover_any(data)
        if layout != "kaggle-csv":
            split = "all"
        samples = select_split(samples, layout, split, manifest["training"])
    except FileNotFoundError:
        split = "all"
        # Calibration needs no labels: any folder of images will do.
        samples = [
            Sample(p, 0)
            for p in sorted(data.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
    if not samples:
        raise FileNotFoundError(f"no calibration images in {data}")
    random.Random(seed).shuffle(samples)
    return samples[:limit], split


@dataclass(frozen=True)
class SetResult:
    """How the INT8 variant compares with FP32 on one evaluation set."""

    n: int
    label_agreement: float
    max_abs_score_change: float
    mean_abs_score_change: float
    roc_auc_fp32: float | None
    roc_auc_int8: float | None
    roc_auc_change: float | None
    passed: bool


def compare(
    fp32: np.ndarray,
    int8: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    min_agreement: float = MIN_AGREEMENT,
    max_auc_change: float = MAX_AUC_CHANGE,
) -> SetResult:
    """The gate on one set: fake-probabilities of both precisions for the same images."""
    if len(fp32) == 0 or fp32.shape != int8.shape:
        raise ValueError("the gate needs the same, non-empty set of images for both precisions")
    agreement = float(np.mean((fp32 >= threshold) == (int8 >= threshold)))
    delta = np.abs(fp32.astype(np.float64) - int8.astype(np.float64))
    auc32 = auc8 = auc_change = None
    if len(np.unique(labels)) == 2:
        auc32 = float(roc_auc_score(labels, fp32))
        auc8 = float(roc_auc_score(labels, int8))
        auc_change = auc8 - auc32
    passed = agreement >= min_agreement and (
        auc_change is None or abs(auc_change) <= max_auc_change
    )
    return SetResult(
        n=len(fp32),
        label_agreement=agreement,
        max_abs_score_change=float(delta.max()),
        mean_abs_score_change=float(delta.mean()),
        roc_auc_fp32=auc32,
        roc_auc_int8=auc8,
        roc_auc_change=auc_change,
        passed=passed,
    )


def cpu_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def first_convs(model_path: Path, count: int) -> list[str]:
    """The names of the first `count` convolutions in graph order."""
    if count <= 0:
        return []
    convs = [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type == "Conv"]
    return convs[:count]


def quantize_model(
    fp32_path: Path,
    out_path: Path,
    calibration: ImageCalibration,
    method: str = "minmax",
    float_convs: int = 0,
) -> list[str]:
    """Static QDQ quantization: INT8 weights per output channel, UINT8 activations.

    The first `float_convs` convolutions stay in float: noise added there passes through every
    later layer (in EfficientNet-Lite0 the stem and first block lose the most signal-to-noise
    of any layers, measured on training images), while they hold a small share of the compute.
    Returns the names of the convolutions kept in float.
    """
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and graph clean-up first, as ONNX Runtime's quantization guide asks:
        # it lets the quantizer see every tensor's type and fold what can be folded.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        kept = first_convs(prepared, float_convs)
        quantize_static(
            str(prepared),
            str(out_path),
            calibration,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            # MinMax keeps only each tensor's per-batch min and max, so memory stays small
            # however many images calibrate. (Its CalibMaxIntermediateOutputs option is left
            # alone: onnxruntime 1.32 drops the collected batches when it triggers.)
            calibrate_method=CALIB_METHODS[method],
            nodes_to_exclude=kept,
        )
    return kept


def gate(
    manifest: dict[str, Any],
    fp32_path: Path,
    int8_path: Path,
    evals: Sequence[tuple[str, Path]],
    split: str,
    batch: int,
    min_agreement: float,
    max_auc_change: float,
) -> dict[str, Any]:
    """The gate's figures on every evaluation set, by set name."""
    threshold = float(manifest["threshold"])
    s32, s8 = cpu_session(fp32_path), cpu_session(int8_path)
    sets: dict[str, Any] = {}
    for name, path in evals:
        found, layout = discover_any(path)
        chosen = select_split(
            found, layout, split if layout == "kaggle-csv" else "all", manifest["training"]
        )
        fp32, labels, _ = fake_scores(s32, manifest, chosen, batch)
        int8, _, _ = fake_scores(s8, manifest, chosen, batch)
        result = compare(fp32, int8, labels, threshold, min_agreement, max_auc_change)
        log.info(
            "%s: n=%d agreement=%.4f max|Δscore|=%.4f ΔAUC=%s %s",
            name,
            result.n,
            result.label_agreement,
            result.max_abs_score_change,
            "n/a" if result.roc_auc_change is None else f"{result.roc_auc_change:+.4f}",
            "pass" if result.passed else "FAIL",
        )
        sets[name] = {"data": describe(path), "split": split if layout == "kaggle-csv" else "all"}
        sets[name].update(asdict(result))
    return sets


def quantize(
    manifest_path: Path,
    calib: Path,
    evals: Sequence[tuple[str, Path]],
    calib_images: int = 256,
    calib_split: str = "train",
    split: str = "val",
    method: str = "minmax",
    float_convs: int = 0,
    min_agreement: float = MIN_AGREEMENT,
    max_auc_change: float = MAX_AUC_CHANGE,
    manifest_out: Path | None = None,
    batch: int = 16,
) -> dict[str, Any]:
    """Writes the INT8 variant and its gate into the manifest; returns the card's `int8`."""
    if not evals:
        raise ValueError("the gate needs at least one evaluation set")
    manifest = load_manifest(manifest_path)
    model_dir = manifest_path.parent
    fp32_path = model_dir / manifest["file"]
    stem = Path(manifest["file"]).name.removesuffix(".onnx")
    int8_path = model_dir / f"{stem}.{PRECISION}.onnx"

    samples, calib_split = calibration_samples(calib, manifest, calib_split, calib_images)
    reader = ImageCalibration(manifest, samples, batch)
    log.info("calibrating on %d images from %s", len(samples), calib)
    # The variant is made beside the manifest under a temporary name and takes its real name
    # only once it has passed, so an interrupted or failed run never leaves a file that looks
    # shipped.
    candidate = int8_path.with_name(f".{int8_path.name}.candidate")
    try:
        kept = quantize_model(fp32_path, candidate, reader, method, float_convs)
        sets = gate(
            manifest, fp32_path, candidate, evals, split, batch, min_agreement, max_auc_change
        )
        passed = all(s["passed"] for s in sets.values())
        if passed:
            candidate.replace(int8_path)
    finally:
        candidate.unlink(missing_ok=True)

    card = {
        "method": (
            "onnxruntime.quantization.quantize_static: QDQ, per-channel INT8 weights, "
            f"UINT8 activations, {method} calibration"
        ),
        "float_convs": kept,
        "onnxruntime": ort.__version__,
        "calibration": {
            "data": describe(calib),
            "split": calib_split,
            "images": reader.images,
        },
        "gate": {
            "min_label_agreement": min_agreement,
            "max_roc_auc_change": max_auc_change,
            "threshold": float(manifest["threshold"]),
        },
        "evaluation": sets,
        "passed": passed,
        "hardware": f"{cpu_model()} ({platform.machine()})",
    }
    variants = [v for v in manifest.get("variants", []) if v.get("precision") != PRECISION]
    if passed:
        variants.append(
            {"precision": PRECISION, "file": int8_path.name, "sha256": sha256_file(int8_path)}
        )
    else:
        int8_path.unlink(missing_ok=True)
        log.error("the INT8 variant failed the gate: not shipped")
    manifest["variants"] = variants
    manifest.setdefault("card", {})[PRECISION] = card
    out = manifest_out or manifest_path
    out.write_text(json.dumps(manifest, indent=2) + "\n")
    return card


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_manifest(p)
    p.add_argument("--calib", type=Path, required=True, help="calibration images")
    p.add_argument("--calib-images", type=int, default=256, help="at most this many")
    p.add_argument("--calib-split", default="train", choices=("all", "train"))
    p.add_argument(
        "--eval", action="append", default=[], required=True, help="[NAME=]DATA, repeatable"
    )
    options.add_split(p, "val")
    p.add_argument("--calib-method", default="minmax", choices=sorted(CALIB_METHODS))
    p.add_argument(
        "--float-convs",
        type=int,
        default=0,
        metavar="N",
        help="keep the first N convolutions in float (where INT8 noise compounds most)",
    )
    p.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT)
    p.add_argument("--max-auc-change", type=float, default=MAX_AUC_CHANGE)
    options.add_batch_size(p, 16)
    p.add_argument("--manifest-out", type=Path, default=None, help="default: update MANIFEST")


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    card = quantize(
        a.manifest,
        a.calib,
        [parse_dataset(d) for d in a.eval],
        a.calib_images,
        a.calib_split,
        a.split,
        a.calib_method,
        a.float_convs,
        a.min_agreement,
        a.max_auc_change,
        a.manifest_out,
        a.batch_size,
    )
    return 0 if card["passed"] else 1
