from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import base_args, fit_main

from train import cli, evaluate
from train.export import export


def test_metrics_at_counts_each_class() -> None:
    scores = np.array([0.1, 0.6, 0.4, 0.9, 0.8])
    labels = np.array([0, 0, 1, 1, 1])
    m = evaluate.metrics_at(scores, labels, 0.5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["fpr_real"] == pytest.approx(1 / 2) and m["tpr_fake"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["roc_auc"] == pytest.approx(5 / 6)
    only_real = evaluate.metrics_at(scores[:2], labels[:2], 0.5)
    # Without fakes, only the false-positive side is defined.
    assert only_real["roc_auc"] is None and only_real["tpr_fake"] is None
    assert only_real["fpr_real"] == pytest.approx(0.5)
    assert evaluate.best_threshold(scores, labels) == pytest.approx(0.8)


def test_evaluate_exported_model(kaggle_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = fit_main(base_args(kaggle_data, out, "--val-fraction", "0.5"))
    manifest = tmp_path / "models" / "demo.json"
    export(out / "checkpoint.pth", manifest.with_suffix(""), fp16=False)

    real_only = tmp_path / "real_only"
    shutil.copytree(kaggle_data / "train_data", real_only / "real", ignore=_skip_dirs)
    result_path = tmp_path / "eval.json"
    rc = cli.main(
        ["evaluate", str(manifest), f"val={kaggle_data}", str(real_only), "--split", "val",
         "--perturb", "jpeg75,downscale50", "--perturb-sets", "val",
         "--out", str(result_path)]
    )  # fmt: skip
    assert rc == 0
    result = json.loads(result_path.read_text())
    assert result["threshold"] == 0.5 and result["precision"] == "fp32"
    sets = result["datasets"]
    assert set(sets) == {"val", "val+jpeg75", "val+downscale50", "real_only"}
    # Exactly the training run's validation split, whichever way the CSV is named.
    assert sets["val"]["n"] == record.val_samples and sets["val"]["split"] == "val"
    assert sets["val"]["accuracy"] == pytest.approx(record.val_accuracy, abs=1e-6)
    assert sets["real_only"]["n_fake"] == 0 and sets["real_only"]["fpr_real"] is not None
    assert sets["real_only"]["split"] == "all"


def _skip_dirs(_: str, names: list[str]) -> list[str]:
    return [n for n in names if n == "f"]
