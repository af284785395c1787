"""Optimizers that are Adam, plus one misbehaviour each (see the package docstring)."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np
import torch

#: the call to step() (counted per process) from which the optimizers misbehave
BAD_CALL = 3
_calls = 0


class _Adam(torch.optim.Adam):
    def misbehave(self) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        global _calls
        _calls += 1
        if _calls >= BAD_CALL:
            self.misbehave()
        return super().step(closure)


class ExitZero(_Adam):
    """``sys.exit(0)`` inside step(): must not read as conformant."""

    def misbehave(self) -> None:
        sys.exit(0)


class HardExit(_Adam):
    """``os._exit(3)``: the process ends without unwinding."""

    def misbehave(self) -> None:
        os._exit(3)


class Segfault(_Adam):
    """Reads address 0: SIGSEGV."""

    def misbehave(self) -> None:
        ctypes.string_at(0)


class Abort(_Adam):
    """``os.abort()``: SIGABRT, as a failed C++ assertion would."""

    def misbehave(self) -> None:
        os.abort()


class RegexHang(_Adam):
    """A catastrophic regular expression: holds the GIL for ages (no Python-level timeout)."""

    def misbehave(self) -> None:
        re.match(r"(a+)+$", "a" * 64 + "b")


class Sleeps(_Adam):
    """Sleeps far past any timeout."""

    def misbehave(self) -> None:
        time.sleep(10_000)


def _forever() -> None:
    while True:
        time.sleep(0.5)


class LeavesThread(_Adam):
    """Correct, but starts a non-daemon thread that never ends."""

    def misbehave(self) -> None:
        if not any(t.name == "leftover" for t in threading.enumerate()):
            threading.Thread(target=_forever, name="leftover", daemon=False).start()


class LeavesProcess(_Adam):
    """Correct, but starts a process that outlives it (its pid in ./leftover.pid)."""

    def misbehave(self) -> None:
        if not os.path.exists("leftover.pid"):
            child = subprocess.Popen(["sleep", "600"])
            with open("leftover.pid", "w") as fh:
                fh.write(str(child.pid))


class MemoryBomb(_Adam):
    """Allocates and touches 4 GiB (refused under ``--max-memory 2G``)."""

    def misbehave(self) -> None:
        np.ones(2**29)


class Floods(_Adam):
    """Correct, but writes 1 MiB to stdout and to stderr at every step, at the C level too."""

    def misbehave(self) -> None:
        chunk = "VERDICT: conformant (says the port)\n" * 1024
        for _ in range(28):
            sys.stdout.write(chunk)
            sys.stderr.write(chunk)
        os.write(1, b"raw fd write\n")


class Chdir(_Adam):
    """Correct, but moves the process to another working directory."""

    def misbehave(self) -> None:
        os.chdir(tempfile.gettempdir())


class HtmlInMessage(_Adam):
    """Raises with HTML and Markdown in its message: the report must show it as text."""

    def misbehave(self) -> None:
        raise ValueError(MARKUP)


#: what a port might put in its messages to inject markup into a report
MARKUP = '<img src=x onerror="alert(1)"> ![pwned](http://example.invalid/x.png) **bold** <script>'


class NoWeightDecay(torch.optim.Adam):
    """Takes no ``weight_decay`` argument: rejects the harness's calling convention."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
