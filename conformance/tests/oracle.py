"""The tests' shared oracle: a port's trajectory judged by the project's tolerance model.

Tests of our ports used to carry private SET-Adam re-implementations, each with an ad-hoc
``rtol``. They now hand what the port produced to :func:`assert_within_budget`, which runs the
reference free-running on the same inputs (rounded to the port's dtype, as the port received
them) and checks every step against the budget of ``conformance.tolerance``: the one definition
and the one tolerance model the harness itself uses. A test that keeps an independent
re-implementation on purpose says why next to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from conformance.compare import compare_quantity
from conformance.reference_run import build_reference_for
from conformance.scenarios import Problem
from setadam_ref import Config


@dataclass(frozen=True)
class BudgetReport:
    """Worst budget fraction (<= 1 passes) and error in ulps per compared quantity."""

    worst_fraction: dict[str, float]
    worst_ulps: dict[str, float]
    steps: int

    @property
    def fraction(self) -> float:
        return max(self.worst_fraction.values(), default=0.0)


def assert_within_budget(
    config: Config,
    params0: Sequence[np.ndarray],
    grad_steps: Sequence[Sequence[np.ndarray]],
    port_params: Sequence[Sequence[np.ndarray]],
    dtype: str,
    *,
    layers: Sequence[Sequence[int]] | None = None,
    port_m: Sequence[Sequence[np.ndarray]] | None = None,
    port_v: Sequence[Sequence[np.ndarray]] | None = None,
    state_dtype: str | None = None,
    label: str = "port",
) -> BudgetReport:
    """Assert that ``port_params[k]`` (the port's parameters after step k + 1, any array type
    convertible to float64) is within the tolerance model's free-running budget of the reference
    run from ``params0`` with gradients ``grad_steps``; likewise ``port_m``/``port_v`` (judged in
    ``state_dtype``, default ``dtype``). Returns the worst fractions; raises ``AssertionError``
    naming the step, quantity, array and coordinate of the first violation.
    """
    steps = len(grad_steps)
    if len(port_params) != steps:
        raise ValueError(f"{len(port_params)} parameter snapshots for {steps} steps")
    problem = Problem(
        params0=tuple(np.asarray(p, dtype=np.float64) for p in params0),
        steps=steps,
        grads=tuple(tuple(np.asarray(g, dtype=np.float64) for g in gs) for gs in grad_steps),
        layers=None if layers is None else tuple(tuple(int(i) for i in lay) for lay in layers),
    )
    sdt = state_dtype or dtype
    rr = build_reference_for(problem, config, dtype, sdt, name=label)
    if rr.error is not None:
        raise AssertionError(f"{label}: {rr.error}")
    flat = rr.flat
    worst: dict[str, float] = {}
    ulps: dict[str, float] = {}
    for t in range(1, steps + 1):
        bounds = rr.free_bounds[t - 1]
        checks: list[tuple[str, Sequence[np.ndarray], np.ndarray, str]] = [
            ("params", port_params[t - 1], flat.cat(rr.params[t]), dtype)
        ]
        if port_m is not None:
            checks.append(("m", port_m[t - 1], flat.cat(rr.states[t].m), sdt))
        if port_v is not None:
            checks.append(("v", port_v[t - 1], flat.cat(rr.states[t].v), sdt))
        for q, got, ref, qdt in checks:
            port = flat.cat([np.asarray(a, dtype=np.float64) for a in got])
            meas = compare_quantity(q, port, ref, bounds[q], qdt, flat, t)
            w = meas.worst
            worst[q] = max(worst.get(q, 0.0), w.fraction)
            ulps[q] = max(ulps.get(q, 0.0), w.ulps)
            if meas.n_fail or meas.n_nonfinite:
                raise AssertionError(
                    f"{label} ({dtype}): {q} over budget at step {t}, array {w.array} index "
                    f"{w.index}: port {w.port_value!r}, reference {w.ref_value!r}, budget "
                    f"{w.budget:.3g} ({w.fraction:.3g} x budget, {w.ulps:.3g} ulps; "
                    f"{meas.n_fail} coordinates over, {meas.n_nonfinite} non-finite)"
                )
    return BudgetReport(worst, ulps, steps)
