"""Framed messages between the harness and a port's worker process, bounded in time and size.

A frame is an 8-byte big-endian length followed by a pickle. The parent side (:class:`Channel`)
never blocks past a deadline: its end of the socket is non-blocking and every read and write
waits in ``select`` for at most the time left, so a worker that stops reading or writing half
way through a frame (a thread of the port holding the GIL, a segfault) cannot stall the harness.

The parent unpickles what the worker sends with :class:`SafeUnpickler`: only NumPy arrays and
scalars and the harness's own records may appear in an answer, so a port cannot make the parent
import its modules or run code by sending a crafted pickle. The worker side
(:func:`send_frame`, :func:`recv_frame`) uses plain blocking I/O.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import struct
import time
from dataclasses import dataclass
from typing import Any

_HEADER = struct.Struct(">Q")
#: the largest answer the parent accepts (a port's arrays of a scenario are a few MiB at most)
MAX_FRAME = 512 * 1024 * 1024

#: the globals a worker's answer may name: NumPy's array and scalar reconstruction and the records
#: of :mod:`conformance.session`, :mod:`conformance.interface` and this module
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [
        (mod, name)
        for mod in ("numpy._core.numeric", "numpy.core.numeric")
        for name in ("_frombuffer",)
    ]
    + [
        (mod, name)
        for mod in ("numpy._core.multiarray", "numpy.core.multiarray")
        for name in ("_reconstruct", "scalar")
    ]
    + [
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("conformance.interface", "PortState"),
        ("conformance.session", "StepOutputs"),
        ("conformance.session", "PortInfo"),
        ("conformance.channel", "RemoteError"),
        ("conformance.channel", "Opaque"),
    ]
)


class ChannelClosed(Exception):
    """The other end closed the connection (the worker process died or exited)."""


class ChannelTimeout(Exception):
    """The deadline passed before a whole frame was read or written."""


class ChannelCorrupt(Exception):
    """The worker sent something that is not a well-formed answer."""


@dataclass(frozen=True)
class RemoteError:
    """An exception raised in the worker, as data (its class may not be importable here).

    ``category``: ``not_implemented`` (the port cannot continue from a given state),
    ``interface`` (not a port), ``setup`` (calling convention or device: exit 2), ``load``
    (the target could not be imported), ``hung`` / ``died`` (processes of the port's own, such
as sharded ranks, hung or died and were stopped), ``port`` (anything else the port raised)."""

    category: str
    type_name: str
    description: str


@dataclass(frozen=True)
class Opaque:
    """Something a port returned where an array belongs that is not a NumPy array of numbers."""

    description: str


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise ChannelCorrupt(f"the worker's answer names {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


class Channel:
    """The parent's end of a worker's socket: deadline-bounded frames."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def send(self, obj: Any, deadline: float) -> None:
        payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(payload)) + payload)
        while view:
            left = _remaining(deadline)
            if left <= 0:
                raise ChannelTimeout("the worker stopped reading")
            _, writable, _ = select.select([], [self.fd], [], left)
            if not writable:
                continue
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise ChannelClosed(str(exc)) from None
            view = view[n:]

    def _read(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = _remaining(deadline)
            if left <= 0:
                raise ChannelTimeout("no complete answer")
            readable, _, _ = select.select([self.fd], [], [], left)
            if not readable:
                continue
            try:
                chunk = os.read(self.fd, min(n - len(buf), 1 << 20))
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise ChannelClosed("end of stream")
            buf += chunk
        return bytes(buf)

    def recv(self, deadline: float) -> Any:
        (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        if size > MAX_FRAME:
            raise ChannelCorrupt(f"the worker announced an answer of {size} bytes")
        payload = self._read(size, deadline)
        try:
            return SafeUnpickler(io.BytesIO(payload)).load()
        except ChannelCorrupt:
            raise
        except Exception as exc:
            raise ChannelCorrupt(f"unreadable answer: {type(exc).__name__}: {exc}") from None


def send_frame(fd: int, obj: Any) -> None:
    """Write one frame (worker side, blocking)."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise ChannelClosed("the harness closed the connection")
        buf += chunk
    return bytes(buf)


def recv_frame(fd: int) -> Any:
    """Read one frame (worker side, blocking; the parent is trusted)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))
