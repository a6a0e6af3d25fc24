from __future__ import annotations

import contextlib
import copy
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import SIZE, free_port
from torch import nn

from train.data import Batch
from train.engine import train_one_epoch
from train.models import create_model, load_init, split_model
from train.parallel import (
    DDPStrategy,
    FSDPStrategy,
    ModelParallelStrategy,
    PipelineStrategy,
    Strategy,
)

VIT = "vit_tiny_patch16_224"
LR = 0.1


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.arange(n) % 2


def _model(name: str = VIT) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, image_size=SIZE)


def _no_scaler() -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cpu", enabled=False)


def _reference_step(name: str = VIT) -> dict[str, torch.Tensor]:
    """One SGD step of the unsplit model on the whole batch in one process."""
    model = _model(name)
    x, y = _batch()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    return model.state_dict()


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("name", ["resnet18", VIT])
def test_split_composition_equals_model(name: str) -> None:
    model = _model(name).eval()
    s0, s1 = split_model(model, name)
    x, _ = _batch(2)
    with torch.no_grad():
        torch.testing.assert_close(s1(s0(x)), model(x))
    params = {id(p) for p in model.parameters()}
    stage_params = [p for s in (s0, s1) for p in s.parameters()]
    assert {id(p) for p in stage_params} == params


def test_micro_batched_model_parallel_matches_unsplit_gradients() -> None:
    ref = _model()
    x, y = _batch()
    nn.functional.cross_entropy(ref(x), y).backward()
    s = ModelParallelStrategy((torch.device("cpu"), torch.device("cpu")), chunks=4)
    model = _model()
    s.prepare(model, VIT)
    s.train_step(x, y, nn.functional.cross_entropy, contextlib.nullcontext, _no_scaler())
    for (name, p), q in zip(ref.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_init_from_allows_head_mismatch(tmp_path: Path) -> None:
    donor = create_model(VIT, image_size=SIZE, num_classes=5)
    torch.save({"model": donor.state_dict()}, tmp_path / "w.pth")
    model = _model()
    missing, unexpected = load_init(model, tmp_path / "w.pth")
    assert set(missing) == {"head.weight", "head.bias"} and unexpected == []
    torch.testing.assert_close(model.pos_embed, donor.pos_embed)


def _worker(rank: int, world: int, port: int, kind: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    strategy: Strategy
    if kind == "ddp":
        strategy = DDPStrategy(cpu, "gloo")
    elif kind == "fsdp":
        strategy = FSDPStrategy(cpu, "gloo")
    else:
        strategy = PipelineStrategy(cpu, "gloo", chunks=2)
    strategy.setup()
    strategy.prepare(_model(), VIT)
    opt = torch.optim.SGD(strategy.parameters(), lr=LR)
    x, y = _batch()
    if kind != "pipeline":  # data parallel: each rank takes its half of the global batch
        x, y = x.chunk(world)[rank], y.chunk(world)[rank]
    strategy.train_step(x, y, nn.functional.cross_entropy, contextlib.nullcontext, _no_scaler())
    opt.step()
    state = strategy.full_state_dict()
    if kind == "ddp":  # every replica, not only rank 0, must hold the same weights
        state = {k: v.detach().clone() for k, v in strategy.raw.state_dict().items()}
    torch.save(state, Path(out) / f"rank{rank}.pt")
    strategy.teardown()


def _spawn(kind: str, tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    mp.spawn(_worker, args=(2, free_port(), kind, str(tmp_path)), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    r0, r1 = _spawn("ddp", tmp_path)
    _assert_close(r0, r1)
    _assert_close(r0, _reference_step())


def test_fsdp_two_processes_match_single_process(tmp_path: Path) -> None:
    r0, r1 = _spawn("fsdp", tmp_path)
    _assert_close(r0, _reference_step())
    assert r1 == {}  # cpu_offload gathers the full state on rank 0 only


@pytest.mark.slow
def test_pipelined_stages_match_unsplit(tmp_path: Path) -> None:
    r0, _ = _spawn("pipeline", tmp_path)
    _assert_close(r0, _reference_step())


def _uneven_worker(rank: int, world: int, port: int, out: str) -> None:
    """Rank 0's first batch lost all but one image to corrupt files; rank 1's is whole."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    strategy = DDPStrategy(torch.device("cpu"), "gloo")
    strategy.setup()
    strategy.prepare(_model("resnet18"), "resnet18")
    opt = torch.optim.SGD(strategy.parameters(), lr=LR)
    x, y = _batch(4)
    first = 1 if rank == 0 else 4
    loader = [
        Batch(x[:first], y[:first], torch.arange(first), skipped=4 - first),
        Batch(x, y, torch.arange(4), skipped=0),
    ]
    stats = train_one_epoch(
        strategy, loader, opt, nn.functional.cross_entropy, contextlib.nullcontext,
        _no_scaler(), epoch=0, print_freq=0,
    )  # fmt: skip
    state = {k: v.detach().clone() for k, v in strategy.raw.state_dict().items()}
    torch.save({"state": state, "skipped": stats.skipped}, Path(out) / f"rank{rank}.pt")
    strategy.teardown()


def test_ddp_ranks_skip_a_shrunken_batch_together(tmp_path: Path) -> None:
    ctx = mp.spawn(_uneven_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank skipped a step alone and the other waited forever")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    _assert_close(r0["state"], r1["state"])
    assert r0["skipped"] == 3  # summed over ranks, counted once


def test_reference_is_deterministic() -> None:
    _assert_close(_reference_step(), copy.deepcopy(_reference_step()))
