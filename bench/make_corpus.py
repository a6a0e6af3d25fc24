"""Build the benchmark corpus from real photographs, reproducibly.

Default: 1,000 JPEGs (40% ~512 px, 40% 1024-1600 px, 20% 12-megapixel 4000x3000) in ``jpeg/``,
plus PNG and WebP variants of a tenth of them in ``png/`` and ``webp/``. Sources are any folder
of photos, by default the ones ``train/scripts/fetch_photos.sh`` fetches.

    python bench/make_corpus.py --sources data/photos --out bench/corpus [--n 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def sources(root: Path) -> list[Path]:
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    photos = []
    for p in found:
        try:
            with Image.open(p) as im:
                if min(im.size) >= 480 and im.mode in ("RGB", "L"):
                    photos.append(p)
        except OSError:
            continue
    if not photos:
        raise SystemExit(f"no photos of at least 480 px under {root}")
    return photos


def target_size(rng: random.Random, i: int, n: int) -> tuple[int, int]:
    share = i / n
    if share < 0.4:
        long = 512
    elif share < 0.8:
        long = rng.randint(1024, 1600)
    else:
        return (4000, 3000)
    aspect = rng.choice([4 / 3, 3 / 2, 16 / 9, 1.0])
    return (long, round(long / aspect)) if rng.random() < 0.7 else (round(long / aspect), long)


def render(photo: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    w, h = size
    # Crop to the target aspect at a random place, then resample to the size (12 MP frames are
    # upsampled from smaller wallpapers; the codec cost is what the benchmark measures).
    src_w, src_h = photo.size
    scale = min(src_w / w, src_h / h) * rng.uniform(0.6, 1.0)
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    x, y = rng.randint(0, src_w - cw), rng.randint(0, src_h - ch)
    return photo.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BICUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=Path, default=Path("data/photos"))
    ap.add_argument("--out", type=Path, default=Path("bench/corpus"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = random.Random(args.seed)
    photos = sources(args.sources)
    for sub in ("jpeg", "png", "webp"):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    cache: dict[Path, Image.Image] = {}
    for i in range(args.n):
        path = photos[rng.randrange(len(photos))]
        if path not in cache:
            cache.clear()  # keep one decoded source in memory at a time
            cache[path] = Image.open(path).convert("RGB")
        img = render(cache[path], target_size(rng, i, args.n), rng)
        img.save(args.out / "jpeg" / f"{i:05d}.jpg", quality=rng.randint(80, 95))
        if i % 10 == 0 and img.width * img.height <= 4_000_000:
            img.save(args.out / "png" / f"{i:05d}.png")
            img.save(args.out / "webp" / f"{i:05d}.webp", quality=90)
    print(f"wrote {args.n} JPEGs and their PNG/WebP variants to {args.out}")


if __name__ == "__main__":
    main()
