from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from train import cli, quantize
from train.export import sha256_file

FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = REPO / "samples"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """The scanner's tiny test CNN with an FP32 manifest, copied where it may be changed."""
    for name in ("tiny-cnn.json", "tiny-cnn.onnx"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return tmp_path / "tiny-cnn.json"


def test_gate_needs_agreement_and_a_steady_auc() -> None:
    labels = np.array([0, 0, 1, 1])
    fp32 = np.array([0.1, 0.45, 0.55, 0.9])
    same = quantize.compare(fp32, fp32 + 0.01, labels, 0.5)
    assert same.passed and same.label_agreement == 1.0
    assert same.max_abs_score_change == pytest.approx(0.01)
    assert same.roc_auc_change == pytest.approx(0.0)
    # 0.45 crosses the threshold: one label in four changes.
    flipped = quantize.compare(fp32, fp32 + np.array([0, 0.06, 0, 0]), labels, 0.5)
    assert not flipped.passed and flipped.label_agreement == pytest.approx(0.75)
    # Labels agree but the ranking changes: AUC moves from 0.75 to 1.
    ranked = np.array([0.1, 0.3, 0.2, 0.9])
    reranked = quantize.compare(ranked, np.array([0.1, 0.15, 0.2, 0.9]), labels, 0.5)
    assert reranked.label_agreement == 1.0
    assert reranked.roc_auc_change == pytest.approx(0.25) and not reranked.passed
    # One class only: no AUC, the agreement decides.
    real_only = quantize.compare(fp32[:2], fp32[:2], labels[:2], 0.5)
    assert real_only.roc_auc_change is None and real_only.passed
    with pytest.raises(ValueError):
        quantize.compare(fp32, fp32[:2], labels, 0.5)


def test_calibration_takes_a_plain_folder_of_images(tiny: Path) -> None:
    manifest = json.loads(tiny.read_text())
    samples, split = quantize.calibration_samples(SAMPLES / "real", manifest, "train", 5)
    assert split == "all" and len(samples) == 5
    assert all(s.path.parent == SAMPLES / "real" for s in samples)
    both, _ = quantize.calibration_samples(SAMPLES, manifest, "train", 100)
    assert {s.label for s in both} == {0, 1} and len(both) == 32


def test_a_passing_variant_is_listed_and_runs(tiny: Path) -> None:
    card = quantize.quantize(
        tiny, SAMPLES / "real", [("samples", SAMPLES)], calib_images=12, batch=4
    )
    manifest = json.loads(tiny.read_text())
    assert card["passed"] and manifest["card"]["int8"] == card
    assert card["calibration"]["images"] == 12
    result = card["evaluation"]["samples"]
    assert result["n"] == 32 and result["label_agreement"] >= 0.99
    assert 0 < result["max_abs_score_change"] < 0.05
    (variant,) = manifest["variants"]
    path = tiny.parent / variant["file"]
    assert variant["precision"] == "int8" and variant["sha256"] == sha256_file(path)
    # The variant really is quantized: integer weights and quantize/dequantize nodes.
    import onnx

    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    assert path.stat().st_size < (tiny.parent / "tiny-cnn.onnx").stat().st_size


def test_a_failing_variant_is_not_shipped(tiny: Path) -> None:
    # Listed by an earlier run that passed: a failing run must withdraw it.
    manifest = json.loads(tiny.read_text())
    manifest["variants"] = [{"precision": "int8", "file": "tiny-cnn.int8.onnx", "sha256": "0"}]
    tiny.write_text(json.dumps(manifest))
    (tiny.parent / "tiny-cnn.int8.onnx").write_bytes(b"the earlier variant")
    code = cli.main(
        ["quantize", str(tiny), "--calib", str(SAMPLES), "--eval", f"samples={SAMPLES}",
         "--min-agreement", "1.01", "-b", "8"]
    )  # fmt: skip
    assert code == 1
    manifest = json.loads(tiny.read_text())
    assert manifest["variants"] == []
    assert manifest["card"]["int8"]["passed"] is False
    assert not (tiny.parent / "tiny-cnn.int8.onnx").exists()
    # Nor is the candidate left behind under its temporary name.
    assert sorted(p.name for p in tiny.parent.iterdir() if "int8" in p.name) == []


def test_the_first_convolutions_can_stay_in_float(tiny: Path) -> None:
    code = cli.main(
        ["quantize", str(tiny), "--calib", str(SAMPLES / "real"), "--calib-images", "12",
         "--eval", f"samples={SAMPLES}", "--float-convs", "1", "-b", "8"]
    )  # fmt: skip
    assert code == 0
    manifest = json.loads(tiny.read_text())
    assert manifest["card"]["int8"]["float_convs"] == ["node_conv2d"]
    import onnx

    graph = onnx.load(str(tiny.parent / manifest["variants"][0]["file"])).graph
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    producers = {o: n for n in graph.node for o in n.output}
    initializers = {t.name: t for t in graph.initializer}

    def weight_is_quantized(conv: onnx.NodeProto) -> bool:
        weight = conv.input[1]
        if weight in initializers:
            return initializers[weight].data_type != onnx.TensorProto.FLOAT
        return producers[weight].op_type == "DequantizeLinear"

    assert not weight_is_quantized(convs["node_conv2d"])
    assert weight_is_quantized(convs["node_conv2d_1"])
