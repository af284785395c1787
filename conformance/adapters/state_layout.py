r"""What ``state_discovery`` found in a port's state: the leaves, views, counters and layout.

A *leaf* is one numeric entry of a port's state at a path; a *view* says where one role's values
(m, v, vmax) of one array live in a leaf; a *counter* is a step count entry. A
:class:`StateLayout` holds the views per role, the counters and, for a port built of param
groups (``optax.multi_transform``), which group owns which arrays and counters. Nothing here
imports a framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: one step of a path: (kind, key); kinds: "state" (torch per-parameter state, key = array
#: index), "param" (a mapping keyed by a parameter or its id, key = array index), "group" (a
#: param group), "key" (mapping key), "idx" (sequence index), "attr" (attribute or field),
#: "cell" (a closure variable), "keyed" (torch's ``optimizer.state[x]`` for a tensor x that is
#: not a parameter, key = x's own path, e.g. a flat gradient buffer in a param group)
Part = tuple[str, Any]
Path = tuple[Part, ...]


@dataclass(frozen=True)
class Leaf:
    """One numeric entry of a port's state: its path, value (float64 copy) and dtype name."""

    path: Path
    value: np.ndarray
    dtype: str
    scalar: bool  # a Python number or a one-element entry (a counter candidate)


@dataclass(frozen=True)
class View:
    """Where one role's values for one array live: the leaf at ``path`` (``sub``: the index along
    a stacking first axis), holding array ``array`` or, with ``array`` None, all arrays
    concatenated; with ``within`` (the arrays of one param group, in order), a flat leaf holding
    those arrays back to back, of which array ``array`` is one segment (its offset is the sizes
    of the arrays before it: computed from the shapes at hand, the probe's or the port's). An
    entry $-n < 0$ of ``within`` is a block of $n$ values of no array of the run (the harness's
    sentinel parameter in a buffer over every group: the same size on the probe and the port;
    it never gets a gradient, so its state is zero)."""

    path: Path
    array: int | None
    sub: int | None = None
    within: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Counter:
    """A step counter: stored value $= \\text{scale}\\, t + \\text{offset}$ after $t$ steps."""

    path: Path
    scale: int = 1
    offset: int = 0


@dataclass(frozen=True)
class GroupLayout:
    """One param group of a port built of groups (``optax.multi_transform``): its arrays (each
    one's m, v and vmax views are the group's) and the counters of its own steps."""

    arrays: tuple[int, ...]
    counters: tuple[Counter, ...]


