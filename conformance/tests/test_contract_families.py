"""The contract families (groups, schedules, sparse, layers): each earns its place, ports pass, skips say why.

A planted port per family (``conformance.tests.contract_wrong``: an outside implementer's torch
Adam with its own state names and containers, one contract bug each) is rejected by its family,
at a named stage and mode, and by no other scenario of the list: the older dense, single-group,
constant-lr scenarios pass it, so only the new family catches the bug. torch.optim Adam/AdamW and
our torch SETAdam pass every family they support; the reference of a one-group dense contract is
bitwise the plain reference; what a port cannot take is skipped with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance.contract import GroupSpec
from conformance.reference_run import build_reference_for
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import CONTRACT, Problem, get, select
from conformance.tests._factories import torch_factory
from conformance.tests._numpy_ports import NumpySETAdam
from conformance.tests.contract_wrong.cached_lr import CachedLRAdam
from conformance.tests.contract_wrong.eager_counter import EagerCountAdam
from conformance.tests.contract_wrong.group0_hyper import HoistedAdam
from conformance.tests.contract_wrong.layer_counts_all import WholeLayerSETAdam
from conformance.tests.contract_wrong.layer_of_stateful import SeenLayerSETAdam
from setadam_ref import AdamConfig, SETAdamConfig

#: the older scenarios a planted port must pass (dense, one group, constant lr; weight decay)
OLDER = {"adam": ["normal", "weight_decay_l2", "zero_layers"],
         "setadam": ["normal", "zero_layers", "tau_0.9"]}  # fmt: skip
FAMILIES = ["groups", "schedules", "sparse"]
LAYERS = ["sparse_layers", "sparse_layers_stopped"]
#: a planted port, its algorithm and the scenarios that reject it (a layer counting an array
#: without gradient: both layer scenarios; one counting the arrays that ever had one: the
#: second only, where array 1 stops after gradients of its own)
PLANTED = [
    (HoistedAdam, "adam", ("groups",)),
    (CachedLRAdam, "adam", ("schedules",)),
    (EagerCountAdam, "adam", ("sparse",)),
    (WholeLayerSETAdam, "setadam", tuple(LAYERS)),
    (SeenLayerSETAdam, "setadam", ("sparse_layers_stopped",)),
]


def _statuses(r: PortResult) -> dict[str, str]:
    return {s.scenario: s.status for s in r.scenarios}


@pytest.mark.parametrize(("cls", "algorithm", "rejecting"), PLANTED,
                         ids=[c.__name__ for c, *_ in PLANTED])  # fmt: skip
def test_planted_port_rejected_by_its_family_only(
    cls: Any, algorithm: str, rejecting: tuple[str, ...]
) -> None:
    families = FAMILIES + (LAYERS if algorithm == "setadam" else [])
    r = check_port(
        torch_factory(cls, "float64"), algorithm, None, OLDER[algorithm] + families, quick=True,
        dtype="float64", diagnose=False,
    )  # fmt: skip
    st = _statuses(r)
    assert st == {**dict.fromkeys(st, "pass"), **dict.fromkeys(rejecting, "fail")}, st
    for family in rejecting:
        mine = [f for f in r.failures if f.scenario == family]
        assert mine and all(f.kind == "tolerance" for f in mine)
        # the stage and mode are named; parameters are off by orders of magnitude over the budget
        worst = max(mine, key=lambda f: f.budget_fraction or 0.0)
        assert worst.stage in ("params", "m", "v") and worst.mode in ("resync", "free")
        assert (worst.budget_fraction or 0.0) > 1e6, worst.message


def test_sparse_bug_shows_where_the_counts_part() -> None:
    """The eager counter is wrong first at step 3, array 1 (its first step after a skipped one),
    free-running: the re-synced steps of ``sparse`` give all participating arrays one count."""
    r = check_port(
        torch_factory(EagerCountAdam, "float64"), "adam", None, ["sparse"], quick=True,
        dtype="float64", diagnose=False,
    )  # fmt: skip
    first = min((f for f in r.failures if f.stage == "params"), key=lambda f: f.step or 0)
    assert (first.mode, first.step, first.array) == ("free", 3, 1), first.message
    notes = " ".join(r.scenarios[0].notes)
    assert "re-synced steps [3, 5] not compared" in notes


@pytest.mark.parametrize(
    ("kind", "path", "dtype", "scenarios"),
    [
        ("Adam", "forloop", "float64", ["groups", "schedules", "sparse"]),
        ("Adam", "fused", "float32", ["groups", "schedules", "sparse"]),
        ("AdamW", "foreach", "float32", ["groups_decoupled", "schedules"]),
    ],
)
def test_torch_optim_passes(kind: str, path: str, dtype: str, scenarios: list[str]) -> None:
    from conformance.adapters import torch_optim

    r = check_port(
        torch_optim.factory(kind, path, dtype, "cpu"), "adam", None, scenarios, quick=True,
        dtype=dtype, supports=torch_optim.supports(kind), diagnose=False,
    )  # fmt: skip
    assert _statuses(r) == dict.fromkeys(scenarios, "pass"), [s.reason for s in r.scenarios]


@pytest.mark.parametrize(
    ("path", "dtype"),
    [("single", "float64"), ("foreach", "float32"), ("numba", "float64"), ("numba", "float32")],
)
def test_our_torch_setadam_passes(path: str, dtype: str) -> None:
    from conformance.adapters import ours_torch

    if path == "numba":
        pytest.importorskip("numba", reason="numba (the optional extra) not installed")
    names = [s.name for s in CONTRACT]
    r = check_port(
        ours_torch.factory(path, dtype, "cpu"), "setadam", None, names, quick=True, dtype=dtype,
        supports=ours_torch.supports, diagnose=False,
    )  # fmt: skip
    assert _statuses(r) == dict.fromkeys(names, "pass"), [s.reason for s in r.scenarios]


def test_per_group_config_is_checked_and_skipped_with_reason() -> None:
    """torch.optim.AdamW takes decoupled weight decay only: the groups with l2 decay are named."""
    from conformance.adapters import torch_optim

    r = check_port(
        torch_optim.factory("AdamW", "forloop", "float64", "cpu"), "adam", None, ["groups"],
        dtype="float64", supports=torch_optim.supports("AdamW"), diagnose=False, quick=True,
    )  # fmt: skip
    (s,) = r.scenarios
    assert s.status == "skip" and "param group 0" in s.reason and "decoupled" in s.reason


def test_port_without_configure_is_skipped_with_reason() -> None:
    r = check_port(
        lambda cfg: NumpySETAdam(cfg), "setadam", None, ["normal", *FAMILIES], quick=True,
        dtype="float64", diagnose=False,
    )  # fmt: skip
    st = _statuses(r)
    assert st["normal"] == "pass"
    for s in r.scenarios[1:]:
        assert s.status == "skip" and "has no configure()" in s.reason, s.reason
    assert "param groups" in r.scenarios[1].reason and "lr changed" in r.scenarios[2].reason


@pytest.mark.parametrize("config", [AdamConfig(lr=1e-2), SETAdamConfig(lr=1e-2)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_dense_group_is_bitwise_the_plain_reference(config: Any, dtype: str) -> None:
    p = get("normal").problem(quick=True)
    q = dataclasses.replace(p, groups=(GroupSpec(tuple(range(len(p.params0)))),))
    a, b = build_reference_for(p, config, dtype), build_reference_for(q, config, dtype)
    assert a.contract is None and b.contract is not None
    for x, y in zip(a.params, b.params, strict=True):
        assert all(np.array_equal(u, w) for u, w in zip(x, y, strict=True))
    for ba, bb in zip(a.free_bounds, b.free_bounds, strict=True):
        for k in ("params", "m", "v", "update"):
            np.testing.assert_array_equal(ba[k], bb[k])
    assert a.resync.keys() == b.resync.keys()
    for t in a.resync:
        np.testing.assert_array_equal(a.resync[t].bounds["params"], b.resync[t].bounds["params"])
        np.testing.assert_array_equal(a.resync[t].ref.theta1, b.resync[t].ref.theta1)


def _two_array_layer(active: tuple[tuple[bool, ...], ...]) -> Problem:
    rng = np.random.default_rng(0)
    shapes = [(3,), (4,)]
    grads = tuple(tuple(rng.standard_normal(s) for s in shapes) for _ in active)
    params = tuple(rng.standard_normal(s) for s in shapes)
    return Problem(params, len(active), grads=grads, layers=((0, 1),), active=active)


def test_skipped_array_does_not_count_in_its_layer() -> None:
    """Array 1 without gradient at step 1: the layer's statistics are array 0's alone (the same
    as a one-array problem), array 1 keeps theta, m, v and its count."""
    prob = _two_array_layer(((True, False),))
    rr = build_reference_for(prob, SETAdamConfig(lr=1e-2), "float64")
    alone = Problem(prob.params0[:1], 1, grads=((prob.grads[0][0],),) if prob.grads else None)
    ra = build_reference_for(alone, SETAdamConfig(lr=1e-2), "float64")
    np.testing.assert_array_equal(rr.params[1][0], ra.params[1][0])
    np.testing.assert_array_equal(rr.params[1][1], prob.params0[1])
    assert not rr.states[1].v[1].any() and rr.resync[1].bounds["params"][3:].max() == 0.0


def test_layer_with_different_counts_is_refused() -> None:
    rr = build_reference_for(
        _two_array_layer(((True, False), (True, True))), SETAdamConfig(), "float64"
    )
    assert rr.error is not None and "different step counts" in rr.error


def test_layer_across_groups_is_refused() -> None:
    p = _two_array_layer(((True, True),))
    q = dataclasses.replace(p, active=None, groups=(GroupSpec((0,)), GroupSpec((1,))))
    with pytest.raises(ValueError, match="spans param groups"):
        build_reference_for(q, SETAdamConfig(), "float64")


def test_families_listed_tagged_and_one_in_quick() -> None:
    names = {"groups", "groups_decoupled", "schedules", "schedules_tensor_lr", "sparse",
             "sparse_layers", "sparse_layers_stopped"}  # fmt: skip
    assert {s.name for s in CONTRACT} == names
    assert all("contract" in s.tags for s in CONTRACT)
    assert [s.name for s in select(quick=True) if s in CONTRACT] == ["groups"]
    assert {s.name for s in CONTRACT} <= {s.name for s in select()}


def test_our_jax_setadam_takes_groups_and_schedules() -> None:
    """JAX: groups as optax.multi_transform (set_to_zero for the frozen group), the lr as a
    schedule of the count; absent gradients on some steps only are skipped with optax's reason."""
    pytest.importorskip("optax")
    from conformance.adapters import ours_jax

    r = check_port(
        ours_jax.factory("float64", "cpu"), "setadam", None, FAMILIES, quick=True,
        dtype="float64", supports=ours_jax.supports, diagnose=False,
    )  # fmt: skip
    st = _statuses(r)
    assert st["groups"] == st["schedules"] == "pass", [s.reason for s in r.scenarios]
    assert st["sparse"] == "skip" and "optax has no absent gradient" in r.scenarios[2].reason


