"""The TensorFlow / Keras Adam form (``AdamConfig(eps_mode="tf")``) judged by its own budget.

A correct TF-style port (``tf_style_ports``, Keras' state names and order of operations) passes
in float64 and float32; ``torch.optim.Adam``, which differs from it by the placement of eps
only (eps on $\\sqrt{\\hat v}$, not on $\\sqrt v$), fails against the TF-form reference: the
near miss that shows the budget sees the eps placement.
"""

from __future__ import annotations

import pytest
import torch

from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.tests.tf_style_ports import TFStyleAdam
from setadam_ref import AdamConfig

#: scenarios in which eps, amsgrad and decoupled decay all show (TFStyleAdam decays decoupled)
SCENARIOS = ["normal", "tiny_gradients", "large_eps", "amsgrad", "weight_decay_decoupled"]
TF = AdamConfig(eps=1e-7, eps_mode="tf")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_tf_style_port_passes_as_tf_form(dtype: str) -> None:
    r = check_port(
        torch_factory(TFStyleAdam, dtype), "adam", TF, SCENARIOS, quick=True, dtype=dtype
    )
    assert r.verdict == "pass", r.failures


def test_the_same_port_fails_as_torch_form() -> None:
    r = check_port(
        torch_factory(TFStyleAdam, "float64"), "adam", AdamConfig(eps=1e-7), ["tiny_gradients"],
        quick=True, dtype="float64",
    )  # fmt: skip
    assert r.verdict == "fail"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_adam_fails_against_the_tf_form(dtype: str) -> None:
    """Near miss: torch.optim.Adam and the TF form differ by where eps goes, nothing else."""
    r = check_port(
        torch_factory(torch.optim.Adam, dtype), "adam", TF, ["tiny_gradients"], quick=True,
        dtype=dtype,
    )  # fmt: skip
    assert r.verdict == "fail"
    assert r.failures[0].scenario == "tiny_gradients"
    # and the diagnosis names it: the other eps placement explains the port (to rounding)
    assert r.likely_causes and r.likely_causes[0][0] == "adam_tf_style_eps"
