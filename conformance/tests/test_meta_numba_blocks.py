"""``big_layers`` earns its place against a block-parallel CPU kernel: the bug a numba author makes.

The planted ports (``conformance.tests.numba_wrong.block_port``: an outside implementer's numba
SET-Adam, its own kernels and state names, cut into blocks of 2^16 entries, one ``prange`` item
each) get the combination of the blocks' partials wrong, which only a layer bigger than one
block shows. Each is rejected by ``big_layers`` at step 1, re-synced, at the stage its mistake
enters (the diagnosis reads the port's stage intermediates): ``down_scaling`` where $c_l$ and
$\\min v$ are a block's own, ``down_translating`` where only $\\min v$ is. The older scenarios
(the ``--quick`` subset less the scale families, and the contract families) pass it; the correct
combination passes ``big_layers`` and those too. float64 only (numba compiles each dtype on first
use). Skipped, with the reason, where numba is not installed.
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")
pytest.importorskip("numba", reason="numba (the optional extra setadam-ref[numba]) not installed")

from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests._older import older
from conformance.tests.numba_wrong import block_port as B
from setadam_ref import stage_names as N

FAMILY = "big_layers"
OLDER = older()


@functools.cache
def _check(port: str, scenarios: tuple[str, ...]) -> PortResult:
    """One float64 check of ``port`` with its stages read, quick horizons, diagnosed."""
    return check_port(
        torch_factory(getattr(B, port), "float64", record_stages=True), "setadam", None,
        list(scenarios), quick=True, dtype="float64", name=port,
    )  # fmt: skip


def _statuses(r: PortResult) -> dict[str, str]:
    return {s.scenario: s.status for s in r.scenarios}


def test_the_layers_of_big_layers_span_several_blocks_and_the_older_ones_one() -> None:
    from conformance import scenarios as S

    assert (
        min(a.size for a in S.get(FAMILY).problem(quick=True).params0) > B.BLOCK
    )  # two blocks or more
    assert max(a.size for n in OLDER for a in S.get(n).problem(quick=True).params0) < B.BLOCK


def test_the_correct_block_combination_passes() -> None:
    r = _check("BlockSETAdam", (FAMILY, *OLDER))
    st = _statuses(r)
    # sparse_layers(_stopped): a layer of two tensors, which this port (one layer per tensor)
    # cannot take
    layered = dict.fromkeys(("sparse_layers", "sparse_layers_stopped"), "skip")
    assert st == {**dict.fromkeys((FAMILY, *OLDER), "pass"), **layered}, r.failures
    assert "one SET-Adam layer per tensor" in r.scenarios[-1].reason


@pytest.mark.parametrize(
    ("port", "stage"),
    [("BlockStatsSETAdam", N.DOWN_SCALING), ("BlockMinSETAdam", N.DOWN_TRANSLATING)],
)
def test_a_per_block_statistic_is_caught_by_big_layers_only(port: str, stage: str) -> None:
    r = _check(port, (FAMILY, *OLDER))
    st = _statuses(r)
    assert st[FAMILY] == "fail", st
    assert all(s in ("pass", "skip") for n, s in st.items() if n != FAMILY), r.failures
    assert {f.scenario for f in r.failures} == {FAMILY}
    # the first stage over budget, from the port's own intermediates; m and v are right
    assert r.stage == stage, (r.stage, r.diagnosis)
    assert r.diagnosis is not None and "stage intermediates" in r.diagnosis["stage_basis"]
    first = {(f.mode, f.stage, f.step) for f in r.failures}
    assert {("resync", stage, 1), ("resync", N.PARAMS, 1), ("free", N.PARAMS, 1)} <= first
    assert not {f.stage for f in r.failures} & {N.M, N.V}, r.failures
    # not a near miss: off by orders of magnitude over the budget
    worst = max(f.budget_fraction or 0.0 for f in r.failures)
    assert worst > 1e6, r.failures
