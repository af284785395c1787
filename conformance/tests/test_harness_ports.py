"""Correct real ports pass: torch.optim Adam/AdamW in every CPU path, optax, our torch/JAX ports,
and the reference self-checks."""

from __future__ import annotations

import pytest

from conformance.runner import check_port

SCEN = ["normal", "zero_layers", "weight_decay_l2", "weight_decay_decoupled", "amsgrad", "maximize"]


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_torch_optim_all_cpu_paths_pass(dtype: str) -> None:
    pytest.importorskip("torch")
    from conformance.adapters import torch_optim

    for spec in torch_optim.specs("cpu", (dtype,)):
        r = check_port(spec, scenarios=SCEN, quick=True)
        assert r.verdict == "pass", f"{r.label}: {r.message}"
        ran = {s.scenario for s in r.scenarios if s.status == "pass"}
        kind = "Adam" if ".Adam[" in spec.name else "AdamW"
        assert ("weight_decay_l2" in ran) == (kind == "Adam")
        assert ("weight_decay_decoupled" in ran) == (kind == "AdamW")
        assert r.exposes_state


def test_torch_optim_float16_fused_quick() -> None:
    pytest.importorskip("torch")
    from conformance.adapters import torch_optim

    spec = next(s for s in torch_optim.specs("cpu", ("float16",)) if "Adam[fused]" in s.name)
    r = check_port(spec, scenarios=["normal", "single_element"], quick=True)
    assert r.verdict == "pass", r.message


def test_optax_adam_adamw_pass() -> None:
    pytest.importorskip("optax")
    from conformance.adapters import optax_adapter

    for spec in optax_adapter.specs("cpu", ("float32",)):
        r = check_port(
            spec, scenarios=["normal", "weight_decay_decoupled", "quadratic"], quick=True
        )
        assert r.verdict == "pass", f"{r.label}: {r.message}"


def test_ours_torch_and_jax_pass() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("optax")
    from conformance.adapters import ours_jax, ours_torch

    # the compiled and numba paths record no stages (and compile): test_port_torch_compiled,
    # test_port_torch_numba
    torch_specs = [s for s in ours_torch.specs("cpu", ("float64", "bfloat16")) if "[compiled]" not in s.name and "[numba]" not in s.name]  # fmt: skip
    specs = torch_specs + ours_jax.specs("cpu", ("float32",))
    for spec in specs:
        r = check_port(spec, scenarios=["normal", "zero_layers", "tau_0.9", "mlp"], quick=True)
        assert r.verdict == "pass", f"{r.label}: {r.message}"
        if spec.name.startswith("ours.torch"):
            assert r.exposes_stages


def test_reference_selfchecks_pass() -> None:
    pytest.importorskip("mpmath")
    from conformance.adapters import selfcheck

    for spec in selfcheck.specs():
        r = check_port(spec, quick=True)
        assert r.verdict == "pass", f"{r.label}: {r.message}"


def test_torch_wrong_convention_is_caught() -> None:
    """torch.optim.Adam driven as if it were AdamW (decoupled) must fail at step 1."""
    pytest.importorskip("torch")
    from conformance.adapters import torch_optim

    fac = torch_optim.factory("Adam", "foreach", "float64", "cpu")
    r = check_port(fac, "adam", scenarios=["weight_decay_decoupled"], quick=True)
    assert r.verdict == "fail"
    assert r.stage == "m" and r.failures[0].step == 1
