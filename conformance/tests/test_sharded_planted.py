"""Meta-tests of sharded checks: the planted sharding bugs are rejected with the stage named.

The ports are in ``conformance/tests/sharded_wrong`` (DTensor-aware SET-Adams as an outside
implementer would write them, one planted bug each, and their correct control). Each runs on
gloo ranks of this machine through the spec ``check --nprocs`` builds
(``third_party.spec(..., nprocs=n)``: :class:`~conformance.adapters.rank_pool.PooledPort`) and is
checked by ``check_port`` on the sharding scenario that exposes its bug: the harness re-syncs
it, reads back its sharded state and stage record, and names the first stage that disagrees.
The bugs that depend on how rows fall on ranks (padding, empty shards, zero shards) run on 4
ranks too.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import SHARDING, get
from conformance.tests.sharded_wrong import PLANTED, Planted

WRONG = [w for w in PLANTED if not w.must_accept]
CONTROL = [w for w in PLANTED if w.must_accept]
#: bugs whose exposure depends on the split, checked on 4 ranks as well
ON_FOUR = ("PaddedStats", "MeanPartials", "SkipZeroShardStep")


def _check(n: int, w: Planted, scenarios: list[str]) -> PortResult:
    """The pipeline of ``check TARGET --framework torch --algorithm setadam --nprocs n`` (the
    spec its worker builds: the third-party calling convention, the ranks of ``pool.shared``),
    here in this process so the tests share the ranks."""
    spec = third_party.spec(w.target, "torch", "setadam", nprocs=n)
    scs = [get(s) for s in scenarios]
    return check_port(spec, scenarios=scs, quick=True, name=w.attr)


def _explain(r: PortResult) -> str:
    return f"{r.verdict}: stage={r.stage}: {r.message}\n" + "\n".join(
        f"  {f.kind} {f.scenario} {f.mode} {f.step} {f.stage}: {f.message[:200]}"
        for f in r.failures[:6]
    )


@pytest.mark.parametrize(
    ("n", "w"),
    [(2, w) for w in WRONG] + [(4, w) for w in WRONG if w.attr in ON_FOUR],
    ids=lambda x: str(x) if isinstance(x, int) else x.attr,
)
def test_planted_sharding_bug_is_rejected_with_its_stage(n: int, w: Planted) -> None:
    r = _check(n, w, [w.scenario])
    assert r.verdict == "fail", _explain(r)
    assert w.kind in {f.kind for f in r.failures}, _explain(r)
    if w.kind == "side_effect":  # no numerical trace: the collective contract names it
        msgs = " ".join(f.message for f in r.failures)
        assert "collectives" in msgs and "one per param group" in msgs, _explain(r)
        assert not [f for f in r.failures if f.kind == "tolerance"], _explain(r)
        return
    assert r.exposes_state and r.exposes_stages, _explain(r)
    assert r.stage == w.stage, _explain(r)


def test_drifting_step_counts_are_named() -> None:
    """Beyond the stage: the ranks' step counts are compared after every step."""
    (w,) = [x for x in WRONG if x.attr == "SkipZeroShardStep"]
    r = _check(2, w, [w.scenario])
    assert any("step counts differ" in f.message for f in r.failures), _explain(r)


@pytest.mark.parametrize("w", CONTROL, ids=lambda w: w.attr)
def test_the_control_is_accepted_on_every_sharding_scenario(w: Planted) -> None:
    r = _check(2, w, [s.name for s in SHARDING])
    assert r.verdict == "pass", _explain(r)
