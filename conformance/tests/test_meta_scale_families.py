"""Each scale family earns its place: a fast-kernel bug that only its regime exposes.

The planted ports (``conformance.wrong_ports.outside_kernels``) keep their state under their own
names and get one thing wrong about chunks or launches. Each must fail its family (on the
parameters, the stage every target exposes) and pass every older scenario; the correct chunked
kernel must pass the families (no false alarm from the sizes themselves).
"""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("torch")

from conformance import scenarios as S
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.wrong_ports import outside_kernels as K
from setadam_ref import stage_names as N

FAMILIES = ("big_layers", "many_tensors")
#: the older scenarios a port must pass (the --quick subset: every regime they reach)
#: the scenarios older than the families; the contract families (groups, schedules, sparse) are
#: siblings with planted ports of their own, and these single-group kernels do not take them
OLDER = tuple(
    s.name for s in S.select(None, quick=True) if not {"scale", "contract"} & set(s.tags)
)


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
    r = _check("ChunkedSETAdam", FAMILIES)
    assert [s.status for s in r.scenarios] == ["pass", "pass"], r.failures


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
