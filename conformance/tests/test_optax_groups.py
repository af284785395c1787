"""optax param groups (``multi_transform``) are found per group and re-synced; planted kits fail.

The adapter builds the ``groups`` contract as ``optax.multi_transform`` (a transformation per
group, ``set_to_zero`` for the frozen arrays): each group's state holds its own arrays only and
its own count. ``state_discovery.discover_groups`` finds m and v of an array in the group that
owns it, the counters per group, no state for a frozen array. An outside implementer's kit
(``conformance.tests.optax_kit``: own transformation, own state names) passes re-synced; its
shadow-v variant fails re-synced only; its hoisted-eps builder fails in ``groups`` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("optax")

from conformance.adapters import optax_adapter
from conformance.adapters._jax import OptaxPort
from conformance.contract import contract_of
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get
from conformance.tests import optax_kit
from setadam_ref import AdamConfig

FAMILIES = ["groups", "groups_decoupled", "schedules"]


def _kit(make_for: Any) -> Any:
    def factory(cfg: AdamConfig) -> OptaxPort:
        return OptaxPort(
            "kit.adam", lambda: make_for(cfg, cfg.lr), "float64", "cpu", betas=cfg.betas,
            make_for=make_for,
        )  # fmt: skip

    return factory


def _check(factory: Any, scenarios: list[str], algorithm: str = "adam") -> PortResult:
    return check_port(factory, algorithm, None, scenarios, quick=True, dtype="float64",
                      diagnose=False)  # fmt: skip


def _port(name: str, factory: Any) -> tuple[Any, list[tuple[int, ...]]]:
    sc = get(name)
    prob, cfg = sc.problem(quick=True), sc.config("adam")
    contract = contract_of(prob, cfg)
    port = factory(cfg)
    port.configure(contract)
    return port, [np.shape(p) for p in prob.params0]


def test_adamw_groups_found_per_group() -> None:
    """m and v of array i in the inner state of the group owning it; a count per group; the
    frozen arrays 3 and 4 (set_to_zero) without state, read as zeros."""
    port, shapes = _port("groups_decoupled", optax_adapter.factory("adamw", "float64", "cpu"))
    lay = port.layout(shapes)
    assert lay.writable, lay.why_not()
    owner = {0: "group0", 1: "group0", 2: "group1"}
    for role in (lay.m, lay.v):
        assert [v.array for v in role] == [0, 1, 2]
        for v in role:
            assert ("key", owner[v.array or 0]) in v.path and v.path[-1] == ("idx", v.array)
    assert [g.arrays for g in lay.groups] == [(0, 1), (2,)] and lay.stateless == (3, 4)
    for g, key in zip(lay.groups, ("group0", "group1"), strict=True):
        assert [c.path[1] for c in g.counters] == [("key", key)]
    port.reset([np.ones(s) for s in shapes])
    st = port.state()
    assert st is not None and st.m is not None and not np.any(st.m[3]) and not np.any(st.m[4])
    assert "arrays 3, 4: no state" in lay.describe()


def _ema(c: Any, lr: Any) -> Any:
    """m and v without bias correction: a state with no step count."""
    import jax
    import jax.numpy as jnp
    import optax

    b1, b2 = c.betas
    tm = jax.tree_util.tree_map

    def init(p: Any) -> Any:
        return tm(jnp.zeros_like, p), tm(jnp.zeros_like, p)

    def update(g: Any, s: Any, p: Any = None) -> Any:
        m = tm(lambda m, g: b1 * m + (1 - b1) * g, s[0], g)
        v = tm(lambda v, g: b2 * v + (1 - b2) * g * g, s[1], g)
        return tm(lambda m, v: -lr * m / (jnp.sqrt(v) + c.eps), m, v), (m, v)

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("other", ["sgd", "ema"])
def test_a_group_not_found_says_which_and_why(other: str) -> None:
    """Group 1 run by momentum SGD (a trace, no v) or by an EMA without a step count: not
    re-synced, the reason naming that group (group 0, the kit, is found)."""
    import optax

    def make_for(c: Any, lr: Any) -> Any:
        if c.betas == (0.8, 0.99):  # the scenario's second group
            return optax.sgd(lr, momentum=0.9) if other == "sgd" else _ema(c, lr)
        return optax_kit.make_for(c, lr)

    port, shapes = _port("groups", _kit(make_for))
    lay = port.layout(shapes)
    why = lay.why_not()
    assert why.startswith("the param group of array 2: no entry"), why
    assert ("like v of its arrays" if other == "sgd" else "counts its steps") in why, why
    assert not lay.writable and (other == "sgd" or [v.array for v in lay.m] == [0, 1, 2])


@pytest.mark.parametrize("which", ["kit", "optax.adamw", "ours.jax.setadam"])
def test_groups_pass_resynced(which: str) -> None:
    """Re-synced steps judged in every family the port takes (no 'not judged re-synced')."""
    from conformance.adapters import ours_jax

    factory, scenarios, algorithm = {
        "kit": (_kit(optax_kit.make_for), FAMILIES, "adam"),
        "optax.adamw": (optax_adapter.factory("adamw", "float64", "cpu"), FAMILIES[1:], "adam"),
        "ours.jax.setadam": (ours_jax.factory("float64", "cpu"), FAMILIES[:2], "setadam"),
    }[which]
    r = _check(factory, scenarios, algorithm)
    for s in r.scenarios:
        assert s.status == "pass" and not s.reason, (s.scenario, s.reason)
        assert s.resync["params"].judged and s.resync["m"].judged, s.scenario


def test_shadow_v_fails_resynced_only() -> None:
    """The kit's own copy of v, stale after a re-synced step: params wrong re-synced from the
    first re-synced step on, every free-running step within budget."""
    r = _check(_kit(lambda c, lr: optax_kit.make_for(c, lr, shadow=True)), ["groups_decoupled"])
    (s,) = r.scenarios
    assert s.status == "fail"
    assert r.failures and {f.mode for f in r.failures} == {"resync"}, r.failures
    assert any(f.stage == "params" and (f.budget_fraction or 0) > 1e3 for f in r.failures)
    assert s.free["params"].judged and (s.free["params"].fraction or 0) <= 1.0


def test_hoisted_eps_fails_in_groups_only() -> None:
    """Group 1 (eps 1e-6) stepping with group 0's eps (1e-8): caught in the groups families,
    re-synced and free-running; the one-group scenarios pass it."""

    def factory(cfg: AdamConfig) -> OptaxPort:  # a builder per port, as a user makes one
        return _kit(optax_kit.HoistedBuilder())(cfg)  # type: ignore[no-any-return]

    r = _check(factory, ["normal", "schedules"])
    assert all(s.status == "pass" for s in r.scenarios), [s.reason for s in r.scenarios]
    r = _check(factory, ["groups"])
    (s,) = r.scenarios
    assert s.status == "fail"
    worst = max(r.failures, key=lambda f: f.budget_fraction or 0.0)
    assert worst.array == 2 and worst.stage == "params", worst
    assert {f.mode for f in r.failures} >= {"resync"}
