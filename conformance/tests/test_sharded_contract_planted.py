"""Planted ZeRO-style sharded Adams (:mod:`conformance.tests.sharded_wrong.lr_sparse`) against
the contract scenarios the sharded adapter drives: an lr schedule (``schedules``, and as a 0-d
tensor lr) and gradients on some steps only (``sparse``), on 2 gloo ranks through the CLI's path
(``third_party.spec(..., nprocs=2)``).

Each planted port is caught by its own scenario, at the step, stage and likely cause the
harness names, and passes the older sharded scenarios (``shard_*``, ``groups``): those never
change the lr nor give a parameter with state a step without gradient. The near miss, the same
port written right, passes every one of them.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.scenarios import get

LS = "conformance.tests.sharded_wrong.lr_sparse:"
OLDER = ["shard_even", "shard_uneven", "shard_fewer_rows", "shard_zero_size", "shard_groups",
         "groups"]  # fmt: skip


def _check(attr: str, scenarios: list[str], judge_state: bool | None = None) -> PortResult:
    """``judge_state``: m and v judged too (the port's v is Adam's, unscaled), not only shown."""
    from conformance.runner import check_port

    spec = third_party.spec(LS + attr, "torch", "adam", nprocs=2, weight_decay_mode="l2")
    return check_port(spec, scenarios=[get(s) for s in scenarios], quick=True, name=attr,
                      judge_state=judge_state)  # fmt: skip


def _statuses(r: PortResult) -> dict[str, str]:
    return {s.scenario: s.status for s in r.scenarios}


def test_lr_read_at_construction_is_caught_by_schedules_only() -> None:
    """The lr taken once in ``__init__``: off at the first step, whose warm-up factor is not 1,
    re-synced and free-running, both schedules (float and tensor lr); the older scenarios pass."""
    r = _check("LrAtBuildZeroAdam", ["schedules", "schedules_tensor_lr", "sparse", *OLDER])
    st = _statuses(r)
    assert st["schedules"] == "fail" and st["schedules_tensor_lr"] == "fail", st
    assert all(st[n] == "pass" for n in ["sparse", *OLDER]), st
    assert {f.scenario for f in r.failures} == {"schedules", "schedules_tensor_lr"}, r.failures
    for name in ("schedules", "schedules_tensor_lr"):
        for mode in ("resync", "free"):
            fs = [f for f in r.failures if f.scenario == name and f.mode == mode]
            assert fs and fs[0].kind == "tolerance" and min(f.step or 0 for f in fs) == 1, fs
    assert r.message.startswith("tolerance at schedules, resync step 1"), r.message
    assert r.stage == "update", r.message  # the first stage that disagrees (m, v agree)
    assert "first disagreeing stage: update" in r.message, r.message
    assert r.likely_causes and r.likely_causes[0][0] == "lr_schedule_ignored", r.likely_causes


def test_count_advanced_without_gradient_is_caught_by_sparse_only() -> None:
    """Every parameter with state counting each step of its group: array 1, skipped at step 2,
    has its bias corrections one step ahead from step 3 (free-running); ``groups``' frozen
    array never has state, so it and the other older scenarios pass, as do the schedules."""
    r = _check("CountAllZeroAdam", ["sparse", "schedules", *OLDER])
    st = _statuses(r)
    assert st["sparse"] == "fail", st
    assert all(st[n] == "pass" for n in ["schedules", *OLDER]), st
    assert {f.scenario for f in r.failures} == {"sparse"}, r.failures
    free = [f for f in r.failures if f.mode == "free"]
    assert free and free[0].kind == "tolerance" and min(f.step or 0 for f in free) == 3, free
    assert free[0].array == 1, free[0]
    assert r.stage == "update" and r.message.startswith("tolerance at sparse, free step 3")
    assert r.likely_causes and r.likely_causes[0][0] == "count_advanced_without_gradient", (
        r.likely_causes
    )


def test_the_near_miss_passes_every_scenario_judged_resynced() -> None:
    """The same ZeRO-style port, lr read from its group at every step and a parameter without
    gradient left alone: every scenario passes, params, m and v judged re-synced (its state,
    found by discovery under its own names, declared in the reference's convention)."""
    r = _check("ZeroShardAdam", ["schedules", "schedules_tensor_lr", "sparse", *OLDER], True)
    assert r.verdict == "pass", r.message
    assert not r.failures, r.failures
    for s in r.scenarios:
        assert s.status == "pass" and not s.reason, (s.scenario, s.reason)
        assert all(s.resync[k].judged for k in ("params", "m", "v")), s.scenario
    assert r.worst_fraction() <= 1.0
