"""A sharded torch port whose m and v live in one flat buffer per rank and param group (ZeRO-1
style, :mod:`conformance.tests.sharded_wrong.group_flat`) on 2 gloo ranks: never a false alarm.

What the sharded adapter does with it (measured before this test's adapter change, same
verdicts): the probe (one param group, plain entries made whole by concatenating the ranks'
pieces in rank order) sees ``param_groups[0]['m_flat']`` as rank 0's shards of every array then
rank 1's, no array's order, so no m and v are found: every scenario is compared free-running
only, "not judged re-synced: ... no entry of the port's state behaves like m and v after two
probe steps". The adapter now names the buffer and why it is not read (the pinned reason). The
contract scenarios ``groups`` and ``groups_decoupled`` are skipped: the sharded adapter has no
``configure()`` (its own two param groups share the run's options), so a port that steps every
group with group 0's options is not caught here, by design, and the skip says so. Per-group
probing as the single-process torch adapter does it (``state_groups``) is not done here.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get

GF = "conformance.tests.sharded_wrong.group_flat:"
SHARDED = ["shard_even", "shard_uneven", "shard_fewer_rows", "shard_groups", "normal"]


def _check(attr: str, scenarios: list[str], wdm: str = "l2") -> PortResult:
    spec = third_party.spec(GF + attr, "torch", "adam", nprocs=2, weight_decay_mode=wdm)
    return check_port(spec, scenarios=[get(s) for s in scenarios], quick=True, name=attr)


def test_flat_buffer_per_rank_passes_free_running_and_is_not_judged_resynced() -> None:
    r = _check("ShardFlatAdam", SHARDED)
    assert r.verdict == "pass", r.message
    assert not r.failures, r.failures  # no false alarm: nothing misread, nothing raised
    for s in r.scenarios:
        assert s.status == "pass", (s.scenario, s.status, s.reason)
        assert s.reason.startswith("not judged re-synced:"), (s.scenario, s.reason)
        assert "param_groups[0]['m_flat'] holds each rank's shards" in s.reason, s.reason
        assert "ZeRO-1 style" in s.reason and "compared free-running only" in s.reason
        assert not any(x.judged for x in s.resync.values()), s.scenario
    assert r.worst_fraction() <= 1.0


def test_contract_group_scenarios_are_skipped_with_the_reason() -> None:
    for wdm, name in (("l2", "groups"), ("decoupled", "groups_decoupled")):
        r = _check("ShardFlatAdam", [name], wdm)
        (s,) = r.scenarios
        assert s.status == "skip", (name, s.status)
        assert "the port has no configure()" in s.reason, s.reason
        assert "3 param groups with their own hyperparameters" in s.reason, s.reason


def test_group_offsets_into_group_0s_buffer_are_rejected_free_running() -> None:
    """Group 1 stepping in group 0's buffers (its offsets from 0: overlapping group 0's first
    array) fails at the first free-running step in every scenario with two groups."""
    r = _check("HoistedShardFlatAdam", ["shard_groups", "shard_uneven"])
    assert r.verdict == "fail", r.message
    for s in r.scenarios:
        assert s.status == "fail", (s.scenario, s.status)
    free = [f for f in r.failures if f.kind == "tolerance" and f.mode == "free"]
    assert free and min(f.step or 0 for f in free) == 1, r.failures
    assert r.stage == "params", r.message


def test_group_0_options_everywhere_is_out_of_reach_and_said_so() -> None:
    """The adapter's own groups share the run's options: a port stepping every group with group
    0's passes them (the same arithmetic), and the scenario that would tell (``groups``) is
    skipped with its reason, not passed."""
    r = _check("Group0HyperShardFlatAdam", ["shard_groups", "groups"])
    by = {s.scenario: s for s in r.scenarios}
    assert by["shard_groups"].status == "pass", by["shard_groups"].reason
    assert by["groups"].status == "skip" and "no configure()" in by["groups"].reason
