"""Unit tests of the tolerance model, the formats and the comparison (no framework needed)."""

from __future__ import annotations

import numpy as np
import pytest

import setadam_ref as R
from conformance.compare import compare_quantity
from conformance.formats import FORMATS, gamma, representable, round_to, ulp
from conformance.layout import Flat
from conformance.reference_run import build_reference
from conformance.scenarios import get
from conformance.tolerance import (
    StepRef,
    comparison_bounds,
    rho_bias_correction,
    rho_one_minus,
    step_bounds,
)
from setadam_ref import AdamConfig, SETAdamConfig


def test_formats_roundoff_and_ranges() -> None:
    assert FORMATS["float32"].u == 2.0**-24
    assert FORMATS["bfloat16"].u == 2.0**-8
    assert FORMATS["float16"].max == 65504.0
    assert FORMATS["float16"].tiny == 2.0**-14
    assert FORMATS["bfloat16"].acc is FORMATS["float32"]


def test_round_to_bfloat16_nearest_even() -> None:
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-9, -3.0e38, 1e-40, np.nan, np.inf])
    r = round_to(x, "bfloat16")
    assert r[0] == 1.0
    assert r[1] == 1.0  # tie to even
    assert r[2] == 1 + 4 * 2**-8  # tie to even (upwards)
    assert r[3] == 1.0
    assert np.isnan(r[6]) and r[7] == np.inf
    assert representable(r, "bfloat16")
    ml = pytest.importorskip("ml_dtypes")
    y = np.random.default_rng(0).standard_normal(1000) * 10.0 ** np.random.default_rng(1).uniform(
        -30, 30, 1000
    )
    want = y.astype(np.float32).astype(ml.bfloat16).astype(np.float64)
    np.testing.assert_array_equal(round_to(y, "bfloat16"), want)


def test_ulp() -> None:
    assert ulp(np.array([1.0]), "float32")[0] == 2.0**-23
    assert ulp(np.array([0.0]), "float64")[0] == 2.0**-1074
    assert ulp(np.array([1e-45]), "float32")[0] == 2.0**-149
    assert ulp(np.array([-3.0]), "float16")[0] == 2.0**-9


def test_gamma_and_scalar_terms() -> None:
    assert gamma(0, 1e-3) == 0.0
    assert gamma(2, 0.25) == 1.0
    assert gamma(4, 0.25) == float("inf")
    # 1 - beta from a rounded beta: the rounding of beta = 0.999 to float32 (1.3e-8, exactly
    # known) divided by 1 - beta; 1 - fl(beta) is exact (Sterbenz). Worst case u/(1-beta) would be
    # 4.6 times larger.
    b32 = float(np.float32(0.999))
    assert rho_one_minus(0.999, FORMATS["float32"]) == pytest.approx(abs(b32 - 0.999) / 0.001)
    assert rho_one_minus(0.999, FORMATS["float32"]) < 2**-24 * 999 / 4
    # half formats form scalars in float32, and the result may be rounded once into bfloat16
    x16 = float(round_to(np.array([1.0 - b32]), "bfloat16")[0])
    want = max(abs(b32 - 0.999), abs(x16 - 0.001)) / 0.001
    assert rho_one_minus(0.999, FORMATS["bfloat16"]) == pytest.approx(want, rel=1e-6)
    assert rho_one_minus(0.0, FORMATS["float16"]) == 0.0  # 1 - 0 = 1 exactly
    # beta^t vanished: the subtraction's rounding u_32 and float64 slack only
    assert rho_bias_correction(0.9, 1000, FORMATS["float32"]) < 2**-24 * 1.001


def _one_step(cfg, params, grads, layers=None):
    st = R.init(params, cfg)
    newp, _, tr = R.step(params, grads, st, cfg, layers, trace=True)
    flat = Flat.make([p.shape for p in params], layers)
    return flat, StepRef.from_trace(flat, params, st, newp, tr)


def _np_setadam_f32(cfg, params, grads):
    """SET-Adam step 1 in float32 NumPy with an unusual but legitimate operation order."""
    out = []
    b1, b2 = (np.float32(b) for b in cfg.betas)
    for p, g in zip(params, grads, strict=True):
        p32, g32 = p.astype(np.float32), g.astype(np.float32)
        m = (np.float32(1) - b1) * g32
        v = (np.float32(1) - b2) * g32 * g32
        vd = v.astype(np.float64)
        c = np.float32(vd.sum() ** 2 / (vd.size * (vd * vd).sum()))
        bc2 = np.float32(1) - b2
        w = np.sqrt(c * v / bc2 + np.float32(cfg.eps))
        wt = w - np.float32(cfg.tau) * w.min()
        bc1 = np.float32(1) - b1
        out.append(p32 - np.float32(cfg.lr) / bc1 * m / wt)
    return [o.astype(np.float64) for o in out]


