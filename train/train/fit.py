"""Train a classifier (or, with --resume --test-only, evaluate one) in any parallel mode,
checkpointing every epoch and recording the run in OUTPUT_DIR/runs.csv."""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from train import options
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
    EpochStats,
    evaluate,
    make_autocast,
    make_scaler,
    rng_state,
    save_checkpoint,
    set_rng_state,
    train_one_epoch,
)
from train.metrics import hardware_description, peak_memory_bytes
from train.models import create_model, load_init, unwrap_state_dict
from train.parallel import AutocastFactory, Strategy, build_strategy, env_world, resolve_device
from train.record import NAN, RunRecord

log = logging.getLogger("train")
CHECKPOINT_NAME = "checkpoint.pth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_data_options(parser)
    options.add_augmentation_options(parser)
    options.add_model_options(parser)
    options.add_device_options(parser)
    options.add_optimizer_options(parser)
    options.add_run_options(parser)


def run(args: argparse.Namespace) -> int:
    rank = env_world()[0]
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank{rank}] %(name)s: %(message)s",
    )
    fit(args)
    return 0


def preprocess_of(args: argparse.Namespace) -> Preprocess:
    """The input contract a run trains for; export writes it into the manifest."""
    return Preprocess(args.image_size, args.image_size, getattr(args, "input_mode", "resize"))


@dataclass
class Data:
    train: DataLoader[Any]
    val: DataLoader[Any]
    layout: str
    n_train: int
    n_val: int


@dataclass
class Optimisation:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: AutocastFactory
    start_epoch: int


@dataclass
class Progress:
    """What the epochs so far add up to, for the run record."""

    epoch: int
    train_seconds: float = 0.0
    train_images: int = 0
    skipped: int = 0
    last_loss: float = NAN
    val: dict[str, float] = field(default_factory=dict)


def fit(args: argparse.Namespace) -> RunRecord:
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
        data = load_data(args, strategy, device)
        ckpt = prepare_model(args, strategy)
        opt = build_optimisation(args, strategy, device, ckpt, data.train)
        progress = train_epochs(args, strategy, device, data, opt)
        record = make_record(args, strategy, device, data, opt.start_epoch, progress, started)
        if strategy.is_main and not args.test_only:
            publish(record, args)
        if strategy.is_main:
            log.info("run record: %s", record)
        return record
    finally:
        strategy.teardown()


def load_data(args: argparse.Namespace, strategy: Strategy, device: torch.device) -> Data:
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
    shard = strategy.shard()
    shards = strategy.world_size if shard else 1

    def loader(dataset: ImageDataset, shuffle: bool, drop_last: bool) -> DataLoader[Any]:
        return make_loader(
            dataset,
            batch_size=args.batch_size,
            workers=args.workers,
            shuffle=shuffle,
            seed=args.seed,
            distributed=shard,
            pin_memory=device.type == "cuda",
            drop_last=drop_last,
        )

    # A trailing batch of one breaks BatchNorm, and some strategies need one batch shape.
    drop_last = strategy.fixed_batch_shape or len(train_s) >= 2 * args.batch_size * shards
    return Data(
        train=loader(ImageDataset(train_s, train_transform(aug, pre)), True, drop_last),
        val=loader(ImageDataset(val_s, eval_transform(pre)), False, False),
        layout=layout,
        n_train=len(train_s),
        n_val=len(val_s),
    )


def prepare_model(args: argparse.Namespace, strategy: Strategy) -> dict[str, Any] | None:
    """Builds the model into the strategy; returns the checkpoint resumed from, if any."""
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
    return ckpt


