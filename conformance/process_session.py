"""A port session whose port lives in a worker process of its own, killed when it misbehaves.

:class:`Worker` is the parent's handle of one spawned worker (:mod:`conformance.worker`): the
process, its call channel (:mod:`conformance.channel`) and a drain of what it writes to stdout and
stderr (counted, the last lines kept, the rest discarded). :class:`ProcessSession` implements
:class:`~conformance.session.PortSession` on a worker: it loads the port from its
:class:`~conformance.results.PortLocator` in the worker (framework first, under a start-up
allowance; then the target, under the per-call timeout) and bounds every call by the per-call
timeout and by the whole-check deadline. Whatever the port does, the parent gets an answer:

- a call that does not return in time: the worker is killed, :class:`PortHung`;
- the worker ends (``os._exit``, a signal, ``SystemExit`` outside a call, memory exhaustion):
  :class:`PortDied` saying how ("process died with signal 11 (SIGSEGV)");
- a failure while loading (not importable, ``sys.exit`` at import, an import that hangs or kills
  the process, a rejected calling convention, a missing device): :class:`PortSetupError`.

The parent never waits on a worker: closing kills it, so a thread the port left running cannot
keep the harness alive.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from setadam_ref import Config, State

from . import worker as _worker_module
from .channel import Channel, ChannelClosed, ChannelCorrupt, ChannelTimeout, RemoteError
from .contract import Contract
from .results import PortLocator, PortOutput
from .session import (
    PortDied,
    PortHung,
    PortInfo,
    PortInterfaceError,
    PortLost,
    PortRaised,
    PortSetupError,
    StepOutputs,
)

#: how long a fresh worker may take to start and to import a framework (not the port's time)
START_TIMEOUT_S = 120.0
#: bytes of a port's output kept for the report
TAIL_BYTES = 2048

_live: weakref.WeakSet[Worker] = weakref.WeakSet()


def _kill_all() -> None:
    for w in list(_live):
        w.kill()


# Runs before multiprocessing's own exit handler (atexit is last in, first out), which would
# otherwise wait for a worker that is still alive.
atexit.register(_kill_all)


class _Drain:
    """Reads a worker's stdout/stderr pipe until it closes: counts the bytes, keeps the tail."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._tail: deque[bytes] = deque()
        self._kept = 0
        self.bytes = 0
        threading.Thread(target=self._run, name="port-output", daemon=True).start()

    def _run(self) -> None:
        try:
            while chunk := os.read(self._fd, 1 << 16):
                with self._lock:
                    self.bytes += len(chunk)
                    self._tail.append(chunk[-TAIL_BYTES:])
                    self._kept += len(self._tail[-1])
                    while self._kept - len(self._tail[0]) >= TAIL_BYTES:
                        self._kept -= len(self._tail.popleft())
        except OSError:
            pass
        finally:
            os.close(self._fd)

    def mark(self) -> None:
        """Start counting afresh (a reused worker hosts the next port)."""
        with self._lock:
            self.bytes, self._kept = 0, 0
            self._tail.clear()

    def snapshot(self) -> PortOutput | None:
        with self._lock:
            if not self.bytes:
                return None
            text = b"".join(self._tail)[-TAIL_BYTES:].decode("utf-8", "replace")
            return PortOutput(self.bytes, text)


def describe_exit(code: int | None) -> str:
    """How a process ended, in words: ``process died with signal 11 (SIGSEGV)``."""
    if code is None:
        return "process stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"process died with signal {-code} ({name})"
    return f"process exited with code {code}"


_MAIN_LOCK = threading.Lock()


@contextmanager
def _callers_main_hidden() -> Iterator[None]:
    """Start a spawned process without the caller's ``__main__``.

    ``spawn`` re-runs the parent's main script in the child (as ``__mp_main__``) unless it is
    guarded. The worker needs none of it, since it runs :func:`conformance.worker.serve` and
    imports the target by name. Without this, a user's script that calls ``check_target`` at
    top level would run again in every worker and try to spawn from there. The lock keeps two
    threads that start workers from restoring each other's stand-in."""
    with _MAIN_LOCK:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


