"""The record of one training run: its JSON file and its row in the runs CSV.

The CSV columns are the dataclass's fields in declaration order, so the header and the rows
cannot drift apart. Fields marked ``csv=False`` go to the JSON file only; the order of the CSV
fields is what older runs.csv files (and the plots that read them) were written with.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAN = float("nan")
_JSON_ONLY = {"csv": False}


@dataclass
class RunRecord:
    timestamp: str
    run_id: str
    mode: str
    model: str
    device_type: str
    devices: int
    world_size: int
    # None where it does not apply: a thread count outside cpu mode, chunks outside
    # model-parallel. Written as an empty CSV cell.
    cpu_threads: int | None
    pipeline_chunks: int | None
    amp: str
    batch_size: int
    global_batch_size: int
    image_size: int
    epochs: int
    train_images: int
    wall_time_s: float
    images_per_s: float
    # NaN until add_speedup has looked for a baseline in the runs CSV.
    speedup: float
    efficiency: float
    peak_mem_bytes: int
    train_loss: float
    val_accuracy: float
    roc_auc: float
    precision: float
    recall: float
    skipped_images: int
    hardware: str
    torch_version: str
    total_time_s: float = field(metadata=_JSON_ONLY)
    data_layout: str = field(metadata=_JSON_ONLY)
    train_samples: int = field(metadata=_JSON_ONLY)
    val_samples: int = field(metadata=_JSON_ONLY)

    @classmethod
    def csv_columns(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("csv", True))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def csv_row(self) -> dict[str, str]:
        values = self.as_dict()
        return {name: _csv_cell(values[name]) for name in self.csv_columns()}

    def append_csv(self, csv_path: Path) -> None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        new = not csv_path.is_file() or csv_path.stat().st_size == 0
        with csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.csv_columns())
            if new:
                writer.writeheader()
            writer.writerow(self.csv_row())

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if _is_nan(v) else v) for k, v in self.as_dict().items()}
        path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")

    @property
    def is_baseline(self) -> bool:
        """A one-thread cpu run is the CPU scaling baseline, its own speedup 1.0."""
        return self.mode == "cpu" and self.cpu_threads == 1

    def add_speedup(self, csv_path: Path) -> None:
        """Speedup over the matching baseline in the same CSV; a baseline run is its own 1.0."""
        own = self.images_per_s
        baseline = own if self.is_baseline else find_baseline(csv_path, self)
        if baseline is None and self.mode == "single":
            baseline = own
        if baseline:
            self.speedup = own / baseline
            self.efficiency = self.speedup / max(1, self.devices)
        else:
            self.speedup = NAN
            self.efficiency = NAN


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _csv_cell(value: object) -> str:
    if value is None or _is_nan(value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _is_baseline_row(row: dict[str, str]) -> bool:
    return row.get("mode") == "single" or (
        row.get("mode") == "cpu" and row.get("cpu_threads") in ("1", "1.0")
    )


def find_baseline(csv_path: Path, record: RunRecord) -> float | None:
    """Images/s of the latest single-device run with the same model, amp and device type.

    On CPU a ``cpu`` run with one thread is preferred to ``single`` (which uses all cores).
    """
    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r.get("model") == record.model
            and r.get("amp") == record.amp
            and r.get("device_type") == record.device_type
            and _is_baseline_row(r)
        ]
    if not rows:
        return None
    rows.sort(key=lambda r: (r.get("mode") == "cpu", r.get("timestamp", "")))
    try:
        value = float(rows[-1]["images_per_s"])
    except (KeyError, ValueError):
        return None
    return value if value > 0 else None
