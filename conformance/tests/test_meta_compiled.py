"""The compiled family earns its place: a bug in the branch only ``torch.compile`` takes.

``compiled`` (opt-in: a compilation per port and dtype) runs the open-loop stream through
``torch.compile(opt.step)``. ``conformance.wrong_ports.outside_compile.CompileBranchSETAdam``
must fail it on the free-running parameters from step 1 and pass every older (eager) scenario;
its eager twin's first compiled step must be right (so the catch is the branch's), and
torch.optim's fused AdamW must pass it. Our SETAdam must trace under dynamo as users compile it (its
group gathering was once named ``_init_group``, which dynamo runs eagerly and requires to return
a constant: the step raised).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from conformance import scenarios as S
from conformance.adapters import registry
from conformance.ports.torch_setadam import SETAdam
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._older import check_planted, older_for_group_counters
from conformance.wrong_ports.outside_compile import CompileBranchSETAdam
from conformance.wrong_ports.outside_layouts import StorageOrderFixedSETAdam
from setadam_ref import stage_names as N

#: the scenarios a port must pass (its counter is one per param group: not ``sparse``)
OLDER = older_for_group_counters()


def _check(cls: Any, scenarios: tuple[str, ...]) -> PortResult:
    return check_planted(cls, "float32", scenarios)


def test_compiled_is_opt_in_and_listed() -> None:
    sc = S.get("compiled")
    assert sc.compiled and sc.opt_in and "compiled" not in {s.name for s in S.select(None)}
    assert "compiled" in S.table() and "opt-in" in S.table()


def test_our_setadam_traces_under_dynamo_as_users_compile_it() -> None:
    def run(compiled: bool) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        ps = [torch.randn(8, 6, generator=gen, dtype=torch.float64).requires_grad_(),
              torch.randn(5, generator=gen, dtype=torch.float64).requires_grad_()]  # fmt: skip
        opt = SETAdam(ps, lr=1e-2, foreach=True)
        step = torch.compile(opt.step, backend="eager") if compiled else opt.step
        for _ in range(2):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            step()
        return [p.detach() for p in ps]

    for a, b in zip(run(True), run(False), strict=True):
        assert torch.equal(a, b)


def test_the_compile_branch_bug_is_caught_by_compiled_only() -> None:
    caught = _check(CompileBranchSETAdam, ("compiled",))
    assert [s.status for s in caught.scenarios] == ["fail"]
    # at step 1: only the branch's 1 - beta2^0 = 0 makes that step wrong (its eager twin's first
    # compiled step is right; from step 2 on, in-place moment updates through views of its
    # state go wrong under the recompiled graph too: an open finding, docs/src/guide/harness.md)
    failed = {(f.mode, f.stage, f.step) for f in caught.failures}
    assert ("free", N.PARAMS, 1) in failed, caught.failures
    twin = _check(StorageOrderFixedSETAdam, ("compiled",))
    assert all((f.step or 0) >= 2 for f in twin.failures), twin.failures
    older = _check(CompileBranchSETAdam, OLDER)
    missed = [s.scenario for s in older.scenarios if s.status not in ("pass", "skip")]
    assert not missed, older.failures


def test_torch_fused_adamw_passes_compiled_and_jax_skips_it() -> None:
    specs = registry.available_ports()[0]
    (spec,) = [s for s in specs if s.name == "torch.optim.AdamW[fused]" and s.dtype == "float32"]
    r = check_port(spec, scenarios=["compiled"], quick=True, diagnose=False)
    assert [s.status for s in r.scenarios] == ["pass"], r.failures
    pytest.importorskip("optax")
    (spec,) = [s for s in specs if s.name == "optax.adam" and s.dtype == "float32"]
    (sr,) = check_port(spec, scenarios=["compiled"], quick=True, diagnose=False).scenarios
    assert sr.status == "skip" and "jax.jit" in sr.reason, sr.reason
