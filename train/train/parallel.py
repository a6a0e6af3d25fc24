"""One interface over the ways a model can be spread across devices and processes.

Every strategy offers the same calls to the engine: prepare the model, run one training step
(forward + backward), predict, produce full (unsharded) state dicts for checkpoints, and the
few collectives the engine needs. Modes:

- ``single``: one device.
- ``cpu``: one CPU process with an explicit intra-op thread count (the scaling baseline).
- ``ddp``: data parallel, one process per device, launched by ``torchrun``.
- ``fsdp``: FSDP2 ``fully_shard`` per block, then the root, launched by ``torchrun``.
- ``model-parallel``: two stages; in one process the stages sit on two devices and micro-batches
  are pushed through in order (GPipe semantics); under ``torchrun`` with two processes the stages
  run in separate ranks with ``torch.distributed.pipelining``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn

from train.models import split_model

log = logging.getLogger(__name__)

MODES = ("single", "cpu", "ddp", "fsdp", "model-parallel")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
AutocastFactory = Callable[[], AbstractContextManager[Any]]
Stage = Callable[[torch.Tensor], torch.Tensor]


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    if not name:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return device


def default_backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) as set by torchrun, or a single process."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(backend: str, device: torch.device) -> None:
    if dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(minutes=30)}
    if backend == "nccl":
        # Binds the communicator to this rank's GPU up front instead of guessing later.
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)


class Strategy:
    """Single device; the other strategies override what differs."""

    mode = "single"

    def __init__(self, device: torch.device, channels_last: bool = False) -> None:
        self.device = device
        self.channels_last = channels_last
        self.rank, self.world_size, self.local_rank = 0, 1, 0
        self.raw: nn.Module | None = None
        self.module: nn.Module | None = None

    # ---- topology
    @property
    def devices(self) -> int:
        """Number of devices (GPUs, or CPU processes) the run occupies, for efficiency."""
        return self.world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def counts_data(self) -> bool:
        """Whether this rank's images count towards the run's totals (once per image)."""
        return True

    @property
    def fixed_batch_shape(self) -> bool:
        """Whether every training batch must have the same shape."""
        return False

    @property
    def scales_loss(self) -> bool:
        """Whether the engine runs backward, and so can scale the loss for fp16."""
        return True

    def shard(self) -> tuple[int, int] | None:
        """(rank, world) when each rank must read its own part of the data."""
        return None

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- model
    def prepare(self, model: nn.Module, model_name: str, compile_model: bool = False) -> None:
        self.raw = model.to(self.device)
        if self.channels_last:
            self.raw = self.raw.to(memory_format=torch.channels_last)
        self.module = self._wrap(self.raw)
        if compile_model:
            # A compiled module is an nn.Module (OptimizedModule); the stubs say only callable.
            self.module = cast(nn.Module, torch.compile(self.module))

    def _wrap(self, model: nn.Module) -> nn.Module:
        return model

    def parameters(self) -> Iterable[nn.Parameter]:
        assert self.module is not None
        return self.module.parameters()

    def train(self, mode: bool = True) -> None:
        assert self.raw is not None
        self.raw.train(mode)

    def _inputs(self, x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(device or self.device, non_blocking=True, memory_format=fmt)

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: LossFn,
        autocast: AutocastFactory,
        scaler: torch.amp.GradScaler,
    ) -> tuple[float, int]:
        """Forward and backward on this rank's batch; returns (loss * samples, samples)."""
        assert self.module is not None
        x, y = self._inputs(x), y.to(self.device, non_blocking=True)
        with autocast():
            loss = loss_fn(self.module(x), y)
        scaler.scale(loss).backward()
        return float(loss.detach()) * len(y), len(y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, autocast: AutocastFactory) -> torch.Tensor | None:
        """Fake-class probabilities on CPU, or None on ranks that produce no output."""
        assert self.module is not None
        with autocast():
            logits = self.module(self._inputs(x))
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu()

    # ---- state
    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Complete model weights on CPU. Collective in distributed strategies."""
        assert self.raw is not None
        return {k: v.detach().cpu() for k, v in self.raw.state_dict().items()}

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> Any:
        return optimizer.state_dict()

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: Any) -> None:
        optimizer.load_state_dict(state)

    # ---- collectives
    def all_reduce_sum(self, values: list[float]) -> list[float]:
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


class CpuThreadsStrategy(Strategy):
    """Single process on CPU with a fixed intra-op thread count: the CPU scaling baseline."""

    mode = "cpu"

    def __init__(self, threads: int, channels_last: bool = False) -> None:
        super().__init__(torch.device("cpu"), channels_last)
        self.threads = threads

    @property
    def devices(self) -> int:
        return self.threads

    def setup(self) -> None:
        torch.set_num_threads(self.threads)


class DDPStrategy(Strategy):
    mode = "ddp"

    def __init__(self, device: torch.device, backend: str, channels_last: bool = False) -> None:
        super().__init__(device, channels_last)
        self.backend = backend
        self.rank, self.world_size, self.local_rank = env_world()

    def setup(self) -> None:
        init_distributed(self.backend, self.device)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def shard(self) -> tuple[int, int] | None:
        return self.rank, self.world_size

    def _wrap(self, model: nn.Module) -> nn.Module:
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class FSDPStrategy(DDPStrategy):
    """FSDP2. Parameters stay fp32 and the engine's autocast provides reduced precision:
    a bf16 MixedPrecisionPolicy would also cast ResNet's BatchNorm, which then needs its own
    fp32 shards and input casts around every BN, for no gain at these model sizes."""

    mode = "fsdp"

    def _wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        # CPU needs an explicit mesh: the default one assumes an accelerator.
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        for block in shard_units(model):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        assert self.raw is not None
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        # A full state dict holds plain tensors, not the sharded types the stubs allow for.
        return cast(dict[str, torch.Tensor], get_model_state_dict(self.raw, options=opts))

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> Any:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        assert self.raw is not None
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(self.raw, optimizer, options=opts)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: Any) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        assert self.raw is not None
        opts = StateDictOptions(full_state_dict=True)
        set_optimizer_state_dict(self.raw, optimizer, optim_state_dict=state, options=opts)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The blocks FSDP shards individually, so only one block's weights are gathered at once."""
    blocks = getattr(model, "blocks", None)
    if blocks is not None:
        return list(blocks)
    layers = [getattr(model, f"layer{i}", None) for i in range(1, 5)]
    if all(isinstance(layer, nn.Sequential) for layer in layers):
        return [block for layer in layers if layer is not None for block in layer]
    return []


