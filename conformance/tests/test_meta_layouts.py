"""The layouts family earns its place: a kernel that mixes memory order and logical order.

``conformance.wrong_ports.outside_layouts.StorageOrderSETAdam`` reads every tensor through its
storage and writes the parameters back in logical order; it must fail ``layouts`` on the
parameters (re-synced, from step 1) and pass every older scenario; its fixed twin, our ports and
torch.optim must pass ``layouts``. JAX has no layout to request: skipped with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from conformance import scenarios as S
from conformance.adapters import registry
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests._older import check_planted, older_for_group_counters
from conformance.wrong_ports import outside_layouts as L
from setadam_ref import SETAdamConfig
from setadam_ref import stage_names as N

#: the scenarios a port must pass (its counter is one per param group: not ``sparse``)
OLDER = older_for_group_counters()


def _check(cls: Any, scenarios: tuple[str, ...]) -> PortResult:
    return check_planted(cls, "float64", scenarios)


def test_the_adapter_makes_the_layouts_asked_for() -> None:
    sc = S.get("layouts")
    assert sc.layouts is not None and "layouts" not in OLDER
    assert {"transposed", "channels_last"} <= set(sc.layouts)
    port = torch_factory(L.StorageOrderFixedSETAdam, "float64")(SETAdamConfig())
    port.lay_out(sc.layouts)
    problem = sc.problem(True)
    port.reset(problem.params0)
    shapes = [np.shape(p) for p in problem.params0]
    assert any(n == 0 for s in shapes for n in s)  # zero-size arrays among the others
    for p, lay in zip(port._params, sc.layouts, strict=True):
        if lay == "transposed" and p.numel() > 1:
            assert not p.is_contiguous() and p.stride()[0] == 1
        if lay == "channels_last" and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            assert not p.is_contiguous()
            assert p.is_contiguous(memory_format=torch.channels_last)
        assert p.is_leaf


@pytest.mark.parametrize(
    "name",
    ["ours.torch.SETAdam[single]", "ours.torch.SETAdam[foreach]", "torch.optim.Adam[foreach]",
     "torch.optim.AdamW[fused]"],
)  # fmt: skip
def test_our_ports_and_torch_optim_pass_layouts(name: str) -> None:
    (spec,) = [s for s in registry.available_ports()[0] if s.name == name and s.dtype == "float32"]
    r = check_port(spec, scenarios=["layouts"], quick=True, diagnose=False)
    assert [s.status for s in r.scenarios] == ["pass"], r.failures


def test_the_storage_order_bug_is_caught_by_layouts_only() -> None:
    assert [s.status for s in _check(L.StorageOrderFixedSETAdam, ("layouts",)).scenarios] == [
        "pass"
    ]
    caught = _check(L.StorageOrderSETAdam, ("layouts",))
    assert [s.status for s in caught.scenarios] == ["fail"]
    assert ("resync", N.PARAMS, 1) in {(f.mode, f.stage, f.step) for f in caught.failures}
    older = _check(L.StorageOrderSETAdam, OLDER)
    missed = [s.scenario for s in older.scenarios if s.status not in ("pass", "skip")]
    assert not missed, older.failures


def test_jax_ports_skip_layouts_with_the_reason() -> None:
    pytest.importorskip("optax")
    (spec,) = [s for s in registry.available_ports()[0] if s.name == "optax.adam"
               and s.dtype == "float32"]  # fmt: skip
    (sr,) = check_port(spec, scenarios=["layouts"], quick=True, diagnose=False).scenarios
    assert sr.status == "skip" and "XLA" in sr.reason, sr.reason
