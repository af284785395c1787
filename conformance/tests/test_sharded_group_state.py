"""A sharded torch port whose m and v live in one flat buffer per rank and param group (ZeRO-1
style, :mod:`conformance.tests.sharded_wrong.group_flat`) on 2 gloo ranks: re-synced per group,
never a false alarm.

Before the sharded adapter's per-group probe (measured on this tree's parent, 711841d^): the
one-group probe made ``param_groups[0]['m_flat']`` whole by concatenating the ranks' pieces in
rank order (rank 0's shards of every array, then rank 1's: no array's order), found no m and v,
and every scenario passed free-running only, "not judged re-synced: ... no entry of the port's
state behaves like m and v after two probe steps" (no false alarm, nothing re-synced). Now the
port is probed again with the run's param groups, each rank's buffer made whole array by array,
and each group fitted on its own (``state_groups``): re-synced params, m and v are judged.

The contract scenarios ``groups`` and ``groups_decoupled`` were skipped before the sharded
adapter had a ``configure()`` ("the port has no configure(): it cannot take 3 param groups with
their own hyperparameters"), so a port stepping every group with group 0's options passed every
sharded check. Now the port is built with the contract's groups, each with its own options:
``groups`` rejects it at the first free-running step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get
from conformance.tests.sharded.pool import PooledPort, shared
from setadam_ref import AdamConfig, State

GF = "conformance.tests.sharded_wrong.group_flat:"
SHARDED = ["shard_even", "shard_uneven", "shard_fewer_rows", "shard_zero_size", "shard_groups",
           "normal"]  # fmt: skip


def _kwargs(cfg: Any) -> dict[str, Any]:
    """The ports' calling convention (a param group's options too)."""
    return dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay,
                decoupled_weight_decay=cfg.weight_decay_mode == "decoupled")  # fmt: skip


def _pooled(attr: str, dtype: str) -> Any:
    def make(cfg: Any) -> PooledPort:
        opts = {"kwargs": _kwargs(cfg), "exact": True}
        return PooledPort(shared(2), GF + attr, cfg, dtype, options=opts, group_kwargs=_kwargs)

    return make


def _check(attr: str, scenarios: list[str], wdm: str = "l2") -> PortResult:
    spec = third_party.spec(GF + attr, "torch", "adam", nprocs=2, weight_decay_mode=wdm)
    return check_port(spec, scenarios=[get(s) for s in scenarios], quick=True, name=attr)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_flat_buffer_per_rank_and_group_is_resynced(dtype: str) -> None:
    """Params, m and v judged re-synced (the state in the reference's convention) in every
    sharding scenario: even and uneven rows, ranks holding nothing, zero-size arrays."""
    r = check_port(_pooled("ShardFlatAdam", dtype), "adam", None, SHARDED, quick=True,
                   dtype=dtype, diagnose=False)  # fmt: skip
    assert r.verdict == "pass", r.message
    assert not r.failures, r.failures
    for s in r.scenarios:
        assert s.status == "pass" and not s.reason, (s.scenario, s.reason)
        assert all(s.resync[k].judged for k in ("params", "m", "v")), s.scenario
    assert r.worst_fraction() <= 1.0


def test_a_given_state_lands_in_each_ranks_buffer_and_reads_back() -> None:
    """Group 0 holds arrays 0, 2 and group 1 arrays 1, 3 (dealt round-robin): each rank's
    ``m_flat`` is its shards of the group's arrays back to back; the state read back is the
    state written, bitwise, and the counters are each group's."""
    shapes = [(5, 3), (3,), (6, 2), (1,)]  # uneven rows; array 3's one row on rank 0 only
    rng = np.random.default_rng(3)
    m = tuple(rng.standard_normal(s) for s in shapes)
    v = tuple(np.abs(rng.standard_normal(s)) for s in shapes)
    port = _pooled("ShardFlatAdam", "float64")(AdamConfig(lr=1e-2))
    port.reset([np.ones(s) for s in shapes], State(4, m, v))
    lay = shared(2).call("layout", shapes)[0]
    assert [g.arrays for g in lay.groups] == [(0, 2), (1, 3)], lay.describe()
    assert {(x.path, x.within) for x in lay.m} == {
        ((("group", 0), ("key", "m_flat")), (0, 2)),
        ((("group", 1), ("key", "m_flat")), (1, 3)),
    }
    st = port.state()
    assert st is not None and st.step == 4
    for got, want in ((st.m, m), (st.v, v)):
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    pieces = shared(2).call("job", GF + "rank_buffers")
    assert [p[0] for p in pieces] == [3 * 3 + 3 * 2, 2 * 3 + 3 * 2], pieces  # rank 0, rank 1
    assert [p[1] for p in pieces] == [2 + 1, 1 + 0], pieces


@pytest.mark.parametrize("name", ["groups", "groups_decoupled"])
def test_contract_group_scenarios_pass(name: str) -> None:
    """Three param groups with their own lr, eps and weight decay, one never given a gradient
    (its flat buffers never made, its arrays stateless): params, m and v judged re-synced, as
    unsharded, and free-running."""
    r = check_port(_pooled("ShardFlatAdam", "float64"), "adam", None, [name], quick=True,
                   diagnose=False)  # fmt: skip
    assert r.verdict == "pass", r.message
    (s,) = r.scenarios
    assert s.status == "pass" and not s.reason, (s.status, s.reason)
    assert all(s.resync[k].judged for k in ("params", "m", "v")), s.resync
    assert not r.failures, r.failures


def test_a_port_without_group_options_skips_the_group_contract_with_the_reason() -> None:
    """Exact constructor kwargs and no ``group_kwargs``: the group options cannot be built."""

    def make(cfg: Any) -> PooledPort:
        opts = {"kwargs": _kwargs(cfg), "exact": True}
        return PooledPort(shared(2), GF + "ShardFlatAdam", cfg, "float64", options=opts)

    r = check_port(make, "adam", None, ["groups"], quick=True, diagnose=False)
    (s,) = r.scenarios
    assert s.status == "skip", (s.status, s.reason)
    assert "no param-group options for a config" in s.reason, s.reason


def test_group_offsets_into_group_0s_buffer_are_rejected() -> None:
    """Group 1 stepping in group 0's buffers (its offsets from 0: overlapping group 0's first
    array) fails at the first free-running step; re-synced it is not judged, and says why (group
    0's buffer does not behave like its arrays' m and v)."""
    r = _check("HoistedShardFlatAdam", ["shard_groups", "shard_uneven"])
    assert r.verdict == "fail", r.message
    for s in r.scenarios:
        assert s.status == "fail", (s.scenario, s.status)
        assert "the param group of arrays 0, 2" in s.reason and "not judged re-synced" in s.reason
    free = [f for f in r.failures if f.kind == "tolerance" and f.mode == "free"]
    assert free and min(f.step or 0 for f in free) == 1, r.failures
    assert r.stage == "params", r.message


def test_one_flat_buffer_across_groups_is_not_judged_resynced_with_the_reason() -> None:
    r = _check("RankFlatAdam", ["shard_groups", "shard_fewer_rows"])
    assert r.verdict == "pass", r.message
    assert not r.failures, r.failures  # no false alarm
    for s in r.scenarios:
        assert s.reason.startswith("not judged re-synced:"), s.reason
        assert "no entry of the port's state behaves like m and v of its arrays" in s.reason
        assert "opt.flat['m_flat'] holds each rank's shards" in s.reason, s.reason
        assert not any(x.judged for x in s.resync.values()), s.scenario


def test_group_0_options_everywhere_is_rejected_by_the_group_contract() -> None:
    """A port stepping every group with group 0's options passes the adapter's own groups
    (``shard_groups``: they share the run's options, the same arithmetic) and fails ``groups``,
    whose groups have their own lr, eps and weight decay, at the first free-running step; its
    near miss, ``ShardFlatAdam`` through the same spec, passes ``groups``."""
    r = _check("Group0HyperShardFlatAdam", ["shard_groups", "groups"])
    by = {s.scenario: s for s in r.scenarios}
    assert by["shard_groups"].status == "pass", by["shard_groups"].reason
    assert by["groups"].status == "fail", (by["groups"].status, by["groups"].reason)
    free = [f for f in r.failures if f.scenario == "groups" and f.mode == "free"]
    assert free and free[0].kind == "tolerance" and min(f.step or 0 for f in free) == 1, r.failures
    assert "group0_hyperparameters" in r.message, r.message
    near = _check("ShardFlatAdam", ["groups"])
    assert near.verdict == "pass", near.message


def test_schedules_pass_and_a_count_per_group_fails_sparse() -> None:
    """The remaining contract scenarios on ``ShardFlatAdam``: it reads ``group["lr"]`` at every
    step, so both schedules (a float lr, a 0-d tensor lr) pass; its one count per param group
    (``group["n_steps"]``) advances for array 1 at the steps it has no gradient, which the
    contract forbids, so ``sparse`` fails free-running at step 3 with that cause. Re-synced,
    ``sparse`` is judged (params, m, v within budget): the group's buffer holds a slot for the
    frozen array 3 between its arrays with state, found by ``state_spans``; before the rank's
    piece of that slot was sized as the full array, every read of m and v was a mismatch and
    the re-synced step compared the parameters only, without saying so."""
    r = check_port(_pooled("ShardFlatAdam", "float64"), "adam", None,
                   ["schedules", "schedules_tensor_lr", "sparse"], quick=True)  # fmt: skip
    by = {s.scenario: s for s in r.scenarios}
    for name in ("schedules", "schedules_tensor_lr"):
        assert by[name].status == "pass" and not by[name].reason, (name, by[name].reason)
        assert all(by[name].resync[k].judged for k in ("params", "m", "v")), name
    assert by["sparse"].status == "fail", by["sparse"].reason
    assert not by["sparse"].reason, by["sparse"].reason
    assert all(by["sparse"].resync[k].judged for k in ("params", "m", "v")), by["sparse"].resync
    free = [f for f in r.failures if f.scenario == "sparse" and f.mode == "free"]
    assert free and min(f.step or 0 for f in free) == 3 and free[0].array == 1, r.failures
    assert {f.scenario for f in r.failures} == {"sparse"}, r.failures
    assert r.likely_causes and r.likely_causes[0][0] == "count_advanced_without_gradient"
