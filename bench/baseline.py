"""The pipeline a user would otherwise write: PyTorch DataLoader (worker processes) decoding with
PIL and the training transform, ONNX Runtime's Python session, verdicts to Parquet with pyarrow.

    python bench/baseline.py DIR --model models/efficientnet-lite0-gen.json --out v.parquet \
        [--workers 2] [--threads 2] [--batch-size 16] [--precision fp32|int8]

With `--precision int8` it runs the manifest's INT8 variant, as a Python user who quantized
the model would.

Prints one JSON line: images, seconds, images_per_sec.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def fit(size: int) -> Callable[[Image.Image], Image.Image]:
    """Scale an image smaller than the crop up until its shorter side fills it."""
    return lambda img: img if min(img.size) >= size else transforms.Resize(size)(img)


class Folder(Dataset):
    def __init__(self, root: Path, spec: dict) -> None:
        self.paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
        size = spec["height"]
        # The manifest says whether the model sees the whole image resized or a native crop.
        if spec.get("crop"):
            first = [fit(size), transforms.CenterCrop(size)]
        else:
            first = [transforms.Resize((size, size), antialias=True)]
        self.transform = transforms.Compose(
            [*first, transforms.ToTensor(), transforms.Normalize(spec["mean"], spec["std"])]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        with Image.open(self.paths[i]) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
        return self.transform(img), str(self.paths[i])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    args = ap.parse_args()

    started = time.perf_counter()
    manifest = json.loads(args.model.read_text())
    spec = manifest["input"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    file = manifest["file"]
    if args.precision != "fp32":
        (file,) = (v["file"] for v in manifest["variants"] if v["precision"] == args.precision)
    session = ort.InferenceSession(
        str(args.model.parent / file), opts, providers=["CPUExecutionProvider"]
    )
    torch.set_num_threads(1)
    data = Folder(args.root, spec)
    loader = DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)
    paths: list[str] = []
    scores: list[float] = []
    for batch, names in loader:
        (logits,) = session.run(None, {spec["name"]: batch.numpy()})
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e[:, manifest["fake_index"]] / e.sum(axis=1)
        paths += list(names)
        scores += probs.tolist()
    labels = ["fake" if s >= manifest["threshold"] else "real" for s in scores]
    table = pa.table({"path": paths, "score": pa.array(scores, pa.float32()), "label": labels})
    pq.write_table(table, args.out, compression="zstd")
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"images": len(paths), "seconds": seconds, "images_per_sec": len(paths) / seconds}
        )
    )


if __name__ == "__main__":
    main()