def build_optimizer(
    args: argparse.Namespace, params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
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


def build_optimisation(
    args: argparse.Namespace,
    strategy: Strategy,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    train_loader: DataLoader[Any],
) -> Optimisation:
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
            _generator(train_loader).set_state(ckpt["loader_rng"])
        start_epoch = int(ckpt["epoch"]) + 1
    autocast = make_autocast(device.type, args.amp)
    return Optimisation(optimizer, scheduler, scaler, autocast, start_epoch)


def _generator(loader: DataLoader[Any]) -> torch.Generator:
    # make_loader always gives its loaders a generator, so shuffling can be resumed.
    generator: torch.Generator | None = loader.generator
    assert generator is not None
    return generator


def train_epochs(
    args: argparse.Namespace,
    strategy: Strategy,
    device: torch.device,
    data: Data,
    opt: Optimisation,
) -> Progress:
    progress = Progress(epoch=opt.start_epoch - 1)
    if args.test_only:
        progress.val = evaluate(strategy, data.val, opt.autocast, args.max_steps)
        progress.skipped += int(progress.val["val_skipped"])
        return progress
    loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    for epoch in range(opt.start_epoch, args.epochs):
        progress.epoch = epoch
        sampler = data.train.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        stats = train_one_epoch(
            strategy,
            data.train,
            opt.optimizer,
            loss_fn,
            opt.autocast,
            opt.scaler,
            epoch,
            args.print_freq,
            args.max_steps,
        )
        opt.scheduler.step()
        val = evaluate(strategy, data.val, opt.autocast, args.max_steps)
        progress.val = val
        progress.train_seconds += stats.seconds
        progress.train_images += stats.samples
        progress.skipped += stats.skipped + int(val["val_skipped"])
        progress.last_loss = stats.loss
        if strategy.is_main:
            _log_epoch(epoch, stats, val)
        checkpoint(args, strategy, device, data, opt, epoch, {"train_loss": stats.loss, **val})
    return progress


def _log_epoch(epoch: int, stats: EpochStats, val: dict[str, float]) -> None:
    log.info(
        "epoch %d: loss %.4f, %.1f img/s, val acc %.4f auc %.4f, skipped %d",
        epoch,
        stats.loss,
        stats.samples / max(stats.seconds, 1e-9),
        val["val_accuracy"],
        val["roc_auc"],
        stats.skipped,
    )


def checkpoint(
    args: argparse.Namespace,
    strategy: Strategy,
    device: torch.device,
    data: Data,
    opt: Optimisation,
    epoch: int,
    metrics: dict[str, float],
) -> None:
    # Gathering full state dicts is collective: every rank takes part, rank 0 writes.
    model_state = strategy.full_state_dict()
    optim_state = strategy.optimizer_state(opt.optimizer)
    if strategy.is_main:
        summary = _summary(args, strategy, device, data, epoch)
        summary["metrics"] = metrics
        state = {
            "model": model_state,
            "optimizer": optim_state,
            "lr_scheduler": opt.scheduler.state_dict(),
            "scaler": opt.scaler.state_dict(),
            "epoch": epoch,
            "args": vars(args),
            "rng": rng_state(),
            "loader_rng": _generator(data.train).get_state(),
            "summary": summary,
        }
        save_checkpoint(state, Path(args.output_dir) / CHECKPOINT_NAME)
    strategy.barrier()


def make_record(
    args: argparse.Namespace,
    strategy: Strategy,
    device: torch.device,
    data: Data,
    start_epoch: int,
    progress: Progress,
    started: float,
) -> RunRecord:
    peak = max(strategy.gather(peak_memory_bytes(device)))
    val, seconds = progress.val, progress.train_seconds
    return RunRecord(
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=args.run_id or uuid.uuid4().hex[:12],
        mode=args.mode,
        model=args.model,
        device_type=device.type,
        devices=strategy.devices,
        world_size=strategy.world_size,
        cpu_threads=torch.get_num_threads() if device.type == "cpu" else None,
        pipeline_chunks=args.pipeline_chunks if args.mode == "model-parallel" else None,
        amp=args.amp,
        batch_size=args.batch_size,
        global_batch_size=args.batch_size * (strategy.world_size if strategy.shard() else 1),
        image_size=args.image_size,
        epochs=max(0, progress.epoch + 1 - start_epoch),
        train_images=progress.train_images,
        wall_time_s=seconds,
        images_per_s=progress.train_images / seconds if seconds > 0 else 0.0,
        speedup=NAN,
        efficiency=NAN,
        peak_mem_bytes=peak,
        train_loss=progress.last_loss,
        val_accuracy=val.get("val_accuracy", NAN),
        roc_auc=val.get("roc_auc", NAN),
        precision=val.get("precision", NAN),
        recall=val.get("recall", NAN),
        skipped_images=progress.skipped,
        hardware=hardware_description(device),
        torch_version=torch.__version__,
        total_time_s=time.perf_counter() - started,
        data_layout=data.layout,
        train_samples=data.n_train,
        val_samples=data.n_val,
    )


def publish(record: RunRecord, args: argparse.Namespace) -> None:
    out_dir = Path(args.output_dir)
    csv_path = Path(args.runs_csv) if args.runs_csv else out_dir / "runs.csv"
    record.add_speedup(csv_path)
    record.write_json(out_dir / f"run-{record.run_id}.json")
    record.append_csv(csv_path)


def _summary(
    args: argparse.Namespace,
    strategy: Strategy,
    device: torch.device,
    data: Data,
    epoch: int,
) -> dict[str, Any]:
    """What export puts in the manifest's `training` section."""
    return {
        "data": {
            "path": str(args.data_path),
            "val_path": str(args.val_data_path) if args.val_data_path else None,
            "layout": data.layout,
            "train_images": data.n_train,
            "val_images": data.n_val,
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
