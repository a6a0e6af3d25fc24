"""Classification metrics, resource measurements and the per-run JSON/CSV records."""

from __future__ import annotations

import csv
import json
import math
import platform
import resource
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

CSV_COLUMNS = (
    "timestamp",
    "run_id",
    "mode",
    "model",
    "device_type",
    "devices",
    "world_size",
    "cpu_threads",
    "pipeline_chunks",
    "amp",
    "batch_size",
    "global_batch_size",
    "image_size",
    "epochs",
    "train_images",
    "wall_time_s",
    "images_per_s",
    "speedup",
    "efficiency",
    "peak_mem_bytes",
    "train_loss",
    "val_accuracy",
    "roc_auc",
    "precision",
    "recall",
    "skipped_images",
    "hardware",
    "torch_version",
)


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    if len(labels) == 0:
        nan = float("nan")
        return {"val_accuracy": nan, "roc_auc": nan, "precision": nan, "recall": nan}
    pred = (probs >= threshold).astype(int)
    # AUC is undefined when the validation split holds one class only (tiny data sets).
    auc = roc_auc_score(labels, probs) if len(np.unique(labels)) == 2 else float("nan")
    return {
        "val_accuracy": float(accuracy_score(labels, pred)),
        "roc_auc": float(auc),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
    }


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"{torch.cuda.device_count()}x {name}"
    import os

    return f"{cpu_model()} ({os.cpu_count()} logical CPUs)"


def _is_baseline(row: dict[str, str]) -> bool:
    return row.get("mode") == "single" or (
        row.get("mode") == "cpu" and row.get("cpu_threads") in ("1", "1.0")
    )


def find_baseline(csv_path: Path, record: dict[str, Any]) -> float | None:
    """Images/s of the latest single-device run with the same model, amp and device type.

    On CPU a ``cpu`` run with one thread is preferred to ``single`` (which uses all cores).
    """
    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r.get("model") == record["model"]
            and r.get("amp") == record["amp"]
            and r.get("device_type") == record["device_type"]
            and _is_baseline(r)
        ]
    if not rows:
        return None
    rows.sort(key=lambda r: (r.get("mode") == "cpu", r.get("timestamp", "")))
    try:
        value = float(rows[-1]["images_per_s"])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None


def add_speedup(record: dict[str, Any], csv_path: Path) -> None:
    """Speedup over the matching baseline in the same CSV; a baseline run is its own 1.0."""
    own: float = record["images_per_s"]
    one_thread = record["mode"] == "cpu" and int(record.get("cpu_threads") or 0) == 1
    baseline = own if one_thread else find_baseline(csv_path, record)
    if baseline is None and record["mode"] == "single":
        baseline = own
    if baseline:
        record["speedup"] = record["images_per_s"] / baseline
        record["efficiency"] = record["speedup"] / max(1, int(record["devices"]))
    else:
        record["speedup"] = float("nan")
        record["efficiency"] = float("nan")


def append_csv(csv_path: Path, record: dict[str, Any]) -> None:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new = not csv_path.is_file() or csv_path.stat().st_size == 0
    with csv_path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _fmt(record.get(k, "")) for k in CSV_COLUMNS})


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
