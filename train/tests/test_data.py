from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from train.data import (
    ImageDataset,
    collate_skip,
    discover,
    eval_transform,
    load_image,
    parse_quality_range,
    split_samples,
)


def test_folder_layout(folder_data: Path) -> None:
    samples, layout = discover(folder_data)
    assert layout == "real-fake-folders"
    assert sorted(s.label for s in samples) == [0] * 8 + [1] * 8


def test_kaggle_layout_with_index_column(kaggle_data: Path) -> None:
    samples, layout = discover(kaggle_data)
    assert layout == "kaggle-csv"
    assert len(samples) == 12 and all(s.path.is_file() for s in samples)
    assert sum(s.label for s in samples) == 6
    assert discover(kaggle_data / "train.csv")[0] == samples


def test_split_is_stratified_and_deterministic(folder_data: Path) -> None:
    samples, _ = discover(folder_data)
    train, val = split_samples(samples, 0.25, seed=3)
    assert (train, val) == split_samples(list(reversed(samples)), 0.25, seed=3)
    assert len(val) == 4 and sum(s.label for s in val) == 2
    assert not {s.path for s in train} & {s.path for s in val}
    small, _ = split_samples(samples, 0.0, seed=3, limit_fraction=0.5)
    assert len(small) == 8 and sum(s.label for s in small) == 4


def test_eval_transform_matches_pil_bilinear(tmp_path: Path) -> None:
    img = Image.new("RGB", (64, 40), (200, 10, 30))
    img.save(tmp_path / "a.png")
    x = eval_transform(16)(load_image(tmp_path / "a.png"))
    assert x.shape == (3, 16, 16)
    expected = (200 / 255 - 0.485) / 0.229
    assert abs(float(x[0, 0, 0]) - expected) < 1e-5


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (30, 10))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (10, 30)


def test_corrupt_image_is_skipped(folder_data: Path) -> None:
    bad = folder_data / "fake" / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    samples, _ = discover(folder_data)
    ds = ImageDataset(samples, eval_transform(8))
    batch = collate_skip([ds[i] for i in range(len(ds))])
    assert batch.skipped == 1 and len(batch) == len(ds) - 1
    assert batch.images.shape == (len(ds) - 1, 3, 8, 8)
    assert collate_skip([None]).skipped == 1


def test_quality_range() -> None:
    assert parse_quality_range("30-90") == (30, 90)
    assert parse_quality_range("75") == (75, 75)


def test_train_transform_augmentations(folder_data: Path) -> None:
    from train.data import AugConfig, train_transform

    aug = AugConfig(hflip=True, jpeg_quality=(30, 60), blur=True, rescale=True)
    x = train_transform(aug, 16)(load_image(next((folder_data / "fake").glob("*.png"))))
    assert x.shape == (3, 16, 16) and torch.isfinite(x).all()
