"""torch ports that keep their state per param group are probed with the run's groups and
re-synced in every group scenario; what cannot be read per group is not judged re-synced, with
the reason; planted per-group mistakes fail at their stage and mode; the layouts of the ordinary
ports (state per parameter) are the one-group probe's, as before.

Before the per-group probe (measured on this tree's parent): :class:`ListAdam` passed ``groups``
and ``groups_decoupled`` with "not judged re-synced: (('group', 0), ('key', 'moments'),
('idx', 2)) found on the probe is not in this instance of the port"; :class:`FlatAdam` failed
both with ``ValueError: cannot reshape array of size 0 into shape (20,)`` (group 0's flat buffer
read as every array's: a false alarm), as did :class:`GlobalFlatAdam` in ``normal`` and
``groups`` (``cannot reshape array of size 440 into shape (443,)``: the sentinel's group in its
buffer); :class:`ShadowListAdam` passed the group scenarios, not judged re-synced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance.contract import contract_of
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get
from conformance.tests._factories import torch_factory
from conformance.tests.group_state import ports as P

GROUPS = ["groups", "groups_decoupled"]


def _check(cls: Any, scenarios: list[str], dtype: str = "float64") -> PortResult:
    return check_port(torch_factory(cls, dtype), "adam", None, scenarios, quick=True,
                      dtype=dtype, diagnose=False)  # fmt: skip


def _port(factory: Any, name: str, algorithm: str = "adam") -> tuple[Any, list[Any]]:
    sc = get(name)
    prob, cfg = sc.problem(quick=True), sc.config(algorithm)
    port = factory(cfg)
    contract = contract_of(prob, cfg)
    if contract is not None:
        port.configure(contract)
    return port, [np.shape(p) for p in prob.params0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cls", [P.ListAdam, P.FlatAdam], ids=lambda c: c.__name__)
def test_per_group_ports_pass_resynced(cls: Any, dtype: str) -> None:
    r = _check(cls, ["normal", *GROUPS, "schedules"], dtype)
    for s in r.scenarios:
        assert s.status == "pass" and not s.reason, (s.scenario, s.reason)
        assert all(s.resync[k].judged for k in ("params", "m", "v")), s.scenario


def test_flat_buffer_per_group_found_and_round_trips() -> None:
    """Group 0's flat m holds arrays 0, 1 back to back, group 1's array 2; a count per group;
    the frozen arrays 3, 4 stateless. A state written by a re-synced reset reads back exactly,
    and lies in the port's own buffers at the offsets of the run's shapes."""
    from setadam_ref import State

    port, shapes = _port(torch_factory(P.FlatAdam, "float64"), "groups")
    lay = port.layout(shapes)
    assert lay.writable, lay.why_not()
    assert [(v.path, v.within) for v in lay.m] == [
        ((("group", 0), ("key", "flat_m")), (0, 1)), ((("group", 0), ("key", "flat_m")), (0, 1)),
        ((("group", 1), ("key", "flat_m")), None),
    ]  # fmt: skip
    assert [g.arrays for g in lay.groups] == [(0, 1), (2,)] and lay.stateless == (3, 4)
    assert [[c.path for c in g.counters] for g in lay.groups] == [
        [(("group", 0), ("key", "step"))], [(("group", 1), ("key", "step"))]]  # fmt: skip
    rng = np.random.default_rng(5)
    m = [rng.standard_normal(s) for s in shapes]
    v = [np.abs(rng.standard_normal(s)) for s in shapes]
    for i in lay.stateless:
        m[i], v[i] = np.zeros(shapes[i]), np.zeros(shapes[i])
    port.reset([np.ones(s) for s in shapes], State(3, tuple(m), tuple(v)))
    st = port.state()
    assert st is not None and st.step == 3
    for i in range(5):
        np.testing.assert_array_equal(st.m[i], m[i])
        np.testing.assert_array_equal(st.v[i], v[i])
    g0 = port._opt.param_groups[0]
    flat = np.concatenate([m[0].ravel(), m[1].ravel()])
    np.testing.assert_array_equal(g0["flat_m"].numpy(), flat)
    assert float(g0["step"]) == 3.0 and float(port._opt.param_groups[1]["step"]) == 3.0


def test_lists_per_group_found_per_group() -> None:
    port, shapes = _port(torch_factory(P.ListAdam, "float64"), "groups_decoupled")
    lay = port.layout(shapes)
    assert lay.writable, lay.why_not()
    sq = ("key", "squares")
    assert [v.path for v in lay.v] == [
        (("group", 0), sq, ("idx", 0)), (("group", 0), sq, ("idx", 1)), (("group", 1), sq, ("idx", 0)),
    ]  # fmt: skip
    assert lay.describe().endswith("arrays 3, 4: no state (no group keeps any)")


def test_unreadable_per_group_is_not_judged_resynced_never_a_false_alarm() -> None:
    """A flat buffer of a group that also holds a frozen array is covered below; one buffer over
    all groups and state keyed by a flat gradient buffer are re-synced now
    (``test_group_state_flat``)."""
    (s,) = _check(P.SharedFlatAdam, ["groups"]).scenarios
    assert s.reason.startswith("not judged re-synced: the param group of arrays 0, 1: no "
                               "entry of the port's state behaves like "), s.reason  # fmt: skip
    assert not s.resync and s.free["params"].judged


def test_sentinel_in_a_global_flat_buffer_is_read_not_a_failure() -> None:
    """With one group, the one-group probe's flat buffer has no sentinel (the port's entry
    holds 3 values more: a ValueError, a false alarm, once; then not judged re-synced); probed
    again with the sentinel's group, the buffer is read whole and re-synced."""
    (s,) = _check(P.GlobalFlatAdam, ["normal"]).scenarios
    assert s.status == "pass" and not s.reason, s.reason
    assert all(s.resync[k].judged for k in ("params", "m", "v"))


