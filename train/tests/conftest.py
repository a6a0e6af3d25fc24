from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train import cli, fit
from train.record import RunRecord

# Two cores shared by everything: keep each test process to one intra-op thread.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

SIZE = 32
REPO = Path(__file__).resolve().parents[2]


def write_images(folder: Path, n: int, fake: bool, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = (rng.random((40, 48, 3)) * 255).astype("uint8")
        if fake:
            arr[:, :, 0] = 255  # an easy signal so a few steps learn something
        path = folder / f"img{i:03d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def folder_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_images(root / "real" / "a", 8, fake=False, seed=1)
    write_images(root / "fake", 8, fake=True, seed=2)
    return root


@pytest.fixture
def kaggle_data(tmp_path: Path) -> Path:
    root = tmp_path / "kaggle"
    real = write_images(root / "train_data", 6, fake=False, seed=3)
    fake = write_images(root / "train_data" / "f", 6, fake=True, seed=4)
    lines = [",file_name,label"]
    for i, p in enumerate(real + fake):
        lines.append(f"{i},{p.relative_to(root).as_posix()},{int(p in fake)}")
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--data-path", str(data),
        "--device", "cpu",
        "--image-size", str(SIZE),
        "-b", "4",
        "-j", "0",
        "--epochs", "1",
        "--output-dir", str(out),
        "--print-freq", "0",
        *extra,
    ]  # fmt: skip


def fit_main(argv: list[str]) -> RunRecord:
    """What `python -m train fit ARGV` does, in this process, with the run record it makes."""
    return fit.fit(cli.build_parser().parse_args(["fit", *argv]))


def scanner() -> Path:
    explicit = os.environ.get("SYNTHSCAN_BIN")
    path = Path(explicit) if explicit else REPO / "target" / "release" / "synthscan"
    if not path.is_file():
        if explicit:
            pytest.fail(f"SYNTHSCAN_BIN={explicit} does not exist")
        pytest.skip("scanner not built: run `cargo build --release` first")
    return path
