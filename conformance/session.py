"""The call boundary between the harness and a port: every port call goes through a session.

A :class:`PortSession` builds a port for a scenario's config and forwards ``reset``, ``step`` and
the read-back of a step's outputs, each under a timeout. The driver (:mod:`conformance.drive`)
only ever talks to a session, so where the port actually runs (a thread of this process, or a
worker process of its own, :mod:`conformance.process_session`) is the session's business.
:class:`ThreadSession` runs the port in a daemon thread of this process: a port that hangs is
abandoned (Python cannot kill a thread) and reported, but a port that kills the interpreter takes
the harness with it; the command line therefore always uses worker processes.

A session raises :class:`PortLost` when the port is gone: :class:`PortHung` when a call does not
return in time, :class:`PortDied` when its process ended (the session is then dead: ``hung`` is
True and every later call raises at once); :class:`PortSetupError` when the port cannot be set
up here for a reason that is not its arithmetic (not importable, calling convention, missing
device); ``NotImplementedError`` when the port cannot continue from a given state; and any other
exception of the port as itself (in-process) or as :class:`PortRaised` (from a worker, or an
exception such as ``SystemExit`` that must not end the harness).
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from setadam_ref import Config, State

from .contract import Contract, apply_contract
from .interface import Port, PortState
from .results import PortOutput

T = TypeVar("T")

#: methods a port must have (``conformance.interface.Port``)
PORT_METHODS: tuple[str, ...] = ("reset", "step", "params", "state", "stages")


class PortLost(Exception):
    """The port can no longer be driven: it hung or its process died."""


class PortHung(PortLost):
    """A port call did not return within the per-call timeout (or the whole-check deadline)."""


class PortDied(PortLost):
    """The port's worker process ended while the harness was waiting for it."""


class PortSetupError(Exception):
    """The port cannot be set up here for a reason that is not its arithmetic: the target cannot
    be imported, it rejects the harness's calling convention, or its device is missing (exit 2)."""


class PortRaised(Exception):
    """An exception of the port, carried as its description (``Type: message (file:line)``)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class PortInterfaceError(Exception):
    """The object the factory returned does not implement the port interface."""


@dataclass(frozen=True)
class PortInfo:
    """What a freshly built port declares about itself."""

    dtype: str
    state_dtype: str


@dataclass
class StepOutputs:
    """What a port reports after a step: raw values as the port returned them (validated and
    converted to float64 by the driver), plus side effects the adapter observed."""

    params: Any
    state: PortState | None
    stages: dict[str, Any] | None
    side_effects: list[str]


class PortSession(Protocol):
    """A port of one scenario behind a call boundary."""

    @property
    def hung(self) -> bool:
        """True once the port is lost (hung or died): every later call raises at once."""
        ...

    def supports(self, config: Config) -> str | None:
        """None when the port can express ``config``, else the reason (the scenario is skipped)."""
        ...

    def make(self, config: Config) -> PortInfo:
        """Build the port for ``config`` (replacing any earlier one)."""
        ...

    def configure(self, contract: Contract | None) -> str | None:
        """Hand the port a scenario's contract (:mod:`conformance.contract`) after ``make``; the
        reason it cannot take it (the scenario is skipped), or None."""
        ...

    def reset(self, params: Sequence[np.ndarray], state: State | None) -> None: ...

    def step(self, grads: Sequence[np.ndarray]) -> None: ...

    def outputs(self, want_stages: bool) -> StepOutputs: ...

    def reset_step(
        self,
        params: Sequence[np.ndarray],
        state: State | None,
        grads: Sequence[np.ndarray],
        want_stages: bool,
    ) -> StepOutputs:
        """``reset``, ``step`` and ``outputs`` of one re-synced step, in one exchange where the
        port lives elsewhere (each still under the per-call timeout)."""
        ...

    def step_outputs(self, grads: Sequence[np.ndarray], want_stages: bool) -> StepOutputs:
        """``step`` then ``outputs`` of one free-running step, in one exchange."""
        ...

    def extra(self, name: str, *args: Any) -> None:
        """Call the port's optional extra ``name`` (one of ``EXTRAS``);
        a port without it raises ``NotImplementedError``."""
        ...

    def release(self) -> None:
        """Let the current port release its resources (``close()`` when it has one)."""
        ...

    def close(self) -> None:
        """End the session for good."""
        ...

    def output(self) -> PortOutput | None:
        """What the port wrote to stdout/stderr where the session can tell (a worker), else None."""
        ...


def describe_exception(exc: BaseException) -> str:
    """``Type: first line of the message (file:line of the innermost frame)``."""
    if isinstance(exc, PortRaised):
        return exc.description
    # the innermost frame of real source (an import error's last frames are importlib's)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" ({frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}{where}"


def read_outputs(port: Port, want_stages: bool) -> StepOutputs:
    """A port's outputs after a step (run where the port lives)."""
    params = port.params()
    st = port.state()
    stg = port.stages() if want_stages else None
    se = getattr(port, "side_effects", None)
    effects = [str(e) for e in se()] if callable(se) else []
    return StepOutputs(params, st, stg, effects)


