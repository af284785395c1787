"""``sparse_layers_stopped`` earns its place: a layer of the parameters that ever had a gradient.

``SeenLayerSETAdam`` (``contract_wrong.layer_of_stateful``: an outside SET-Adam, its moments in
a dict of its own keyed by (group, position), made at a parameter's first gradient) makes its
``layer="group"`` layer of the group's parameters that have moments, not of those with a
gradient now. The harness cannot find that state (a key its walker does not follow), so it
compares the port free-running only; there ``sparse_layers`` never gives the skipped array a
gradient, hence no moments, and passes it. ``sparse_layers_stopped`` (the same draws, array 1
stopped after step 2) rejects it from step 3, array 0, on the parameters, free-running, at
7.6e11 (float64) and 787 (float32) times the budget, and no older scenario does; the contract's
catalogue names ``skipped_counted_in_layer`` alone (``test_contract_causes``).

The twin keyed by the parameter is re-synced too: a reset steps every parameter once to make its
state, so the never-updated array gets moments (v = 0) and ``sparse_layers`` rejects the twin
re-synced only (step 1, 1.1e13 x budget float64), never free-running. The near miss
``LiveLayerSETAdam`` (layer = the parameters with a gradient now) passes; our torch SETAdam
passes on every CPU path (``test_contract_families.test_our_torch_setadam_passes`` runs every
contract scenario); our JAX port and torch.optim Adam skip the scenario, with the reason.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get, select
from conformance.tests._factories import torch_factory
from conformance.tests._older import check_planted, older
from conformance.tests.contract_wrong.layer_of_stateful import (
    LiveLayerSETAdam,
    SeenLayerByParamSETAdam,
    SeenLayerSETAdam,
)
from setadam_ref import stage_names as N

STOPPED = "sparse_layers_stopped"
OLDER = older()  # the --quick subset (less the scale families) and every contract scenario
PAIR = ("sparse_layers", STOPPED)


def _statuses(r: PortResult) -> dict[str, str]:
    return {s.scenario: s.status for s in r.scenarios}


def test_the_scenario_is_listed_in_the_default_run_not_in_quick() -> None:
    sc = get(STOPPED)
    assert sc.algorithms == ("setadam",) and "contract" in sc.tags and not sc.opt_in
    assert STOPPED in {s.name for s in select()} and STOPPED in OLDER
    assert STOPPED not in {s.name for s in select(quick=True)}
    p, q = get("sparse_layers").problem(quick=True), sc.problem(quick=True)
    assert p.layers == q.layers and p.groups == q.groups and p.active != q.active
    assert q.active is not None and [a[1] for a in q.active] == [True, True, False, False]


@pytest.mark.parametrize(("dtype", "least"), [("float64", 1e6), ("float32", 1e2)])
def test_seen_layer_port_is_rejected_by_the_stopped_scenario_only(dtype: str, least: float) -> None:
    r = check_planted(SeenLayerSETAdam, dtype, OLDER)
    st = _statuses(r)
    # quadratic: a closed loop, compared free-running only without a state to reset: not judged
    assert st == {**dict.fromkeys(OLDER, "pass"), STOPPED: "fail", "quadratic": "not_judged"}, st
    assert all("no entry of the port's state behaves like m and v" in s.reason
               for s in r.scenarios)  # fmt: skip
    mine = [f for f in r.failures if f.scenario == STOPPED]
    assert mine and all(f.kind == "tolerance" and f.mode == "free" for f in mine)
    first = min(mine, key=lambda f: f.step or 0)
    assert (first.stage, first.mode, first.step, first.array) == (N.PARAMS, "free", 3, 0)
    assert max(f.budget_fraction or 0.0 for f in mine) > least  # 7.6e11 / 787 measured


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_its_cause_is_the_layer_entry_up_to_rounding(dtype: str) -> None:
    r = check_port(torch_factory(SeenLayerSETAdam, dtype), "setadam", None, [STOPPED], quick=True,
                   dtype=dtype)  # fmt: skip
    assert r.verdict == "fail" and r.stage == N.DOWN_SCALING, r.diagnosis
    assert [c for c, *_ in r.likely_causes] == ["skipped_counted_in_layer"], r.likely_causes
    dist = r.likely_causes[0][1]
    worst = max(f.budget_fraction or 0.0 for f in r.failures if f.stage == N.PARAMS)
    assert dist * worst <= 1.0 + 1e-9, (dist, worst)  # E(entry) <= 1: its stored v, counted


def test_keyed_by_parameter_sparse_layers_catches_it_resynced_only() -> None:
    """A reset makes moments for every parameter: the never-updated array (v = 0) is counted at
    each re-synced step of sparse_layers; free-running it never has moments and passes."""
    r = check_planted(SeenLayerByParamSETAdam, "float64", PAIR)
    assert _statuses(r) == dict.fromkeys(PAIR, "fail")
    old = [f for f in r.failures if f.scenario == "sparse_layers"]
    assert old and {f.mode for f in old} == {"resync"}
    assert min(f.step or 0 for f in old) == 1
    new = [f for f in r.failures if f.scenario == STOPPED and f.mode == "free"]
    assert new and min(f.step or 0 for f in new) == 3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_near_miss_passes(dtype: str) -> None:
    r = check_planted(LiveLayerSETAdam, dtype, OLDER)
    assert _statuses(r) == dict.fromkeys(OLDER, "pass"), r.failures
    assert not any(s.reason for s in r.scenarios)  # re-synced and free-running, all judged


def test_ports_without_a_layer_of_tensors_skip_it_with_the_reason() -> None:
    pytest.importorskip("optax")
    from conformance.adapters import ours_jax, torch_optim

    jx = check_port(ours_jax.factory("float64", "cpu"), "setadam", None, list(PAIR), quick=True,
                    dtype="float64", supports=ours_jax.supports, diagnose=False)  # fmt: skip
    assert _statuses(jx) == dict.fromkeys(PAIR, "skip")
    assert all("one SET-Adam layer per leaf" in s.reason for s in jx.scenarios)
    ad = check_port(torch_optim.factory("Adam", "forloop", "float64", "cpu"), "adam", None,
                    list(PAIR), quick=True, dtype="float64", supports=torch_optim.supports("Adam"),
                    diagnose=False)  # fmt: skip
    assert _statuses(ad) == dict.fromkeys(PAIR, "skip")
    assert all("does not apply to adam" in s.reason for s in ad.scenarios)
