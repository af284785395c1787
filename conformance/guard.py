"""Run port calls in a worker thread with a timeout, so a hanging port cannot hang the harness.

A thread that times out is abandoned (daemon): Python cannot kill it, but the harness stops using
the port, reports the hang, and moves on. ``call`` re-raises the port's own exception.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PortTimeout(Exception):
    """A port call did not return within the per-step timeout."""


class Worker:
    """One daemon thread executing submitted callables in order."""

    def __init__(self, name: str = "port-worker") -> None:
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
            except BaseException as exc:
                box.put((False, exc))

    def call(self, fn: Callable[[], T], timeout: float | None) -> T:
        if self.hung:
            raise PortTimeout("the port hung earlier; it is no longer driven")
        box: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._jobs.put((fn, box))
        try:
            ok, value = box.get(timeout=timeout)
        except queue.Empty:
            self.hung = True
            raise PortTimeout(f"no answer within {timeout:g} s") from None
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def close(self) -> None:
        if not self.hung:
            self._jobs.put(None)
