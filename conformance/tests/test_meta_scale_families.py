"""Each scale family earns its place: a fast-kernel bug that only its regime exposes.

The planted ports (``conformance.wrong_ports.outside_kernels``) keep their state under their own
names and get one thing wrong about chunks or launches. Each must fail its family (on the
parameters, the stage every target exposes) and pass every older scenario and the contract
families; the correct chunked kernel must pass the scale and contract families (no false alarm
from the sizes, the param groups or a counter kept per group).
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")

from conformance import scenarios as S
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests._older import older as older_scenarios
from conformance.wrong_ports import outside_kernels as K
from setadam_ref import stage_names as N

FAMILIES = ("big_layers", "many_tensors")
#: the scenarios a planted port must pass: the --quick subset less the scale families, and the
#: contract families (param groups, schedules, sparse participation: the regimes a kernel bug
#: of chunks or launches must not show in)
CONTRACT = tuple(s.name for s in S.CONTRACT)
OLDER = older_scenarios()


@functools.cache
def _check(port: str, scenarios: tuple[str, ...]) -> PortResult:
    return check_port(
        torch_factory(getattr(K, port), "float64"), "setadam", None, list(scenarios),
        quick=True, dtype="float64", name=port, diagnose=False,
    )  # fmt: skip


def test_families_are_listed_and_sized() -> None:
    big = S.get("big_layers").problem()
    assert max(a.size for a in big.params0) >= 2**17
    assert {a.size for a in big.params0} >= {2**17 + 1, 2**17 - 1}
    many = S.get("many_tensors").problem()
    sizes = [a.size for a in many.params0]
    assert len(sizes) >= 256 and min(sizes) == 0 and max(sizes) == 100_000
    assert any(n == 0 for n in sizes[256:])  # an empty tensor past a launcher's bound
    names = {s.name for s in S.select(None)}
    assert set(FAMILIES) <= names and "huge_layer" not in names  # opt-in only
    assert "huge_layer" in S.table()


def test_the_correct_chunked_kernel_passes_the_families() -> None:
    r = _check("ChunkedSETAdam", FAMILIES + CONTRACT)
    st = {s.scenario: s.status for s in r.scenarios}
    # sparse_layers(_stopped): a layer of two tensors is one param group for this port, skipped
    # with why
    layered = dict.fromkeys(("sparse_layers", "sparse_layers_stopped"), "skip")
    assert st == {**dict.fromkeys(FAMILIES + CONTRACT, "pass"), **layered}, st
    assert "one SET-Adam layer per tensor" in r.scenarios[-1].reason


def test_a_group_counter_is_resynced_in_every_group() -> None:
    """One counter per param group (``group["iteration"]``): a re-synced step writes the step
    count into every group, not only into the probe's group 0 (the false alarm this was: group
    1 at step 1 bias-corrected with t = 2, 1.2e13 x budget). Under ``sparse`` the group's count
    advances for a parameter skipped at step 2: rejected at step 3, array 1, free-running."""
    r = _check("GroupCountSETAdam", ("groups", "groups_decoupled", "schedules", "sparse"))
    st = {s.scenario: s.status for s in r.scenarios}
    assert st == {"groups": "pass", "groups_decoupled": "pass", "schedules": "pass",
                  "sparse": "fail"}, r.failures  # fmt: skip
    first = min(r.failures, key=lambda f: f.step or 0)
    assert (first.mode, first.step, first.array, first.stage) == ("free", 3, 1, N.PARAMS)


@pytest.mark.parametrize("port", sorted(K.PLANTED))
def test_planted_kernel_bug_is_caught_by_its_family_only(port: str) -> None:
    family = K.PLANTED[port]
    caught = _check(port, (family,))
    (sr,) = caught.scenarios
    assert sr.status == "fail"
    stages = {(f.scenario, f.stage) for f in caught.failures}
    assert (family, N.PARAMS) in stages, caught.failures
    older = _check(port, OLDER)
    missed = [s.scenario for s in older.scenarios if s.status not in ("pass", "skip")]
    assert not missed, older.failures