class ModelParallelStrategy(Strategy):
    """Two stages on two devices within one process, micro-batched GPipe style.

    All micro-batches run forward, then one backward over their weighted sum: the gradients
    equal those of the whole batch, and on GPUs the asynchronous launches let stage 0 of the
    next micro-batch overlap stage 1 of the previous one.
    """

    mode = "model-parallel"

    def __init__(
        self,
        devices: tuple[torch.device, torch.device],
        chunks: int = 1,
        channels_last: bool = False,
    ) -> None:
        super().__init__(devices[0], channels_last)
        self.stage_devices = devices
        self.chunks = max(1, chunks)
        self.stages: tuple[Stage, Stage] | None = None

    @property
    def devices(self) -> int:
        return len(set(self.stage_devices))

    def prepare(self, model: nn.Module, model_name: str, compile_model: bool = False) -> None:
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw = model
        s0, s1 = split_model(model, model_name)
        s0.to(self.stage_devices[0])
        s1.to(self.stage_devices[1])
        self.module = nn.ModuleList([s0, s1])
        self.stages = (torch.compile(s0), torch.compile(s1)) if compile_model else (s0, s1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.stages is not None
        h = self.stages[0](self._inputs(x, self.stage_devices[0]))
        return self.stages[1](h.to(self.stage_devices[1], non_blocking=True))

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: LossFn,
        autocast: AutocastFactory,
        scaler: torch.amp.GradScaler,
    ) -> tuple[float, int]:
        n = len(y)
        y = y.to(self.stage_devices[1], non_blocking=True)
        total: torch.Tensor | None = None
        with autocast():
            for xc, yc in zip(x.chunk(self.chunks), y.chunk(self.chunks), strict=True):
                part = loss_fn(self._forward(xc), yc) * (len(yc) / n)
                total = part if total is None else total + part
        assert total is not None
        scaler.scale(total).backward()
        return float(total.detach()) * n, n

    @torch.no_grad()
    def predict(self, x: torch.Tensor, autocast: AutocastFactory) -> torch.Tensor | None:
        with autocast():
            logits = torch.cat([self._forward(xc) for xc in x.chunk(self.chunks)])
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu()