@dataclass
class StateLayout:
    """What was found: views per role (one per array, or one flat view), counters, notes; for a
    port of param groups, ``groups`` (which group owns which arrays and counters) and
    ``stateless``, the arrays no group keeps state for (frozen: they read as m = v = 0)."""

    m: list[View] = field(default_factory=list)
    v: list[View] = field(default_factory=list)
    vmax: list[View] = field(default_factory=list)
    counters: list[Counter] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    state_dtype: str | None = None
    hidden: bool = False  # declared unreadable (--state-map none)
    convention: str = ""  # why m or v is not in the reference's convention (empty: it is)
    root: str = "opt"  # how a path's first attribute is shown (the optimizer, or "state")
    groups: list[GroupLayout] = field(default_factory=list)  # empty: not found per group
    stateless: tuple[int, ...] = ()  # arrays without state (no group owns them)
    group_why: str = ""  # why a group's state cannot be re-synced (empty: it can)

    @property
    def readable(self) -> bool:
        return bool(self.m and self.v) and not self.hidden and not self.convention

    @property
    def writable(self) -> bool:
        return self.readable and bool(self.counters) and not self.group_why

    def why_not(self) -> str:
        """Why the state cannot be re-synced, in one plain sentence (empty when it can)."""
        if self.hidden:
            return "the state is declared unreadable (--state-map none)"
        if self.convention:
            return self.convention
        if self.group_why:
            return self.group_why
        if not self.readable:
            missing = " and ".join(r for r in ("m", "v") if not getattr(self, r))
            return f"no entry of the port's state behaves like {missing} after two probe steps"
        if not self.counters:
            return "no entry of the port's state counts the steps"
        return ""

    def refusal(self, amsgrad: bool) -> str:
        """Why a given state cannot be written into the port (empty when it can): ``why_not``,
        or, for a configuration with amsgrad (``amsgrad``: the state carries vmax), a vmax that
        was not found: writing m and v alone would leave the port's own maximum stale."""
        why = self.why_not()
        if why or not amsgrad or self.vmax:
            return why
        return (
            "the configuration keeps the amsgrad maximum vmax, but no entry of the port's state "
            "was told from v by vmax_2 = max(vmax_1, c v_2) over two probe steps: a re-synced "
            "step would leave the port's own maximum stale"
        )

    def describe(self) -> str:
        """One line for the report: where m, v, vmax and the counter were found."""
        if self.convention:
            return f"state not used ({self.convention}): diagnosed from the parameters only"
        if not self.readable:
            return f"state not found ({self.why_not()}): diagnosed from the parameters only"
        if self.groups:
            parts = [self._group_text(g) for g in self.groups]
            if self.stateless:
                parts.append(f"{arrays_text(self.stateless)}: no state (no group keeps any)")
        else:
            parts = [self._roles_text((self.m, self.v, self.vmax), self.counters)]
        return "; ".join(parts) + ("; " + "; ".join(self.notes) if self.notes else "")

    def _roles_text(
        self, views: Sequence[Sequence[View]], counters: Sequence[Counter], sep: str = "; "
    ) -> str:
        """``m = ...; v = ...; vmax = ...; step = ...`` (views: m, v, vmax)."""
        roles = zip(("m", "v", "vmax"), views, strict=True)
        parts = [f"{r} = {views_text(vs, self.root)}" for r, vs in roles if vs]
        if counters:
            texts = [_counter_text(c, self.root) for c in counters[:2]]
            parts.append("step = " + ", ".join(texts))
        return sep.join(parts)

    def _group_text(self, g: GroupLayout) -> str:
        def mine(views: Sequence[View]) -> list[View]:
            return [v for v in views if v.array in g.arrays]

        views = (mine(self.m), mine(self.v), mine(self.vmax))
        roles = self._roles_text(views, g.counters, sep=", ")
        return f"the param group of {arrays_text(g.arrays)}: {roles}"


def arrays_text(arrays: Sequence[int]) -> str:
    """``array 2`` or ``arrays 0, 1``."""
    return ("array " if len(arrays) == 1 else "arrays ") + ", ".join(str(i) for i in arrays)


def path_text(path: Path, root: str = "opt") -> str:
    """A path as a user reads it: ``state[p0]['exp_avg_var']``, ``opt.momentums[1]``, ..."""
    out = "" if path and path[0][0] in ("state", "group", "attr", "keyed") else root
    for kind, key in path:
        if kind == "state":
            out += f"state[p{key}]"
        elif kind == "param":
            out += f"[p{key}]"
        elif kind == "group":
            out += f"param_groups[{key}]"
        elif kind in ("key",):
            out += f"[{key!r}]"
        elif kind == "idx":
            out += f"[{key}]"
        elif kind == "attr":
            out += f".{key}" if out else f"{root}.{key}"
        elif kind == "cell":
            out += f".<closure {key}>"
        elif kind == "keyed":  # state keyed by a tensor that is not a parameter (key: its path)
            out += f"state[{path_text(key, root)}]"
        elif kind == "order":  # a state key reached from nowhere else: its place among them
            out += f"<state key {key}>"
    return out


def views_text(views: Sequence[View], root: str) -> str:
    v = views[0]
    sub = f"[{v.sub}]" if v.sub is not None else ""
    where = path_text(v.path, root) + sub
    if v.array is None:
        return f"{where} (all arrays, concatenated)"
    if v.within is not None:
        flats = {(x.path, x.sub) for x in views}
        more = f" (and {len(flats) - 1} more)" if len(flats) > 1 else ""
        mine = [i for i in v.within if i >= 0]
        extra = sum(-i for i in v.within if i < 0)
        pad = f" and {extra} values of the sentinel" if extra else ""
        return f"{where} ({arrays_text(mine)}{pad} back to back){more}"
    return where + (f" (and {len(views) - 1} more)" if len(views) > 1 else "")


def _counter_text(c: Counter, root: str) -> str:
    form = "t" if (c.scale, c.offset) == (1, 0) else f"{c.scale} t + {c.offset}"
    return f"{path_text(c.path, root)} ({form})"
