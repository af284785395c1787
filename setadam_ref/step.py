"""The public one-step function: checks its inputs, runs Adam or SET-Adam, returns new values.

Pure: inputs are never written; the returned parameters and state are fresh read-only float64
arrays. Non-finite data: ``nonfinite="raise"`` (default) raises ``NonFiniteError`` naming the
array, the step and the number of bad entries (also when $v$ overflows float64 from finite
gradients, $|g| \\gtrsim 1.3\\cdot 10^{154}$); ``nonfinite="ieee"`` computes with IEEE semantics
and lets NaN/Inf propagate (docs: numerics/overflow.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from . import adam, fast, setadam
from .arrays import F64Array, as_float64_tuple, shaped_like
from .config import AdamConfig, Config, SETAdamConfig
from .layers import validate_layers
from .nonfinite import raise_if_nonfinite, screen
from .state import State
from .trace import Trace

NonFinite = Literal["raise", "ieee"]

#: Untraced steps of at least this many entries take the fast path (``fast``): below it the
#: blocking does not pay for its per-block overhead (measured on 2 cores: at 2^16 entries the two
#: are even for many small arrays, and the fast path is about 2x faster from 2^17 on).
FAST_MIN_SIZE = 1 << 16


def _check_shapes(
    params: tuple[F64Array, ...], grads: tuple[F64Array, ...], state: State, config: Config
) -> None:
    if len(params) != len(grads):
        raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradient arrays")
    if len(state.m) != len(params) or len(state.v) != len(params):
        raise ValueError(
            f"the state holds {len(state.m)} arrays but {len(params)} parameter arrays were "
            "given: was it made by init() for these parameters?"
        )
    for i, (p, g, m, v) in enumerate(zip(params, grads, state.m, state.v, strict=False)):
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] has shape {p.shape}")
        if m.shape != p.shape or v.shape != p.shape:
            raise ValueError(
                f"state arrays {i} have shapes m {m.shape}, v {v.shape}; params[{i}] has {p.shape}"
            )
    amsgrad = isinstance(config, AdamConfig) and config.amsgrad
    if amsgrad and state.vmax is None:
        raise ValueError(
            "config.amsgrad is True but the state has no vmax: init() it with this config"
        )
    if state.vmax is not None:
        if not amsgrad:
            raise ValueError("the state has vmax (amsgrad) but the config does not use amsgrad")
        for i, (p, vm) in enumerate(zip(params, state.vmax, strict=False)):
            if vm.shape != p.shape:
                raise ValueError(f"state.vmax[{i}] has shape {vm.shape}; params[{i}] has {p.shape}")
    if (
        isinstance(state.step, bool)
        or not isinstance(state.step, (int, np.integer))
        or state.step < 0
    ):
        raise ValueError(f"state.step must be an integer >= 0, got {state.step!r}")


def step(
    params: Sequence[Any],
    grads: Sequence[Any],
    state: State,
    config: Config,
    layers: Sequence[Sequence[int]] | None = None,
    trace: bool = False,
    nonfinite: NonFinite = "raise",
) -> tuple[tuple[F64Array, ...], State, Trace | None]:
    """One optimizer step, $t$ = ``state.step + 1``: ``(new params, new state, trace or None)``.

    ``config`` selects the algorithm (``AdamConfig`` or ``SETAdamConfig``). ``layers`` groups
    arrays into layers for SET-Adam (default: one layer per array; Adam ignores layering but it
    is still validated). ``trace=True`` records every intermediate (``AdamTrace`` /
    ``SETAdamTrace``); otherwise no trace array is allocated.

    The step is ``setadam.setadam_step`` / ``adam.adam_step`` with the definition. Untraced steps
    of ``FAST_MIN_SIZE`` entries or more run on ``fast`` instead, which is bitwise equal to it.
    """
    if nonfinite not in ("raise", "ieee"):
        raise ValueError(f"nonfinite must be 'raise' or 'ieee', got {nonfinite!r}")
    if not isinstance(config, (AdamConfig, SETAdamConfig)):
        raise TypeError(f"config must be AdamConfig or SETAdamConfig, got {type(config).__name__}")
    p64 = as_float64_tuple(params, "params")
    g64 = as_float64_tuple(grads, "grads")
    _check_shapes(p64, g64, state, config)
    lay = validate_layers(layers, len(p64))
    st = State(
        step=int(state.step),
        m=_float64(state.m),
        v=_float64(state.v),
        vmax=None if state.vmax is None else _float64(state.vmax),
    )
    check = nonfinite == "raise"
    tr: Trace | None = None
    with np.errstate(all="ignore"):
        if not trace and sum(p.size for p in p64) >= FAST_MIN_SIZE:
            new_p, new_st, suspects = _fast(p64, g64, st, config, lay, check)
        else:
            if isinstance(config, AdamConfig):
                new_p, new_st, tr = adam.adam_step(p64, g64, st, config, trace=trace)
            else:
                new_p, new_st, tr = setadam.setadam_step(p64, g64, st, config, lay, trace=trace)
            adam_v = isinstance(config, AdamConfig)
            suspects = screen(new_p, new_st.v, adam_v) if check else []
    if suspects:
        adam_zero = isinstance(config, AdamConfig) and config.eps == 0.0 == config.eps_root
        second = new_st.vmax if new_st.vmax is not None else new_st.v
        raise_if_nonfinite(
            suspects, p64, g64, new_st.v, new_p, new_st.step,
            state_in=(("m", st.m), ("v", st.v), ("vmax", st.vmax)),
            zero_over_zero=second if adam_zero else None,
        )  # fmt: skip
    return new_p, new_st, tr


def _float64(arrays: Sequence[Any]) -> tuple[F64Array, ...]:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def _fast(
    p64: tuple[F64Array, ...],
    g64: tuple[F64Array, ...],
    st: State,
    config: Config,
    lay: tuple[tuple[int, ...], ...],
    check: bool,
) -> tuple[tuple[F64Array, ...], State, list[int]]:
    p, g, m, v = ([np.ravel(a) for a in arrays] for arrays in (p64, g64, st.m, st.v))
    t = st.step + 1
    if isinstance(config, AdamConfig):
        vmax = None if st.vmax is None else [np.ravel(a) for a in st.vmax]
        r = fast.adam_step(p, g, m, v, vmax, config, t, check)
    else:
        r = fast.setadam_step(p, g, m, v, config, lay, t, check)

    vmax_new = None if r.vmax is None else shaped_like(r.vmax, p64)
    new_state = State(t, shaped_like(r.m, p64), shaped_like(r.v, p64), vmax_new)
    return shaped_like(r.params, p64), new_state, r.suspects
