"""The one training/evaluation loop shared by every parallel mode, and checkpointing."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.data import Batch
from train.metrics import classification_metrics
from train.parallel import AutocastFactory, LossFn, Strategy

log = logging.getLogger(__name__)

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def make_autocast(device_type: str, amp: str) -> AutocastFactory:
    if amp == "off":
        return contextlib.nullcontext
    return partial(torch.autocast, device_type, AMP_DTYPES[amp])


def make_scaler(device_type: str, amp: str, strategy: Strategy) -> torch.amp.GradScaler:
    # Loss scaling is only needed for fp16 on CUDA.
    enabled = device_type == "cuda" and amp == "fp16" and strategy.scales_loss
    return torch.amp.GradScaler(device_type, enabled=enabled)


@dataclass
class EpochStats:
    loss: float
    samples: int
    skipped: int
    steps: int
    seconds: float


def _any_rank(strategy: Strategy, flag: bool) -> bool:
    """True when `flag` holds on any rank (a no-op without a process group)."""
    return strategy.all_reduce_sum([float(flag)])[0] > 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(
    strategy: Strategy,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    autocast: AutocastFactory,
    scaler: torch.amp.GradScaler,
    epoch: int,
    print_freq: int = 10,
    max_steps: int | None = None,
) -> EpochStats:
    strategy.train(True)
    loss_sum, samples, skipped, steps = 0.0, 0, 0, 0
    _sync(strategy.device)
    start = time.perf_counter()
    for batch in loader:
        if max_steps is not None and steps >= max_steps:
            break
        skipped += batch.skipped
        # BatchNorm cannot train on one sample; only corrupt files can shrink a batch so far,
        # because the training loader drops the last partial batch. The ranks decide together:
        # one rank skipping a step alone would leave the others waiting in its collectives.
        if _any_rank(strategy, len(batch) < 2):
            continue
        optimizer.zero_grad(set_to_none=True)
        part_loss, part_n = strategy.train_step(
            batch.images, batch.labels, loss_fn, autocast, scaler
        )
        scaler.step(optimizer)
        scaler.update()
        loss_sum += part_loss
        samples += part_n
        steps += 1
        if print_freq and steps % print_freq == 0 and strategy.is_main:
            log.info("epoch %d step %d loss %.4f", epoch, steps, part_loss / max(1, part_n))
    _sync(strategy.device)
    seconds = time.perf_counter() - start
    if not strategy.counts_data:
        skipped = 0
    loss_sum, samples_f, skipped_f = strategy.all_reduce_sum([loss_sum, samples, skipped])
    return EpochStats(
        loss=loss_sum / max(1.0, samples_f),
        samples=int(samples_f),
        skipped=int(skipped_f),
        steps=steps,
        seconds=seconds,
    )


def evaluate(
    strategy: Strategy,
    loader: Iterable[Batch],
    autocast: AutocastFactory,
    max_steps: int | None = None,
) -> dict[str, float]:
    strategy.train(False)
    probs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    skipped = 0
    for step, batch in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        skipped += batch.skipped
        if _any_rank(strategy, len(batch) == 0):
            continue
        p = strategy.predict(batch.images, autocast)
        if p is not None:
            probs.append(p)
            labels.append(batch.labels)
            indices.append(batch.indices)
    if not strategy.counts_data:
        skipped = 0
    local = (
        torch.cat(probs).numpy() if probs else np.zeros(0),
        torch.cat(labels).numpy() if labels else np.zeros(0, dtype=np.int64),
        torch.cat(indices).numpy() if indices else np.zeros(0, dtype=np.int64),
        skipped,
    )
    # DistributedSampler pads shards with repeated samples; dedupe by dataset index.
    by_index: dict[int, tuple[float, int]] = {}
    total_skipped = 0
    for p_arr, l_arr, i_arr, sk in strategy.gather(local):
        total_skipped += sk
        for p, lab, i in zip(p_arr.tolist(), l_arr.tolist(), i_arr.tolist(), strict=True):
            by_index[i] = (p, lab)
    ordered = [by_index[i] for i in sorted(by_index)]
    all_p = np.array([p for p, _ in ordered], dtype=np.float64)
    all_l = np.array([lab for _, lab in ordered], dtype=np.int64)
    result = classification_metrics(all_p, all_l)
    result["val_images"] = float(len(ordered))
    result["val_skipped"] = float(total_skipped)
    return result


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file beside the target and rename, so a crash never leaves a
    truncated checkpoint where --resume would find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
