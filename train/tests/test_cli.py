from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch
from conftest import base_args, fit_main, free_port

from train import cli, plots
from train.export import export

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_single_run_writes_checkpoint_and_records(folder_data: Path, tmp_path: Path) -> None:
    (folder_data / "real" / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    record = fit_main(base_args(folder_data, out, "--model", "resnet18"))
    assert record.skipped_images >= 1  # counted, and the epoch finished
    assert record.speedup == 1.0 and record.images_per_s > 0
    ckpt = torch.load(out / "checkpoint.pth", weights_only=False)
    assert ckpt["epoch"] == 0 and {"optimizer", "lr_scheduler", "scaler", "rng"} <= ckpt.keys()
    rows = _rows(out / "runs.csv")
    assert len(rows) == 1 and rows[0]["mode"] == "single"
    assert len(list(out.glob("run-*.json"))) == 1


def test_commands_come_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    for name in ("corpus", "shortcut", "fit", "plots", "export", "evaluate", "quantize"):
        assert name in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data-path", "DATA"])
    assert exit_info.value.code == 2
    assert "python -m train fit --data-path DATA" in capsys.readouterr().err


def test_kaggle_layout_bf16_cpu_threads(kaggle_data: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs.csv"
    common = ("--model", "vit_tiny_patch16_224", "--runs-csv", str(runs), "--amp", "bf16")
    fit_main(base_args(kaggle_data, tmp_path / "a", *common, "--mode", "cpu", "--cpu-threads", "1"))
    rec = fit_main(
        base_args(kaggle_data, tmp_path / "b", *common, "--mode", "cpu", "--cpu-threads", "2")
    )
    assert rec.data_layout == "kaggle-csv" and rec.amp == "bf16"
    rows = _rows(runs)
    assert [r["cpu_threads"] for r in rows] == ["1", "2"]
    assert float(rows[1]["speedup"]) > 0 and float(rows[1]["efficiency"]) > 0
    pngs = plots.plot_runs(runs, tmp_path / "plots")
    assert {p.name for p in pngs} >= {"speedup.png", "efficiency.png", "accuracy.png"}


def test_resume_continues(folder_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fit_main(base_args(folder_data, out, "--max-steps", "2"))
    first = torch.load(out / "checkpoint.pth", weights_only=False)
    args = base_args(folder_data, out, "--max-steps", "2", "--epochs", "2")
    record = fit_main([*args, "--resume", str(out / "checkpoint.pth")])
    assert record.epochs == 1
    second = torch.load(out / "checkpoint.pth", weights_only=False)
    assert second["epoch"] == 1
    changed = [k for k, v in first["model"].items() if not torch.equal(v, second["model"][k])]
    assert changed  # it trained on from the saved weights rather than restarting


def test_model_parallel_in_process(folder_data: Path, tmp_path: Path) -> None:
    args = ("--mode", "model-parallel", "--pipeline-chunks", "2", "--max-steps", "2")
    record = fit_main(base_args(folder_data, tmp_path / "o", *args))
    assert record.mode == "model-parallel" and record.train_images == 8


def test_export_parity_and_manifest(folder_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fit_main(base_args(folder_data, out, "--max-steps", "1"))
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"figures": ["roc.png"]}))
    manifest = export(out / "checkpoint.pth", tmp_path / "models" / "demo",
                      parity_images=folder_data, card_json=card)  # fmt: skip
    models = tmp_path / "models"
    on_disk = json.loads((models / "demo.json").read_text())
    assert on_disk == manifest
    spec = json.loads(_manifest_example())
    # Operating points are measured later, by `train evaluate --calibrate --write-manifest`.
    assert set(on_disk) == set(spec) - {"operating_points"}
    assert set(on_disk["input"]) == set(spec["input"])
    for key in ("schema_version", "labels", "fake_index", "threshold", "output"):
        assert on_disk[key] == spec[key]
    for key in ("layout", "color", "resize", "scale", "mean", "std", "name"):
        assert on_disk["input"][key] == spec["input"][key]
    assert on_disk["file"] == "demo.onnx"
    digest = hashlib.sha256((models / "demo.onnx").read_bytes()).hexdigest()
    assert on_disk["sha256"] == digest
    (variant,) = on_disk["variants"]
    assert variant["precision"] == "fp16" and variant["file"] == "demo.fp16.onnx"
    assert variant["sha256"] == hashlib.sha256((models / variant["file"]).read_bytes()).hexdigest()
    assert on_disk["card"]["figures"] == ["roc.png"]
    assert on_disk["training"]["data"]["layout"] == "real-fake-folders"
    assert on_disk["card"]["onnx_parity"]["fp32_max_abs_prob_delta"] < 1e-4
    sess = ort.InferenceSession(str(models / "demo.onnx"), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, outp.name) == ("input", "logits") and not isinstance(inp.shape[0], int)
    x = torch.zeros(3, 3, 32, 32).numpy()
    assert sess.run(None, {"input": x})[0].shape == (3, 2)


def _manifest_example() -> str:
    doc = (ROOT / "docs" / "model-manifest.md").read_text()
    return doc.split("```json", 1)[1].split("```", 1)[0]


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--master-port", str(free_port()), "-m", "train", "fit", *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_torchrun_ddp_smoke(folder_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _torchrun(base_args(folder_data, out, "--mode", "ddp", "--max-steps", "2"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (row,) = _rows(out / "runs.csv")
    assert (row["mode"], row["world_size"]) == ("ddp", "2")
    assert (out / "checkpoint.pth").is_file()


@pytest.mark.slow
def test_torchrun_pipelined_and_fsdp(folder_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--mode", "model-parallel", "--pipeline-chunks", "2", "--max-steps", "2")
    res = _torchrun(base_args(folder_data, out, *args), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    res = _torchrun(base_args(folder_data, out, "--mode", "fsdp", "--max-steps", "2"), tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out / "runs.csv")
    assert [r["mode"] for r in rows] == ["model-parallel", "fsdp"]
    assert all(r["val_accuracy"] for r in rows)
