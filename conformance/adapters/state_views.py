r"""Read and write a role's values through the views ``state_discovery`` found.

A view names a leaf of the port's state and which array's values it holds (see
:class:`~.state_layout.View`): the whole leaf, a slice of a stacked leaf, one flat leaf of all
arrays, or one segment of a flat leaf of a param group's arrays (``within``; DeepSpeed/apex
style: array $i$ of group $G = (i_1, \dots, i_k)$ at offset $\sum_{j < i} n_j$ over the group's
arrays before it; or of one buffer over every group's arrays and the sentinel's, in the order the
port lays them out, found by :mod:`.state_spans`). Offsets come from the shapes at hand, so a layout found on the probe (whose
small arrays are widened) reads the port's own. A leaf whose size is not what the views ask of
it (the probe's layout does not fit this instance) raises :class:`Mismatch`, a ``KeyError``: the
adapters then read no state or refuse the re-synced step with the reason, never misread it.
Nothing here imports a framework.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .state_layout import Counter, Leaf, Path, View, path_text


class Mismatch(KeyError):
    """A view found on the probe does not fit this port's entry (its size differs)."""


def values(leaf: Leaf, view: View) -> np.ndarray:
    """The flat values of the leaf a view reads (its ``sub`` slice, else all of it)."""
    x = leaf.value
    return np.ravel(x[view.sub] if view.sub is not None else x)


def _checked(leaves: Mapping[Path, Leaf], view: View, size: int) -> np.ndarray:
    x = values(leaves[view.path], view)
    if x.size != size:
        raise Mismatch(
            f"{path_text(view.path)} holds {x.size} values where the layout found on the probe "
            f"asks for {size}"
        )
    return x


def _size(sizes: Sequence[int], j: int) -> int:
    """The size of entry ``j`` of a ``within``: array j's, or -j values of no array (j < 0)."""
    return sizes[j] if j >= 0 else -j


def segment(leaves: Mapping[Path, Leaf], view: View, sizes: Sequence[int]) -> np.ndarray:
    """Array ``view.array``'s values through a per-array view (``sizes``: every array's)."""
    assert view.array is not None
    if view.within is None:
        return _checked(leaves, view, sizes[view.array])
    flat = _checked(leaves, view, sum(_size(sizes, j) for j in view.within))
    start = sum(_size(sizes, j) for j in view.within[: view.within.index(view.array)])
    return flat[start : start + sizes[view.array]]


def gather(
    leaves: Mapping[Path, Leaf], views: Sequence[View], shapes: Sequence[tuple[int, ...]]
) -> tuple[np.ndarray, ...]:
    """A role's values per array (float64, in ``shapes``) from a port's current leaves; an array
    no view holds (a frozen array whose param group keeps no state) reads as zeros, the state of
    an array that never had a gradient."""
    sizes = [math.prod(s) for s in shapes]
    if len(views) == 1 and views[0].array is None:
        flat = _checked(leaves, views[0], sum(sizes))
        out, start = [], 0
        for s, n in zip(shapes, sizes, strict=True):
            out.append(flat[start : start + n].reshape(s))
            start += n
        return tuple(out)
    by = {v.array: v for v in views}
    return tuple(
        segment(leaves, by[i], sizes).reshape(s) if i in by else np.zeros(s)
        for i, s in enumerate(shapes)
    )


def scatter(views: Sequence[View], arrays: Sequence[np.ndarray]) -> list[tuple[View, np.ndarray]]:
    """(view, flat float64 values) pairs that write ``arrays`` into a role's views; a group's
    flat leaf (``within`` views) is written whole, its arrays back to back."""
    if len(views) == 1 and views[0].array is None:
        return [(views[0], np.concatenate([np.ravel(a) for a in arrays]))]
    out: list[tuple[View, np.ndarray]] = []
    flats: set[tuple[Path, int | None]] = set()
    for v in views:
        if v.array is None:
            continue
        if v.within is None:
            out.append((v, np.ravel(np.asarray(arrays[v.array], dtype=np.float64))))
        elif (v.path, v.sub) not in flats:
            flats.add((v.path, v.sub))
            whole = [
                np.ravel(np.asarray(arrays[j], dtype=np.float64)) if j >= 0 else np.zeros(-j)
                for j in v.within
            ]  # the sentinel's block: zero, the state of a parameter never given a gradient
            out.append((View(v.path, None, v.sub), np.concatenate(whole)))
    return out


def step_of(leaves: Mapping[Path, Leaf], counters: Sequence[Counter]) -> int:
    """The number of steps taken, read from the first counter (0 when none is readable)."""
    for c in counters:
        if c.path in leaves:
            value = float(np.ravel(leaves[c.path].value)[0])
            return round((value - c.offset) / c.scale)
    return 0
