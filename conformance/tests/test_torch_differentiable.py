"""torch.optim.Adam(differentiable=True) driven as torch's own tests drive it (non-leaf clones of
leaves that require grad, the step with grad enabled): it was an error ("a leaf Variable that
requires grad is being used in an in-place operation"); now it is judged like any other port."""

from __future__ import annotations

import pytest

from conformance.adapters import _torch_differentiable as TD
from conformance.adapters import third_party
from conformance.runner import check_port

torch = pytest.importorskip("torch")


def test_parameters_are_non_leaf_clones_that_require_grad() -> None:
    leaves = [torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    opt, params = TD.build(lambda ps: torch.optim.Adam(ps, differentiable=True), leaves)
    assert not params[0].is_leaf and params[0].requires_grad
    params[0].grad = torch.ones(3, dtype=torch.float64)
    opt.step()  # the in-place update of a leaf would raise here
    assert params[0].grad_fn is not None  # the update is on the graph
    plain, same = TD.build(lambda ps: torch.optim.Adam(ps), leaves)
    assert same is leaves and not TD.is_differentiable(plain)


def test_differentiable_adam_passes_in_float32() -> None:
    spec = third_party.spec(torch.optim.Adam, "torch", "adam", hyper={"differentiable": True},
                            dtype="float32")  # fmt: skip
    r = check_port(spec, scenarios=["normal", "tiny_gradients", "amsgrad", "quadratic"], quick=True)
    assert r.verdict == "pass", r.failures


def test_differentiable_adam_in_float64_is_named_float32_bias_corrections() -> None:
    """Not an error any more, and not a false pass: the differentiable path keeps its step
    counter a float32 tensor (as the capturable path does), so in float64 its bias corrections
    are float32-accurate; the diagnosis says so."""
    spec = third_party.spec(torch.optim.Adam, "torch", "adam", hyper={"differentiable": True})
    r = check_port(spec, scenarios=["normal"], quick=True)
    assert r.verdict == "fail" and r.failures[0].kind == "tolerance"
    assert r.likely_causes and r.likely_causes[0][0] == "adam_bias_corrections_float32"
