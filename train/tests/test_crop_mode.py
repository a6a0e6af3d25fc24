"""Native-resolution crop mode, operating points and the pretrained EfficientNet-Lite0."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import skimage
import torch
from conftest import base_args, fit_main
from PIL import Image

from train import evaluate
from train.data import Preprocess, crop_tiles, eval_transform, fill_crop, tile_offsets
from train.export import export, export_fp32
from train.models import create_model


def ramp(w: int, h: int) -> Image.Image:
    """Pixel value x + 10 y, so a crop tells where it came from."""
    y, x = np.mgrid[0:h, 0:w]
    v = (x + 10 * y).astype("uint8")
    return Image.fromarray(np.stack([v, v, v], axis=-1))


def test_centre_crop_keeps_native_pixels_and_rounds_like_torchvision() -> None:
    pre = Preprocess(4, 4, "crop")
    (tile,) = crop_tiles(ramp(10, 9), pre)
    arr = np.asarray(tile)[..., 0]
    # (10-4)/2 = 3; (9-4)/2 = 2.5 rounds half to even, to 2.
    assert arr[0, 0] == 3 + 10 * 2 and arr[3, 3] == 6 + 10 * 5
    from torchvision.transforms.functional import center_crop

    assert np.array_equal(np.asarray(center_crop(ramp(10, 9), [4, 4])), np.asarray(tile))


def test_tiles_cover_corner_to_corner_and_small_images_are_scaled_up() -> None:
    assert tile_offsets(10, 4, 2) == [0, 6]
    assert tile_offsets(10, 4, 3) == [0, 3, 6]
    tiles = crop_tiles(ramp(10, 8), Preprocess(4, 4, "crop", tiles=2))
    assert [np.asarray(t)[0, 0, 0] for t in tiles] == [0, 6, 40, 46]
    assert fill_crop(ramp(3, 6), 4, 4).size == (4, 8)
    assert fill_crop(ramp(10, 10), 4, 4).size == (10, 10)
    x = eval_transform(Preprocess(4, 4, "crop", tiles=2))(ramp(3, 6))
    assert tuple(x.shape) == (4, 3, 4, 4)


def test_preprocess_round_trips_through_the_manifest() -> None:
    pre = Preprocess(224, 224, "crop", tiles=2, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    fields = {"name": "input", "layout": "NCHW", "color": "RGB", **pre.manifest_fields()}
    assert Preprocess.from_manifest(fields) == pre
    resize = Preprocess(64, 64)
    assert "crop" not in resize.manifest_fields()
    assert Preprocess.from_manifest(resize.manifest_fields()) == resize


def test_operating_points_bound_the_false_positives() -> None:
    rng = np.random.default_rng(0)
    real = rng.random(1000)
    points = evaluate.operating_points(real)
    assert [p["max_fpr"] for p in points] == [0.01, 0.05, 0.10]
    for p in points:
        called_fake = float((real >= p["threshold"]).mean())
        assert called_fake <= p["max_fpr"] + 1e-12
        # The lowest such threshold: one notch lower lets through one more real image.
        assert p["fpr"] == pytest.approx(called_fake)
        assert called_fake >= p["max_fpr"] - 1.5 / len(real)
    assert points[0]["threshold"] > points[1]["threshold"] > points[2]["threshold"]


@pytest.mark.parametrize(
    ("name", "classes"), [("chelsea.png", range(281, 286)), ("coffee.png", [967, 968])]
)
def test_efficientnet_lite0_imagenet_weights_recognize_known_images(
    name: str, classes: range | list[int]
) -> None:
    # The packaged weights expect ImageNet mean/std (checked: with 0.5/0.5 the rocket image
    # is misclassified); a wrong mapping of tensors would give noise here.
    model = create_model("efficientnet_lite0", num_classes=1000, weights="imagenet").eval()
    img = Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")
    x = eval_transform(Preprocess(224, 224))(img).unsqueeze(0)
    with torch.no_grad():
        top = int(model(x).argmax())
    assert top in classes


def test_crop_mode_trains_exports_and_evaluates(folder_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fit_main(base_args(folder_data, out, "--input-mode", "crop", "--val-fraction", "0.5"))
    manifest = tmp_path / "models" / "crop.json"
    written = export(out / "checkpoint.pth", manifest.with_suffix(""), fp16=False, tiles=2)
    assert written["input"]["crop"] == {
        "tiles": 2,
        "aggregate": "mean",
        "small": "upscale_short_side",
    }
    result = evaluate.evaluate_model(
        manifest, [("all", folder_data)], calibrate="all", perturb=("webp75",)
    )
    assert result["preprocess"] == {"mode": "crop", "tiles": 2}
    assert [p["max_fpr"] for p in result["operating_points"]] == [0.01, 0.05, 0.10]
    assert result["threshold"] == result["operating_points"][1]["threshold"]
    entry = result["datasets"]["all"]
    assert entry["fpr_real"] <= 0.05 + 1e-9
    assert len(entry["at_operating_points"]) == 3
    assert "all+webp75" in result["datasets"]
    # A corpus CSV names each fake's generator: figures come per generator too.
    rows = ["file_name,label,generator"]
    for label, folder in ((0, "real"), (1, "fake")):
        for i, f in enumerate(sorted((folder_data / folder).rglob("*.png"))):
            gen = "photo" if label == 0 else ("gen-a" if i % 2 else "gen-b")
            rows.append(f"{f.relative_to(folder_data).as_posix()},{label},{gen}")
    (folder_data / "index.csv").write_text("\n".join(rows) + "\n")
    by_csv = evaluate.evaluate_model(manifest, [("csv", folder_data / "index.csv")])
    per_gen = by_csv["datasets"]["csv"]["per_generator"]
    assert sorted(per_gen) == ["gen-a", "gen-b"]
    assert per_gen["gen-a"]["n_fake"] + per_gen["gen-b"]["n_fake"] == 8
    evaluate.write_operating_points(manifest, result)
    again = evaluate.load_manifest(manifest)
    assert again["threshold"] == result["threshold"]
    assert len(again["operating_points"]) == 3
    assert os.path.getsize(manifest) > 0


def test_exported_efficientnet_padding_folds_into_its_convolutions(tmp_path: Path) -> None:
    model = create_model("efficientnet_lite0").eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        dynamic = model(x)
    path = tmp_path / "m.onnx"
    export_fp32(model, 224, path)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    # The same outputs as timm's run-time padding, for a batch size other than the export's.
    exported = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(exported, dynamic.numpy(), atol=1e-4)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Shape" not in ops, "the padding still depends on the input's shape"
    optimized = {n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node}
    assert "Pad" in ops and "Pad" not in optimized, "ONNX Runtime kept a separate Pad"
