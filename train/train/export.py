"""Export a checkpoint to ONNX (FP32 + FP16 variant) with the manifest the scanner reads.

python -m train export CHECKPOINT --out models/NAME [--parity-images DIR] [--card-json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxconverter_common import float16

from train.data import IMAGE_EXTENSIONS, LABELS, Preprocess, eval_transform
from train.data import load_image as load_rgb
from train.models import create_model, fix_same_padding, unwrap_state_dict

log = logging.getLogger("train.export")

OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PARITY_TOLERANCE_FP32 = 1e-4
PARITY_TOLERANCE_FP16 = 1e-2


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    args = ckpt.get("args", {}) if isinstance(ckpt, dict) else {}
    name = args.get("model", "resnet18")
    model = create_model(name, image_size=int(args.get("image_size", 224)))
    model.load_state_dict(unwrap_state_dict(ckpt))
    model.eval()
    return model, ckpt


def export_fp32(model: torch.nn.Module, image_size: int, path: Path) -> None:
    fix_same_padding(model, image_size)
    dummy = torch.randn(1, 3, image_size, image_size)
    # The TorchScript exporter writes one self-contained file (the dynamo exporter may split
    # weights into external data) and supports a symbolic batch axis directly.
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(str(path), full_check=True)


def export_fp16(fp32_path: Path, path: Path) -> None:
    model = onnx.load(str(fp32_path))
    # keep_io_types: the scanner always feeds float32 and reads float32.
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(path))


def ort_session(path: Path, fp16: bool = False) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    providers = ["CPUExecutionProvider"]
    if fp16 and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif fp16:
        # The CPU provider has crashed creating sessions for FP16 ViTs at the full level.
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def parity_inputs(image_dir: Path | None, pre: Preprocess, limit: int = 16) -> torch.Tensor:
    """Real images through the scanner's preprocessing; random tensors if none are given."""
    if image_dir is None:
        return torch.randn(4, 3, pre.height, pre.width, generator=torch.Generator().manual_seed(0))
    paths = sorted(
        p for p in image_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )[:limit]
    if not paths:
        raise FileNotFoundError(f"no images under {image_dir}")
    transform = eval_transform(pre)
    return torch.cat([transform(load_rgb(p)).reshape(-1, 3, pre.height, pre.width) for p in paths])


def max_prob_delta(model: torch.nn.Module, session: ort.InferenceSession, x: torch.Tensor) -> float:
    with torch.no_grad():
        ref = torch.softmax(model(x), dim=1).numpy()
    (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy().astype(np.float32)})
    got = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    return float(np.abs(ref - got).max())


def describe(path: str | Path) -> str:
    """A data path as a manifest records it: an absolute path shortened to its last three parts,
    which describe the data without carrying one machine's folders."""
    p = Path(path)
    return str(Path(*p.parts[-3:])) if p.is_absolute() else str(p)


def _portable(summary: dict[str, Any]) -> dict[str, Any]:
    """The training summary with the paths of the machine that trained described."""

    def short(value: object) -> object:
        return describe(value) if isinstance(value, str) and Path(value).is_absolute() else value

    data = dict(summary.get("data", {}))
    for key in ("path", "val_path"):
        if key in data:
            data[key] = short(data[key])
    if "data" in summary:
        summary["data"] = data
    if "init_from" in summary:
        summary["init_from"] = short(summary["init_from"])
    return summary


