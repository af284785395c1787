"""Replay one step of a catalogue entry: the plain reference step with the entry's one change.

The stage functions are ``setadam_ref.setadam.DEFINITION`` / ``setadam_ref.adam.DEFINITION``
with the entry's swapped in; the configuration, the step counter and the layout are transformed
as the entry says. Nothing else is computed here, so a replay of ``None`` (no deviation) is the
reference itself, bit for bit. A whole-algorithm entry replays its own published step.
``free_run`` chains replays from a starting point, as a port runs free.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from setadam_ref import adam, setadam
from setadam_ref.arrays import F64Array
from setadam_ref.config import AdamConfig, Config, SETAdamConfig
from setadam_ref.layers import validate_layers
from setadam_ref.state import State, init

from .deviation import Deviation, Relayout

Arrays = tuple[F64Array, ...]


class Replay(NamedTuple):
    """One replayed step: $\\theta_t$, $m_t$, $v_t$ and (amsgrad) $v^{\\max}_t$, shaped as the inputs."""

    params: Arrays
    m: Arrays
    v: Arrays
    vmax: Arrays | None = None


def _f64(arrays: Sequence[Any]) -> Arrays:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def _cut(arrays: Arrays, relayout: Relayout) -> Arrays:
    out: list[F64Array] = []
    for a, sizes in zip(arrays, relayout.pieces, strict=True):
        ends = np.cumsum(sizes)
        out.extend(np.split(np.ravel(a), ends[:-1]))
    return tuple(out)


def _join(pieces: Arrays, relayout: Relayout, like: Arrays) -> Arrays:
    out, k = [], 0
    for a, sizes in zip(like, relayout.pieces, strict=True):
        parts = [np.ravel(p) for p in pieces[k : k + len(sizes)]]
        out.append(np.concatenate(parts).reshape(np.shape(a)) if parts else np.empty(np.shape(a)))
        k += len(sizes)
    return tuple(out)


def replay(
    deviation: Deviation | None,
    params: Sequence[Any],
    grads: Sequence[Any],
    state: State,
    config: Config,
    layers: Sequence[Sequence[int]] | None = None,
) -> Replay:
    """One step of ``deviation`` (``None``: the algorithm itself) from exactly these inputs.

    ``config`` is a ``SETAdamConfig`` for SET-Adam entries, an ``AdamConfig`` for Adam entries
    (``algorithm="adam"``). The inputs are used as given (round them to the port's dtype first
    to replay what the port saw); the step is computed in float64 with IEEE semantics.
    """
    algorithm = "adam" if isinstance(config, AdamConfig) else "setadam"
    if deviation is not None and deviation.algorithm != algorithm:
        kind = "an Adam" if deviation.algorithm == "adam" else "a SET-Adam"
        raise ValueError(f"{deviation.name} is {kind} deviation; config is {type(config).__name__}")
    p, g = _f64(params), _f64(grads)
    vmax = None if state.vmax is None else _f64(state.vmax)
    st = State(int(state.step), _f64(state.m), _f64(state.v), vmax)
    if deviation is not None and deviation.whole is not None:
        with np.errstate(all="ignore"):
            theta, m, v, vm = deviation.whole(p, g, st, config, layers)
        return Replay(_f64(theta), _f64(m), _f64(v), None if vm is None else _f64(vm))
    cfg = config if deviation is None or deviation.config is None else deviation.config(config)
    if deviation is not None and deviation.counter is not None:
        st = st._replace(step=deviation.counter(st.step + 1) - 1)
    swapped = {} if deviation is None else dict(deviation.stages)
    if deviation is not None and deviation.from_inputs is not None:
        swapped.update(deviation.from_inputs(p, g, st))
    if isinstance(cfg, AdamConfig):
        if not cfg.amsgrad:
            st = st._replace(vmax=None)
        theta, new, _ = adam.adam_step(p, g, st, cfg, adam.DEFINITION._replace(**swapped))
        return Replay(theta, new.m, new.v, new.vmax)
    assert isinstance(cfg, SETAdamConfig)
    lay = validate_layers(layers, len(p))
    stages = setadam.DEFINITION._replace(**swapped)
    if deviation is None or deviation.layout is None:
        theta, new, _ = setadam.setadam_step(p, g, st, cfg, lay, stages)
        return Replay(theta, new.m, new.v)
    rl = deviation.layout([np.shape(a) for a in p], lay)
    cut = State(st.step, _cut(st.m, rl), _cut(st.v, rl))
    theta, new, _ = setadam.setadam_step(_cut(p, rl), _cut(g, rl), cut, cfg, rl.layers, stages)
    return Replay(_join(theta, rl, p), _join(new.m, rl, p), _join(new.v, rl, p))


def free_run(
    deviation: Deviation | None,
    params0: Sequence[Any],
    grads: Sequence[Sequence[Any]],
    config: Config,
    layers: Sequence[Sequence[int]] | None = None,
    state: State | None = None,
) -> Iterator[Replay]:
    """``deviation`` run free from ``params0`` (and ``state``, default the initial state) over the
    gradients of consecutive steps: one ``Replay`` per step, each continuing from the last."""
    p = _f64(params0)
    st = state if state is not None else init(p, config)
    for g in grads:
        r = replay(deviation, p, g, st, config, layers)
        yield r
        p, st = r.params, State(st.step + 1, r.m, r.v, r.vmax)
