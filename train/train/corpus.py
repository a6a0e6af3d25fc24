"""The real-generator corpus: outputs of real text-to-image generators against photographs and
human-made artwork, rendered so that nothing but the pixels separates the classes.

    python -m train.corpus --generators GEN_DIR --photos PHOTO_DIR --out DIR [--seed 0]

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
import hashlib
import io
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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

HOLDOUT_GENERATORS = ("Stable Diffusion 3.5 Large",)
HOLDOUT_SOURCE = "mate-backgrounds"
MIN_SIDE = 256
VAL_FRACTION = 0.15
MAX_COPIES = 40


@dataclass(frozen=True)
class Picture:
    """One source picture (a grid tile counts as one)."""

    path: Path
    label: int  # 0 real, 1 generated
    source: str  # repository or package
    generator: str  # generator name, or "photo"/"art" for real pictures
    tile: int = -1  # index into a grid, -1 for the whole image
    grid: int = 1

    @property
    def key(self) -> str:
        return f"{self.path}#{self.tile}"


@dataclass(frozen=True)
class Job:
    picture: Picture
    split: str
    copy: int
    seed: int
    out: Path


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
            out.extend(Picture(path, 1, src.repo, gen, t, src.grid) for t in tiles)
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
                    out.append(Picture(path, 0, src.package, src.kind))
    return out


def open_picture(pic: Picture) -> Image.Image | None:
    """RGB pixels of the picture, or None when it is too small or mostly transparent."""
    with Image.open(pic.path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            alpha = np.asarray(im.convert("RGBA"))[..., 3]
            # Flat fills behind cut-outs would be a class cue (generators make none): skip.
            if (alpha < 250).mean() > 0.01:
                return None
        rgb = im.convert("RGB")
    if pic.tile >= 0:
        tw, th = rgb.width // pic.grid, rgb.height // pic.grid
        x, y = (pic.tile % pic.grid) * tw, (pic.tile // pic.grid) * th
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


def draw_rendering(rng: np.random.Generator) -> Rendering:
    """One distribution for both classes: this is what keeps format and size uninformative."""
    long_side = int(rng.integers(320, 641))
    aspect = float(rng.choice([1.0, 1.0, 4 / 3, 3 / 2, 16 / 9]))
    short_side = max(240, round(long_side / aspect))
    w, h = (long_side, short_side) if rng.random() < 0.6 else (short_side, long_side)
    u = rng.random()
    if u < 0.6:
        q = int(rng.integers(65, 101))
        return Rendering(w, h, "jpeg", q, "4:4:4" if rng.random() < 0.3 else "4:2:0")
    if u < 0.8:
        return Rendering(w, h, "webp", int(rng.integers(70, 101)), "")
    return Rendering(w, h, "png", 0, "")


def render(img: Image.Image, r: Rendering, rng: np.random.Generator) -> tuple[bytes, str]:
    """Crop at a random scale (0.5x up to 1.25x of the native pixels, never below the size
    that covers the output) and encode without any metadata."""
    w, h = r.width, r.height
    cover = max(w / img.width, h / img.height)
    lo, hi = max(cover, 0.5), max(cover, 1.25)
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    if rng.random() < 0.35 and cover <= 1.0:
        scale = max(cover, 1.0)  # a share of native-resolution crops on both sides
    sw, sh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    if (sw, sh) != img.size:
        img = img.resize(
            (sw, sh), Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
        )
    x = int(rng.integers(0, sw - w + 1))
    y = int(rng.integers(0, sh - h + 1))
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
        name = hashlib.sha256(f"{pic.key}|{job.copy}".encode()).hexdigest()[:16] + suffix
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
            data, _ = render(img, r, rng)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        rows.append(
            {
                "file_name": str(rel),
                "label": pic.label,
                "split": job.split,
                "source": pic.source,
                "generator": pic.generator,
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
        fp = known[pic.key]
        if fp is None:
            continue
        h, area = str(fp[0]), int(str(fp[1]))
        if h not in by_hash or by_hash[h][0] < area:
            by_hash[h] = (area, pic)
    return sorted((p for _, p in by_hash.values()), key=lambda p: p.key)


def plan(generated: Sequence[Picture], real: Sequence[Picture], out: Path, seed: int) -> list[Job]:
    jobs: list[Job] = []

    def split_of(pic: Picture) -> str:
        if pic.label and pic.generator in HOLDOUT_GENERATORS:
            return "holdout_" + re.sub(r"\W+", "_", pic.generator).strip("_").lower()
        if not pic.label and pic.source == HOLDOUT_SOURCE:
            return "holdout_source"
        return "val" if _rng(seed, "split", pic.key).random() < VAL_FRACTION else "train"

    n_fake = sum(1 for p in generated if split_of(p) in ("train", "val"))
    for pic in generated:
        jobs.append(Job(pic, split_of(pic), 0, seed, out))
    # Real sources differ wildly in size (hundreds of sky-culture drawings, a dozen large
    # wallpapers): give each source an equal share of the real images, so that no single
    # package defines "real". Small sources are rendered several times (other crops, scales and
    # encodings of a large picture); large ones are subsampled.
    groups: dict[tuple[str, str], list[Picture]] = {}
    for pic in real:
        if split_of(pic) == "holdout_source":
            # Enough copies of each held-out picture for a fine-grained false-positive rate.
            jobs.extend(Job(pic, "holdout_source", c, seed, out) for c in range(10))
        else:
            groups.setdefault((pic.source, pic.generator), []).append(pic)
    share = n_fake / max(1, len(groups))
    for pics in groups.values():
        if len(pics) > share:
            pics = sorted(pics, key=lambda p: _rng(seed, "pick", p.key).random())[: round(share)]
        copies = max(1, min(MAX_COPIES, round(share / len(pics))))
        for pic in pics:
            jobs.extend(Job(pic, split_of(pic), c, seed, out) for c in range(copies))
    return jobs


INDEX_COLUMNS = (
    "file_name",
    "label",
    "split",
    "source",
    "generator",
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
    # A held-out generator is scored against the held-out real source.
    reals = [r for r in rows if r["split"] == "holdout_source"]
    for split in sorted({str(r["split"]) for r in rows if str(r["split"]).startswith("holdout_")}):
        if split == "holdout_source":
            continue
        fakes = [r for r in rows if r["split"] == split]
        with (out / f"{split}_vs_real.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=INDEX_COLUMNS)
            w.writeheader()
            w.writerows(fakes + reals)


def build(
    generators: Path, photos: Path, out: Path, seed: int, workers: int
) -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    generated = list_generated(generators)
    real = _dedupe(list_real(photos), out / "fingerprints.json", workers)
    log.info("%d generated pictures, %d distinct real pictures", len(generated), len(real))
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
    return next(r.license for r in REAL_SOURCES if r.package == row["source"])


def pick_samples(corpus: Path, out: Path, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` real and ``n`` generated files for ``samples/``, drawn at random (not by how a model
    scores them) from images no model is trained on: the validation split and the held-out
    sets, spread over generators and sources round-robin, one file per picture."""
    rows = [r for r in iter_index(corpus / "index.csv") if r["split"] != "train"]
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


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m train.corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--generators", type=Path, help="folder of gallery checkouts")
    p.add_argument("--photos", type=Path, help="folder of unpacked packages")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-j", "--workers", type=int, default=2)
    p.add_argument(
        "--samples-to", type=Path, default=None, help="only pick demo samples from a built corpus"
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if a.samples_to is not None:
        for row in pick_samples(a.out, a.samples_to, 16, a.seed):
            print(row["file"], row["split"], row["generator"], row["source"])
        return
    if a.generators is None or a.photos is None:
        p.error("--generators and --photos are required to build a corpus")
    rows = build(a.generators, a.photos, a.out, a.seed, a.workers)
    print(json.dumps(corpus_stats(rows), indent=2))


if __name__ == "__main__":
    main()
