"""A sharded port in an outside naming is re-synced through state discovery and diagnosed.

:mod:`conformance.tests.sharded_wrong.outsider` keeps its moments as DTensors under its own names
in its own container (``buffers[id(p)]["mu"/"nu"]``; a second control keeps them as plain
tensors of its shard) and counts steps in an int attribute: the sharded torch adapter must find
them by their values on the probe's full tensors (pieces made whole), write the
reference's state into the ranks' shards, and read them back, so that the control passes every
sharding scenario it is given and the planted local-shard statistics (llm.c PR 524) fail at the
first re-synced step with the moments agreeing and the parameters not (the port records no
stages: the first disagreeing quantity after m and v is named). Runs on the test session's
2-rank pool, through the spec ``check --nprocs 2`` builds.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get

OUT = "conformance.tests.sharded_wrong.outsider:"


def _check(attr: str, scenarios: list[str]) -> PortResult:
    spec = third_party.spec(OUT + attr, "torch", "setadam", nprocs=2)
    return check_port(spec, scenarios=[get(s) for s in scenarios], quick=True, name=attr)


@pytest.mark.parametrize("attr", ["OutsiderSETAdam", "OutsiderLocalBuffers"])
def test_the_outside_controls_are_resynced_and_accepted(attr: str) -> None:
    """Moments as DTensors, or as plain tensors of each rank's shard (made whole on the probe)."""
    r = _check(attr, ["shard_even", "shard_uneven", "shard_fewer_rows", "shard_groups"])
    assert r.verdict == "pass", r.message
    assert r.exposes_state, "the state under its own names was not found on the DTensors"
    assert r.worst_fraction() <= 1.0


def test_local_shard_statistics_in_an_outside_naming_are_rejected_at_the_update() -> None:
    r = _check("OutsiderLocalNorms", ["shard_even"])
    assert r.verdict == "fail", r.message
    assert r.exposes_state
    resync = [f for f in r.failures if f.kind == "tolerance" and f.mode == "resync"]
    assert resync and min(f.step or 0 for f in resync) == 1, r.failures  # re-synced: step 1
    assert r.stage == "params", r.message
    measures = r.diagnosis["measures"]
    assert {"m", "v"} <= set(measures), measures
    assert all(measures[q]["fraction"] <= 1.0 for q in ("m", "v")), measures  # moments agree
    assert measures["params"]["fraction"] > 1e6, measures  # the bug is in the update
