"""Numerics: overflow-safe c over the whole float64 range, degenerate layers, NaN/Inf policy,
accurate bias corrections, thread-count independence and block-size sensitivity."""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np
import pytest

import setadam_ref as R
from setadam_ref import stages
from setadam_ref.context import one_minus_power

# the module, which the package's ``step`` function shadows
step_module = importlib.import_module("setadam_ref.step")


def _exact_cos2(v: np.ndarray) -> float:
    xs = [Fraction(float(x)) for x in v]
    s1, s2 = sum(xs, Fraction(0)), sum((x * x for x in xs), Fraction(0))
    return float(s1 * s1 / (len(xs) * s2))


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-100, 1e-10, 1.0, 1e10, 1e100, 1e200, 1e300])
def test_cos2_is_accurate_across_the_float64_range(scale: float) -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0.0, 1.0, size=1000) * scale
    assert math.isfinite(float(np.sum(v)))
    c = stages.cos2(v)
    assert c == pytest.approx(_exact_cos2(v), rel=1e-13)
    assert c == pytest.approx(stages.cos2(rng.permutation(v)), rel=1e-13)


def test_cos2_where_naive_evaluation_overflows_or_underflows() -> None:
    huge = np.array([1.7e308, 1.6e308, 1e308])
    with np.errstate(over="ignore"):
        assert not math.isfinite(float((huge**2).sum()))
    assert stages.cos2(huge) == pytest.approx(_exact_cos2(huge), rel=1e-14)
    tiny = np.array([4e-324, 1e-320, 3e-310])
    assert float((tiny**2).sum()) == 0.0
    assert stages.cos2(tiny) == pytest.approx(_exact_cos2(tiny), rel=1e-13)
    mixed = np.array([1e300, 1e-300, 0.0, 1e299])
    assert stages.cos2(mixed) == pytest.approx(_exact_cos2(mixed), rel=1e-14)


def test_cos2_special_layers() -> None:
    assert stages.cos2(np.zeros(7)) == 1.0  # all zero: reported 1, c*v = 0 anyway
    assert stages.cos2(np.zeros(0)) == 1.0  # empty
    assert stages.cos2(np.array([3.5])) == 1.0  # single element
    assert stages.cos2(np.full(1000, 0.1)) == 1.0  # constant: exactly 1
    one_hot = np.zeros(8)
    one_hot[3] = 2.0
    assert stages.cos2(one_hot) == 1.0 / 8  # exactly one non-zero: 1/d
    assert math.isnan(stages.cos2(np.array([1.0, np.nan])))
    # A layer split over arrays gives the same c as the joined layer.
    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=5), rng.uniform(size=9) * 1e250
    assert stages.cos2([a, b]) == pytest.approx(_exact_cos2(np.concatenate([a, b])), rel=1e-14)


def test_all_zero_layer_step_is_well_defined() -> None:
    cfg = R.SETAdamConfig()
    params = [np.ones(4), np.ones(3)]
    grads = [np.zeros(4), np.ones(3)]
    p, _, tr = R.step(params, grads, R.init(params, cfg), cfg, trace=True)
    assert isinstance(tr, R.SETAdamTrace)
    assert tr.layers[0].cos2 == 1.0
    np.testing.assert_array_equal(p[0], params[0])
    np.testing.assert_array_equal(tr.w[0], math.sqrt(cfg.eps))


@pytest.mark.parametrize("what", ["params", "grads"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_inputs_raise_with_index_step_and_count(what: str, bad: float) -> None:
    cfg = R.SETAdamConfig()
    params = [np.ones(3), np.ones(100_000)]
    grads = [np.ones(3), np.ones(100_000)]
    target = params if what == "params" else grads
    target[1][[5, 70_000]] = bad
    st = R.step(
        params[:1] + [np.ones(100_000)], [np.ones(3), np.ones(100_000)], R.init(params, cfg), cfg
    )[1]
    with pytest.raises(
        R.NonFiniteError, match=rf"{what}\[1\] has 2 non-finite entries \(of 100000\) at step t=2"
    ) as info:
        R.step(params, grads, st, cfg)
    assert (info.value.index, info.value.step, info.value.count) == (1, 2, 2)


def test_ieee_mode_propagates() -> None:
    cfg = R.SETAdamConfig()
    params, grads = [np.ones(3)], [np.array([1.0, np.nan, 1.0])]
    p, _, _ = R.step(params, grads, R.init(params, cfg), cfg, nonfinite="ieee")
    assert np.isnan(p[0]).all()  # NaN in v poisons the layer statistics, hence the layer
    p, _st, _ = R.step(
        [np.array([1.0, np.inf])], [np.ones(2)], R.init([np.ones(2)], cfg), cfg, nonfinite="ieee"
    )
    assert p[0][0] == pytest.approx(1.0 - 2e-3) and p[0][1] == np.inf


def test_huge_finite_gradients_overflowing_v_raise() -> None:
    cfg = R.AdamConfig()
    with pytest.raises(R.NonFiniteError, match="overflowed"):
        R.step([np.ones(2)], [np.array([1e160, 1.0])], R.init([np.ones(2)], cfg), cfg)
    ok = R.step([np.ones(2)], [np.array([1e150, 1.0])], R.init([np.ones(2)], cfg), cfg)[0]
    assert np.isfinite(ok[0]).all()


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 0.999, 0.9999, 1 - 2**-40])
@pytest.mark.parametrize("t", [1, 2, 10, 1000, 10**7])
def test_one_minus_power_is_accurate(beta: float, t: int) -> None:
    exact = 1 - Fraction(beta) ** t if t <= 1000 else None
    got = one_minus_power(beta, t)
    if exact is not None:
        assert abs(Fraction(got) - exact) <= 8 * 2**-53 * exact
    assert 0.0 < got <= 1.0


def test_results_do_not_depend_on_threads_and_barely_on_block_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(2)
    params = [rng.normal(size=100_003), rng.normal(size=17)]
    grads = [rng.normal(size=100_003), rng.normal(size=17)]
    cfg = R.SETAdamConfig()
    st = R.init(params, cfg)
    monkeypatch.setattr(step_module, "FAST_MIN_SIZE", 0)  # the thread pool is the fast path's
    base = R.step(params, grads, st, cfg)[0]
    monkeypatch.setenv("SETADAM_REF_THREADS", "1")
    single = R.step(params, grads, st, cfg)[0]
    for a, b in zip(base, single):
        assert a.tobytes() == b.tobytes()
    # The block size is part of the definition of c_l (its last bits): another one changes c by
    # a few ulps of the pairwise sums, hence theta by at most a couple of ulps.
    monkeypatch.setattr(stages, "BLOCK", 1 << 10)
    small = R.step(params, grads, st, cfg)[0]
    for a, b in zip(base, small):
        np.testing.assert_array_max_ulp(a, b, maxulp=2)
