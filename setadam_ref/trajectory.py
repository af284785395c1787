"""Many steps: open loop (a given gradient sequence) or closed loop (a gradient function)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .arrays import F64Array, as_float64_tuple, frozen
from .config import Config
from .state import State, init
from .step import NonFinite, step
from .trace import Trace

GradFn = Callable[[int, tuple[F64Array, ...]], Sequence[Any]]


class Trajectory(NamedTuple):
    """``params[k]`` and ``states[k]`` after $k$ steps ($k = 0$: the start); ``traces[k-1]`` is
    the trace of step $k$ (``None`` unless ``trace=True``)."""

    params: list[tuple[F64Array, ...]]
    states: list[State]
    traces: list[Trace] | None


def run(
    params: Sequence[Any],
    grads: Sequence[Sequence[Any]] | GradFn,
    config: Config,
    *,
    steps: int | None = None,
    layers: Sequence[Sequence[int]] | None = None,
    trace: bool = False,
    state: State | None = None,
    nonfinite: NonFinite = "raise",
) -> Trajectory:
    """Run ``steps`` steps from ``params`` (and ``state``, default ``init``).

    ``grads`` is either a sequence whose element $k$ is the gradient list of step $k+1$ (open
    loop; ``steps`` defaults to its length) or a function ``grad_fn(t, params)`` giving the
    gradient at the current parameters for step ``t`` (closed loop; ``steps`` required).
    """
    p = tuple(frozen(a.copy()) for a in as_float64_tuple(params, "params"))
    st = init(p, config) if state is None else state
    if callable(grads):
        if steps is None:
            raise ValueError("steps is required when grads is a gradient function (closed loop)")
        grad_fn: GradFn = grads
    else:
        seq = grads
        if steps is None:
            steps = len(seq)
        if steps > len(seq):
            raise ValueError(f"steps={steps} but only {len(seq)} gradient lists were given")

        def grad_fn(t: int, _p: tuple[F64Array, ...]) -> Sequence[Any]:
            return seq[t - 1 - (st0.step)]

    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    st0 = st
    out_p, out_s = [p], [st]
    out_t: list[Trace] | None = [] if trace else None
    for _ in range(steps):
        g = grad_fn(st.step + 1, p)
        p, st, tr = step(p, g, st, config, layers, trace=trace, nonfinite=nonfinite)
        out_p.append(p)
        out_s.append(st)
        if out_t is not None and tr is not None:
            out_t.append(tr)
    return Trajectory(out_p, out_s, out_t)