#: optional port extras the driver calls by name (``conformance.interface``)
EXTRAS: tuple[str, ...] = ("resume", "lay_out", "compile_step")


def call_extra(port: Any, name: str, *args: Any) -> None:
    """``port.<name>(*args)`` (run where the port lives); ``NotImplementedError`` when the port
    has no such extra."""
    if name not in EXTRAS:
        raise ValueError(f"{name!r} is not a port extra")
    fn = getattr(port, name, None)
    if not callable(fn):
        raise NotImplementedError(f"the port has no {name}()")
    fn(*args)


def port_info(port: Any, dtype: str) -> PortInfo:
    """Check ``port`` has the interface's methods; its declared dtype and state dtype."""
    for attr in PORT_METHODS:
        if not callable(getattr(port, attr, None)):
            raise PortInterfaceError(f"the port has no method {attr}()")
    d = str(getattr(port, "dtype", dtype))
    return PortInfo(d, str(getattr(port, "state_dtype", d)))


class _Worker:
    """One daemon thread executing submitted callables in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self.hung = False

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, box = job
            try:
                box.put((True, fn()))
            except Exception as exc:
                box.put((False, exc))
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: must not end the harness
                box.put((False, PortRaised(describe_exception(exc))))

    def call(self, fn: Callable[[], T], timeout: float | None) -> T:
        if self.hung:
            raise PortHung("the port hung earlier; it is no longer driven")
        box: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._jobs.put((fn, box))
        try:
            ok, value = box.get(timeout=timeout)
        except queue.Empty:
            self.hung = True
            raise PortHung(f"no answer within {timeout:g} s (the thread is abandoned)") from None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def close(self) -> None:
        if not self.hung:
            self._jobs.put(None)


class ThreadSession:
    """A session whose port lives in a daemon thread of this process (``factory(config)``)."""

    def __init__(
        self,
        factory: Callable[[Config], Port],
        dtype: str,
        timeout_s: float,
        name: str = "port",
        supports: Callable[[Config], str | None] | None = None,
    ) -> None:
        self._factory = factory
        self._supports = supports
        self._dtype = dtype
        self._timeout = timeout_s
        self._worker = _Worker(f"port:{name}")
        self._port: Port | None = None

    @property
    def hung(self) -> bool:
        return self._worker.hung

    def _call(self, fn: Callable[[], T]) -> T:
        return self._worker.call(fn, self._timeout)

    def _current(self) -> Port:
        if self._port is None:
            raise RuntimeError("no port: call make() first")
        return self._port

    def supports(self, config: Config) -> str | None:
        return None if self._supports is None else self._supports(config)

    def make(self, config: Config) -> PortInfo:
        self._port = None
        port = self._call(lambda: self._factory(config))
        info = port_info(port, self._dtype)
        self._port = port
        return info

    def configure(self, contract: Contract | None) -> str | None:
        port = self._current()
        return self._call(lambda: apply_contract(port, contract))

    def reset(self, params: Sequence[np.ndarray], state: State | None) -> None:
        port = self._current()
        self._call(lambda: port.reset(params, state))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        port = self._current()
        self._call(lambda: port.step(grads))

    def outputs(self, want_stages: bool) -> StepOutputs:
        port = self._current()
        return self._call(lambda: read_outputs(port, want_stages))

    def reset_step(
        self,
        params: Sequence[np.ndarray],
        state: State | None,
        grads: Sequence[np.ndarray],
        want_stages: bool,
    ) -> StepOutputs:
        self.reset(params, state)
        return self.step_outputs(grads, want_stages)

    def step_outputs(self, grads: Sequence[np.ndarray], want_stages: bool) -> StepOutputs:
        self.step(grads)
        return self.outputs(want_stages)

    def extra(self, name: str, *args: Any) -> None:
        port = self._current()
        self._call(lambda: call_extra(port, name, *args))

    def release(self) -> None:
        port, self._port = self._port, None
        close = getattr(port, "close", None)
        if callable(close) and not self.hung:
            try:
                self._call(close)
            except PortLost:
                raise
            except Exception:  # a port that cannot close has still been judged
                return

    def close(self) -> None:
        self.release()
        self._worker.close()

    def output(self) -> PortOutput | None:
        return None  # the port shares this process's stdout and stderr