def test_torch_port_is_driven_by_a_real_lr_scheduler() -> None:
    """Free-running: a ``LambdaLR`` steps the groups' lr; re-synced to step s: ``group["lr"]``
    is the base lr times f_{s+1}."""
    from torch.optim.lr_scheduler import LambdaLR

    from conformance.adapters import torch_optim
    from conformance.contract import contract_of

    sc = get("schedules")
    prob, cfg = sc.problem(quick=True), sc.config("adam")
    contract = contract_of(prob, cfg)
    assert contract is not None and contract.lr_factors is not None
    port = torch_optim.factory("Adam", "forloop", "float64", "cpu")(cfg)
    port.configure(contract)
    port.reset(prob.params0)
    assert isinstance(port._sched, LambdaLR)
    for t in (1, 2):
        assert port._opt.param_groups[0]["lr"] == cfg.lr * contract.lr_factors[t - 1]
        port.step(prob.grads[t - 1] if prob.grads else ())
    state = build_reference_for(prob, cfg, "float64").resync[3].state
    port.reset(prob.params0, state)
    assert port._sched is None
    assert port._opt.param_groups[0]["lr"] == cfg.lr * contract.lr_factors[2]


def test_optax_inject_hyperparams_takes_the_schedule() -> None:
    """``optax.inject_hyperparams(optax.adam)(learning_rate=schedule)``: the schedule evaluated
    into the transformation's state at each count; re-synced and free-running pass."""
    optax = pytest.importorskip("optax")
    from conformance.adapters._jax import OptaxPort

    def make_for(c: Any, lr: Any) -> Any:
        b1, b2 = c.betas
        adam = optax.inject_hyperparams(optax.adam)
        return adam(learning_rate=lr, b1=b1, b2=b2, eps=c.eps, eps_root=c.eps_root)

    def factory(cfg: Any) -> Any:
        return OptaxPort(
            "optax.adam[inject_hyperparams]", lambda: make_for(cfg, cfg.lr), "float64", "cpu",
            betas=cfg.betas, make_for=make_for,
        )  # fmt: skip

    r = check_port(factory, "adam", None, ["schedules"], quick=True, dtype="float64")
    (s,) = r.scenarios
    assert s.status == "pass" and not s.reason, s.reason  # re-synced too