def test_group0_buffers_hoisted_fail_free_running_in_groups_only() -> None:
    """Every group stepped in group 0's flat buffers: right with one group; with several, group
    1's array overlaps group 0's first array. Its state is not found per group (group 0's
    buffer holds neither moment), so the re-synced steps are not judged and the free-running
    parameters fail, array 2 (group 1's) first, at step 1."""
    r = _check(P.SharedFlatAdam, ["normal", "schedules", *GROUPS])
    st = {s.scenario: s for s in r.scenarios}
    assert st["normal"].status == "pass" and st["schedules"].status == "pass"
    for name in GROUPS:
        assert (
            st[name].status == "fail"
            and "not judged re-synced: the param group of arrays 0, 1" in st[name].reason
        )
        mine = [f for f in r.failures if f.scenario == name]
        assert {f.mode for f in mine} == {"free"}
        first = min(mine, key=lambda f: (f.step or 0, -(f.budget_fraction or 0)))
        assert (first.stage, first.step, first.array) == ("params", 1, 2), first.message
        assert (first.budget_fraction or 0) > 1e10


def test_shadow_v_per_group_fails_resynced_only() -> None:
    """The step reads its own copy of v (``group["v_fast"]``): free-running equal to the bit,
    stale after a re-synced reset writes ``group["squares"]``. Now re-synced in the group
    scenarios, it fails there, re-synced only, at the parameters; before it passed them (not
    judged re-synced)."""
    r = _check(P.ShadowListAdam, GROUPS)
    for s in r.scenarios:
        assert s.status == "fail" and not s.reason, (s.scenario, s.reason)
        assert s.free["params"].judged and (s.free["params"].fraction or 0) <= 1.0
        assert s.resync["v"].judged and (s.resync["v"].fraction or 0) <= 1.0  # v itself is right
    assert r.failures and {f.mode for f in r.failures} == {"resync"}
    assert all(f.stage == "params" for f in r.failures)
    assert max(f.budget_fraction or 0 for f in r.failures) > 1e10


def _plain_layout(factory: Any, shapes: list[Any], name: str, algorithm: str) -> Any:
    """The layout the adapter found before the per-group probe: a one-group probe."""
    sc = get(name)
    port = factory(sc.config(algorithm))
    return port.layout(shapes)


@pytest.mark.parametrize(
    ("which", "algorithm"),
    [("torch.Adam.forloop", "adam"), ("torch.Adam.fused", "adam"), ("torch.AdamW.foreach", "adam"),
     ("ours.single", "setadam"), ("ours.foreach", "setadam")],
)  # fmt: skip
def test_ordinary_layouts_unchanged(which: str, algorithm: str) -> None:
    """State per parameter: the one-group probe's layout in every group scenario (no group
    probe), as before (the report lines were compared with the parent tree's, identical)."""
    from conformance.adapters import ours_torch, torch_optim

    kind, _, path = which.rpartition(".")
    factory = (ours_torch.factory(path, "float64", "cpu") if kind == "ours"
               else torch_optim.factory(kind.split(".")[1], path, "float64", "cpu"))  # fmt: skip
    names = [*GROUPS, "schedules"] + (["sparse_layers"] if algorithm == "setadam" else [])
    for name in names:
        port, shapes = _port(factory, name, algorithm)
        lay = port.layout(shapes)
        plain = _plain_layout(factory, shapes, name, algorithm)
        assert not lay.groups and (lay.m, lay.v, lay.vmax) == (plain.m, plain.v, plain.vmax)
        assert lay.counters == plain.counters and lay.describe() == plain.describe()
        assert all(v.path[0] == ("state", v.array) for v in lay.m + lay.v)
        assert not port._by_group._found, "the group probe ran for a per-parameter layout"


def _frozen_in_group(rng: np.random.Generator, steps: int) -> Any:
    """``groups`` with array 1 (group 0's second array, beside array 0) never given a gradient."""
    import dataclasses

    p = get("groups").builder(rng, steps)
    return dataclasses.replace(p, active=tuple((True, False, True, False, False)
                                               for _ in range(steps)))  # fmt: skip


def test_a_frozen_array_inside_a_flat_group_is_not_misread() -> None:
    """A group's flat buffer that also holds an array never given a gradient: the per-group
    probe finds no m, v of the group (the frozen array's segment never moves), so FlatAdam is
    compared free-running only, with the reason, and passes (no false alarm); the list layout
    is re-synced (each array its own entry); hoisted buffers still fail free-running."""
    import dataclasses

    sc = dataclasses.replace(get("groups"), name="groups_frozen_in_group",
                             builder=_frozen_in_group)  # fmt: skip

    def one(cls: Any) -> Any:
        return check_port(torch_factory(cls, "float64"), "adam", None, [sc], quick=True,
                          dtype="float64", diagnose=False).scenarios[0]  # fmt: skip

    flat, lists, shared = one(P.FlatAdam), one(P.ListAdam), one(P.SharedFlatAdam)
    why = "not judged re-synced: the param group of array 0"
    assert flat.status == "pass" and flat.reason.startswith(why), flat.reason
    assert lists.status == "pass" and not lists.reason
    assert all(lists.resync[k].judged for k in ("params", "m", "v"))
    assert shared.status == "fail" and shared.reason.startswith("not judged re-synced")