class Worker:
    """One spawned worker process (see the module docstring)."""

    def __init__(
        self, max_memory: int | None = None, start_timeout_s: float = START_TIMEOUT_S
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent_end, child_end = ctx.Pipe(duplex=True)
        out_read, out_write = ctx.Pipe(duplex=False)
        # Not a daemon: a port may start processes of its own, which daemons may not; the
        # parent kills the worker instead of waiting for it (close(), and at exit).
        self.process = ctx.Process(
            target=_worker_module.serve,
            args=(child_end, out_write, max_memory),
            name="setadam-conformance-worker",
            daemon=False,
        )
        self._conn = parent_end
        self.max_memory = max_memory
        self.frameworks: set[str] = set()
        self.loaded: PortLocator | None = None
        #: why the worker can no longer be used (it was killed or died), else None
        self.gone: str | None = None
        self._killed = False
        _live.add(self)
        with _callers_main_hidden():
            self.process.start()
        child_end.close()
        out_write.close()
        self.channel = Channel(parent_end.fileno())
        self.drain = _Drain(os.dup(out_read.fileno()))
        out_read.close()
        try:
            hello = self.channel.recv(time.monotonic() + start_timeout_s)
        except (ChannelTimeout, ChannelClosed, ChannelCorrupt) as exc:
            self.kill()
            raise PortSetupError(
                f"the worker process did not start ({type(exc).__name__}: {exc}; "
                f"{describe_exit(self.process.exitcode)})"
            ) from None
        if not (isinstance(hello, tuple) and hello[:1] == ("ready",)):
            self.kill()
            raise PortSetupError(f"the worker process answered {hello!r} at start")

    @property
    def alive(self) -> bool:
        """Usable for the next call: not killed, not dead (a reused worker that died between
        ports, e.g. killed from outside, is replaced rather than blamed on the next port)."""
        return self.gone is None and self.process.is_alive()

    def call(
        self, timeout_s: float, ops: Sequence[tuple[Any, ...]], until: float | None = None
    ) -> Any:
        """Run ``ops`` (each ``(op, *args)``) in order in one exchange: the worker acknowledges
        each op as it finishes, so each has ``timeout_s`` of its own (and none runs past
        ``until``, a monotonic time) while the worker never waits for the parent between them.
        Returns the last op's value; raises for the first op that fails (the rest are not run),
        and PortHung/PortDied when the worker is gone (it is then killed)."""
        ex = Exchange(self, timeout_s, ops, until)
        value = None
        while not ex.done:
            value = ex.next()
        return value

    @contextmanager
    def guard(self, timeout_s: float, until: float | None) -> Iterator[None]:
        """Channel failures as the port's: PortHung (killed) or PortDied."""
        if self.gone is not None:
            raise PortDied(self.gone)
        try:
            yield
        except ChannelTimeout:
            self.kill()
            passed = until is not None and time.monotonic() >= until - 1e-3
            what = (
                "the whole-check deadline passed"
                if passed
                else f"no answer within {timeout_s:.3g} s"
            )
            self.gone = f"{what} (the worker process was killed)"
            raise PortHung(self.gone) from None
        except ChannelClosed:
            self.gone = self._ended()
            raise PortDied(self.gone) from None
        except ChannelCorrupt as exc:
            self.kill()
            self.gone = f"the worker's answer was unreadable ({exc}); the worker was killed"
            raise PortDied(self.gone) from None

    def out_of_protocol(self) -> PortDied:
        self.kill()
        self.gone = "the worker answered out of protocol; the worker was killed"
        return PortDied(self.gone)

    @staticmethod
    def _deadline(timeout_s: float, until: float | None) -> float:
        d = time.monotonic() + timeout_s
        return d if until is None else min(d, until)

    def _ended(self) -> str:
        """The worker closed its end: how it ended (killed when it lingers)."""
        self.process.join(timeout=5.0)
        if self.process.exitcode is None:
            self.kill()
            return "the worker closed its connection (and was killed)"
        code = self.process.exitcode
        self.kill()
        hint = " (killed from outside: out of memory?)" if code == -signal.SIGKILL else ""
        return describe_exit(code) + hint

    def kill(self) -> None:
        """End the worker now (SIGKILL; never waits on the port)."""
        if not self._killed:
            self._killed = True
            self.gone = self.gone or "the worker was closed"
            try:
                if self.process.pid is not None:
                    try:  # the worker's process group: it and whatever the port started
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except OSError:  # not (yet) a group of its own
                        self.process.kill()
                self.process.join(timeout=5.0)
            except (OSError, ValueError, AssertionError):
                pass
            try:
                self._conn.close()
            except OSError:
                pass
        _live.discard(self)


class Exchange:
    """One request to a worker, its replies read one op at a time (:meth:`Worker.call` reads
    them all; a batch of free-running steps reads each step's outputs as it comes).

    Each reply is awaited for ``timeout_s`` from the moment it is asked for (and never past
    ``until``): the worker started that op no later than, so every op keeps at least its own
    timeout however long the parent spends between replies."""

    def __init__(
        self, worker: Worker, timeout_s: float, ops: Sequence[tuple[Any, ...]], until: float | None
    ) -> None:
        self.worker, self.timeout_s, self.until = worker, timeout_s, until
        self.n, self.i = len(ops), 0
        with worker.guard(timeout_s, until):
            worker.channel.send(list(ops), Worker._deadline(timeout_s, until))

    @property
    def done(self) -> bool:
        """Every op answered (or one failed: the rest are not run)."""
        return self.i >= self.n

    def next(self) -> Any:
        """The value of the next op (None for one without a value); raises for an op that
        failed, PortHung/PortDied when the worker is gone."""
        w, i = self.worker, self.i
        last = i == self.n - 1
        self.i = self.n  # until this op's answer is read: a lost worker ends the exchange
        with w.guard(self.timeout_s, self.until):
            reply = w.channel.recv(Worker._deadline(self.timeout_s, self.until))
        self.i = i + 1
        if isinstance(reply, tuple) and len(reply) in (2, 3):
            if reply[0] == "err" and len(reply) == 3 and reply[1] == i:
                self.i = self.n
                raise _exception(reply[2])
            if not last and reply == ("ack", i):
                return None
            if not last and reply[:2] == ("val", i) and len(reply) == 3:
                return reply[2]
            if last and reply[0] == "ok" and len(reply) == 2:
                return reply[1]
        self.i = self.n
        raise w.out_of_protocol()


def _step_outputs(out: Any) -> StepOutputs:
    if not isinstance(out, StepOutputs):
        raise PortInterfaceError(f"the worker answered {type(out).__name__} for the outputs")
    return out


def _exception(err: Any) -> Exception:
    """The parent-side exception for an error the worker answered."""
    if not isinstance(err, RemoteError):
        return PortRaised(f"the worker reported {err!r}")
    if err.category == "not_implemented":
        return NotImplementedError(err.description)
    if err.category == "interface":
        return PortInterfaceError(err.description)
    if err.category == "setup":
        return PortSetupError(err.description)
    if err.category == "hung":  # processes of the port's own (sharded ranks) hung: stopped
        return PortHung(err.description)
    if err.category == "died":
        return PortDied(err.description)
    return PortRaised(err.description)


class ProcessSession:
    """A :class:`~conformance.session.PortSession` on a worker process (see the module docstring).

    ``worker``: a live worker to use (its owner kills it); by default the session starts its own
    and kills it on :meth:`close`. ``deadline_s``: wall-clock limit of the whole check, counted
    from the first call after the port is loaded (the framework's import has the start-up
    allowance, the target's the per-call timeout).
    """

    def __init__(
        self,
        locator: PortLocator,
        timeout_s: float,
        *,
        deadline_s: float | None = None,
        max_memory: int | None = None,
        worker: Worker | None = None,
    ) -> None:
        self.locator = locator
        self._timeout = timeout_s
        self._deadline_s = deadline_s
        self._deadline: float | None = None
        self._max_memory = max_memory
        self._own = worker is None
        self.worker = worker
        self._lost: PortLost | PortSetupError | None = None
        if worker is not None:
            worker.drain.mark()

    @property
    def hung(self) -> bool:
        return self._lost is not None

    def output(self) -> PortOutput | None:
        """What the port wrote to stdout/stderr during this session."""
        return None if self.worker is None else self.worker.drain.snapshot()

    # -- calls
    def _call(self, *ops: tuple[Any, ...], timeout_s: float | None = None) -> Any:
        self._ready()
        return self._rpc(*ops, timeout_s=timeout_s)

    def _ready(self) -> None:
        if self._lost is not None:
            raise self._lost
        self._ensure_loaded()
        if self._deadline is None and self._deadline_s is not None:
            # from the first call after loading: imports have their own limits
            self._deadline = time.monotonic() + self._deadline_s

    def _rpc(self, *ops: tuple[Any, ...], timeout_s: float | None = None) -> Any:
        assert self.worker is not None
        with self._losing():
            return self.worker.call(
                self._timeout if timeout_s is None else timeout_s, ops, self._deadline
            )

    @contextmanager
    def _losing(self) -> Iterator[None]:
        """A lost worker loses the session: every later call raises the same."""
        try:
            yield
        except PortHung as hung:
            lost = hung
            if "deadline" in str(hung):
                lost = PortHung(
                    f"the whole-check deadline of {self._deadline_s:.3g} s passed "
                    "(the worker process was killed)"
                )
            self._lost = lost
            raise lost from None
        except PortLost as exc:
            self._lost = exc
            raise

    def _ensure_loaded(self) -> None:
        loc = self.locator
        if self.worker is not None and self.worker.alive and self.worker.loaded == loc:
            return
        what = f"cannot load {loc.name}"
        try:
            if self.worker is None or not self.worker.alive:
                self.worker = Worker(self._max_memory)
                self._own = True
            w = self.worker
            if loc.framework and loc.framework not in w.frameworks:
                start = max(self._timeout, START_TIMEOUT_S)
                self._rpc(("framework", loc.framework), timeout_s=start)
                w.frameworks.add(loc.framework)
            w.loaded = None
            # a sharded target's ranks start at load: the start-up allowance
            ranks = bool(loc.options.get("nprocs"))
            start = max(self._timeout, START_TIMEOUT_S)
            self._rpc(("load", loc), timeout_s=start if ranks else None)
            w.loaded = loc
        except PortHung as exc:
            self._lost = PortSetupError(f"{what}: importing it did not finish: {exc}")
        except PortDied as exc:
            self._lost = PortSetupError(f"{what}: importing it ended the worker: {exc}")
        except PortSetupError as exc:  # the worker says why (convention, device)
            self._lost = exc
        except PortRaised as exc:
            self._lost = PortSetupError(f"{what}: {exc}")
        if self._lost is not None:
            if self._max_memory is not None and "MemoryError" in str(self._lost):
                mib = self._max_memory / 2**20
                self._lost = PortSetupError(f"{self._lost} (under --max-memory {mib:.0f} MiB)")
            raise self._lost

    # -- the PortSession protocol
    def supports(self, config: Config) -> str | None:
        why = self._call(("supports", config))
        return None if why is None else str(why)

    def make(self, config: Config) -> PortInfo:
        info = self._call(("make", config))
        if not isinstance(info, PortInfo):
            raise PortInterfaceError(f"the worker built {type(info).__name__}, not a port")
        return info

    def configure(self, contract: Contract | None) -> str | None:
        why = self._call(("configure", contract))
        return None if why is None else str(why)

    def reset(self, params: Sequence[np.ndarray], state: State | None) -> None:
        self._call(("reset", tuple(params), state))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        self._call(("step", tuple(grads)))

    def outputs(self, want_stages: bool) -> StepOutputs:
        return _step_outputs(self._call(("outputs", want_stages)))

    def reset_step(
        self,
        params: Sequence[np.ndarray],
        state: State | None,
        grads: Sequence[np.ndarray],
        want_stages: bool,
    ) -> StepOutputs:
        return _step_outputs(
            self._call(("reset", tuple(params), state), ("step", tuple(grads)),
                       ("outputs", want_stages))
        )  # fmt: skip

    def step_outputs(self, grads: Sequence[np.ndarray], want_stages: bool) -> StepOutputs:
        return _step_outputs(self._call(("step", tuple(grads)), ("outputs", want_stages)))

    def step_batch(self, grads: Sequence[Sequence[np.ndarray]], want_stages: bool) -> StepBatch:
        """``step`` then ``outputs`` of each of several free-running steps in one exchange; the
        outputs are read step by step (:class:`StepBatch`), each op under the per-call timeout."""
        ops = [(("step", tuple(g)), ("outputs", want_stages)) for g in grads]
        return self._batch(ops)

    def reset_step_batch(
        self,
        steps: Sequence[tuple[Sequence[np.ndarray], State | None, Sequence[np.ndarray]]],
        want_stages: bool,
    ) -> StepBatch:
        """:meth:`reset_step` of each of several re-synced steps in one exchange (as
        :meth:`step_batch`)."""
        ops = [
            (("reset", tuple(p), st), ("step", tuple(g)), ("outputs", want_stages))
            for p, st, g in steps
        ]
        return self._batch(ops)

    def _batch(self, steps: Sequence[tuple[tuple[Any, ...], ...]]) -> StepBatch:
        self._ready()
        assert self.worker is not None
        ops = [op for step in steps for op in step]
        with self._losing():
            ex = Exchange(self.worker, self._timeout, ops, self._deadline)
        return StepBatch(self, ex, len(steps[0]) if steps else 1)

    def extra(self, name: str, *args: Any) -> None:
        self._call(("extra", name, *args))

    def construction(self, n: int) -> Any:
        """The keyword arguments the worker's port built its target with (``worker``)."""
        return self._call(("construction", n))

    def release(self) -> None:
        """Let the port close; a port that cannot close has still been judged (a death is not)."""
        if self._lost is not None or self.worker is None or self.worker.loaded != self.locator:
            return
        try:
            self._rpc(("release",))
        except PortLost:
            raise
        except Exception:
            return

    def close(self) -> None:
        if self._own and self.worker is not None:
            self.worker.kill()


class StepBatch:
    """The replies of :meth:`ProcessSession.step_batch`, one step at a time."""

    def __init__(self, session: ProcessSession, exchange: Exchange, ops_per_step: int) -> None:
        self._session, self._ex, self._ops = session, exchange, ops_per_step

    def next(self) -> StepOutputs:
        """The next step's outputs; raises what one of its ops raised."""
        with self._session._losing():
            for _ in range(self._ops - 1):
                self._ex.next()  # the acknowledgements of reset and step
            return _step_outputs(self._ex.next())

    @property
    def done(self) -> bool:
        """Every step answered, or the batch ended (an op failed, the worker was lost)."""
        return self._ex.done
