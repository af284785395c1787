"""A failing contract scenario names its stage and its cause (``conformance.contract_causes``).

The planted ports of ``contract_wrong`` (outside-style torch Adams, their own state names) are
rejected by their family; the diagnosis names the first stage over budget where the port's state
is read (``m`` for hoisted hyperparameters: group 1's betas and weight decay reach m) or the
best entry's stage where only the parameters disagree, and the contract's catalogue names the
cause, alone. Our torch SET-Adam records stage intermediates: in a contract scenario they are
compared for the parameters with a gradient, and it passes.

A skipped parameter counted in its layer (``WholeLayerSETAdam``, ``sparse_layers``) is the
entry ``skipped_counted_in_layer`` up to rounding (distance times the reference's worst budget
fraction <= 1, float64 and float32). Where the skipped parameter's v is 0 from the start (its
only regime in ``sparse_layers``), counting its stored v, counting zeros and stepping it with a
zero gradient are the same arithmetic: all three get the cause. A layer whose array stops after
two steps (``sparse_layers_stopped``: a carried v of its own) tells them apart: the stored v alone is
explained; zeros are farther from the entry than from the reference (measured 1.81 float64,
1.55 float32), and a stepped parameter moves where its budget is 0 (no cause).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance.contract_causes import ENTRIES, counted_skipped_step
from conformance.contract_reference import ArrayStates, contract_step
from conformance.reference_run import build_reference_for
from conformance.runner import check_port
from conformance.scenarios import get
from conformance.tests._factories import torch_factory
from conformance.tests.contract_wrong.cached_lr import CachedLRAdam
from conformance.tests.contract_wrong.eager_counter import EagerCountAdam
from conformance.tests.contract_wrong.group0_hyper import HoistedAdam
from conformance.tests.contract_wrong.layer_counts_all import (
    DenseGradSETAdam,
    WholeLayerSETAdam,
    ZeroFilledLayerSETAdam,
)
from conformance.tests.contract_wrong.layer_of_stateful import SeenLayerSETAdam
from conformance.tolerance import InputErrors
from conformance.wrong_ports.outside_kernels import GroupCountSETAdam
from setadam_ref import stage_names as N

CASES = [
    (HoistedAdam, "adam", "groups", N.M, "group0_hyperparameters", "compared m/v state"),
    (CachedLRAdam, "adam", "schedules", N.UPDATE, "lr_schedule_ignored", "inferred"),
    (EagerCountAdam, "adam", "sparse", N.UPDATE, "count_advanced_without_gradient", "inferred"),
    (GroupCountSETAdam, "setadam", "sparse", N.UPDATE, "count_advanced_without_gradient",
     "inferred"),
    (WholeLayerSETAdam, "setadam", "sparse_layers", N.DOWN_SCALING, "skipped_counted_in_layer",
     "inferred"),
    (SeenLayerSETAdam, "setadam", "sparse_layers_stopped", N.DOWN_SCALING,
     "skipped_counted_in_layer", "inferred"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "algorithm", "family", "stage", "cause", "basis"),
    CASES,
    ids=[c[0].__name__ for c in CASES],
)
def test_planted_contract_port_gets_its_stage_and_cause(
    cls: Any, algorithm: str, family: str, stage: str, cause: str, basis: str
) -> None:
    r = check_port(torch_factory(cls, "float64"), algorithm, None, [family], quick=True,
                   dtype="float64")  # fmt: skip
    assert r.verdict == "fail"
    assert r.stage == stage, r.diagnosis
    assert [c for c, *_ in r.likely_causes] == [cause], r.likely_causes
    diag = r.diagnosis or {}
    assert "contract" in diag["cause_basis"] and basis in diag["stage_basis"], diag


def test_a_correct_port_gets_no_contract_cause() -> None:
    """The harness's own conventions: torch.optim.Adam passes and nothing is ranked."""
    from conformance.adapters import torch_optim

    r = check_port(
        torch_optim.factory("Adam", "forloop", "float64", "cpu"), "adam", None,
        ["groups", "schedules", "sparse"], quick=True, dtype="float64",
        supports=torch_optim.supports("Adam"),
    )  # fmt: skip
    assert r.verdict == "pass" and not r.likely_causes, r.failures


def test_our_port_stages_are_compared_in_contract_scenarios() -> None:
    """Its stage records (NaN and a zero update for a skipped parameter) are compared in
    ``sparse_layers`` (a skipped array out of its layer) and ``groups``: it passes, and a
    contract scenario no longer says its stages are not compared."""
    from conformance.adapters import ours_torch

    r = check_port(
        ours_torch.factory("single", "float64", "cpu"), "setadam", None,
        ["groups", "sparse_layers"], quick=True, dtype="float64", supports=ours_torch.supports,
        diagnose=False,
    )  # fmt: skip
    assert [s.status for s in r.scenarios] == ["pass", "pass"], r.failures
    assert r.exposes_stages
    notes = " ".join(n for s in r.scenarios for n in s.notes)
    assert "stage intermediates of the parameters with a gradient compared" in notes


#: sparse_layers with array 1 frozen after step 2 (not before), a scenario of the family: from
#: step 3 it is skipped with the v of its two steps (a layer's arrays with a gradient keep one
#: count: re-synced)
STOPPED = "sparse_layers_stopped"


