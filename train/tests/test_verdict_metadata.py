"""The footer keys of the scanner's Parquet files, read back as a pyarrow user reads them.

docs/verdict-metadata.md promises that every Parquet file `scan` and `eval --out` write says
which model, precision and threshold its labels mean; this reads them with
``pyarrow.parquet.read_metadata`` and checks them against the model's manifest.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, scanner

MANIFEST = REPO / "models" / "efficientnet-lite0-gen.json"


def _keys(path: Path) -> dict[str, str]:
    raw = pq.read_metadata(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k.startswith(b"synthscan.")}


def _check(keys: dict[str, str], threshold: float, source: str, command: str) -> None:
    manifest = json.loads(MANIFEST.read_text())
    assert set(keys) == {
        "synthscan.version",
        "synthscan.command",
        "synthscan.models",
        "synthscan.threshold",
        "synthscan.threshold_source",
    }
    assert json.loads(keys["synthscan.command"])[1] == command
    (model,) = json.loads(keys["synthscan.models"])
    assert (model["name"], model["version"]) == (manifest["name"], manifest["version"])
    assert model["precision"] == "fp32"
    assert model["sha256"] == manifest["sha256"]
    assert model["threshold"] == pytest.approx(threshold, rel=1e-6)
    assert model["threshold_source"] == source
    assert float(keys["synthscan.threshold"]) == pytest.approx(threshold, rel=1e-6)
    assert keys["synthscan.threshold_source"] == source


def test_scan_and_eval_files_describe_their_run(tmp_path: Path) -> None:
    binary = str(scanner())
    common = ["--precision", "fp32", "--quiet"]
    scanned = tmp_path / "scan.parquet"
    subprocess.run(
        [
            binary,
            "scan",
            str(REPO / "samples"),
            "--out",
            str(scanned),
            "--threshold",
            "0.25",
            *common,
        ],
        check=True,
    )
    _check(_keys(scanned), 0.25, "--threshold", "scan")

    evaluated = tmp_path / "eval.parquet"
    subprocess.run(
        [binary, "eval", str(REPO / "samples"), "--out", str(evaluated), "--json", *common],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    manifest = json.loads(MANIFEST.read_text())
    _check(_keys(evaluated), manifest["threshold"], "manifest", "eval")
    # The rows are there too, one per sample file.
    samples = [p for d in ("real", "fake") for p in (REPO / "samples" / d).iterdir()]
    assert pq.read_table(evaluated).num_rows == len(samples)