def build_manifest(
    name: str,
    architecture: str,
    pre: Preprocess,
    fp32_path: Path,
    fp16_path: Path | None,
    ckpt: dict[str, Any],
    version: str,
    parity: dict[str, Any],
    card_extra: dict[str, Any],
    threshold: float = 0.5,
) -> dict[str, Any]:
    summary = _portable(dict(ckpt.get("summary", {})))
    training = {
        **summary,
        "checkpoint_epoch": ckpt.get("epoch"),
    }
    variants = []
    if fp16_path is not None:
        variants.append(
            {"precision": "fp16", "file": fp16_path.name, "sha256": sha256_file(fp16_path)}
        )
    metrics = summary.get("metrics", {})
    card: dict[str, Any] = {
        "intended_use": "Score how likely an image is AI-generated rather than a camera photo.",
        "limitations": (
            "Trained on the data described in `training`; scores on generators, "
            "sources or post-processing not represented there are unreliable."
        ),
        "architecture": architecture,
        "validation": {
            k: metrics[k]
            for k in ("val_accuracy", "roc_auc", "precision", "recall")
            if k in metrics
        },
        "onnx_parity": parity,
        **card_extra,
    }
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "architecture": architecture,
        "file": fp32_path.name,
        "sha256": sha256_file(fp32_path),
        "variants": variants,
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "color": "RGB",
            **pre.manifest_fields(),
        },
        "output": {"name": OUTPUT_NAME, "kind": "logits"},
        "labels": list(LABELS),
        "fake_index": 1,
        "threshold": threshold,
        "training": training,
        "card": card,
    }


def export(
    checkpoint: Path,
    out: Path,
    parity_images: Path | None = None,
    card_json: Path | None = None,
    version: str = "1.0.0",
    fp16: bool = True,
    threshold: float = 0.5,
    tiles: int = 1,
) -> dict[str, Any]:
    """Write OUT.onnx, OUT.fp16.onnx and OUT.json; returns the manifest.

    ``tiles`` sets how many crops per side the scanner scores in crop mode (1 = centre).

    Raises RuntimeError when the FP32 graph disagrees with PyTorch.
    """
    model, ckpt = load_checkpoint(checkpoint)
    args = ckpt.get("args", {})
    architecture = args.get("model", "resnet18")
    image_size = int(args.get("image_size", 224))
    mode = args.get("input_mode", "resize")
    pre = Preprocess(image_size, image_size, mode, tiles if mode == "crop" else 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    name = out.name
    fp32_path = out.parent / f"{name}.onnx"
    fp16_path = out.parent / f"{name}.fp16.onnx"

    export_fp32(model, image_size, fp32_path)
    x = parity_inputs(parity_images, pre)
    delta = max_prob_delta(model, ort_session(fp32_path), x)
    log.info("fp32 parity: max |delta prob| = %.3g over %d inputs", delta, len(x))
    if delta >= PARITY_TOLERANCE_FP32:
        raise RuntimeError(f"FP32 ONNX parity failed: {delta} >= {PARITY_TOLERANCE_FP32}")
    parity: dict[str, Any] = {
        "inputs": "images" if parity_images else "random",
        "n": len(x),
        "fp32_max_abs_prob_delta": delta,
    }

    if fp16:
        export_fp16(fp32_path, fp16_path)
        session16 = ort_session(fp16_path, fp16=True)  # loading proves the graph is usable
        if "CUDAExecutionProvider" in session16.get_providers():
            d16 = max_prob_delta(model, session16, x)
            parity["fp16_max_abs_prob_delta"] = d16
            if d16 >= PARITY_TOLERANCE_FP16:
                raise RuntimeError(f"FP16 ONNX parity failed: {d16} >= {PARITY_TOLERANCE_FP16}")
        else:
            # FP16 on the CPU provider is emulated and not what the scanner runs for speed.
            log.info("fp16 parity skipped: no GPU execution provider available")
            parity["fp16"] = "loaded; parity skipped without a GPU execution provider"

    card_extra = json.loads(card_json.read_text()) if card_json else {}
    manifest = build_manifest(
        name,
        architecture,
        pre,
        fp32_path,
        fp16_path if fp16 else None,
        ckpt,
        version,
        parity,
        card_extra,
        threshold,
    )
    (out.parent / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="models/NAME (no extension)")
    p.add_argument("--parity-images", type=Path, default=None)
    p.add_argument("--card-json", type=Path, default=None, help="extra model-card fields")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--no-fp16", action="store_true")
    p.add_argument(
        "--tiles", type=int, default=1, help="crop-mode models: crops per side the scanner scores"
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="fake when P(fake) >= this (manifest)"
    )


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        export(
            a.checkpoint,
            a.out,
            a.parity_images,
            a.card_json,
            a.version,
            not a.no_fp16,
            a.threshold,
            a.tiles,
        )
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    return 0
