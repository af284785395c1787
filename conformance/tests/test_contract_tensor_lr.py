"""A 0-d tensor lr (``schedules_tensor_lr``): driven where torch takes it, skipped with why.

The torch adapter gives every group ``lr = torch.tensor(lr_k, dtype=float64)`` and schedules it
as in ``schedules`` (a real ``LambdaLR`` free-running; ``group["lr"] * f`` re-synced). Whether a
target takes it is decided by a probe step in ``configure`` (in the port's worker): one step on a
small parameter must run and move it. A refusal (torch's foreach path without capturable raises)
or a step that does nothing is a skip with the reason; a step that moves the parameter wrongly is
judged, and fails: the probe never turns a real failure into a skip.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")

import torch

from conformance.contract import contract_of
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get
from conformance.tests._factories import torch_factory
from conformance.tests.contract_wrong.tensor_lr import Float32TensorLRAdam, InertTensorLRAdam

NAME = "schedules_tensor_lr"


def _torch_optim(kind: str, path: str, dtype: str) -> PortResult:
    from conformance.adapters import torch_optim

    return check_port(
        torch_optim.factory(kind, path, dtype, "cpu"), "adam", None, [NAME], quick=True,
        dtype=dtype, supports=torch_optim.supports(kind), diagnose=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "path", "dtype"),
    [("Adam", "forloop", "float64"), ("Adam", "fused", "float32"), ("AdamW", "forloop", "float32")],
)
def test_torch_optim_takes_a_tensor_lr(kind: str, path: str, dtype: str) -> None:
    (s,) = _torch_optim(kind, path, dtype).scenarios
    assert s.status == "pass" and not s.reason, s.reason


def test_foreach_without_capturable_is_skipped_with_torchs_reason() -> None:
    (s,) = _torch_optim("Adam", "foreach", "float32").scenarios
    assert s.status == "skip"
    assert "does not take a 0-d tensor lr" in s.reason and "capturable=False" in s.reason


def test_our_torch_setadam_takes_a_tensor_lr() -> None:
    from conformance.adapters import ours_torch

    r = check_port(
        ours_torch.factory("single", "float64", "cpu"), "setadam", None, [NAME], quick=True,
        dtype="float64", supports=ours_torch.supports, diagnose=False,
    )  # fmt: skip
    assert [s.status for s in r.scenarios] == ["pass"], r.failures


def test_the_groups_lr_is_a_float64_tensor_free_and_resynced() -> None:
    from conformance.adapters import torch_optim
    from conformance.reference_run import build_reference_for

    sc = get(NAME)
    prob, cfg = sc.problem(quick=True), sc.config("adam")
    contract = contract_of(prob, cfg)
    assert contract is not None and contract.tensor_lr and contract.lr_factors is not None
    port = torch_optim.factory("Adam", "forloop", "float64", "cpu")(cfg)
    port.configure(contract)
    port.reset(prob.params0)
    for t in (1, 2):
        lr = port._opt.param_groups[0]["lr"]
        assert torch.is_tensor(lr) and lr.dtype == torch.float64 and lr.ndim == 0
        assert float(lr) == cfg.lr * contract.lr_factors[t - 1]  # LambdaLR, in place
        port.step(prob.grads[t - 1] if prob.grads else ())
    port.reset(prob.params0, build_reference_for(prob, cfg, "float64").resync[3].state)
    lr = port._opt.param_groups[0]["lr"]
    assert torch.is_tensor(lr) and float(lr) == cfg.lr * contract.lr_factors[2]


def test_jax_is_skipped_with_the_reason() -> None:
    pytest.importorskip("optax")
    from conformance.adapters import ours_jax

    r = check_port(
        ours_jax.factory("float64", "cpu"), "setadam", None, [NAME], quick=True,
        dtype="float64", supports=ours_jax.supports, diagnose=False,
    )  # fmt: skip
    (s,) = r.scenarios
    assert s.status == "skip" and "0-d tensor lr is torch's" in s.reason, s.reason


@pytest.mark.parametrize(
    ("cls", "status"), [(InertTensorLRAdam, "skip"), (Float32TensorLRAdam, "fail")]
)
def test_the_probe_skips_what_does_nothing_and_judges_what_is_wrong(cls: Any, status: str) -> None:
    r = check_port(torch_factory(cls, "float64"), "adam", None, ["schedules", NAME], quick=True,
                   dtype="float64", diagnose=False)  # fmt: skip
    plain, tensor = r.scenarios
    assert plain.status == "pass", r.failures  # a float lr: both are torch.optim.Adam
    assert tensor.status == status, (tensor.reason, r.failures)
    if status == "skip":
        assert "left every parameter unchanged" in tensor.reason, tensor.reason
    else:  # the lr rounded to float32: ~1e5-1e6 budgets (test_contract_near_misses)
        assert max(f.budget_fraction or 0.0 for f in r.failures) > 1e4


def test_an_optimizer_refusing_param_groups_is_skipped_not_failed() -> None:
    """The probe in ``configure`` turns the constructor's refusal into the skip reason (it was
    an exception at the first reset, failing the family)."""
    from conformance.tests.contract_wrong.tensor_lr import OneGroupAdam

    r = check_port(torch_factory(OneGroupAdam, "float64"), "adam", None, ["normal", "groups"],
                   quick=True, dtype="float64", diagnose=False)  # fmt: skip
    normal, groups = r.scenarios
    assert normal.status == "pass" and groups.status == "skip", r.failures
    assert "does not take these param groups (ValueError: one set of" in groups.reason