def test_a_step_without_any_gradient_under_a_schedule_is_no_false_alarm() -> None:
    """Step 2 gives no array a gradient, with the lr changed every step: torch's scheduler
    advances there, the arrays' step counts do not, so at steps 3 and 4 a reset (one count,
    1 and 2) cannot place the schedule (f_3, f_4): those re-synced steps are not compared, with
    the reason, and torch.optim.Adam passes (found by the fuzzer: it failed re-synced there)."""
    from conformance.adapters import torch_optim
    from conformance.scenarios import Scenario

    rng = np.random.default_rng(3)
    shapes = [(3,), (4,)]
    active = ((True, True), (False, False), (True, True), (True, True))
    grads = tuple(tuple(rng.standard_normal(s) for s in shapes) for _ in active)
    prob = Problem(tuple(rng.standard_normal(s) for s in shapes), 4, grads=grads,
                   active=active, lr_factors=(1.0, 0.5, 0.25, 0.125))  # fmt: skip
    rr = build_reference_for(prob, AdamConfig(lr=1e-2), "float64")
    assert rr.error is None
    assert sorted(rr.resync) == [1, 2] and any("schedule's position" in n for n in rr.notes)
    sc = Scenario("gradient_free_step", "a step without any gradient, lr scheduled",
                  lambda _rng, _steps: prob, steps=4, quick_steps=4, seed=3, hyper={"lr": 1e-2},
                  algorithms=("adam",), tags=("contract",))  # fmt: skip
    r = check_port(torch_optim.factory("Adam", "forloop", "float64", "cpu"), "adam", None, [sc],
                   dtype="float64", supports=torch_optim.supports("Adam"), diagnose=False)  # fmt: skip
    assert _statuses(r) == {"gradient_free_step": "pass"}, [s.reason for s in r.scenarios]
