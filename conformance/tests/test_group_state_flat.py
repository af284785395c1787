"""One flat m and one flat v over every param group (and the harness's sentinel), or the moments
keyed by a flat gradient buffer: found by the probe with the run's groups plus the sentinel
(:mod:`conformance.adapters.state_spans`), the order fitted, never assumed, and re-synced in the
group scenarios; an ambiguous buffer is not judged re-synced, with the reason; planted mistakes
fail at their stage and mode, the older one-group scenarios do not catch them.

Before (this tree's parent): ``GlobalFlatAdam`` and ``KeyedFlatAdam`` passed ``groups`` and
``groups_decoupled`` "not judged re-synced: the param group of arrays 0, 1: no entry of the
port's state behaves like m and v", ``GlobalFlatAdam`` ``normal`` "not judged re-synced:
opt.flat_m holds 443 values where the layout found on the probe writes 440";
``StaleRowsFlatAdam`` passed all four (its stale copy never exercised).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance.tests._factories import torch_factory
from conformance.tests.group_state import flat_ports as F
from conformance.tests.group_state import ports as P
from conformance.tests.test_group_state import GROUPS, _check, _port

OLDER = ["normal", "schedules"]
FLAT = (("attr", "exp_avg_flat"),)


@pytest.mark.parametrize("cls", [P.GlobalFlatAdam, P.KeyedFlatAdam, F.ReversedFlatAdam],
                         ids=lambda c: c.__name__)  # fmt: skip
def test_one_buffer_over_all_groups_and_keyed_state_are_resynced(cls: Any) -> None:
    r = _check(cls, [*OLDER, *GROUPS])
    for s in r.scenarios:
        assert s.status == "pass" and not s.reason, (s.scenario, s.reason)
        assert all(s.resync[k].judged and (s.resync[k].fraction or 0) <= 1.0
                   for k in ("params", "m", "v")), s.scenario  # fmt: skip


def test_the_order_is_the_ports_found_by_the_probe() -> None:
    """Groups last first: group (3, 4) (frozen), then 2, then 0, 1, the sentinel's group (the
    last param group, laid out first) in front; a re-synced state reads back exactly and lies
    at the port's own offsets, the sentinel's block zero."""
    from setadam_ref import State

    port, shapes = _port(torch_factory(F.ReversedFlatAdam, "float64"), "groups")
    lay = port.layout(shapes)
    assert lay.writable, lay.why_not()
    ((path, within),) = {(v.path, v.within) for v in lay.m}
    # the zero gap in front holds the frozen arrays and the sentinel, in no order that matters
    assert path == FLAT and within[3:] == (2, 0, 1) and set(within[:3]) == {-3, 3, 4}
    assert [v.array for v in lay.m] == [0, 1, 2] and lay.stateless == (3, 4)
    rng = np.random.default_rng(7)
    m = [rng.standard_normal(s) if i < 3 else np.zeros(s) for i, s in enumerate(shapes)]
    v = [np.abs(rng.standard_normal(s)) if i < 3 else np.zeros(s) for i, s in enumerate(shapes)]
    port.reset([np.ones(s) for s in shapes], State(4, tuple(m), tuple(v)))
    st = port.state()
    assert st is not None and st.step == 4
    for i in range(5):
        np.testing.assert_array_equal(st.m[i], m[i])
    flat = port._opt.exp_avg_flat.numpy()
    sizes = [int(np.prod(s)) for s in shapes]
    want = np.concatenate([np.zeros(3), *(m[i].ravel() for i in (3, 4, 2, 0, 1))])
    assert flat.size == sum(sizes) + 3
    np.testing.assert_array_equal(flat, want)


def test_keyed_by_a_flat_gradient_buffer_is_named_by_where_the_key_lives() -> None:
    port, shapes = _port(torch_factory(P.KeyedFlatAdam, "float64"), "groups_decoupled")
    lay = port.layout(shapes)
    key = (("group", 0), ("key", "flat_grad"))
    assert lay.m[0].path == (("keyed", key), ("key", "exp_avg")) and lay.m[0].within == (0, 1)
    assert "state[param_groups[0]['flat_grad']]['exp_avg_sq'] (arrays 0, 1 back to back)" in (
        lay.describe())  # fmt: skip


def test_a_stale_copy_of_v_fails_resynced_at_v_only() -> None:
    """The kernel reads its own (1, N) copy of v: equal to the bit free-running, stale after a
    re-synced reset writes the flat v. Caught re-synced only, at v (and the parameters), from the
    first re-synced step that has a non-zero v to write, in every scenario: the bug is not one
    of groups (before, with the buffer unread, it passed them all)."""
    r = _check(F.StaleRowsFlatAdam, [*OLDER, *GROUPS])
    for s in r.scenarios:
        assert s.status == "fail" and not s.reason, (s.scenario, s.reason)
        assert s.free["params"].judged and (s.free["params"].fraction or 0) <= 1.0
        assert (s.resync["m"].fraction or 0) <= 1.0  # m is right
        mine = [f for f in r.failures if f.scenario == s.scenario]
        assert {f.mode for f in mine} == {"resync"}
        v = [f for f in mine if f.stage == "v"]
        assert v and min(f.step or 0 for f in v) <= 2  # step 1 resets to zero: the copy is too
        assert max(f.budget_fraction or 0 for f in v) > 1e10


def test_overlapping_group_slices_fail_free_running() -> None:
    """Group k starts k elements early: the shared coordinate mixes two groups' moments, so no
    slice of the buffer fits array 1 or 2 on the probe (not judged re-synced, never misread)
    and the parameters fail free-running, array 2 first, at step 1; with one group (no overlap)
    it passes, re-synced."""
    r = _check(F.OverlapFlatAdam, [*OLDER, *GROUPS])
    st = {s.scenario: s for s in r.scenarios}
    assert all(st[n].status == "pass" and not st[n].reason for n in OLDER)
    for name in GROUPS:
        assert st[name].status == "fail" and st[name].reason.startswith("not judged re-synced")
        mine = [f for f in r.failures if f.scenario == name]
        assert {f.mode for f in mine} == {"free"}
        first = min(mine, key=lambda f: (f.step or 0, -(f.budget_fraction or 0)))
        assert (first.stage, first.step, first.array) == ("params", 1, 2), first.message


def test_two_buffers_alike_are_ambiguous_not_judged() -> None:
    """With groups the reason names the ambiguity; with one group the one-group probe's layout
    is kept (the sentinel-probe's is ambiguous), whose buffer lacks the sentinel: a mismatch."""
    st = {s.scenario: s for s in _check(F.MirroredFlatAdam, ["normal", "groups"]).scenarios}
    assert all(s.status == "pass" and not s.resync for s in st.values())
    assert ("2 entries over every group's arrays behave like v (opt.exp_avg_sq_flat, "
            "opt.v_mirror): ambiguous") in st["groups"].reason  # fmt: skip
    assert ("opt.exp_avg_flat holds 443 values where the layout found on the probe writes 440"
            in st["normal"].reason)  # fmt: skip
