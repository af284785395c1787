"""The systematic test's floor in a contract scenario is each group's, and a float64 floor is not 0.

Found by ``setadam-conformance fuzz ours.jax.setadam --seed 51`` (290 cases, then shrunk): zero
gradients, group 0 without weight decay, group 1 (lr 1e-3) with decoupled decay 0.01, so the
step of group 1 is the decay alone. optax's order (theta - lr lambda theta) and torch's
(theta (1 - lr lambda), the reference's) differ by the rounding of 1 - lr lambda, the same at
every coordinate: a legitimate systematic shift of 4.6e-12 of the step, rejected as "beyond the
floor +-0". Two causes, both fixed: the floor of a contract step was formed from the run's
config (group 0's: no decay factor at all), and ``systematic_floor._rel`` formed
prod(1 + r) - 1 in float64, where 1 + 2^-53 = 1 drops a float64 scalar's one rounding (the floor
of the decay factor came out 0 in any float64 run).
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.fuzz.cases import Case
from conformance.reference_run import build_reference
from conformance.runner import check_port
from conformance.systematic_floor import _rel
from setadam_ref import SETAdamConfig

U64 = 2.0**-53

#: the shrunk fuzz case (seed 331 of the session's draws)
CASE = Case(
    "setadam", ((1,), (1,), (1,), (2049,)), ("zero",) * 4, (0, 0, 0, 1), (), 9, 331,
    (((0, 1), (("lr", 0.1), ("eps", 1e-8), ("tau", 0.5), ("weight_decay", 0.0),
                ("weight_decay_mode", "decoupled"))),
     ((2, 3), (("lr", 0.001), ("eps", 1e-8), ("tau", 0.5), ("weight_decay", 0.01),
                ("weight_decay_mode", "decoupled")))),
)  # fmt: skip


def test_a_float64_unit_roundoff_survives_composition() -> None:
    assert _rel(U64) == U64
    assert _rel(U64, U64) >= 2 * U64
    assert _rel(U64, 0.0, U64, U64) >= 3 * U64
    assert _rel(0.5, 0.5) == 1.25  # (1.5)(1.5) - 1: the product itself, not a sum


def test_the_contract_floor_is_formed_per_group() -> None:
    """Group 1's coordinates get the decay factor's floor; group 0's (no decay, zero gradient,
    so m = 0 and nothing else is common) get none."""
    sc = CASE.scenario()
    rr = build_reference(sc, sc.config("setadam", SETAdamConfig()), "float64")
    assert rr.resync
    for rs in rr.resync.values():
        assert rs.floor is not None
        assert not np.any(rs.floor[:2])
        assert np.all(rs.floor[2:] > 0)
        # at least one rounding of the factor per unit |theta|, at most a few
        scaled = rs.floor[3:] / np.abs(rs.ref.theta0[3:])
        assert np.all(scaled >= U64) and np.all(scaled <= 16 * U64)


def test_optax_order_decay_in_a_later_group_is_no_false_alarm() -> None:
    """Our JAX port (optax's order) on the case: passes; before the fix, a systematic failure."""
    pytest.importorskip("optax")
    from conformance.adapters import ours_jax

    r = check_port(ours_jax.factory("float64", "cpu"), "setadam", None, [CASE.scenario()],
                   quick=True, dtype="float64", diagnose=False)  # fmt: skip
    assert r.verdict == "pass", r.message
    sv = r.systematic
    assert sv is not None and sv["tests_run"] >= 1 and sv["rejected"] == 0, sv
