"""Evaluate an exported model (manifest + ONNX) the way the scanner runs it.

python -m train evaluate MODELS/NAME.json [NAME=]DATA [[NAME=]DATA ...] [--split val]
    [--perturb jpeg75|downscale50] [--out results.json]

DATA is a `train.csv` (or its folder) or a folder with `real/` and/or `fake/` below it. Images
go through ONNX Runtime with the training eval transform (the manifest's preprocessing), and a
row is fake when its fake-probability is >= the manifest threshold (or `--threshold`).

With `--split val` (or `train`) a CSV is split exactly like the training run that produced the
model: seed, val_fraction and limit_fraction come from the manifest's `training.data`.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score, roc_curve

from train import options
from train.data import (
    IMAGE_EXTENSIONS,
    KAGGLE_CSV,
    LABELS,
    Preprocess,
    Sample,
    eval_transform,
    load_image,
    read_kaggle_csv,
    split_samples,
)
from train.perturb import PERTURBATIONS, perturb_image

log = logging.getLogger("train.evaluate")


def load_manifest(path: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(path.read_text())
    for key in ("file", "input", "output", "labels", "fake_index", "threshold"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks {key!r}")
    return manifest


def discover_any(data: Path) -> tuple[list[Sample], str]:
    """Like `train.data.discover`, but a folder may hold only `real/` or only `fake/`: a
    false-positive figure needs real images and nothing else."""
    if data.is_file() and data.suffix == ".csv":
        return read_kaggle_csv(data), "kaggle-csv"
    if (data / KAGGLE_CSV).is_file():
        return read_kaggle_csv(data / KAGGLE_CSV), "kaggle-csv"
    samples: list[Sample] = []
    for label, name in enumerate(LABELS):
        folder = data / name
        if folder.is_dir():
            samples.extend(
                Sample(p, label)
                for p in sorted(folder.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
    if not samples:
        raise FileNotFoundError(f"{data}: expected {KAGGLE_CSV} or images under real/ or fake/")
    return samples, "real-fake-folders"


def select_split(
    samples: list[Sample], layout: str, split: str, training: dict[str, Any]
) -> list[Sample]:
    if split == "all":
        return samples
    if layout != "kaggle-csv":
        raise ValueError("--split train/val needs the training CSV")
    data = training.get("data", {})
    if "seed" not in data or "val_fraction" not in data:
        raise ValueError("manifest's training.data lacks seed/val_fraction: cannot re-split")
    train_s, val_s = split_samples(
        samples,
        float(data["val_fraction"]),
        int(data["seed"]),
        float(data.get("limit_fraction", 1.0)),
    )
    return val_s if split == "val" else train_s


def session_for(manifest_path: Path, manifest: dict[str, Any], fp16: bool) -> ort.InferenceSession:
    file = manifest["file"]
    if fp16:
        variants = [v for v in manifest.get("variants", []) if v.get("precision") == "fp16"]
        if not variants:
            raise ValueError(f"{manifest_path}: no fp16 variant")
        file = variants[0]["file"]
    opts = ort.SessionOptions()
    if fp16:
        # Same reason as in export: the full level has crashed on FP16 ViTs on the CPU.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(
        str(manifest_path.parent / file), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def _open(sample: Sample, perturb: str | None) -> Image.Image:
    if perturb is None:
        return load_image(sample.path)
    with Image.open(sample.path) as im:
        data, _ = perturb_image(im, perturb)
    # Decoding the re-encoded bytes through load_image is what the scanner would see on disk.
    return load_image(io.BytesIO(data))


def _batches(
    samples: Sequence[Sample], pre: Preprocess, batch: int, perturb: str | None
) -> Iterator[tuple[np.ndarray, list[int], list[int], int]]:
    """(inputs, indices kept, inputs per kept image, unreadable count) per batch. In crop mode
    with tiles an image contributes several inputs, whose scores are averaged per image."""
    transform = eval_transform(pre)
    for start in range(0, len(samples), batch):
        xs, kept, counts, bad = [], [], [], 0
        for i in range(start, min(start + batch, len(samples))):
            try:
                x = transform(_open(samples[i], perturb)).reshape(-1, 3, pre.height, pre.width)
            except Exception as exc:  # any decoder failure; PIL raises many types
                log.warning("skipping unreadable image %s: %s", samples[i].path, exc)
                bad += 1
                continue
            xs.append(x.numpy())
            kept.append(i)
            counts.append(len(x))
        if xs:
            yield np.concatenate(xs).astype(np.float32), kept, counts, bad
        else:
            yield np.zeros((0, 3, pre.height, pre.width), np.float32), kept, counts, bad


def fake_scores(
    session: ort.InferenceSession,
    manifest: dict[str, Any],
    samples: Sequence[Sample],
    batch: int = 32,
    perturb: str | None = None,
    pre: Preprocess | None = None,
    kept_out: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fake-probabilities and labels of the readable samples, and the unreadable count.

    The preprocessing is the manifest's own (``pre`` overrides it, to compare crop tilings),
    so a manifest the scanner would misread is misread here too and shows in the figures."""
    pre = pre or Preprocess.from_manifest(manifest["input"])
    in_name, out_name = manifest["input"]["name"], manifest["output"]["name"]
    fake_index = int(manifest["fake_index"])
    scores: list[np.ndarray] = []
    labels: list[int] = []
    skipped = 0
    for x, kept, counts, bad in _batches(samples, pre, batch, perturb):
        skipped += bad
        if not kept:
            continue
        (out,) = session.run([out_name], {in_name: x})
        out = np.asarray(out, dtype=np.float64)
        if manifest["output"]["kind"] == "logits":
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        per_input = out[:, fake_index]
        bounds = np.cumsum([0, *counts])
        scores.append(np.array([per_input[a:b].mean() for a, b in itertools.pairwise(bounds)]))
        labels.extend(samples[i].label for i in kept)
        if kept_out is not None:
            kept_out.extend(kept)
    score_arr = np.concatenate(scores) if scores else np.zeros(0)
    return score_arr, np.array(labels, dtype=np.int64), skipped


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def wilson(num: int, den: int) -> list[float] | None:
    """95% Wilson score interval of a rate: honest at small counts and at rates near 0."""
    if not den:
        return None
    ci = binomtest(num, den).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def metrics_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Fake is the positive class. Figures that need a class the data lacks are None."""
    pred = scores >= threshold
    real, fake = labels == 0, labels == 1
    tp, fp = int((pred & fake).sum()), int((pred & real).sum())
    tn, fn = int((~pred & real).sum()), int((~pred & fake).sum())
    both = bool(real.any() and fake.any())
    return {
        "n": len(labels),
        "n_real": int(real.sum()),
        "n_fake": int(fake.sum()),
        "threshold": threshold,
        "accuracy": _ratio(tp + tn, len(labels)),
        "roc_auc": float(roc_auc_score(labels, scores)) if both else None,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "fpr_real": _ratio(fp, fp + tn),
        "fpr_real_ci95": wilson(fp, fp + tn),
        "tpr_fake": _ratio(tp, tp + fn),
        "tpr_fake_ci95": wilson(tp, tp + fn),
        "mean_score_real": float(scores[real].mean()) if real.any() else None,
        "mean_score_fake": float(scores[fake].mean()) if fake.any() else None,
    }


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Threshold with the best balanced accuracy (Youden's J), for choosing on validation."""
    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, thr = roc_curve(labels, scores)
    finite = np.isfinite(thr)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thr[int(np.argmax(j))])


