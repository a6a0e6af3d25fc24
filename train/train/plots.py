"""Charts of a runs.csv: python -m train plots RUNS.csv --output-dir DIR"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on build machines

import matplotlib.pyplot as plt

CHARTS = {
    "training_time": ("wall_time_s", "training time (s)"),
    "throughput": ("images_per_s", "images / s"),
    "speedup": ("speedup", "speedup vs single device"),
    "efficiency": ("efficiency", "efficiency (speedup / devices)"),
    "peak_memory": ("peak_mem_bytes", "peak memory (MiB)"),
    "accuracy": ("val_accuracy", "validation accuracy"),
}


def run_label(row: dict[str, str]) -> str:
    label = row["mode"]
    if row.get("mode") == "cpu" and row.get("cpu_threads"):
        label += f" {row['cpu_threads']}t"
    elif row.get("world_size", "1") not in ("", "1"):
        label += f" x{row['world_size']}"
    if row.get("pipeline_chunks") not in (None, "", "1"):
        label += f" m{row['pipeline_chunks']}"
    if row.get("amp") not in (None, "", "off"):
        label += f" {row['amp']}"
    return label


def _value(row: dict[str, str], column: str) -> float:
    try:
        v = float(row.get(column) or "nan")
    except ValueError:
        return float("nan")
    return v / 2**20 if column == "peak_mem_bytes" else v


def plot_runs(csv_path: Path, out_dir: Path) -> list[Path]:
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out_dir.mkdir(parents=True, exist_ok=True)
    models = sorted({r["model"] for r in rows})
    written = []
    for stem, (column, title) in CHARTS.items():
        fig, axes = plt.subplots(
            1, max(1, len(models)), figsize=(5 * max(1, len(models)), 4), squeeze=False
        )
        for ax, model in zip(axes[0], models, strict=False):
            # The latest row per configuration wins, so re-running a case replaces it.
            latest: dict[str, float] = {}
            for row in rows:
                if row["model"] == model:
                    latest[run_label(row)] = _value(row, column)
            ax.bar(list(latest), list(latest.values()), color="tab:blue")
            ax.set_title(model)
            ax.set_ylabel(title)
            ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs_csv", type=Path)
    p.add_argument("--output-dir", type=Path, required=True)


def run(a: argparse.Namespace) -> int:
    for path in plot_runs(a.runs_csv, a.output_dir):
        print(path)
    return 0
