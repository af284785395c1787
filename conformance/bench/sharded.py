"""Sharded timing: our SETAdam against ``torch.optim.Adam(foreach=True)`` on the same DTensors.

    python -m conformance.bench.sharded [--nprocs 4] [--params 20000000] [--tensors 100]
                                        [--steps 9] [--warmup 2] [--dtype float32]
                                        [--device cpu|cuda] [--threads 1]
    torchrun --nproc-per-node N -m conformance.bench.sharded --device cuda   # one per GPU

Every rank holds, for each optimizer, its own copy of the same parameter set (weight/bias pairs
as in ``conformance.bench.cpu_ports``, ~``--params`` in ``--tensors`` tensors) as DTensors
``Shard(0)`` over a 1-D mesh of all ranks (FSDP2's layout), with fixed sharded gradients. After
warm-up the two optimizers step in turns, each step starting from a barrier; a step's time is
the slowest rank's (SET-Adam's collective makes the ranks wait for each other, Adam's step does
not, so the barrier puts both on the same footing). The table gives the median milliseconds,
the ratio to Adam, and the collectives each ``step()`` issued on rank 0 (counted by
``conformance.adapters.sharded_torch.count_collectives``), with the machine's load average
before and after, since on a shared machine that is what the ratio is measured against.

Without torchrun the ranks are started here (``forkserver`` with torch preloaded, gloo on CPU,
NCCL on CUDA).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from .cpu_ports import anchor_shapes

NAMES = ("torch Adam foreach", "ours SETAdam foreach")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setups(args: argparse.Namespace, mesh: Any) -> dict[str, Callable[[], None]]:
    import torch
    from torch.distributed.tensor import Shard, distribute_tensor

    from conformance.ports.torch_setadam import SETAdam

    dtype = getattr(torch, args.dtype)
    dev = "cuda" if args.device == "cuda" else "cpu"
    shapes = anchor_shapes(args.params, args.tensors)
    gen = torch.Generator().manual_seed(0)

    def shard(t: Any) -> Any:
        return distribute_tensor(t.to(dev, dtype), mesh, [Shard(0)], src_data_rank=None)

    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [shard(1e-3 * torch.randn(s, generator=gen)) for s in shapes]

    def make(ctor: Callable[[list[Any]], Any]) -> Callable[[], None]:
        ps = [shard(x.clone()).requires_grad_(True) for x in init]
        for p, g in zip(ps, grads):
            p.grad = g
        return ctor(ps).step  # type: ignore[no-any-return]

    return {
        NAMES[0]: make(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        NAMES[1]: make(lambda ps: SETAdam(ps, lr=1e-3, foreach=True)),
    }


def _bench(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    from conformance.adapters.sharded_torch import count_collectives, mesh_for

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = "cuda" if args.device == "cuda" else "cpu"
    if dev == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
    mesh = mesh_for(dev, world)
    load0 = os.getloadavg()
    fns = _setups(args, mesh)
    sync: Callable[[], Any] = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        for fn in fns.values():
            fn()
    colls = {k: count_collectives(torch, fn) for k, fn in fns.items()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(args.steps):
        for k, fn in fns.items():
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            sync()
            dt = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=dev)
            dist.all_reduce(dt, op=dist.ReduceOp.MAX)  # the slowest rank's step, outside timing
            times[k].append(float(dt.item()))
    load1 = os.getloadavg()
    if rank != 0:
        return
    shapes = anchor_shapes(args.params, args.tensors)
    n = sum(int(np.prod(s)) for s in shapes)
    print(
        f"# {n:,} {args.dtype} parameters in {len(shapes)} tensors, Shard(0) over {world} "
        f"{'nccl' if dev == 'cuda' else 'gloo'} ranks; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads per rank, {os.cpu_count()} cores; median of "
        f"{args.steps} steps after {args.warmup}; load average {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    print(f"{'implementation':24} {'ms/step':>9} {'ratio':>6} {'collectives/step':>17}")
    base = statistics.median(times[NAMES[0]])
    for k in NAMES:
        med = statistics.median(times[k])
        print(f"{k:24} {1e3 * med:9.1f} {med / base:6.2f} {colls[k]:17d}")


def _rank_main(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if args.device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(minutes=10))
    try:
        _bench(args)
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.bench.sharded", description=__doc__)
    ap.add_argument("--nprocs", type=int, default=4, help="ranks to start (ignored under torchrun)")
    ap.add_argument("--params", type=int, default=20_000_000, help="total parameters")
    ap.add_argument("--tensors", type=int, default=100, help="number of tensors")
    ap.add_argument("--steps", type=int, default=9, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank (0: default)")
    args = ap.parse_args(argv)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # under torchrun
        import torch.distributed as dist

        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
        try:
            _bench(args)
        finally:
            dist.destroy_process_group()
        return 0
    import multiprocessing

    from torch.multiprocessing.spawn import start_processes

    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["torch", "torch.distributed.tensor"]
    )
    start_processes(  # type: ignore[no-untyped-call]
        _rank_main, args=(args.nprocs, _free_port(), args), nprocs=args.nprocs,
        start_method="forkserver",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