OPERATING_FPRS = (0.01, 0.05, 0.10)


def operating_points(
    real_scores: np.ndarray, fprs: Sequence[float] = OPERATING_FPRS
) -> list[dict[str, float]]:
    """The lowest threshold at which at most ``fpr`` of these real images are called fake.

    A row is fake when score >= threshold, so the threshold sits just above the score of the
    real image ranked ``floor(fpr * n)`` from the top."""
    ranked = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    n = len(ranked)
    if n == 0:
        raise ValueError("operating points need real images")
    points = []
    for fpr in fprs:
        k = int(np.floor(fpr * n))
        thr = float(np.nextafter(np.float32(ranked[k]), np.float32(np.inf))) if k < n else 0.0
        achieved = float((ranked >= thr).mean())
        points.append({"max_fpr": fpr, "threshold": thr, "fpr": achieved, "n_real": n})
    return points


def parse_dataset(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if sep and name and not Path(text).exists():
        return name, Path(path)
    p = Path(text)
    return p.name or str(p), p


def _log_entry(key: str, entry: dict[str, Any]) -> None:
    log.info(
        "%s: n=%d acc=%s auc=%s fpr_real=%s tpr_fake=%s",
        key,
        entry["n"],
        _fmt(entry["accuracy"]),
        _fmt(entry["roc_auc"]),
        _fmt(entry["fpr_real"]),
        _fmt(entry["tpr_fake"]),
    )


def evaluate_model(
    manifest_path: Path,
    datasets: Sequence[tuple[str, Path]],
    split: str = "all",
    perturb: Sequence[str] = (),
    threshold: float | None = None,
    fp16: bool = False,
    batch: int = 32,
    perturb_sets: Sequence[str] | None = None,
    calibrate: str | None = None,
    tiles: int | None = None,
) -> dict[str, Any]:
    """Figures per data set. With ``calibrate`` (a data set name, evaluated first) the
    operating points come from that set's real images and are applied to every set."""
    manifest = load_manifest(manifest_path)
    pre = Preprocess.from_manifest(manifest["input"])
    if tiles is not None:
        pre = replace(pre, tiles=tiles)
    session = session_for(manifest_path, manifest, fp16)
    results: dict[str, Any] = {}
    points: list[dict[str, float]] = []
    if calibrate is not None:
        order = {name: i for i, (name, _) in enumerate(datasets)}
        if calibrate not in order:
            raise ValueError(f"--calibrate {calibrate}: no such data set")
        datasets = sorted(datasets, key=lambda d: d[0] != calibrate)
    thr = float(manifest["threshold"] if threshold is None else threshold)
    for name, path in datasets:
        samples, layout = discover_any(path)
        # A split only makes sense for the training CSV; folders are held out whole.
        chosen = select_split(
            samples, layout, split if layout == "kaggle-csv" else "all", manifest["training"]
        )
        kinds = perturb if perturb_sets is None or name in perturb_sets else ()
        for kind in (None, *kinds):
            started = time.perf_counter()
            kept: list[int] = []
            scores, labels, skipped = fake_scores(session, manifest, chosen, batch, kind, pre, kept)
            key = name if kind is None else f"{name}+{kind}"
            if name == calibrate and kind is None:
                points = operating_points(scores[labels == 0])
                if threshold is None:
                    thr = next(p["threshold"] for p in points if p["max_fpr"] == 0.05)
            entry = metrics_at(scores, labels, thr)
            entry["at_operating_points"] = [
                {"max_fpr": p["max_fpr"], **_rates(scores, labels, p["threshold"])} for p in points
            ]
            entry.update(
                {
                    "data": str(path),
                    "split": split if layout == "kaggle-csv" else "all",
                    "perturbation": kind,
                    "skipped": skipped,
                    "best_threshold": best_threshold(scores, labels),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            _log_entry(key, entry)
            results[key] = entry
            if kind is None and layout == "kaggle-csv":
                by_gen = _per_generator(path, chosen, kept, scores, labels, thr)
                if by_gen:
                    entry["per_generator"] = by_gen
    return {
        "model": manifest.get("name"),
        "version": manifest.get("version"),
        "precision": "fp16" if fp16 else "fp32",
        "preprocess": {"mode": pre.mode, "tiles": pre.tiles},
        "threshold": thr,
        "operating_points": points,
        "calibrated_on": calibrate,
        "datasets": results,
    }


def _per_generator(
    csv_path: Path,
    samples: Sequence[Sample],
    kept: Sequence[int],
    scores: np.ndarray,
    labels: np.ndarray,
    thr: float,
) -> dict[str, dict[str, Any]]:
    """TPR and ROC-AUC (against all real images of the set) for each generator named in the
    CSV's optional `generator` column."""
    path = csv_path if csv_path.suffix == ".csv" else csv_path / KAGGLE_CSV
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "generator" not in rows[0]:
        return {}
    gen_of = {str(path.parent / r["file_name"]): r["generator"] for r in rows}
    gens = np.array([gen_of.get(str(samples[i].path), "") for i in kept])
    real = labels == 0
    out: dict[str, dict[str, Any]] = {}
    for g in sorted(set(gens[labels == 1])):
        mask = real | (gens == g)
        m = metrics_at(scores[mask], labels[mask], thr)
        out[g] = {
            "n_fake": m["n_fake"],
            "tpr_fake": m["tpr_fake"],
            "tpr_fake_ci95": m["tpr_fake_ci95"],
            "roc_auc": m["roc_auc"],
        }
    return out


def _rates(scores: np.ndarray, labels: np.ndarray, thr: float) -> dict[str, float | None]:
    m = metrics_at(scores, labels, thr)
    keep = ("fpr_real", "fpr_real_ci95", "tpr_fake", "tpr_fake_ci95")
    return {"threshold": thr, **{k: m[k] for k in keep}}


def write_operating_points(
    manifest_path: Path, result: dict[str, Any], command: str | None = None
) -> None:
    """Record the operating points in the manifest (the 5% point becomes its threshold) and
    the figures, at that threshold, in its card."""
    manifest = json.loads(manifest_path.read_text())
    manifest["operating_points"] = [
        {"max_fpr": p["max_fpr"], "threshold": p["threshold"]} for p in result["operating_points"]
    ]
    manifest["threshold"] = result["threshold"]
    keep = (
        "n",
        "n_real",
        "n_fake",
        "accuracy",
        "roc_auc",
        "fpr_real",
        "fpr_real_ci95",
        "tpr_fake",
        "tpr_fake_ci95",
    )
    figures: dict[str, Any] = {
        name: {
            **{k: entry[k] for k in keep},
            **({"per_generator": entry["per_generator"]} if "per_generator" in entry else {}),
            "at_operating_points": entry["at_operating_points"],
        }
        for name, entry in result["datasets"].items()
    }
    manifest.setdefault("card", {})["evaluation"] = {
        "threshold": result["threshold"],
        "calibrated_on": result["calibrated_on"],
        "preprocess": result["preprocess"],
        "precision": result["precision"],
        "command": command,
        "datasets": figures,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_manifest(p)
    p.add_argument("data", nargs="+", help="[NAME=]PATH: train.csv, its folder, or real/+fake/")
    options.add_split(p, "all")
    p.add_argument(
        "--perturb",
        default="",
        help=f"also evaluate perturbed copies: comma list of {', '.join(PERTURBATIONS)}",
    )
    p.add_argument(
        "--perturb-sets", default=None, help="comma list of data set names to perturb (all)"
    )
    p.add_argument("--threshold", type=float, default=None, help="default: the manifest's")
    p.add_argument("--fp16", action="store_true", help="run the manifest's fp16 variant")
    options.add_batch_size(p, 32)
    p.add_argument(
        "--calibrate",
        default=None,
        metavar="NAME",
        help="data set whose real images set the 1%%/5%%/10%% false-positive operating points "
        "(the 5%% point becomes the threshold unless --threshold is given)",
    )
    p.add_argument(
        "--write-manifest",
        action="store_true",
        help="with --calibrate: store the operating points and threshold in the manifest",
    )
    p.add_argument("--tiles", type=int, default=None, help="crop mode: override the tiling")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    kinds = [k for k in a.perturb.split(",") if k]
    for k in kinds:
        if k not in PERTURBATIONS:
            raise options.UsageError(f"unknown perturbation {k!r}")
    if a.write_manifest and not a.calibrate:
        raise options.UsageError("--write-manifest needs --calibrate")
    result = evaluate_model(
        a.manifest,
        [parse_dataset(d) for d in a.data],
        a.split,
        kinds,
        a.threshold,
        a.fp16,
        a.batch_size,
        a.perturb_sets.split(",") if a.perturb_sets else None,
        a.calibrate,
        a.tiles,
    )
    if a.write_manifest:
        # The data paths are the builder's own; the build script holds the full command.
        write_operating_points(a.manifest, result, "python -m train evaluate --calibrate ...")
    text = json.dumps(result, indent=2) + "\n"
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    sys.stdout.write(text)
    return 0