def _layer_check(cls: Any, scenario: Any, dtype: str) -> Any:
    return check_port(torch_factory(cls, dtype), "setadam", None, [scenario], quick=True,
                      dtype=dtype)  # fmt: skip


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scenario", ["sparse_layers", STOPPED], ids=["sparse_layers", "stopped"])
def test_whole_layer_port_is_the_entry_up_to_rounding(scenario: Any, dtype: str) -> None:
    """Its cause is this entry alone, top, at a distance that leaves E(entry) <= 1 budget."""
    r = _layer_check(WholeLayerSETAdam, scenario, dtype)
    assert r.verdict == "fail" and r.stage == N.DOWN_SCALING, r.diagnosis
    assert [c for c, *_ in r.likely_causes] == ["skipped_counted_in_layer"], r.likely_causes
    dist = r.likely_causes[0][1]
    worst = max(f.budget_fraction or 0.0 for f in r.failures if f.stage == N.PARAMS)
    assert dist < 0.5 and worst > 1e3  # a failure far outside: the distance is measured on it
    assert dist * worst <= 1.0 + 1e-9, (dist, worst)  # <= E(entry) / E(ref) * E(ref)


def test_zero_v_from_the_start_cannot_tell_stored_v_from_zeros() -> None:
    """sparse_layers: the three ways of counting a never-updated parameter are one arithmetic."""
    got = [_layer_check(c, "sparse_layers", "float64")
           for c in (WholeLayerSETAdam, ZeroFilledLayerSETAdam, DenseGradSETAdam)]  # fmt: skip
    assert all([c for c, *_ in r.likely_causes] == ["skipped_counted_in_layer"] for r in got)
    assert len({r.likely_causes[0][1] for r in got}) == 1, [r.likely_causes for r in got]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_carried_v_tells_the_neighbours_apart(dtype: str, monkeypatch: Any) -> None:
    """STOPPED: counting zeros for a skipped parameter with a v of its own is farther from the
    entry than from the reference; stepping it with a zero gradient moves it (budget 0)."""
    import conformance.contract_causes as CC

    zeros = _layer_check(ZeroFilledLayerSETAdam, STOPPED, dtype)
    dense = _layer_check(DenseGradSETAdam, STOPPED, dtype)
    assert zeros.verdict == dense.verdict == "fail"
    assert not zeros.likely_causes and not dense.likely_causes, (
        zeros.likely_causes,
        dense.likely_causes,
    )
    assert dense.stage == N.M and zeros.stage == N.PARAMS  # not inferred from an entry
    monkeypatch.setattr(CC, "CLEARLY_BETTER", math.inf)  # every distance, to measure it
    far = dict((c, d) for c, d, _ in _layer_check(ZeroFilledLayerSETAdam, STOPPED, dtype)
               .likely_causes)  # fmt: skip
    assert far["skipped_counted_in_layer"] > 1.0, far
    assert not _layer_check(DenseGradSETAdam, STOPPED, dtype).likely_causes


def test_correct_set_adam_gets_no_layer_cause() -> None:
    """Our torch SET-Adam (layer="group") passes both layer contracts: nothing is ranked."""
    from conformance.adapters import ours_torch

    r = check_port(
        ours_torch.factory("single", "float64", "cpu"), "setadam", None,
        ["sparse_layers", STOPPED, "sparse"], quick=True, dtype="float64",
        supports=ours_torch.supports,
    )  # fmt: skip
    assert [s.status for s in r.scenarios] == ["pass"] * 3, r.failures
    assert not r.likely_causes


def _run(scenario: Any, algorithm: str = "setadam") -> Any:
    sc = get(scenario) if isinstance(scenario, str) else scenario
    return build_reference_for(sc.problem(quick=True), sc.config(algorithm), "float64")


def test_the_entry_applies_only_where_a_layer_mixes() -> None:
    """True where a layer holds a non-empty array without gradient next to one with; not for
    one layer per array, not for Adam, not for an empty skipped array (it changes nothing)."""
    entry = next(d for d in ENTRIES if d.name == "skipped_counted_in_layer")
    assert entry.applies(_run("sparse_layers")) and entry.applies(_run(STOPPED))
    for name in ("sparse", "groups", "schedules"):
        assert not entry.applies(_run(name)), name
    assert not entry.applies(_run("sparse", "adam"))
    sc = get("sparse_layers")
    p = sc.problem(quick=True)
    empty = dataclasses.replace(
        p, params0=(p.params0[0], np.zeros(0), *p.params0[2:]),
        grads=tuple((g[0], np.zeros(0), *g[2:]) for g in p.grads),
    )  # fmt: skip
    assert not entry.applies(build_reference_for(empty, sc.config("setadam"), "float64"))


def test_the_replay_is_the_reference_but_for_the_mixed_layer() -> None:
    """Bitwise contract_step where no layer mixes (STOPPED, steps 1-2; layer (2, 3) always);
    in the mixed layer the skipped array keeps theta, m, v and its count."""
    rr = _run(STOPPED)
    assert rr.contract is not None
    p, st = rr.params[0], ArrayStates.zeros(rr.params[0], False)
    for t in range(1, rr.steps + 1):
        g = rr.grads[t - 1]
        z = InputErrors.zeros(rr.flat.size, False)
        ref = contract_step(rr.contract, rr.flat, t, p, st, g, "float64", "float64", z, z)
        got, nst = counted_skipped_step(rr.contract, rr.flat, t, p, st, g)
        same = [np.array_equal(a, b) for a, b in zip(got, ref.params, strict=True)]
        if t <= 2:
            assert all(same), t
        else:
            assert same == [False, True, True, True], t  # array 0 moved otherwise; 1 untouched
            assert got[1] is p[1] and nst.v[1] is st.v[1] and nst.steps[1] == 2
        p, st = ref.params, ref.states  # the reference's trajectory: one step each
