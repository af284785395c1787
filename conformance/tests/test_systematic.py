"""Meta-tests of the statistical verdict: near misses on both sides of its floor.

The planted ports (``conformance.wrong_ports.systematic_torch``) are hand ports with their own
state names whose every step is off by a relative bias far below the per-coordinate budget. The
statistical verdict must catch those beyond its floor (a learning rate off by 8 unit roundoffs
is caught by it alone), pass the one inside it, and name float32 bias corrections in a float64
port (pytorch_optimizer's QHAdam) a systematic deviation. The estimator itself is checked on
synthetic clusters with a known bias.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")

from conformance import systematic as S
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.wrong_ports import systematic_torch as W

U32 = 2.0**-24


@functools.cache
def _check(name: str, dtype: str, scenario: str = "exact_betas", quick: bool = True) -> PortResult:
    cls = getattr(W, name)
    return check_port(
        torch_factory(cls, dtype), "adam", scenarios=[scenario], quick=quick, dtype=dtype, name=name
    )


def _test(r: PortResult, scenario: str = "exact_betas") -> dict[str, Any]:
    assert r.systematic is not None
    found = [
        t for t in r.systematic["tests"] if (t["scenario"], t["quantity"]) == (scenario, "params")
    ]
    assert found, r.systematic
    return found[0]


def _kinds(r: PortResult) -> set[str]:
    return {f.kind for f in r.failures}


def test_lr_off_by_8u_is_caught_by_the_statistical_verdict_alone() -> None:
    r = _check("LrPlus8uAdam", "float32")
    t = _test(r)
    assert r.verdict == "fail" and _kinds(r) == {"systematic"}, r.message
    assert t["rejected"] and t["low"] > t["floor"], t
    assert t["low"] <= 8 * U32 <= t["high"], t  # the interval holds the planted bias
    assert r.message.startswith("systematic") and "systematic deviation" in r.message


def test_a_bias_just_inside_the_floor_passes() -> None:
    r = _check("InsideFloorAdam", "float32")
    t = _test(r)
    assert r.verdict == "pass", r.message
    # the estimate sees the bias (-2u, interval below 0) and the floor still allows it
    assert t["high"] < 0 and not t["rejected"], t
    assert abs(t["delta"]) < t["floor"] < 6 * U32, t


def test_the_control_passes_with_a_zero_bias_in_its_interval() -> None:
    r = _check("HandAdam", "float32")
    t = _test(r)
    assert r.verdict == "pass", r.message
    assert t["low"] <= 0.0 <= t["high"], t


@pytest.mark.parametrize(
    ("name", "dtype", "bias"),
    [("DenomBiasAdam", "float32", 1e-6), ("DenomBias1e14Adam", "float64", 1e-14)],
)
def test_a_relative_bias_of_the_denominator_is_detected(name: str, dtype: str, bias: float) -> None:
    r = _check(name, dtype)
    t = _test(r)
    assert "systematic" in _kinds(r), r.message
    assert t["rejected"] and t["high"] < -t["floor"], t
    assert t["floor"] < bias / 2, t  # detected by the statistics, not only by its budget


def test_float32_bias_corrections_in_a_float64_port_are_a_systematic_deviation() -> None:
    r = _check("Float32CorrectionsAdam", "float64", "normal", quick=False)
    t = _test(r, "normal")
    assert r.verdict == "fail" and "systematic" in _kinds(r), r.message
    assert t["rejected"] and abs(t["delta"]) > 1e3 * t["floor"], t
    listed = [f.message for f in r.failures if f.kind == "systematic"]
    assert listed and "systematic deviation" in listed[0]


def _synthetic(delta: float, floor: float, k: int, seed: int) -> S.SystematicVerdict:
    """k clusters of 200 coordinates: y = delta z + noise with a cluster-shared component."""
    rng = np.random.default_rng(seed)
    st = S.SystematicStats()
    for _ in range(k):
        z = rng.standard_normal(200) * 10.0
        shared = rng.standard_normal() * 1e-3  # a per-cluster shift, as SET-Adam's c_l gives
        y = (delta + shared) * z + rng.standard_normal(200)
        # phi = beta / B with beta = floor |d|: a shift the floor allows at every coordinate
        st.sums.setdefault(("synthetic", "params"), S.Sums()).add(y, z, floor * np.abs(z))
    return st.judge()


def test_the_estimator_covers_its_bias_and_respects_the_floor() -> None:
    covered = 0
    for seed in range(40):
        t = _synthetic(2e-3, 0.0, 30, seed).tests[0]
        covered += t.low <= 2e-3 <= t.high
        assert t.floor == 0.0 and t.clusters == 30 and t.coordinates == 6000
    assert covered == 40  # at confidence 1 - 1e-6 every interval holds the truth
    assert _synthetic(2e-2, 0.0, 30, 1).tests[0].rejected
    # the same bias inside a floor that allows it: not a deviation
    inside = _synthetic(2e-2, 5e-2, 30, 1).tests[0]
    assert inside.floor == pytest.approx(5e-2) and not inside.rejected
    few = _synthetic(2e-2, 0.0, S.MIN_CLUSTERS - 1, 1)
    assert not few.tests and "needed" in few.not_tested[0]


def test_overflowing_sums_are_not_tested_rather_than_passed() -> None:
    """Scaled errors whose products overflow give NaN and inf sums; a NaN estimate compares
    false with the floor, which read as "no deviation": it is now not tested, with the reason."""
    st = S.SystematicStats()
    for _ in range(S.MIN_CLUSTERS + 2):
        z = np.full(10, 1e200)
        st.sums.setdefault(("huge", "params"), S.Sums()).add(z, z, np.zeros(10))
    v = st.judge()
    assert not v.tests and "overflow" in v.not_tested[0]
