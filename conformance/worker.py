"""The worker process: hosts one port at a time and answers the harness's calls over a socket.

Started by :mod:`conformance.process_session` with the ``spawn`` method (a fresh interpreter: no
inherited framework threads or CUDA context). :func:`serve` first makes the process safe to
host foreign code: a process group of its own (killed as a whole), stdin from ``/dev/null``,
stdout and stderr redirected at the file-descriptor level into a pipe the parent drains (so
nothing a port prints reaches the harness's terminal), Ctrl-C left to the parent, and an
optional address-space limit (``RLIMIT_AS``). Then it answers
requests in order (:mod:`conformance.channel`): a request is a list of ``(op, *args)``, run one
after the other; each op but the last is acknowledged as it finishes (so the parent times each
op on its own without the worker waiting for it; one with a value, such as the ``outputs`` of
a step in a batch of free-running steps, is answered with it), the last is answered with its
value, and the first that raises is answered with its error (the rest are not run):

``framework`` imports torch or jax; ``load`` rebuilds the port spec from a
:class:`~conformance.results.PortLocator` (importing a third-party target happens here, never in
the parent); ``supports``, ``make``, ``reset``, ``step``, ``outputs`` and ``release`` forward to
the spec and its port; ``construction`` reports the keyword arguments the port built its target
with (per param group too: a fuzz reproducer builds the target the same way). Every exception, ``SystemExit`` included, is answered as a
:class:`~conformance.channel.RemoteError`; arrays are answered as plain NumPy arrays, so the
parent's restricted unpickler can read them. The worker never decides anything: it has no
reference values and writes no report.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from .channel import ChannelClosed, Opaque, RemoteError, recv_frame, send_frame
from .contract import apply_contract
from .interface import PortState
from .results import PortLocator, PortSpec
from .session import (
    PortHung,
    PortInterfaceError,
    PortLost,
    PortSetupError,
    StepOutputs,
    call_extra,
    describe_exception,
    port_info,
    read_outputs,
)


def resolve(locator: PortLocator) -> PortSpec:
    """The port spec a locator names (imports the target of a third-party locator)."""
    if locator.kind == "registry":
        from .adapters.registry import find_spec

        return find_spec(locator.name, locator.dtype, locator.device)
    if locator.kind == "third_party":
        from .adapters import third_party

        o = locator.options
        return third_party.spec(
            locator.name,
            str(o["framework"]),
            str(o["algorithm"]),
            hyper=dict(o.get("hyper") or {}),
            target_hyper=dict(o.get("target_hyper") or {}),
            reference_hyper=dict(o.get("reference_hyper") or {}),
            weight_decay_mode=o.get("weight_decay_mode"),
            dtype=locator.dtype,
            device=locator.device,
            state_map=dict(o.get("state_map") or {}) or None,
            nprocs=o.get("nprocs"),
            devices=o.get("devices"),
            timeout_s=float(o.get("timeout_s", 60.0)),
        )
    raise ValueError(f"unknown port locator kind {locator.kind!r}")


def _array(a: Any) -> Any:
    """``a`` as a plain NumPy array the parent may unpickle; a description when it is not one."""
    try:
        arr = np.asarray(a)
    except Exception as exc:
        return Opaque(f"a {type(a).__name__} ({describe_exception(exc)})")
    if arr.dtype.kind in "biufc" and arr.dtype.isbuiltin == 1:
        return arr
    if arr.dtype.isbuiltin == 0:  # extension float types (bfloat16 of ml_dtypes): as float64
        try:
            return arr.astype(np.float64)
        except Exception:
            pass
    return Opaque(f"a {type(a).__name__} of dtype {arr.dtype}")


def _arrays(seq: Any) -> Any:
    if seq is None:
        return None
    try:
        items = list(seq)
    except TypeError:
        return Opaque(f"a {type(seq).__name__}")
    return [_array(a) for a in items]


def _portable(out: StepOutputs) -> StepOutputs:
    st = out.state
    state = None
    if st is not None:
        try:
            state = PortState(int(st.step), _arrays(st.m), _arrays(st.v))
        except Exception as exc:
            raise PortInterfaceError(f"state() returned {describe_exception(exc)}") from None
    stages = None
    if out.stages is not None:
        stages = {str(k): _arrays(v) for k, v in dict(out.stages).items()}
    return StepOutputs(_arrays(out.params), state, stages, [str(e) for e in out.side_effects])


def _remote(exc: BaseException, load: bool) -> RemoteError:
    if isinstance(exc, NotImplementedError):
        category = "not_implemented"
    elif isinstance(exc, PortInterfaceError):
        category = "interface"
    elif isinstance(exc, PortSetupError):
        category = "setup"
    elif isinstance(exc, PortLost) and not load:  # the port's own processes (sharded ranks)
        category = "hung" if isinstance(exc, PortHung) else "died"
    else:
        category = "load" if load else "port"
    plain = ("interface", "setup", "hung", "died")
    text = str(exc) if category in plain else describe_exception(exc)
    return RemoteError(category, type(exc).__name__, text)


class _Host:
    """The worker's state: the spec of the loaded port and the port of the current scenario."""

    def __init__(self) -> None:
        self.spec: PortSpec | None = None
        self.port: Any = None

    def _spec(self) -> PortSpec:
        if self.spec is None or self.spec.factory is None:
            raise RuntimeError("no port loaded")
        return self.spec

    def _port(self) -> Any:
        if self.port is None:
            raise RuntimeError("no port built: make() first")
        return self.port

    def framework(self, name: str) -> None:
        from .adapters.frameworks import prepare

        prepare(name)

    def load(self, locator: PortLocator) -> None:
        self.spec, self.port = None, None
        self.spec = resolve(locator)

    def supports(self, config: Any) -> str | None:
        sup = self._spec().supports
        why = sup(config) if sup is not None else None
        return None if not why else str(why)

    def make(self, config: Any) -> Any:
        spec = self._spec()
        self.port = None
        assert spec.factory is not None
        port = spec.factory(config)
        info = port_info(port, spec.dtype)
        self.port = port
        return info

    def configure(self, contract: Any) -> str | None:
        return apply_contract(self._port(), contract)

    def reset(self, params: Any, state: Any) -> None:
        self._port().reset(params, state)

    def step(self, grads: Any) -> None:
        self._port().step(grads)

    def outputs(self, want_stages: bool) -> StepOutputs:
        return _portable(read_outputs(self._port(), want_stages))

    def extra(self, name: str, *args: Any) -> None:
        call_extra(self._port(), name, *args)

    def construction(self, n: int) -> Any:
        """The keyword arguments the port built its target with, as it reports them
        (``construction(n)`` of the framework adapters; None for a port without it)."""
        report = getattr(self._port(), "construction", None)
        return report(n) if callable(report) else None

    def release(self) -> None:
        port, self.port = self.port, None
        close = getattr(port, "close", None)
        if callable(close):
            close()

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "framework": self.framework,
            "load": self.load,
            "supports": self.supports,
            "make": self.make,
            "configure": self.configure,
            "reset": self.reset,
            "step": self.step,
            "outputs": self.outputs,
            "extra": self.extra,
            "construction": self.construction,
            "release": self.release,
        }