@pytest.mark.parametrize("tau", [0.0, 0.5, 0.9])
def test_float32_numpy_step_within_budget(tau: float) -> None:
    rng = np.random.default_rng(3)
    cfg = SETAdamConfig(lr=1e-2, tau=tau)
    params = [round_to(rng.standard_normal(s), "float32") for s in [(50,), (7, 3), (1,)]]
    grads = [
        round_to(rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-6, 2), "float32")
        for p in params
    ]
    flat, ref = _one_step(cfg, params, grads)
    b = comparison_bounds(cfg, ref, flat, "float32")[0]
    port = flat.cat(_np_setadam_f32(cfg, params, grads))
    m = compare_quantity("params", port, ref.theta1, b["params"], "float32", flat, 1)
    assert m.n_fail == 0 and m.n_nonfinite == 0
    assert 0.0 < m.worst.fraction <= 1.0


def test_budget_rejects_eps_outside_sqrt_in_float64() -> None:
    rng = np.random.default_rng(4)
    cfg = SETAdamConfig(lr=1e-3)
    params = [rng.standard_normal(30)]
    grads = [rng.standard_normal(30) * 1e-5]  # v ~ 1e-13 against eps 1e-8: eps placement matters
    flat, ref = _one_step(cfg, params, grads)
    b = comparison_bounds(cfg, ref, flat, "float64")[0]
    v = (1 - cfg.betas[1]) * grads[0] ** 2
    c = v.sum() ** 2 / (v.size * (v * v).sum())
    w = np.sqrt(c * v / (1 - cfg.betas[1])) + cfg.eps
    wrong = params[0] - cfg.lr / (1 - cfg.betas[0]) * (1 - cfg.betas[0]) * grads[0] / (
        w - cfg.tau * w.min()
    )
    m = compare_quantity("params", wrong, ref.theta1, b["params"], "float64", flat, 1)
    assert m.worst.fraction > 1e3


def test_budget_of_float64_covers_both_sides_and_scales_with_u() -> None:
    rng = np.random.default_rng(5)
    cfg = AdamConfig(lr=1e-3)
    params = [rng.standard_normal(20)]
    grads = [rng.standard_normal(20)]
    flat, ref = _one_step(cfg, params, grads)
    b64 = step_bounds(cfg, ref, flat, "float64")["params"]
    b32 = step_bounds(cfg, ref, flat, "float32")["params"]
    total64 = comparison_bounds(cfg, ref, flat, "float64")[0]["params"]
    np.testing.assert_allclose(total64, 2 * b64)
    ratio = b32 / b64
    # ~ u32/u64 = 2^29 times the ratio of the operation counts, and the float32 budget carries
    # the exact rounding errors of the constants (beta2 = 0.999 to float32: 0.2 u32 / (1 - beta2))
    # that float64 does not have (beta2 is a float64 number): between 2^28 and 2^32
    assert np.all(ratio > 2.0**28) and np.all(ratio < 2.0**32)
    # at least the final rounding: u |theta|
    assert np.all(b64 >= 2.0**-53 * np.abs(ref.theta1))


def test_zero_layer_cos2_not_judged_and_vs_zero() -> None:
    cfg = SETAdamConfig()
    params = [np.ones(4), np.ones(3)]
    grads = [np.zeros(4), np.arange(3.0)]
    flat, ref = _one_step(cfg, params, grads)
    b = step_bounds(cfg, ref, flat, "float32")
    assert b["cos2"][0] == np.inf  # all-zero layer: c is a convention, unresolved (not judged)
    assert np.all(b["down_scaling"][:4] == 0.0)  # c' * 0 = 0 exactly, whatever c' is


def test_float16_eps_underflow_is_unresolvable_not_a_failure() -> None:
    cfg = SETAdamConfig(eps=1e-8)
    params = [np.ones(3)]
    grads = [np.zeros(3)]  # w = sqrt(eps) = 1e-4; eps itself is below float16's subnormals
    flat, ref = _one_step(cfg, params, grads)
    b = step_bounds(cfg, ref, flat, "float16")
    assert np.all(np.isinf(b["epsilon_embedding"])) or np.all(b["epsilon_embedding"] >= ref.w)


def test_compare_quantity_fractions() -> None:
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    bound = np.array([1e-6, 1e-6, np.inf, 1e-6])
    port = np.array([1.0, 2.0 + 2.0**-21, 3.5, np.nan])  # 2**-21 < 1e-6 exactly representable
    m = compare_quantity("params", port, ref, bound, "float64", None, 1)
    assert m.n_unresolved == 1
    assert m.n_nonfinite == 1
    assert m.worst.fraction == float("inf")
    m2 = compare_quantity("params", port[:2], ref[:2], bound[:2], "float64", None, 1)
    assert m2.worst.fraction == pytest.approx(2.0**-21 / 1e-6)
    assert m2.n_fail == 0
    m3 = compare_quantity("params", ref + 2e-6, ref, np.full(4, 1e-6), "float64", None, 1)
    assert m3.n_fail == 4 and m3.worst.fraction == pytest.approx(2.0)


def test_free_running_budget_grows_with_steps() -> None:
    rr = build_reference(get("long_run"), get("long_run").config("setadam"), "float32", quick=True)
    assert rr.error is None
    # the median over coordinates (the maximum is set by whichever theta is near zero)
    b = [
        float(np.median(x["params"] / np.maximum(np.abs(rr.flat.cat(rr.params[t + 1])), 1e-30)))
        for t, x in enumerate(rr.free_bounds)
    ]
    assert b[-1] > 10 * b[0]
    assert len(rr.resync) > 0
