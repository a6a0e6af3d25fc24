"""The real-generator corpus: catalogues, the splits, the class-matched processing steps and
the sets scored as found."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train import corpus
from train.corpus import Picture
from train.shortcut import colour_count

HEADER = "repo,path,label,group,generator,licence,grid,processing,note\n"


def _photo(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8")).save(path)
    return path


def test_catalog_lists_tiles_and_refuses_a_missing_file(tmp_path: Path) -> None:
    _photo(tmp_path / "repos" / "gallery" / "a.png", (900, 600), 0)
    catalog = tmp_path / "generated.csv"
    catalog.write_text(HEADER + "o/gallery,a.png,1,gpt4o,GPT-4o,CC-BY-4.0,2x3,palette,\n")
    pics = corpus.list_catalog(tmp_path / "repos", catalog)
    assert [p.tile for p in pics] == list(range(6))
    assert {(p.grid, p.group, p.processing) for p in pics} == {((2, 3), "gpt4o", "palette")}
    tile = corpus.open_picture(pics[5])
    assert tile is not None and tile.size == (300, 300)

    catalog.write_text(HEADER + "o/gallery,gone.png,1,gpt4o,GPT-4o,CC-BY-4.0,,,\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        corpus.list_catalog(tmp_path / "repos", catalog)


def _pictures(tmp_path: Path) -> tuple[list[Picture], list[Picture]]:
    fakes = [
        Picture(tmp_path / f"sd{i}", 1, "sd", "SD 1.5", group="stable_diffusion")
        for i in range(400)
    ]
    fakes += [
        Picture(tmp_path / f"g{i}", 1, "o/g", "GPT-4o", group="gpt4o", processing="palette")
        for i in range(50)
    ]
    fakes += [
        Picture(
            tmp_path / f"n{i}",
            1,
            "o/n",
            "Nano Banana",
            group="nano_banana",
            processing="social_jpeg",
        )
        for i in range(50)
    ]
    fakes += [
        Picture(tmp_path / f"h{i}", 1, "sd35", "Stable Diffusion 3.5 Large") for i in range(20)
    ]
    reals = [Picture(tmp_path / f"w{i}", 0, "wall", "photo", group="wall") for i in range(30)]
    reals += [Picture(tmp_path / f"a{i}", 0, "art", "art", group="art") for i in range(300)]
    reals += [Picture(tmp_path / f"c{i}", 0, "o/c", "camera", group="coco") for i in range(200)]
    reals += [
        Picture(tmp_path / f"s{i}", 0, "o/s", "camera", group=corpus.HOLDOUT_CAMERA_GROUP)
        for i in range(40)
    ]
    return fakes, reals


def test_plan_balances_families_and_matches_processing_steps(tmp_path: Path) -> None:
    fakes, reals = _pictures(tmp_path)
    jobs = corpus.plan(fakes, reals, tmp_path, seed=0)
    fit = [j for j in jobs if j.split in ("train", "val")]
    fake = [j for j in fit if j.picture.label]
    real = [j for j in fit if not j.picture.label]

    by_group = Counter(j.picture.group for j in fake)
    # Each family beyond Stable Diffusion gets about a share of SD's count (50 pictures x 4).
    assert by_group["stable_diffusion"] == 400
    assert by_group["gpt4o"] == by_group["nano_banana"] == 200
    # Camera photos get half of the real renders; the held-out ones none of the fitted ones.
    camera = sum(j.picture.generator == "camera" for j in real)
    assert abs(camera - len(real) / 2) <= 0.05 * len(real)
    assert not any(j.picture.group == corpus.HOLDOUT_CAMERA_GROUP for j in fit)
    assert {j.split for j in jobs if j.picture.group == corpus.HOLDOUT_CAMERA_GROUP} == {
        "holdout_camera"
    }
    assert {j.split for j in jobs if j.picture.source == "sd35"} == {
        "holdout_stable_diffusion_3_5_large"
    }
    # The share of real renders put through each step matches the generated share.
    for step in ("palette", "social_jpeg"):
        fake_share = sum(j.picture.processing == step for j in fake) / len(fake)
        real_share = sum(j.imitate == step for j in real) / len(real)
        assert fake_share == pytest.approx(0.25)
        assert real_share == pytest.approx(fake_share, abs=0.05)
    assert not any(j.imitate for j in fake)


def test_imitated_steps_leave_their_traces() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((3000, 2400, 3)) * 255).astype("uint8"))
    assert colour_count(img) == 4096
    shared = corpus.share_socially(img, rng)
    assert max(shared.size) <= corpus.SOCIAL_LONG_SIDES[1] and shared.mode == "RGB"
    # Palette quantization of the crop's region only; this seed draws a crop at native
    # resolution, so the lossless render keeps at most 256 colours.
    r = corpus.Rendering(400, 300, "png", 0, "")
    data, _ = corpus.render(img, r, rng, palette=True)
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == (400, 300)
        assert colour_count(out) <= 256


def test_render_brings_a_large_picture_to_generator_sizes() -> None:
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((3000, 4000, 3)) * 255).astype("uint8"))
    r = corpus.Rendering(640, 480, "png", 0, "", fit_long_side=800)
    data, suffix = corpus.render(img, r, rng)
    assert suffix == ".png"
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == (640, 480)


def test_sets_as_found_keep_files_byte_for_byte(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "cam" / "IMG_1.jpg", (320, 300), 2)
    grid = _photo(tmp_path / "gen" / "grid.png", (600, 300), 3)
    real = Picture(photo, 0, "o/cam", "camera", group="phones")
    tiles = [Picture(grid, 1, "o/gen", "Dall-E 2", t, (1, 2), "dalle2") for t in range(2)]
    out = tmp_path / "set"
    corpus.write_as_found(out, tiles, [real])
    with (out / "data.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == ["1", "1", "0"]
    assert (out / rows[2]["file_name"]).read_bytes() == photo.read_bytes()
    with Image.open(out / rows[0]["file_name"]) as tile:
        assert tile.size == (300, 300)


def test_family_fold_leaves_the_groups_out_of_training_only(tmp_path: Path) -> None:
    rows = [
        ("train", 1, "gpt4o"),
        ("train", 1, "stable_diffusion"),
        ("val", 1, "gpt4o"),
        ("val", 1, "midjourney"),
        ("train", 0, "coco"),
        ("val", 0, "coco"),
        ("holdout_camera", 0, corpus.HOLDOUT_CAMERA_GROUP),
    ]
    with (tmp_path / "index.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=corpus.INDEX_COLUMNS, restval="")
        w.writeheader()
        for i, (split, label, group) in enumerate(rows):
            w.writerow({"file_name": f"f{i}.png", "split": split, "label": label, "group": group})
    paths = corpus.write_family_fold(tmp_path, ["gpt4o", "midjourney"])

    def names(subset: str) -> list[str]:
        with paths[subset].open() as fh:
            return [r["file_name"] for r in csv.DictReader(fh)]

    assert names("train") == ["f1.png", "f4.png"]
    assert names("val") == ["f5.png"]
    assert names("test") == ["f0.png", "f2.png", "f3.png", "f6.png"]
    assert names("test_gpt4o") == ["f0.png", "f2.png", "f6.png"]
    assert names("test_midjourney") == ["f3.png", "f6.png"]
    with pytest.raises(ValueError, match="kolors"):
        corpus.write_family_fold(tmp_path, ["kolors"])