class PipelineStrategy(Strategy):
    """Two ranks, one stage each, scheduled by torch.distributed.pipelining's GPipe.

    Both ranks read the same batches (the last stage needs the labels); the schedule is built
    for a fixed batch shape, so training drops the last partial batch and evaluation pads it.
    """

    mode = "model-parallel"

    def __init__(
        self, device: torch.device, backend: str, chunks: int, channels_last: bool = False
    ) -> None:
        super().__init__(device, channels_last)
        self.backend = backend
        self.chunks = max(1, chunks)
        self.rank, self.world_size, self.local_rank = env_world()
        self.stage_module: nn.Module | None = None
        self._train_schedule: Any = None
        self._loss_fn: LossFn | None = None
        self._batch_size: int | None = None

    def setup(self) -> None:
        init_distributed(self.backend, self.device)
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        if self.world_size != 2:
            raise RuntimeError("pipelined model-parallel runs with exactly 2 processes")

    @property
    def is_last(self) -> bool:
        return self.rank == self.world_size - 1

    @property
    def counts_data(self) -> bool:
        # Both ranks read every batch; the last one sees the labels.
        return self.is_last

    @property
    def fixed_batch_shape(self) -> bool:
        # The schedule is built for the shape of the first batch.
        return True

    @property
    def scales_loss(self) -> bool:
        # The schedule runs backward itself.
        return False

    def prepare(self, model: nn.Module, model_name: str, compile_model: bool = False) -> None:
        if compile_model:
            log.warning("--compile is ignored for pipelined stages")
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.raw = model
        stage = split_model(model, model_name)[self.rank]
        self.stage_module = stage.to(self.device)
        self.module = self.stage_module

    def _schedule(self, loss_fn: LossFn | None) -> Any:
        from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

        assert self.stage_module is not None
        stage = PipelineStage(self.stage_module, self.rank, self.world_size, self.device)
        return ScheduleGPipe(stage, n_microbatches=self.chunks, loss_fn=loss_fn)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        assert self._batch_size is not None
        if len(x) == self._batch_size:
            return x
        pad = x.new_zeros((self._batch_size - len(x), *x.shape[1:]))
        return torch.cat([x, pad])

    def train_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: LossFn,
        autocast: AutocastFactory,
        scaler: torch.amp.GradScaler,
    ) -> tuple[float, int]:
        if self._train_schedule is None or self._loss_fn is not loss_fn:
            self._train_schedule, self._loss_fn = self._schedule(loss_fn), loss_fn
            self._batch_size = len(y)
        losses: list[torch.Tensor] = []
        with autocast():
            if self.rank == 0:
                self._train_schedule.step(self._inputs(x))
            else:
                self._train_schedule.step(target=y.to(self.device), losses=losses)
        if not self.is_last:
            return 0.0, 0
        return float(torch.stack(losses).detach().mean()) * len(y), len(y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, autocast: AutocastFactory) -> torch.Tensor | None:
        if self._train_schedule is None:
            self._batch_size = len(x)
            self._train_schedule = self._schedule(None)
        n = len(x)
        with autocast():
            if self.rank == 0:
                self._train_schedule.eval(self._inputs(self._pad(x)))
                return None
            # A schedule built with a loss computes it in eval too; give it dummy targets.
            assert self._batch_size is not None
            dummy = torch.zeros(self._batch_size, dtype=torch.long, device=self.device)
            logits = self._train_schedule.eval(target=dummy)
        return torch.softmax(logits[:n].float(), dim=1)[:, 1].cpu()

    def _own_keys(self) -> set[str]:
        assert self.raw is not None and self.stage_module is not None
        mine = {id(t) for t in self.stage_module.state_dict(keep_vars=True).values()}
        return {k for k, t in self.raw.state_dict(keep_vars=True).items() if id(t) in mine}

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        assert self.raw is not None
        own = self._own_keys()
        part = {k: v.detach().cpu() for k, v in self.raw.state_dict().items() if k in own}
        merged: dict[str, torch.Tensor] = {}
        for piece in self.gather(part):
            merged.update(piece)
        return merged

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> Any:
        return self.gather(optimizer.state_dict())

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: Any) -> None:
        optimizer.load_state_dict(state[self.rank])


def build_strategy(
    mode: str,
    device: torch.device,
    backend: str | None = None,
    chunks: int = 1,
    cpu_threads: int | None = None,
    channels_last: bool = False,
) -> Strategy:
    backend = backend or default_backend(device)
    if mode == "single":
        return Strategy(device, channels_last)
    if mode == "cpu":
        return CpuThreadsStrategy(cpu_threads or 1, channels_last)
    if mode == "ddp":
        return DDPStrategy(device, backend, channels_last)
    if mode == "fsdp":
        return FSDPStrategy(device, backend, channels_last)
    if mode == "model-parallel":
        if env_world()[1] > 1:
            return PipelineStrategy(device, backend, chunks, channels_last)
        if device.type == "cuda" and torch.cuda.device_count() > 1:
            devs = (torch.device("cuda", 0), torch.device("cuda", 1))
        else:
            devs = (device, device)
        return ModelParallelStrategy(devs, chunks, channels_last)
    raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
