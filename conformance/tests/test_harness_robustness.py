"""The harness against misbehaving and wrong NumPy ports: clear verdicts, never a crash."""

from __future__ import annotations

import time

import pytest

from conformance.runner import check_port
from conformance.tests import _numpy_ports as P
from setadam_ref import SETAdamConfig

SCEN = ["normal", "zero_layers"]


def _check(cls, dtype="float64", scenarios=SCEN, **kw):
    return check_port(lambda cfg: cls(cfg, dtype), "setadam", scenarios=scenarios, quick=True, **kw)


def test_correct_numpy_port_passes_float64_and_float32() -> None:
    for dt in ("float64", "float32"):
        r = _check(P.NumpySETAdam, dt, ["normal", "zero_layers", "tau_0.9", "weight_decay_l2"])
        assert r.verdict == "pass", r.message
        assert r.exposes_state and r.exposes_stages
        assert 0 < r.worst_fraction() <= 1


def test_wrong_port_rejected_with_stage() -> None:
    r = _check(P.EpsOutside, scenarios=["tiny_gradients"])
    assert r.verdict == "fail"
    assert r.stage == "epsilon_embedding"
    f = r.failures[0]
    assert (
        f.step == 1
        and f.mode == "resync"
        and f.budget_fraction is not None
        and f.budget_fraction > 1
    )
    assert r.diagnosis and r.diagnosis["first_failure"]["step"] == 1


def test_nan_on_zero_layer_rejected() -> None:
    r = _check(P.NaNOnZero, scenarios=["zero_layers"])
    assert r.verdict == "fail"
    assert any(f.kind == "nonfinite" for f in r.failures)


def test_raising_port() -> None:
    r = _check(P.Raises)
    assert r.verdict == "fail"
    assert any(f.kind == "exception" and "boom" in f.message for f in r.failures)


def test_wrong_shape_port() -> None:
    r = _check(P.WrongShape)
    assert r.verdict == "fail"
    assert any(f.kind == "interface" and "shape" in f.message for f in r.failures)


def test_dtype_lie_port() -> None:
    r = check_port(lambda cfg: P.DtypeLie(cfg), "setadam", scenarios=["normal"], quick=True)
    assert r.verdict == "fail"
    assert any("not representable" in f.message for f in r.failures)


def test_hanging_port_times_out() -> None:
    t0 = time.perf_counter()
    P.Hangs.release.clear()
    try:
        r = _check(P.Hangs, timeout_s=0.5)
    finally:
        P.Hangs.release.set()
    assert time.perf_counter() - t0 < 10
    assert r.verdict == "fail"
    assert any(f.kind == "timeout" for f in r.failures)
    assert "hung" in r.message or "timeout" in r.message


def test_mutated_gradients_reported() -> None:
    r = _check(P.MutatesGrads, scenarios=["normal"])
    assert r.verdict == "fail"
    assert any(f.kind == "side_effect" for f in r.failures)


def test_port_without_resync_is_compared_free_running() -> None:
    r = _check(P.NoResync, scenarios=["normal"])
    assert r.verdict == "pass", r.message
    s = r.scenarios[0]
    assert "free-running only" in s.reason and s.free and not s.resync


def test_factory_that_raises() -> None:
    def bad(cfg):
        raise ImportError("no such framework")

    r = check_port(bad, "setadam", scenarios=["normal"], quick=True)
    assert r.verdict == "fail" and "ImportError" in r.message


def test_bad_algorithm_is_a_usage_error() -> None:
    with pytest.raises(ValueError):
        check_port(lambda cfg: P.NumpySETAdam(cfg), "sgd")
    with pytest.raises(ValueError):
        check_port(lambda cfg: P.NumpySETAdam(cfg), "adam", SETAdamConfig())


def test_reports_of_checked_ports_survive_bad_ports(tmp_path) -> None:
    """A raising, a hanging and a correct port in one CLI run: all three reported, exit 1."""
    import json

    from conformance.batch import Limits
    from conformance.batch import check_specs as _check_specs
    from conformance.results import PortSpec

    def spec(name, cls):
        return PortSpec(name, "setadam", "float64", "cpu", lambda cfg: cls(cfg), timeout_s=0.5)

    specs = [spec("raises", P.Raises), spec("hangs", P.Hangs), spec("good", P.NumpySETAdam)]
    P.Hangs.release.clear()
    try:
        code = _check_specs(
            specs, scenarios=["normal"], quick=True, outdir=tmp_path, options={}, notes=[],
            progress=False, limits=Limits(timeout_s=0.5),
        )  # fmt: skip
    finally:
        P.Hangs.release.set()
    assert code == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    verdicts = {p["name"]: p["verdict"] for p in rep["ports"]}
    assert verdicts == {"raises": "fail", "hangs": "fail", "good": "pass"}
    assert rep["complete"] is True