def _isolate(out_fd: int, max_memory: int | None) -> None:
    """Make this process safe to host a port (see the module docstring)."""
    # a process group of its own: the harness kills the group, so processes the port started
    # go with it
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    if max_memory is not None:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _flush() -> None:
    """Push what the port printed to the drain, so it is counted with the call that wrote it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def serve(conn: Connection, out: Connection, max_memory: int | None) -> None:
    """The worker's main loop (the target of the spawned process)."""
    fd = os.dup(conn.fileno())
    out_fd = os.dup(out.fileno())
    conn.close()
    out.close()
    _isolate(out_fd, max_memory)
    host = _Host()
    table = host.handlers()
    send_frame(fd, ("ready", os.getpid()))
    while True:
        try:
            request = recv_frame(fd)
        except (ChannelClosed, OSError):
            os._exit(0)
        for i, (op, *args) in enumerate(request):
            last = i == len(request) - 1
            try:
                value = table[op](*args)
                # an op before the last answers its value when it has one (a batch of free-running
                # steps streams every step's outputs); ops without a value are acknowledged
                reply: tuple[Any, ...] = (
                    ("ok", value) if last else ("ack", i) if value is None else ("val", i, value)
                )
            except BaseException as exc:  # SystemExit and KeyboardInterrupt of the port included
                reply = ("err", i, _remote(exc, op in ("framework", "load")))
            _flush()
            try:
                send_frame(fd, reply)
            except OSError:  # the harness is gone
                os._exit(0)
            except Exception as exc:  # an answer that cannot be pickled (nothing was written)
                reply = ("err", i, RemoteError("port", type(exc).__name__, describe_exception(exc)))
                send_frame(fd, reply)
            if reply[0] == "err":
                break
