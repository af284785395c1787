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

from .adam import adam_step
from .arrays import F64Array, as_float64_tuple
from .blocks import split
from .config import AdamConfig, Config, SETAdamConfig
from .errors import NonFiniteError
from .flat import FlatStep
from .layers import validate_layers
from .setadam import setadam_step
from .state import State
from .trace import Trace

NonFinite = Literal["raise", "ieee"]


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


def _raise_nonfinite(
    flat: FlatStep,
    suspect: Sequence[bool],
    t: int,
    state: State,
    config: Config,
    vmax_out: Sequence[F64Array] | None,
) -> None:
    """Find and report what made the suspect blocks non-finite; return if nothing was.

    In order: a non-finite input (gradients, parameters, or the state given, which then already
    held NaN or an infinity); Adam's 0/0 where eps = eps_root = 0 meets a zero second moment;
    only then float64 overflow from finite inputs."""
    arrays = sorted({b.array for b, bad in zip(split(flat.sizes), suspect) if bad})

    def count(a: F64Array) -> int:
        return int(a.size - np.count_nonzero(np.isfinite(a)))

    for i in arrays:
        for what, a in (("grads", flat.g[i]), ("params", flat.p[i])):
            if bad := count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))
        for k in ("m", "v", "vmax"):
            held = getattr(state, k)
            if held is not None and (bad := count(np.ravel(held[i]))):
                kind = "NaN" if np.isnan(held[i]).any() else "an infinity"
                raise NonFiniteError(
                    f"state.{k}", i, t, bad, int(np.size(held[i])),
                    f"state holds {kind} in {k} of array {i} ({bad} of {np.size(held[i])} "
                    f"entries) before step t={t}",
                )  # fmt: skip
    if isinstance(config, AdamConfig) and config.eps == 0.0 and config.eps_root == 0.0:
        for i in arrays:
            second = vmax_out[i] if vmax_out is not None else flat.v_out[i]
            if bad := int(np.count_nonzero(~np.isfinite(flat.p_out[i]) & (second == 0.0))):
                raise NonFiniteError(
                    "params after the step", i, t, bad, int(flat.p_out[i].size),
                    f"Adam with eps = eps_root = 0 divides 0 by 0 at step t={t}: params[{i}] "
                    f"has {bad} coordinates whose second moment is zero (a zero gradient)",
                )  # fmt: skip
    for i in arrays:
        # Finite inputs, non-finite result: float64 itself overflowed.
        for what, a in (
            ("v (overflowed float64 from finite gradients)", flat.v_out[i]),
            ("params after the step (overflowed float64)", flat.p_out[i]),
        ):
            if bad := count(a):
                raise NonFiniteError(what, i, t, bad, int(a.size))


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
    """
    if nonfinite not in ("raise", "ieee"):
        raise ValueError(f"nonfinite must be 'raise' or 'ieee', got {nonfinite!r}")
    if not isinstance(config, (AdamConfig, SETAdamConfig)):
        raise TypeError(f"config must be AdamConfig or SETAdamConfig, got {type(config).__name__}")
    p64 = as_float64_tuple(params, "params")
    g64 = as_float64_tuple(grads, "grads")
    _check_shapes(p64, g64, state, config)
    lay = validate_layers(layers, len(p64))
    t = int(state.step) + 1
    flat = FlatStep(
        shapes=tuple(p.shape for p in p64),
        p=[np.ravel(p) for p in p64],
        g=[np.ravel(g) for g in g64],
        m=[np.ravel(np.asarray(m, dtype=np.float64)) for m in state.m],
        v=[np.ravel(np.asarray(v, dtype=np.float64)) for v in state.v],
        p_out=[np.empty(p.size) for p in p64],
        m_out=[np.empty(p.size) for p in p64],
        v_out=[np.empty(p.size) for p in p64],
        check_finite=nonfinite == "raise",
    )
    vmax_new: tuple[F64Array, ...] | None = None
    vmax_out: list[F64Array] | None = None
    tr: Trace | None
    with np.errstate(all="ignore"):
        if isinstance(config, AdamConfig):
            vmax_in = None if state.vmax is None else [np.ravel(a) for a in state.vmax]
            vmax_out = None if vmax_in is None else [np.empty(a.size) for a in vmax_in]
            suspect, tr = adam_step(flat, vmax_in, vmax_out, config, t, trace)
            if vmax_out is not None:
                vmax_new = flat.shaped(vmax_out)
        else:
            suspect, _, tr = setadam_step(flat, config, lay, t, trace)
    if any(suspect):
        _raise_nonfinite(flat, suspect, t, state, config, vmax_out)
    new_state = State(step=t, m=flat.shaped(flat.m_out), v=flat.shaped(flat.v_out), vmax=vmax_new)
    return flat.shaped(flat.p_out), new_state, tr
