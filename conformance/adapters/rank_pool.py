"""N gloo ranks answering calls, and a harness port whose torch optimizer runs sharded in them.

:class:`RankPool` starts N processes (``forkserver`` with torch preloaded: the ranks fork from
one interpreter that imported torch once, instead of N cold imports on a 2-core machine), each
joining one gloo process group on a free localhost port with a bounded timeout, and then
answering calls ``(op, *args)`` in order. Every call goes to every rank and waits for all of
them under a deadline. A rank that raises while the others answer is a :class:`RankError` (its
traceback; the pool stays usable); a rank that raises while the others wait in a collective it
left, or that dies, is a :class:`RankLost` (a :class:`~conformance.session.PortDied`: every rank
is killed, the process group is no longer usable); a call past its deadline kills every rank and
is a :class:`RanksHung` (a :class:`~conformance.session.PortHung`). Both name the rank, and the
harness's driver treats them as a port that died or hung: so a sharded check never hangs.
``destroy_process_group`` runs in each rank's ``finally``; a rank whose parent is gone ends.

:class:`PooledPort` is a harness port (:class:`conformance.interface.Port`) whose optimizer lives
in the pool: each rank hosts a :class:`~conformance.adapters.sharded_torch.ShardedOptimizerPort`
and the full arrays are assembled here from the ranks' local ones
(:func:`conformance.distributed.assemble.merge`), so ``check_port`` drives a sharded optimizer
like any port: re-synced and free-running comparisons, stage diagnosis, verdict. Its
``configure`` hands every rank a contract (param groups, lr schedule, tensor lr, absent
gradients, SET-Adam layers of several arrays), each group's constructor options built here
(``group_kwargs``: the target's calling convention, ``group_layer``: its layer option; ours by
default).
:func:`shared` keeps one pool per world size for a process (``check --nprocs`` in its worker,
the test session).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from setadam_ref import Config, SETAdamConfig

from ..distributed.assemble import merge
from ..interface import PortState
from ..session import PortDied, PortHung, StepOutputs, read_outputs

#: imported once in the forkserver, so every rank of every pool forks with them: torch._dynamo is
#: what a rank's first ``distribute_tensor`` imports (measured 5-10 s per rank on 2 loaded cores,
#: paid by each of the N ranks at its first reset without this); our sharded port is the
#: target of ``run``'s sharded checks
PRELOAD = [
    "torch", "torch.distributed.tensor", "torch._dynamo", "conformance.adapters.sharded_torch",
    "conformance.ports.torch_setadam",
]  # fmt: skip
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


#: our SETAdam's option making a param group one SET-Adam layer
OUR_LAYER: dict[str, Any] = {"layer": "group"}


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


def _make_port(
    target: str, options: dict[str, Any], cfg: Config, dtype: str, device: str = "cpu"
) -> Any:
    """The rank's port: ``options["kwargs"]`` are the constructor's keyword arguments as they
    are (``exact``: the third-party calling convention, built by the caller) or on top of our
    calling convention for ``cfg``."""
    from .sharded_torch import ShardedOptimizerPort

    cls = load(target)
    extra = dict(options.get("kwargs", {}))
    kw = extra if options.get("exact") else {**setadam_kwargs(cfg), **extra}
    state_map = options.get("state_map")
    return ShardedOptimizerPort(
        target, lambda groups: cls(groups, **kw), dtype, device,
        groups=int(options.get("groups", 2)), state_map=dict(state_map) if state_map else None,
        betas=cfg.betas,
    )  # fmt: skip


def _serve(rank: int, world: int, port: int, conn: Connection, device: str = "cpu") -> None:
    """A rank's main loop: gloo on the CPU; NCCL with one CUDA device per rank (``device``
    "cuda": wired on the same code path, never run on hardware by this project)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(rank % torch.cuda.device_count())
    dist.init_process_group(
        backend, rank=rank, world_size=world, timeout=timedelta(seconds=GLOO_TIMEOUT_S)
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
                elif op == "step" and len(args) == 2:  # one round trip: step, then read
                    hosted.step(args[0])
                    value = read_outputs(hosted, args[1])
                elif op == "collectives":
                    value = hosted.collectives()
                else:
                    value = getattr(hosted, op)(*args)
                conn.send(("ok", value))
            except BaseException as exc:
                kind = "not_implemented" if isinstance(exc, NotImplementedError) else "raised"
                conn.send(("err", traceback.format_exc(), kind))
    finally:
        dist.destroy_process_group()


def _last_line(traceback_text: str) -> str:
    lines = traceback_text.strip().splitlines()
    return lines[-1] if lines else "?"


class RankError(Exception):
    """A rank raised and every rank answered (the pool is still usable); the message is its
    traceback."""


class RankLost(PortDied):
    """A rank died, or raised while the others waited for it: every rank was killed."""


class RanksHung(PortHung):
    """The ranks did not all answer in time: every rank was killed."""


#: the names the sharded tests used
PoolTimeout = RanksHung


class RankPool:
    """N gloo ranks answering calls in order (see the module docstring)."""

    def __init__(
        self,
        nprocs: int,
        timeout_s: float = 45.0,
        start_timeout_s: float = 300.0,
        device: str = "cpu",
    ) -> None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        self.nprocs = nprocs
        self.device = device
        self.timeout_s = timeout_s
        self.dead: str | None = None
        self._limit = start_timeout_s
        port = free_port()
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for r in range(nprocs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(r, nprocs, port, child, device), daemon=True)
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
                    failed = [i for i, a in enumerate(answers) if a is not None and a[0] == "err"]
                    if failed:
                        # the other ranks wait in a collective the failed rank left: the
                        # process group cannot be trusted any more
                        k = failed[0]
                        text = str(answers[k][1])
                        self.kill(
                            f"rank {k} raised {_last_line(text)} during {what} while rank {r} "
                            f"waited (in a collective rank {k} left); every rank was stopped"
                            f"\n{text}"
                        )
                        raise RankLost(self.dead)
                    late = sorted(pending)
                    who = f"rank {late[0]}" if len(late) == 1 else f"ranks {late}"
                    self.kill(
                        f"{who} did not answer {what} within {self._limit:.3g} s (hung, or "
                        "waiting in a collective for one that hung); every rank was stopped"
                    )
                    raise RanksHung(self.dead)
                try:
                    ready = conn.poll(min(left, 0.05))
                except (EOFError, OSError):
                    ready = True
                if not ready:
                    if not self._procs[r].is_alive():
                        code = self._procs[r].exitcode
                        self.kill(
                            f"rank {r} died (exit code {code}) during {what}; every rank was "
                            "stopped"
                        )
                        raise RankLost(self.dead)
                    continue
                try:
                    answers[r] = conn.recv()
                except (EOFError, OSError):
                    self._procs[r].join(timeout=2.0)
                    code = self._procs[r].exitcode
                    how = "closed its connection" if code is None else f"died (exit code {code})"
                    self.kill(f"rank {r} {how} during {what}; every rank was stopped")
                    raise RankLost(self.dead) from None
                pending.discard(r)
                if answers[r][0] == "err":
                    deadline = min(deadline, time.monotonic() + ERROR_GRACE_S)
        return answers

    def call(self, op: str, *args: Any, timeout_s: float | None = None) -> list[Any]:
        """``op`` on every rank; every rank's value (RankError if any raised)."""
        if self.dead is not None:
            raise RankLost(f"the ranks were stopped earlier: {self.dead}")
        for conn in self._conns:
            conn.send((op, *args))
        self._limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + self._limit
        answers = self._wait(deadline, op)
        errors = [(r, a) for r, a in enumerate(answers) if a is not None and a[0] == "err"]
        if errors:
            r, (_, text, *_kind) = errors[0]
            if all(a[2:] == ("not_implemented",) for _, a in errors):
                # the port cannot do what was asked (e.g. continue from a given state)
                raise NotImplementedError(f"rank {r} during {op}: {_last_line(text)}")
            raise RankError(f"rank {r} raised {_last_line(text)} during {op}\n{text}")
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


#: by rank count (CPU, gloo) or (rank count, device)
_SHARED: dict[Any, RankPool] = {}
#: one pool start at a time (``prestart``'s thread and a check may ask for the same pool)
_SHARED_LOCK = threading.Lock()


def shared(nprocs: int, timeout_s: float | None = None, device: str = "cpu") -> RankPool:
    """This process's pool of ``nprocs`` ranks on ``device``, started on first use (again where
    an earlier failure killed it) and closed at exit: starting ranks is the expensive part.
    ``timeout_s``: the per-call deadline (default 45 s)."""
    key: Any = nprocs if device == "cpu" else (nprocs, device)
    with _SHARED_LOCK:
        p = _SHARED.get(key)
        if p is None or not p.alive:
            p = _SHARED[key] = RankPool(nprocs, device=device)
    if timeout_s is not None:
        p.timeout_s = timeout_s
    return p


def prestart(sizes: Sequence[int]) -> threading.Thread:
    """Start the pools of ``sizes`` ranks in a daemon thread (in order, sharing one forkserver),
    so the torch import and the gloo rendezvous overlap the checks that run first; a pool that
    fails to start is started (and its failure reported) again by the check that needs it."""

    def start() -> None:
        for n in sizes:
            try:
                shared(n)
            except Exception:  # reported by the check that asks for this pool
                continue

    t = threading.Thread(target=start, name="rank-pool-prestart", daemon=True)
    t.start()
    return t


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
        group_kwargs: Callable[[Config], dict[str, Any]] | None = None,
        group_layer: dict[str, Any] | None = None,
    ) -> None:
        self.name = name or f"{target}@{pool.nprocs}ranks"
        self.dtype = dtype
        self.state_dtype = dtype
        self.device = pool.device
        self._pool = pool
        self._shapes: list[tuple[int, ...]] = []
        self._out: StepOutputs | None = None
        # a contract group's constructor options: our calling convention, or the caller's
        # (``exact``: the third-party convention, known only where it was read)
        exact = bool((options or {}).get("exact"))
        self._group_kwargs = group_kwargs or (None if exact else setadam_kwargs)
        # the option making a param group one SET-Adam layer: ours, or the caller's (None: none)
        self._group_layer = group_layer if group_layer is not None or exact else OUR_LAYER
        pool.call("make", target, dict(options or {}), cfg, dtype, pool.device)

    def configure(self, contract: Any) -> None:
        """A contract for every rank (``ShardedOptimizerPort.configure``), each group's options
        built here in the port's calling convention (where the contract has several groups, a
        tensor lr or SET-Adam layers of several arrays; else the constructor's options), with
        ``group_layer``, the option making a group one SET-Adam layer (ours by default)."""
        layered = contract.multi_array_layers()
        own = len(contract.groups) > 1 or contract.tensor_lr or layered
        if own and self._group_kwargs is None:
            raise NotImplementedError("the adapter has no param-group options for a config")
        kw = self._group_kwargs or setadam_kwargs
        options = [kw(cfg) if own else {} for _a, cfg in contract.groups]
        self._pool.call("configure", contract, options, self._group_layer if layered else None)

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        self._out = None
        self._shapes = [np.shape(p) for p in params]
        self._pool.call("reset", tuple(params), state)

    def step(self, grads: Sequence[np.ndarray]) -> None:
        # the harness reads every step's outputs: fetched with the step, in one call
        self._out = None
        self._out = merge(self._pool.call("step", tuple(grads), True), self._shapes)

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
