from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from train.record import RunRecord

# The columns runs.csv files have always had, in their order: older files and the plots that
# read them depend on it.
COLUMNS = (
    "timestamp", "run_id", "mode", "model", "device_type", "devices", "world_size",
    "cpu_threads", "pipeline_chunks", "amp", "batch_size", "global_batch_size", "image_size",
    "epochs", "train_images", "wall_time_s", "images_per_s", "speedup", "efficiency",
    "peak_mem_bytes", "train_loss", "val_accuracy", "roc_auc", "precision", "recall",
    "skipped_images", "hardware", "torch_version",
)  # fmt: skip


def _record(**changes: object) -> RunRecord:
    nan = math.nan
    values: dict[str, object] = {
        "timestamp": "2026-01-01T00:00:00+00:00", "run_id": "r1", "mode": "cpu",
        "model": "resnet18", "device_type": "cpu", "devices": 2, "world_size": 1,
        "cpu_threads": 2, "pipeline_chunks": None, "amp": "off", "batch_size": 4,
        "global_batch_size": 4, "image_size": 32, "epochs": 1, "train_images": 8,
        "wall_time_s": 2.0, "images_per_s": 4.0, "speedup": nan, "efficiency": nan,
        "peak_mem_bytes": 1, "train_loss": 0.5, "val_accuracy": nan, "roc_auc": nan,
        "precision": nan, "recall": nan, "skipped_images": 0, "hardware": "cpu",
        "torch_version": "2", "total_time_s": 3.0, "data_layout": "real-fake-folders",
        "train_samples": 8, "val_samples": 4,
    }  # fmt: skip
    values.update(changes)
    return RunRecord(**values)  # type: ignore[arg-type]


def test_csv_columns_keep_their_names_and_order(tmp_path: Path) -> None:
    assert RunRecord.csv_columns() == COLUMNS
    path = tmp_path / "runs.csv"
    _record().append_csv(path)
    _record(run_id="r2").append_csv(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3
    row = dict(zip(COLUMNS, rows[1], strict=True))
    # Not applicable and not a number are empty cells.
    assert row["pipeline_chunks"] == "" and row["roc_auc"] == "" and row["wall_time_s"] == "2"


def test_speedup_against_the_one_thread_baseline(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    base = _record(cpu_threads=1, devices=1, images_per_s=2.0)
    base.add_speedup(path)
    base.append_csv(path)
    assert base.speedup == 1.0
    two = _record()
    two.add_speedup(path)
    assert two.speedup == pytest.approx(2.0) and two.efficiency == pytest.approx(1.0)
    two.write_json(tmp_path / "run.json")
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["roc_auc"] is None and on_disk["val_samples"] == 4
