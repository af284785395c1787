"""What the ranking is given about one re-synced step of a port, and how to build it.

The harness builds ``StepEvidence`` from its reference run (``conformance.reference_run``), whose
``ResyncStep.bounds`` are the tolerance model's budgets of that step; ``step_evidence`` computes
the same budgets for inputs given directly (tests, scripts, the Python API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

import setadam_ref as R
from setadam_ref.config import Config
from setadam_ref.state import State

from ..layout import Flat
from ..tolerance import StepRef, comparison_bounds

#: the channels the ranking compares, with their budget keys (names of ``setadam_ref.stage_names``)
CHANNELS: tuple[str, ...] = ("params", "m", "v")


class StepEvidence(NamedTuple):
    """One re-synced step of a port: its inputs, its outputs, and the step's budgets.

    ``params``, ``grads``, ``state``: exactly as given to the port (already rounded to its dtype),
    float64 arrays; ``port_params``: the port's $\\theta_t$; ``port_m``, ``port_v``: its moments
    after the step, when it exposes them; ``budgets``: flat per-coordinate absolute budgets of
    $|\\text{port} - \\text{reference}|$ for ``"params"``, ``"m"``, ``"v"``
    (``conformance.tolerance``, as in ``ResyncStep.bounds``). ``scenario``, ``config`` and
    ``layers``: where the step comes from, when evidence of several scenarios is ranked together
    (with ``config`` ``None``, the configuration and layering given to ``rank`` apply).
    """

    params: tuple[np.ndarray, ...]
    grads: tuple[np.ndarray, ...]
    state: State
    port_params: tuple[np.ndarray, ...]
    port_m: tuple[np.ndarray, ...] | None
    port_v: tuple[np.ndarray, ...] | None
    budgets: Mapping[str, np.ndarray]
    scenario: str = ""
    config: Config | None = None
    layers: Sequence[Sequence[int]] | None = None


def step_evidence(
    params: Sequence[Any],
    grads: Sequence[Any],
    state: State,
    config: Config,
    layers: Sequence[Sequence[int]] | None,
    dtype: str,
    port_params: Sequence[Any],
    port_m: Sequence[Any] | None = None,
    port_v: Sequence[Any] | None = None,
) -> StepEvidence:
    """``StepEvidence`` of one step from its inputs and a port's outputs, with the tolerance
    model's budgets for a port in ``dtype``, computed as the harness's reference run does."""

    def f64(xs: Sequence[Any]) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(x, dtype=np.float64) for x in xs)

    p, g = f64(params), f64(grads)
    flat = Flat.make([np.shape(a) for a in p], layers)
    new, _, tr = R.step(p, g, state, config, layers, trace=True, nonfinite="ieee")
    assert tr is not None
    ref = StepRef.from_trace(flat, p, state, new, tr)
    with np.errstate(invalid="ignore"):  # empty layers: the model's inf - inf, mapped to 0 there
        bounds = comparison_bounds(config, ref, flat, dtype)[0]
    return StepEvidence(
        p,
        g,
        state,
        f64(port_params),
        None if port_m is None else f64(port_m),
        None if port_v is None else f64(port_v),
        {k: bounds[k] for k in CHANNELS},
    )
