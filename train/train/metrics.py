"""Classification metrics and resource measurements (the run record is train.record)."""

from __future__ import annotations

import platform
import resource
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score


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
