"""Preprocessing parity: the Rust scanner's probabilities equal the training side's reference.

The reference is what a user of the training package would compute with the manifest's own
preprocessing (``Preprocess.from_manifest``): PIL decode with EXIF orientation, then torchvision
``Resize((h, w), antialias=True)`` or, for native-resolution models, the centre crop or tiles
(small images scaled up first), ``ToTensor``, ``Normalize`` with the manifest's mean and std,
then ONNX Runtime on the same ONNX file (tile probabilities averaged). Each image's probability
must agree within 0.01. Variants of the tiny test model cover crop modes and a normalization
other than ImageNet's, so a manifest field the scanner ignored or misread would show.

The scanner binary comes from ``SYNTHSCAN_BIN`` (CI sets it after ``cargo build --release``),
else ``target/release/synthscan`` of the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO, scanner
from PIL import Image

from train.data import Preprocess, eval_transform, load_image

TOLERANCE = 0.01


TINY = REPO / "tests" / "fixtures" / "tiny-cnn.json"
# Input-section changes applied to the tiny model: each must reach the scanner's tensors.
TINY_VARIANTS = {
    "tiny-crop": {"crop": {"tiles": 1}},
    "tiny-tiles": {"crop": {"tiles": 2}},
    "tiny-norm": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.25]},
}


def manifests() -> list[Path | str]:
    found: list[Path | str] = sorted((REPO / "models").glob("*.json"))
    return [*found, TINY, *TINY_VARIANTS]


def materialize(manifest: Path | str, folder: Path) -> Path:
    """A tiny-model variant written beside a copy of its ONNX file."""
    if isinstance(manifest, Path):
        return manifest
    data = json.loads(TINY.read_text())
    data["name"] = manifest
    data["input"].update(TINY_VARIANTS[manifest])
    folder.mkdir(exist_ok=True)
    shutil.copy(TINY.parent / data["file"], folder / data["file"])
    path = folder / f"{manifest}.json"
    path.write_text(json.dumps(data))
    return path


def parity_images(root: Path) -> list[Path]:
    """The committed samples where present, plus sizes and colour types they may lack."""
    rng = np.random.default_rng(7)
    root.mkdir()
    made = []
    # Smooth content with some texture, at sizes around, below and far above 224.
    # The 4000x3000 JPEG is decoded at 1/4 scale in the DCT domain.
    for w, h in [(224, 224), (97, 131), (640, 480), (1500, 1000), (300, 2000), (4000, 3000)]:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) % 256], axis=-1)
        noise = rng.normal(0, 12, (h, w, 3))
        arr = np.clip(base + noise, 0, 255).astype("uint8")
        for ext, kw in [("png", {}), ("jpg", {"quality": 90})]:
            path = root / f"synth-{w}x{h}.{ext}"
            Image.fromarray(arr).save(path, **kw)
            made.append(path)
    gray = root / "gray.png"
    Image.open(made[0]).convert("L").save(gray)
    made.append(gray)
    rgba = root / "alpha.png"
    Image.open(made[2]).convert("RGBA").save(rgba)
    made.append(rgba)
    rotated = root / "rotated.jpg"
    img = Image.open(made[4])
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(rotated, exif=exif, quality=92)
    made.append(rotated)
    samples = REPO / "samples"
    if samples.is_dir():
        made += sorted(
            p for p in samples.rglob("*") if p.suffix.lower() in {".jpg", ".png", ".webp"}
        )
    return made


def reference_probs(manifest_path: Path, images: list[Path]) -> dict[str, float]:
    manifest = json.loads(manifest_path.read_text())
    pre = Preprocess.from_manifest(manifest["input"])
    session = ort.InferenceSession(
        str(manifest_path.parent / manifest["file"]), providers=["CPUExecutionProvider"]
    )
    transform = eval_transform(pre)
    out = {}
    for path in images:
        tensor = transform(load_image(path)).reshape(-1, 3, pre.height, pre.width).numpy()
        (logits,) = session.run([manifest["output"]["name"]], {manifest["input"]["name"]: tensor})
        probs = torch.softmax(torch.from_numpy(logits), dim=1)[:, manifest["fake_index"]]
        out[str(path)] = float(probs.mean())
    return out


@pytest.mark.parametrize(
    "manifest_ref", manifests(), ids=lambda p: p.stem if isinstance(p, Path) else p
)
def test_scanner_matches_the_training_transform(manifest_ref: Path | str, tmp_path: Path) -> None:
    binary = scanner()
    manifest_path = materialize(manifest_ref, tmp_path / "model")
    images = parity_images(tmp_path / "images")
    # Scan exactly these files (samples live elsewhere): pass them all as explicit paths.
    out = tmp_path / "verdicts.parquet"
    run = subprocess.run(
        [
            str(binary),
            "--quiet",
            "scan",
            *map(str, images),
            "--model",
            str(manifest_path),
            # Preprocessing is what this compares; INT8 variants have their own gate.
            "--precision",
            "fp32",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(images)
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    got = {r["path"]: r["score"] for r in rows}
    want = reference_probs(manifest_path, images)
    worst = max(want, key=lambda p: abs(want[p] - got[p]))
    diffs = {Path(p).name: round(abs(want[p] - got[p]), 5) for p in want}
    assert abs(want[worst] - got[worst]) < TOLERANCE, diffs
