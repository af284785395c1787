"""Every convention expressible (issue 11, item 4): hyperparameters by side, scenarios that run
whenever the target's signature takes their hyperparameter, JAX ``weight_decay`` always passed and
checked in the declared mode only. Real frameworks, real third-party targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import cli
from conformance.adapters import third_party
from conformance.runner import check_port
from conformance.scenarios import get
from setadam_ref import AdamConfig


def _status(r: object) -> dict[str, str]:
    return {s.scenario: s.status for s in r.scenarios}  # type: ignore[attr-defined]


def test_torch_adam_runs_amsgrad_and_maximize_without_hyper() -> None:
    """torch.optim.Adam's signature names amsgrad and maximize: their scenarios run (they were
    skipped unless --hyper amsgrad=false --hyper maximize=false) and pass."""
    torch = pytest.importorskip("torch")
    spec = third_party.spec(torch.optim.Adam, "torch", "adam")
    assert spec.supports is not None
    for name in ("amsgrad", "maximize"):
        assert spec.supports(get(name).config("adam", spec.base_config)) is None
    r = check_port(spec, scenarios=["amsgrad", "maximize"], quick=True)
    assert r.verdict == "pass" and _status(r) == {"amsgrad": "pass", "maximize": "pass"}


def test_a_field_the_signature_lacks_still_skips_with_the_reason() -> None:
    torch = pytest.importorskip("torch")
    spec = third_party.spec(torch.optim.Adam, "torch", "adam")
    assert spec.supports is not None
    why = spec.supports(AdamConfig(eps_root=1e-8))
    assert why is not None and "eps_root" in why


def test_optax_adamw_gets_weight_decay_zero_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """optax.adamw's default weight_decay is 1e-4: left out, every scenario without decay
    failed. The done-when command, on its quick subset plus the decoupled scenario."""
    pytest.importorskip("optax")
    code = cli.main(["check", "optax:adamw", "--framework", "jax", "--algorithm", "adam",
                     "--weight-decay-mode", "decoupled", "--quick", "--no-progress",
                     "--scenario", "normal", "--scenario", "weight_decay_decoupled",
                     "--report", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-1500:]
    rep = json.loads((tmp_path / "report.json").read_text())
    sc = {s["scenario"]: s["status"] for s in rep["ports"][0]["scenarios"]}
    assert sc == {"normal": "pass", "weight_decay_decoupled": "pass"}


def test_an_optax_style_setadam_with_l2_passes_in_l2_mode() -> None:
    """One ``weight_decay`` argument, applied as L2: checked in the declared mode only (the
    decoupled scenario skipped with the reason), tau taken from its signature."""
    pytest.importorskip("optax")
    from conformance.tests.optax_style_setadam import setadam

    spec = third_party.spec(setadam, "jax", "setadam", weight_decay_mode="l2", dtype="float64")
    scen = ["normal", "weight_decay_l2", "weight_decay_decoupled", "tau_0.9"]
    r = check_port(spec, scenarios=scen, quick=True)
    st = _status(r)
    assert r.verdict == "pass", r.failures
    assert st == {"normal": "pass", "weight_decay_l2": "pass", "weight_decay_decoupled": "skip",
                  "tau_0.9": "pass"}  # fmt: skip
    (skipped,) = [s for s in r.scenarios if s.status == "skip"]
    assert "l2 weight decay" in skipped.reason and "decoupled" in skipped.reason
    # the same port declared decoupled is judged in that mode, and fails it
    spec_d = third_party.spec(setadam, "jax", "setadam", weight_decay_mode="decoupled",
                              dtype="float64")  # fmt: skip
    assert check_port(spec_d, scenarios=["weight_decay_decoupled"], quick=True).verdict == "fail"


def _check_args(*extra: str) -> list[str]:
    return ["check", "torch.optim:Adam", "--framework", "torch", "--algorithm", "adam", *extra]


def test_hyper_by_side() -> None:
    p = cli.build_parser()
    args = p.parse_args(_check_args("--reference-hyper", "eps_mode=tf", "--target-hyper",
                                    "foreach=False", "--hyper", "eps=1e-7"))  # fmt: skip
    (spec,), hyper = cli.check_specs_of(args)
    assert isinstance(spec.base_config, AdamConfig)
    assert spec.base_config.eps_mode == "tf" and spec.base_config.eps == 1e-7
    assert hyper == {"eps": 1e-7}
    assert spec.locator is not None
    assert spec.locator.options["target_hyper"] == {"foreach": False}
    assert spec.locator.options["reference_hyper"] == {"eps_mode": "tf"}


def test_a_reference_hyper_the_reference_lacks_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(_check_args("--reference-hyper", "foreach=True")) == 2
    out = capsys.readouterr()
    assert "has no field 'foreach'" in out.out + out.err


def test_a_hyper_name_without_reference_field_is_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    assert third_party.hyper_notes("adam", {"eps": 1e-8, "foreach": False}) == [
        "--hyper foreach: the reference AdamConfig has no field 'foreach', so it goes to the "
        "target only (say so with --target-hyper foreach=...)"
    ]
    code = cli.main(_check_args("--hyper", "foreach=False", "--quick", "--no-progress",
                                "--scenario", "normal", "--report", str(tmp_path)))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out[-1500:]
    assert "--hyper foreach: the reference AdamConfig has no field" in out
    rep = json.loads((tmp_path / "report.json").read_text())
    assert any("--hyper foreach" in n for n in rep["notes"])
