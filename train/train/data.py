"""Datasets, the scanner-identical preprocessing, augmentation and data loaders."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image, ImageFilter, ImageOps
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from torchvision import transforms

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
LABELS = ("real", "fake")
KAGGLE_CSV = "train.csv"


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # 0 = real, 1 = fake (AI-generated)


@dataclass(frozen=True)
class AugConfig:
    hflip: bool = False
    jpeg_quality: tuple[int, int] | None = None
    blur: bool = False
    rescale: bool = False
    webp: float = 0.0  # share of re-compressions done as WebP instead of JPEG
    prob: float = 1.0  # chance that rescaling and re-compression apply to an image


# --------------------------------------------------------------------------- preprocessing


def load_image(path: str | Path | IO[bytes]) -> Image.Image:
    """Decode exactly like the scanner: orientation from EXIF first, then RGB."""
    with Image.open(path) as img:
        return ImageOps.exif_transpose(img).convert("RGB")


@dataclass(frozen=True)
class Preprocess:
    """The manifest's ``input`` section: how an image becomes the model's input tensor.

    ``mode`` is ``resize`` (the whole image to height x width) or ``crop`` (native pixels, no
    resize: ``tiles`` x ``tiles`` crops of height x width spread evenly over the image, whose
    fake probabilities are averaged; an image smaller than the crop is first scaled up, keeping
    its aspect ratio, until its shorter side fills it).
    """

    height: int = IMAGE_SIZE
    width: int = IMAGE_SIZE
    mode: str = "resize"
    tiles: int = 1
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_manifest(cls, spec: dict[str, Any]) -> Preprocess:
        crop = spec.get("crop") or {}
        return cls(
            height=int(spec["height"]),
            width=int(spec["width"]),
            mode="crop" if crop else "resize",
            tiles=int(crop.get("tiles", 1)),
            mean=tuple(spec["mean"]),
            std=tuple(spec["std"]),
        )

    def manifest_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "resize": "bilinear_antialias",
            "scale": 1 / 255,
            "mean": list(self.mean),
            "std": list(self.std),
        }
        if self.mode == "crop":
            fields["crop"] = {
                "tiles": self.tiles,
                "aggregate": "mean",
                "small": "upscale_short_side",
            }
        return fields

    def normalize(self) -> Callable[[Image.Image], torch.Tensor]:
        norm: Callable[[Image.Image], torch.Tensor] = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        )
        return norm


def fill_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """Scale an image up (bilinear, antialias) until it covers height x width, keeping its
    aspect ratio; larger images are returned untouched. The scanner applies the same rule."""
    if img.width >= width and img.height >= height:
        return img
    f = max(width / img.width, height / img.height)
    size = (max(width, round(img.width * f)), max(height, round(img.height * f)))
    return img.resize(size, Image.Resampling.BILINEAR)


def tile_offsets(length: int, crop: int, tiles: int) -> list[int]:
    """Evenly spread crop origins along one axis; one tile is the centre crop (rounded as
    torchvision's CenterCrop rounds)."""
    if tiles == 1:
        return [round((length - crop) / 2.0)]
    return [round(i * (length - crop) / (tiles - 1)) for i in range(tiles)]


def crop_tiles(img: Image.Image, pre: Preprocess) -> list[Image.Image]:
    img = fill_crop(img, pre.height, pre.width)
    return [
        img.crop((x, y, x + pre.width, y + pre.height))
        for y in tile_offsets(img.height, pre.height, pre.tiles)
        for x in tile_offsets(img.width, pre.width, pre.tiles)
    ]


def eval_transform(pre: Preprocess | int = IMAGE_SIZE) -> Callable[[Image.Image], torch.Tensor]:
    """The scanner's preprocessing; export's parity check and evaluate use this same function.
    In crop mode with several tiles it returns a [tiles*tiles, 3, H, W] stack."""
    if isinstance(pre, int):
        pre = Preprocess(pre, pre)
    norm = pre.normalize()
    if pre.mode == "crop":
        if pre.tiles == 1:
            return lambda img: norm(crop_tiles(img, pre)[0])
        return lambda img: torch.stack([norm(t) for t in crop_tiles(img, pre)])
    resize = transforms.Resize((pre.height, pre.width), antialias=True)
    resized: Callable[[Image.Image], torch.Tensor] = transforms.Compose([resize, norm])
    return resized


class RandomJpeg:
    """Re-encode as JPEG (or, with probability ``webp``, as WebP): generated images are often
    shared re-compressed, so the detector must not key on the absence of compression."""

    def __init__(self, quality: tuple[int, int], webp: float = 0.0, p: float = 1.0) -> None:
        self.quality = quality
        self.webp = webp
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return img
        buf = io.BytesIO()
        q = int(torch.randint(self.quality[0], self.quality[1] + 1, ()).item())
        fmt = "WEBP" if float(torch.rand(())) < self.webp else "JPEG"
        img.save(buf, format=fmt, quality=q)
        buf.seek(0)
        return Image.open(buf).convert("RGB")


class RandomRescale:
    """Down/up-scale by a random factor so resampling traces do not identify a class."""

    def __init__(self, low: float = 0.5, high: float = 1.5, p: float = 1.0) -> None:
        self.low, self.high, self.p = low, high, p

    def __call__(self, img: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return img
        f = self.low + (self.high - self.low) * float(torch.rand(()))
        w, h = img.size
        return img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)


class RandomBlur:
    def __init__(self, p: float = 0.5, max_radius: float = 2.0) -> None:
        self.p, self.max_radius = p, max_radius

    def __call__(self, img: Image.Image) -> Image.Image:
        if float(torch.rand(())) >= self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(self.max_radius * float(torch.rand(()))))


