"""Tiny end-to-end build of the demo corpus from scikit-image's sample photos."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from train.demo_data import (
    MANIFEST_COLUMNS,
    SOURCES_COLUMNS,
    CorpusConfig,
    PhotoSpec,
    build_corpus,
    perturb,
)

PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg")
CATALOGUE = (
    PhotoSpec("pkg-a", "astronaut.png", "public domain", "NASA"),
    PhotoSpec("pkg-a", "coffee.png", "CC0-1.0", "Rachel Michetti"),
    PhotoSpec("pkg-b", "chelsea.png", "CC0-1.0", "Stefan van der Walt"),
    PhotoSpec("pkg-c", "rocket.jpg", "public domain", "SpaceX"),
)


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import skimage
    except ImportError:
        pytest.skip("scikit-image (source of the test photos) is not installed")
    data = Path(skimage.__file__).parent / "data"
    if not all((data / name).is_file() for name in PHOTOS):
        pytest.skip(f"scikit-image sample photos missing from {data}")
    root = tmp_path_factory.mktemp("photos")
    for spec in CATALOGUE:
        pkg = root / spec.package
        (pkg / "root").mkdir(parents=True, exist_ok=True)
        (pkg / "VERSION").write_text("1.0\n")
        shutil.copy(data / spec.path, pkg / "root" / spec.path)
    return root


def _config(out: Path, sources: Path, seed: int = 0) -> CorpusConfig:
    return CorpusConfig(
        out=out,
        sources=sources,
        seed=seed,
        n_real=12,
        n_fake=12,
        n_holdout_family=4,
        n_holdout_source=5,
        holdout_source="pkg-c",
        holdout_family="upconv",
        min_long=64,
        max_long=128,
        gen_steps=2,
        gen_batch=2,
        gen_crop=32,
        gen_width=8,
        catalogue=CATALOGUE,
    )


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".json" and p.parent.name != "generators"
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, photo_root: Path) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(_config(out, photo_root), log=lambda _: None)
    return out


def test_counts_and_layout(corpus: Path) -> None:
    train = _read(corpus / "train.csv")
    assert Counter(r["label"] for r in train) == {"0": 12, "1": 12}
    assert len(list((corpus / "holdout_family" / "real").iterdir())) == 4
    assert len(list((corpus / "holdout_family" / "fake").iterdir())) == 4
    assert len(list((corpus / "holdout_source" / "real").iterdir())) == 5
    for r in train:
        assert (corpus / r["file_name"]).is_file()


def test_manifest_columns_and_files(corpus: Path) -> None:
    with (corpus / "manifest.csv").open(newline="") as fh:
        assert tuple(csv.DictReader(fh).fieldnames or ()) == MANIFEST_COLUMNS
    rows = _read(corpus / "manifest.csv")
    assert len(rows) == 12 + 12 + 8 + 5
    for r in rows:
        with Image.open(corpus / r["file"]) as im:
            w, h = im.size
            if r["exif_orientation"] in ("6", "8"):
                w, h = h, w
            assert (w, h) == (int(r["width"]), int(r["height"]))
            assert im.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[r["format"]]
    with (corpus / "sources.csv").open(newline="") as fh:
        assert tuple(csv.DictReader(fh).fieldnames or ()) == SOURCES_COLUMNS


def test_holdouts_kept_out_of_training(corpus: Path) -> None:
    rows = {r["file"]: r for r in _read(corpus / "manifest.csv")}
    train = [rows[r["file_name"]] for r in _read(corpus / "train.csv")]
    assert all(r["source_package"] != "pkg-c" for r in train)
    assert all(r["family"] != "upconv" for r in train)
    assert {r["family"] for r in train if r["label"] == "1"} == {"autogan", "pixelshuffle"}
    held = [r for r in rows.values() if r["split"] == "holdout_source"]
    assert held and all(r["source_package"] == "pkg-c" and r["label"] == "0" for r in held)
    fam = [r for r in rows.values() if r["split"] == "holdout_family" and r["label"] == "1"]
    assert fam and all(r["family"] == "upconv" for r in fam)


def test_format_and_size_carry_no_label_signal(corpus: Path) -> None:
    rows = _read(corpus / "manifest.csv")
    keys = ("format", "jpeg_quality", "width", "height", "chroma_subsampling", "grayscale")
    for split in ("train", "holdout_family"):
        real = Counter(
            tuple(r[k] for k in keys) for r in rows if r["split"] == split and r["label"] == "0"
        )
        fake = Counter(
            tuple(r[k] for k in keys) for r in rows if r["split"] == split and r["label"] == "1"
        )
        assert real == fake, split


def test_reproducible_from_seed(corpus: Path, photo_root: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_corpus(_config(again, photo_root), log=lambda _: None)
    assert _digest(again) == _digest(corpus)
    other = tmp_path / "other"
    build_corpus(_config(other, photo_root, seed=1), log=lambda _: None)
    assert _digest(other) != _digest(corpus)


def test_perturb(corpus: Path, tmp_path: Path) -> None:
    n = perturb(corpus / "holdout_family", tmp_path)
    assert n == 8
    assert len(list((tmp_path / "jpeg75").rglob("*.jpg"))) == 8
    small = sorted((tmp_path / "downscale50").rglob("*.png"))
    assert len(small) == 8
    src = sorted((corpus / "holdout_family").rglob("*.*"))[0]
    with Image.open(src) as a, Image.open(small[0]) as b:
        assert b.size == (a.width // 2, a.height // 2)
