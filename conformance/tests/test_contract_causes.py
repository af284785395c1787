"""A failing contract scenario names its stage and its cause (``conformance.contract_causes``).

The planted ports of ``contract_wrong`` (outside-style torch Adams, their own state names) are
rejected by their family; the diagnosis names the first stage over budget where the port's state
is read (``m`` for hoisted hyperparameters: group 1's betas and weight decay reach m) or the
best entry's stage where only the parameters disagree, and the contract's catalogue names the
cause, alone. Our torch SET-Adam records stage intermediates: in a contract scenario they are
compared for the parameters with a gradient, and it passes.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")

from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests.contract_wrong.cached_lr import CachedLRAdam
from conformance.tests.contract_wrong.eager_counter import EagerCountAdam
from conformance.tests.contract_wrong.group0_hyper import HoistedAdam
from conformance.wrong_ports.outside_kernels import GroupCountSETAdam
from setadam_ref import stage_names as N

CASES = [
    (HoistedAdam, "adam", "groups", N.M, "group0_hyperparameters", "compared m/v state"),
    (CachedLRAdam, "adam", "schedules", N.UPDATE, "lr_schedule_ignored", "inferred"),
    (EagerCountAdam, "adam", "sparse", N.UPDATE, "count_advanced_without_gradient", "inferred"),
    (GroupCountSETAdam, "setadam", "sparse", N.UPDATE, "count_advanced_without_gradient",
     "inferred"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "algorithm", "family", "stage", "cause", "basis"),
    CASES,
    ids=[c[0].__name__ for c in CASES],
)
def test_planted_contract_port_gets_its_stage_and_cause(
    cls: Any, algorithm: str, family: str, stage: str, cause: str, basis: str
) -> None:
    r = check_port(torch_factory(cls, "float64"), algorithm, None, [family], quick=True,
                   dtype="float64")  # fmt: skip
    assert r.verdict == "fail"
    assert r.stage == stage, r.diagnosis
    assert [c for c, *_ in r.likely_causes] == [cause], r.likely_causes
    diag = r.diagnosis or {}
    assert "contract" in diag["cause_basis"] and basis in diag["stage_basis"], diag


def test_a_correct_port_gets_no_contract_cause() -> None:
    """The harness's own conventions: torch.optim.Adam passes and nothing is ranked."""
    from conformance.adapters import torch_optim

    r = check_port(
        torch_optim.factory("Adam", "forloop", "float64", "cpu"), "adam", None,
        ["groups", "schedules", "sparse"], quick=True, dtype="float64",
        supports=torch_optim.supports("Adam"),
    )  # fmt: skip
    assert r.verdict == "pass" and not r.likely_causes, r.failures


def test_our_port_stages_are_compared_in_contract_scenarios() -> None:
    """Its stage records (NaN and a zero update for a skipped parameter) are compared in
    ``sparse_layers`` (a skipped array out of its layer) and ``groups``: it passes, and a
    contract scenario no longer says its stages are not compared."""
    from conformance.adapters import ours_torch

    r = check_port(
        ours_torch.factory("single", "float64", "cpu"), "setadam", None,
        ["groups", "sparse_layers"], quick=True, dtype="float64", supports=ours_torch.supports,
        diagnose=False,
    )  # fmt: skip
    assert [s.status for s in r.scenarios] == ["pass", "pass"], r.failures
    assert r.exposes_stages
    notes = " ".join(n for s in r.scenarios for n in s.notes)
    assert "stage intermediates of the parameters with a gradient compared" in notes
