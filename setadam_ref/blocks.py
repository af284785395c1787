"""Block-wise evaluation of element-wise work, optionally on a small thread pool.

The step is a chain of element-wise operations. Done array by array, every operation streams the
whole array through memory; done block by block (``BLOCK`` entries at a time) the chain runs in
cache and memory sees each input and output once. NumPy releases the GIL inside its loops, so
blocks can run on several threads. Results never depend on the thread count: each block's work
is independent, and per-block reductions are combined by the caller in block order.

``SETADAM_REF_THREADS`` (default: ``min(2, os.cpu_count())``) sets the pool size; 1 disables it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np

from .arrays import F64Array

#: Entries per block: 32 Ki float64 = 256 KiB per operand; a block's ~9 operands stay in L2/L3.
BLOCK = 1 << 15
# Below this many blocks a thread hand-off costs more than it saves.
_MIN_BLOCKS_FOR_THREADS = 8

R = TypeVar("R")


class Block(NamedTuple):
    """Entries ``start:stop`` of the flattened array ``array``."""

    array: int
    start: int
    stop: int


class Scratch(NamedTuple):
    """Two block-sized temporaries, one pair per thread."""

    t1: F64Array
    t2: F64Array


def split(sizes: Sequence[int], block: int = BLOCK) -> list[Block]:
    """The blocks of arrays of the given sizes, array by array, in order (none for size 0)."""
    return [Block(i, a, min(a + block, n)) for i, n in enumerate(sizes) for a in range(0, n, block)]


_local = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> int:
    env = os.environ.get("SETADAM_REF_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError as exc:
            raise ValueError(f"SETADAM_REF_THREADS must be an integer, got {env!r}") from exc
    return max(1, min(2, os.cpu_count() or 1))


def _scratch(size: int) -> Scratch:
    s: Scratch | None = getattr(_local, "scratch", None)
    if s is None or s.t1.size < size:
        s = Scratch(np.empty(size), np.empty(size))
        _local.scratch = s
    return s


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != n:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="setadam_ref")
        return _pool


def map_blocks(fn: Callable[[Block, Scratch], R], blocks: Sequence[Block]) -> list[R]:
    """``[fn(b, scratch) for b in blocks]``, in order, on the pool when it pays."""
    n = _threads()
    size = max((b.stop - b.start for b in blocks), default=0)
    if n == 1 or len(blocks) < _MIN_BLOCKS_FOR_THREADS:
        s = _scratch(size)
        return [fn(b, s) for b in blocks]
    return list(_get_pool(n).map(lambda b: fn(b, _scratch(size)), blocks))
