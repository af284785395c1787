r"""One flat buffer over every param group's arrays (apex/DeepSpeed style), found by the probe.

A port may keep one flat m and one flat v over *all* its parameters, every group's and the
harness's sentinel's, back to back in an order of its own (group by group, groups reversed,
...). No group's arrays fill such an entry (``state_groups.in_group`` reads a group's own
buffer), and the order is never assumed: the adapter probes with the run's groups *plus* the
sentinel's (``extras``: its size, the same on the probe and the port) and this module fits each
array's slice. On a 1-D entry of $N = \sum_i n_i + \sum \text{extras}$ values:

- every array $i$ with state (in a group with a gradient) must appear at exactly one offset
  $o_i$ with $x[o_i : o_i + n_i] = a_i\,y_i$ ($y = g_1$ for m, $g_1^2$ for v), $a_i$ one scalar
  per group (its betas), the slices disjoint;
- every other coordinate must be zero after both probe steps: the blocks there (the frozen
  arrays', the sentinel's, which never get a gradient) are assigned to the zero gaps by their
  sizes, and that assignment must be unique (the offsets on the port, whose small arrays the
  probe widened, depend on which blocks lie before an array, never on their order within a gap);
- m is told from a stored gradient (linear in $g_1$ too) by its decay where $g_2 = 0$ (a relative
  change below 1; a gradient copy vanishes: 1); v from vmax likewise (v moves there, a maximum
  does not). Two entries that still fit one role are ambiguous.

The result is one view per array with ``within`` the buffer's order (:class:`~.state_layout.
View`; an entry $-n$ is a block of $n$ values of no array of the run). Where an entry of that
size exists but is ambiguous, the reason names what is; nothing is then re-synced. Nothing here
imports a framework.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from .probe_fits import TOL, fit
from .state_layout import Leaf, Path, View, path_text

#: at most this many assignments of zero blocks to gaps are tried (a probe has a few of each)
MAX_ASSIGNMENTS = 1 << 14


def _offsets(x: np.ndarray, y: np.ndarray) -> list[tuple[int, float]]:
    """(offset, a) of every slice of ``x`` equal to a multiple ``a y`` (``probe_fits.fit``)."""
    n = y.size
    if n == 0 or n > x.size:
        return []
    if n == 1:
        starts = np.flatnonzero(x != 0.0)
    else:  # a slice proportional to y has x[o+1] y[0] = x[o] y[1]: screen on that, then fit
        a, b = x[: x.size - n + 1], x[1 : x.size - n + 2]
        close = np.abs(b * y[0] - a * y[1]) <= TOL * (np.abs(b * y[0]) + np.abs(a * y[1]))
        starts = np.flatnonzero(close & (a != 0.0))
    out = []
    for o in starts:
        c = fit(x[o : o + n], y)
        if c is not None:
            out.append((int(o), c))
    return out


def _assign(gaps: Sequence[int], blocks: Sequence[tuple[int, int]]) -> list[tuple[int, ...]]:
    """Every assignment of ``blocks`` (id, size) to ``gaps`` (sizes) filling each gap exactly,
    as the gap index per block (at most ``MAX_ASSIGNMENTS`` tried, then [] twice: ambiguous)."""
    if len(gaps) ** len(blocks) > MAX_ASSIGNMENTS:
        return [(), ()]
    out = []
    for pick in itertools.product(range(len(gaps)), repeat=len(blocks)):
        fill = [0] * len(gaps)
        for (_, n), k in zip(blocks, pick, strict=True):
            fill[k] += n
        if fill == list(gaps):
            out.append(pick)
    return out


def _span(
    x: np.ndarray,
    later: np.ndarray,
    sizes: Sequence[int],
    arrays: Sequence[np.ndarray],
    groups: Sequence[Sequence[int]],
    extras: Sequence[int],
) -> tuple[tuple[int, ...], list[float]] | str:
    """(the buffer's order as a ``within``, the coefficient per group) of an entry ``x`` (after
    one probe step; ``later``: after two) holding multiples of ``arrays``, or why not."""
    live = [i for g in groups for i in g]
    place: dict[int, tuple[int, float]] = {}
    for i in live:
        hits = _offsets(x, np.ravel(arrays[i]))
        if len(hits) != 1:
            return f"array {i}'s probe values are found at {len(hits)} places"
        place[i] = hits[0]
    coef = []
    for g in groups:
        a = [place[i][1] for i in g]
        if any(abs(b - a[0]) > TOL * abs(a[0]) for b in a):
            return "the arrays of one param group hold different multiples"
        coef.append(a[0])
    covered = np.zeros(x.size, dtype=bool)
    for i, (o, _) in place.items():
        if covered[o : o + sizes[i]].any():
            return f"array {i}'s slice overlaps another's"
        covered[o : o + sizes[i]] = True
    if np.any(x[~covered] != 0.0) or np.any(later[~covered] != 0.0):
        return "values outside every array's slice"
    # the zero gaps between the slices, and which frozen arrays and extras fill each
    starts = sorted((o, i) for i, (o, _) in place.items())
    gaps, edges, pos = [], [], 0
    for o, i in [*starts, (x.size, -1)]:
        if o > pos:
            gaps.append(o - pos)
            edges.append(pos)
        pos = o + (sizes[i] if i >= 0 else 0)
    mine = set(live)
    blocks = [(j, n) for j, n in enumerate(sizes) if j not in mine and n > 0]
    blocks += [(-n, n) for n in extras]
    picks = _assign(gaps, blocks)
    if len(picks) != 1:
        which = ", ".join(f"array {j}" if j >= 0 else f"{-j} sentinel values" for j, _ in blocks)
        return (
            f"the zero gaps of the buffer ({gaps} values) hold {which} in "
            f"{'no' if not picks else 'more than one'} way"
        )
    order: list[tuple[int, int]] = [(o, i) for o, i in starts]
    for (j, _), k in zip(blocks, picks[0], strict=True):
        order.append((edges[k], j))  # within a gap any order: its blocks are all zero
    order.sort(key=lambda e: (e[0], e[1] < 0))
    return tuple(j for _, j in order), coef


def _change(x1: np.ndarray, x2: np.ndarray, within: tuple[int, ...], sizes: Sequence[int],
            zero: Sequence[np.ndarray], live: set[int]) -> float:  # fmt: skip
    """The largest relative change over the second probe step where $g_2 = 0$ (0: a maximum,
    $1-\\beta$: a moment, 1: a gradient copy)."""
    worst, pos = 0.0, 0
    for j in within:
        n = sizes[j] if j >= 0 else -j
        if j in live:
            a, b = x1[pos : pos + n], x2[pos : pos + n]
            mask = np.ravel(zero[j])
            d = np.abs(b - a)[mask] / np.maximum(np.abs(a)[mask], 1e-300)
            worst = max(worst, float(np.max(d, initial=0.0)))
        pos += n
    return worst


Found = tuple[Path, tuple[int, ...], list[float]]


def _role(
    after1: Mapping[Path, Leaf],
    after2: Mapping[Path, Leaf],
    sizes: Sequence[int],
    arrays: Sequence[np.ndarray],
    zero: Sequence[np.ndarray],
    groups: Sequence[Sequence[int]],
    extras: Sequence[int],
    name: str,
) -> tuple[list[Found], list[str]]:
    """The entries spanning every array that fit ``arrays`` and behave like role ``name``
    (m: decays where g_2 = 0; v: moves there), and why other candidates were not taken."""
    total = sum(sizes) + sum(extras)
    live = {i for g in groups for i in g}
    found: list[Found] = []
    why: list[str] = []
    for path, leaf in after1.items():
        x = leaf.value
        if leaf.scalar or x.ndim != 1 or x.size != total or path not in after2:
            continue
        later = np.ravel(after2[path].value)
        got = _span(np.ravel(x), later, sizes, arrays, groups, extras)
        if isinstance(got, str):
            if "found at 0 places" not in got:  # an entry of another role, or none
                why.append(f"{path_text(path)}: {got}")
            continue
        c = _change(np.ravel(x), later, got[0], sizes, zero, live)
        if (name == "m" and c < 1.0) or (name == "v" and 0.0 < c < math.inf):
            found.append((path, *got))
    return found, why


def spanning(
    after1: Mapping[Path, Leaf],
    after2: Mapping[Path, Leaf],
    sizes: Sequence[int],
    g1: Sequence[np.ndarray],
    zero: Sequence[np.ndarray],
    groups: Sequence[Sequence[int]],
    extras: Sequence[int],
) -> tuple[list[View], list[View], list[list[float]], str]:
    """(m views, v views, per role the coefficient per group, why not) for a port keeping one
    flat m and one flat v over all arrays and ``extras`` (the sentinel's size); empty views and
    an empty reason when no entry of that size holds them, a reason naming the ambiguity when
    one does but not unambiguously."""
    out: list[list[View]] = []
    coefs: list[list[float]] = []
    for name, ys in (("m", list(g1)), ("v", [y * y for y in g1])):
        found, why = _role(after1, after2, sizes, ys, zero, groups, extras, name)
        if len(found) > 1:
            where = ", ".join(path_text(p) for p, _, _ in found)
            return [], [], [], (f"{len(found)} entries over every group's arrays behave like "
                                f"{name} ({where}): ambiguous")  # fmt: skip
        if not found:
            return [], [], [], ("; ".join(why) + ": not read as one buffer") if why else ""
        path, within, c = found[0]
        out.append([View(path, i, None, within) for g in groups for i in g])
        coefs.append(c)
    return out[0], out[1], coefs, ""