def train_transform(
    aug: AugConfig, pre: Preprocess | int = IMAGE_SIZE
) -> Callable[[Image.Image], torch.Tensor]:
    if isinstance(pre, int):
        pre = Preprocess(pre, pre)
    steps: list[Callable[[Any], Any]] = []
    if aug.rescale:
        steps.append(RandomRescale(p=aug.prob))
    if aug.blur:
        # Mild: heavy blur wipes out the pixel-level traces the crop mode looks at.
        steps.append(
            RandomBlur(0.1 if pre.mode == "crop" else 0.5, 1.0 if pre.mode == "crop" else 2.0)
        )
    if aug.jpeg_quality is not None:
        steps.append(RandomJpeg(aug.jpeg_quality, aug.webp, aug.prob))
    if aug.hflip:
        steps.append(transforms.RandomHorizontalFlip())
    if pre.mode == "crop":
        steps.append(lambda img: fill_crop(img, pre.height, pre.width))
        steps.append(transforms.RandomCrop((pre.height, pre.width)))
        steps.append(pre.normalize())
    else:
        steps.append(eval_transform(pre))
    composed: Callable[[Image.Image], torch.Tensor] = transforms.Compose(steps)
    return composed


def parse_quality_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    qmin, qmax = int(lo), int(hi or lo)
    if not 1 <= qmin <= qmax <= 100:
        raise ValueError(f"JPEG quality range must be within 1-100 and ascending: {text!r}")
    return qmin, qmax


# --------------------------------------------------------------------------- discovery


def read_kaggle_csv(csv_path: Path) -> list[Sample]:
    base = csv_path.parent
    samples = []
    with csv_path.open(newline="") as fh:
        # DictReader keys by header, so a leading unnamed index column is simply ignored.
        for row in csv.DictReader(fh):
            samples.append(Sample(base / row["file_name"], int(row["label"])))
    return samples


def read_folders(root: Path) -> list[Sample]:
    samples = []
    for label, name in enumerate(LABELS):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(Sample(path, label))
    return samples


def discover(data_path: str | Path) -> tuple[list[Sample], str]:
    """Return the samples and the layout name ("kaggle-csv" or "real-fake-folders")."""
    root = Path(data_path)
    if root.is_file() and root.suffix == ".csv":
        return read_kaggle_csv(root), "kaggle-csv"
    if (root / KAGGLE_CSV).is_file():
        return read_kaggle_csv(root / KAGGLE_CSV), "kaggle-csv"
    if (root / "real").is_dir() and (root / "fake").is_dir():
        return read_folders(root), "real-fake-folders"
    raise FileNotFoundError(f"{root}: expected {KAGGLE_CSV} or real/ and fake/ folders")


def _stratified_subset(
    samples: list[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    labels = [s.label for s in samples]
    try:
        a, b = train_test_split(samples, train_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        # Too few samples of a class to stratify (tiny data sets): fall back to a plain split.
        a, b = train_test_split(samples, train_size=fraction, random_state=seed)
    return list(a), list(b)


def split_samples(
    samples: Sequence[Sample], val_fraction: float, seed: int, limit_fraction: float = 1.0
) -> tuple[list[Sample], list[Sample]]:
    """Deterministic stratified split; sorting first makes it independent of listing order."""
    ordered = sorted(samples, key=lambda s: (str(s.path), s.label))
    if 0 < limit_fraction < 1:
        ordered, _ = _stratified_subset(ordered, limit_fraction, seed)
    if val_fraction <= 0:
        return ordered, []
    train, val = _stratified_subset(ordered, 1.0 - val_fraction, seed)
    return train, val


# --------------------------------------------------------------------------- datasets


class ImageDataset(Dataset[tuple[torch.Tensor, int, int] | None]):
    """Yields (image, label, index), or None for an unreadable file so the epoch goes on."""

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Image.Image], Any]) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | None:
        sample = self.samples[index]
        try:
            img = load_image(sample.path)
            return self.transform(img), sample.label, index
        except Exception as exc:  # any decoder failure: PIL raises many exception types
            log.warning("skipping unreadable image %s: %s", sample.path, exc)
            return None


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: int

    def __len__(self) -> int:
        return int(self.labels.numel())


def collate_skip(items: list[tuple[torch.Tensor, int, int] | None]) -> Batch:
    kept = [it for it in items if it is not None]
    skipped = len(items) - len(kept)
    if not kept:
        empty = torch.empty(0, dtype=torch.long)
        return Batch(torch.empty(0), empty, empty, skipped)
    return Batch(
        torch.stack([it[0] for it in kept]),
        torch.tensor([it[1] for it in kept], dtype=torch.long),
        torch.tensor([it[2] for it in kept], dtype=torch.long),
        skipped,
    )


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    workers: int,
    shuffle: bool,
    seed: int,
    distributed: tuple[int, int] | None = None,
    pin_memory: bool = False,
    drop_last: bool = False,
) -> DataLoader[Any]:
    """`distributed` is (rank, world_size) when each rank should read its own shard."""
    sampler: Sampler[int] | None = None
    if distributed is not None:
        rank, world = distributed
        sampler = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=workers > 0,
    )
