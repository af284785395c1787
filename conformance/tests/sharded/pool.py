"""A pool of N gloo ranks for the sharded tests, and a port that drives a sharded optimizer in it.

:class:`RankPool` starts N processes (``forkserver`` with torch preloaded: the ranks fork from
one interpreter that imported torch once, instead of N cold imports on a 2-core machine), each
joining one gloo process group on a free localhost port with a bounded timeout, and then
answering calls ``(op, *args)`` in order. Every call goes to every rank and waits for all of
them under a deadline; a rank that raises is reported with its traceback, and the ranks that
do not answer soon after are killed (they are waiting in a collective the failed rank left, and
the process group is no longer usable); a call past its deadline kills every rank, so a test
never hangs. A killed pool answers every later call with :class:`RankError`.
``destroy_process_group`` runs in each rank's ``finally``.

:class:`PooledPort` is a harness port (:class:`conformance.interface.Port`) whose optimizer lives
in the pool: each rank hosts a :class:`~conformance.adapters.sharded_torch.ShardedOptimizerPort`
and the full arrays are assembled here from the ranks' local ones
(:func:`conformance.distributed.assemble.merge`). ``check_port`` drives it like any port, so a sharded optimizer gets the harness's re-synced and free-running comparisons,
its stage diagnosis and its verdict.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import socket
import time
import traceback
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from conformance.distributed.assemble import merge
from conformance.interface import PortState
from conformance.session import StepOutputs, read_outputs
from setadam_ref import Config, SETAdamConfig

PRELOAD = ["torch", "torch.distributed.tensor", "conformance.adapters.sharded_torch"]
#: gloo's own timeout inside the ranks: a collective some rank never joins fails after this
GLOO_TIMEOUT_S = 30.0
#: how long the other ranks may still take to answer once one rank raised
ERROR_GRACE_S = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load(target: str) -> Any:
    """``MODULE:ATTR``."""
    import importlib

    mod, attr = target.split(":", 1)
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def setadam_kwargs(cfg: Config) -> dict[str, Any]:
    """The torch.optim-style keyword arguments of a SET-Adam config (our calling convention)."""
    assert isinstance(cfg, SETAdamConfig)
    return dict(
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        tau=cfg.tau,
        decoupled_weight_decay=cfg.weight_decay_mode == "decoupled",
        maximize=cfg.maximize,
    )


def _make_port(target: str, options: dict[str, Any], cfg: Config, dtype: str) -> Any:
    from conformance.adapters.sharded_torch import ShardedOptimizerPort

    cls = load(target)
    kw = {**setadam_kwargs(cfg), **options.get("kwargs", {})}
    return ShardedOptimizerPort(
        target, lambda groups: cls(groups, **kw), dtype, groups=int(options.get("groups", 2))
    )


def _serve(rank: int, world: int, port: int, conn: Connection) -> None:
    """A rank's main loop."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=timedelta(seconds=GLOO_TIMEOUT_S)
    )
    hosted: Any = None
    try:
        conn.send(("ready", rank))
        while True:
            op, *args = conn.recv()
            if op == "exit":
                return
            try:
                if op == "make":
                    hosted = _make_port(*args)
                    value: Any = None
                elif op == "job":
                    value = load(args[0])(*args[1:])
                elif op == "outputs":
                    value = read_outputs(hosted, *args)
                elif op == "collectives":
                    value = hosted.collectives()
                else:
                    value = getattr(hosted, op)(*args)
                conn.send(("ok", value))
            except BaseException:
                conn.send(("err", traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class RankError(Exception):
    """A rank raised; the message is its traceback."""


class PoolTimeout(Exception):
    """The ranks did not all answer in time (the pool was killed)."""


class RankPool:
    """N gloo ranks answering calls in order (see the module docstring)."""

    def __init__(self, nprocs: int, timeout_s: float = 45.0, start_timeout_s: float = 300.0):
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        self.nprocs = nprocs
        self.timeout_s = timeout_s
        self.dead: str | None = None
        port = free_port()
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for r in range(nprocs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(r, nprocs, port, child), daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        self._wait(time.monotonic() + start_timeout_s, "start")

    def _wait(self, deadline: float, what: str) -> list[Any]:
        answers: list[Any] = [None] * self.nprocs
        pending = set(range(self.nprocs))
        while pending:
            for r in sorted(pending):
                conn = self._conns[r]
                left = deadline - time.monotonic()
                if left <= 0:
                    failed = [a for a in answers if a is not None and a[0] == "err"]
                    if failed:
                        # the other ranks wait in a collective the failed rank left: the
                        # process group cannot be trusted any more
                        self.kill(f"a rank raised during {what}; the others were stopped")
                        return answers
                    self.kill(f"no answer from rank {r} to {what} in time")
                    raise PoolTimeout(self.dead)
                try:
                    ready = conn.poll(min(left, 0.05))
                except (EOFError, OSError):
                    ready = True
                if not ready:
                    if not self._procs[r].is_alive():
                        code = self._procs[r].exitcode
                        self.kill(f"rank {r} died (exit code {code}) during {what}")
                        raise RankError(self.dead)
                    continue
                try:
                    answers[r] = conn.recv()
                except (EOFError, OSError):
                    self.kill(f"rank {r} closed its connection during {what}")
                    raise RankError(self.dead) from None
                pending.discard(r)
                if answers[r][0] == "err":
                    deadline = min(deadline, time.monotonic() + ERROR_GRACE_S)
        return answers

    def call(self, op: str, *args: Any, timeout_s: float | None = None) -> list[Any]:
        """``op`` on every rank; every rank's value (RankError if any raised)."""
        if self.dead is not None:
            raise RankError(f"the pool is dead: {self.dead}")
        for conn in self._conns:
            conn.send((op, *args))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        answers = self._wait(deadline, op)
        errors = [(r, a[1]) for r, a in enumerate(answers) if a is not None and a[0] == "err"]
        if errors:
            r, text = errors[0]
            raise RankError(f"rank {r} raised during {op}:\n{text}")
        return [a[1] for a in answers]

    @property
    def alive(self) -> bool:
        return self.dead is None

    def kill(self, why: str) -> None:
        self.dead = self.dead or why
        for p in self._procs:
            if p.is_alive():
                p.kill()
        for p in self._procs:
            p.join(timeout=5)

    def close(self) -> None:
        if self.dead is None:
            for conn in self._conns:
                try:
                    conn.send(("exit",))
                except OSError:
                    pass
            for p in self._procs:
                p.join(timeout=10)
        self.kill("closed")


_SHARED: dict[int, RankPool] = {}


def shared(nprocs: int) -> RankPool:
    """The test session's pool of ``nprocs`` ranks, started on first use (again where an earlier
    test's failure killed it) and closed at exit: starting ranks is the expensive part."""
    p = _SHARED.get(nprocs)
    if p is None or not p.alive:
        p = _SHARED[nprocs] = RankPool(nprocs)
    return p


@atexit.register
def _close_shared() -> None:
    for p in _SHARED.values():
        p.close()


class PooledPort:
    """A harness port whose optimizer runs sharded in ``pool`` (see the module docstring)."""

    def __init__(
        self,
        pool: RankPool,
        target: str,
        cfg: Config,
        dtype: str = "float64",
        *,
        name: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name or f"{target}@{pool.nprocs}ranks"
        self.dtype = dtype
        self.state_dtype = dtype
        self.device = "cpu"
        self._pool = pool
        self._shapes: list[tuple[int, ...]] = []
        self._out: StepOutputs | None = None
        pool.call("make", target, dict(options or {}), cfg, dtype)

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        self._out = None
        self._shapes = [np.shape(p) for p in params]
        self._pool.call("reset", tuple(params), state)

    def step(self, grads: Sequence[np.ndarray]) -> None:
        self._out = None
        self._pool.call("step", tuple(grads))

    def outputs(self) -> StepOutputs:
        if self._out is None:
            self._out = merge(self._pool.call("outputs", True), self._shapes)
        return self._out

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(self.outputs().params)

    def state(self) -> PortState | None:
        return self.outputs().state

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return self.outputs().stages

    def side_effects(self) -> list[str]:
        return list(self.outputs().side_effects)

    def collectives(self) -> list[int]:
        """Collectives each rank issued in the last step."""
        return [int(c) for c in self._pool.call("collectives")]
