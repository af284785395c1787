"""Down-translating (T): wt = w - tau min_i w_i.

Proofs: docs/src/theory/invariants.md (sections named in each docstring).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from property_tests import strategies as S
from property_tests._exact import U
from setadam_ref import stages


@given(
    v=S.v_layers(max_size=500, max_exp=290),
    bc2=st.floats(1e-16, 1.0),
    eps=S.epsilons(),
    tau=S.taus(),
)
@example(v=np.zeros(4), bc2=1.0, eps=1e-30, tau=0.99)  # smallest possible wt: (1 - tau) sqrt(eps)
def test_translation_floor(v: np.ndarray, bc2: float, eps: float, tau: float) -> None:
    """wt >= (1 - tau) sqrt(eps) > 0 (up to the rounding of one multiply and one subtract).

    Proof: docs/src/theory/invariants.md#translation-floor
    """
    _, vs = stages.down_scale(v)
    w = stages.embed(vs, bc2, eps)
    wt, w_min = stages.translate(w, tau)
    assert w_min == w.min()
    assert np.all(wt > 0)
    floor = (1 - tau) * math.sqrt(eps)
    assert np.all(wt >= floor * (1 - 3 * U / (1 - tau)))


@given(w=S.positive_vectors(max_size=500), tau=S.taus())
def test_translation_keeps_order_and_differences(w: np.ndarray, tau: float) -> None:
    """w_i <= w_j iff wt_i <= wt_j, and wt_i - wt_j = w_i - w_j (exactly; in float64 within one
    rounding of each wt).

    Proof: docs/src/theory/invariants.md#translation-order
    """
    wt, _ = stages.translate(w, tau)
    i = np.argsort(w, kind="stable")
    assert np.all(np.diff(wt[i]) >= 0)
    diff_w = w[:, None] - w[None, :] if w.size <= 64 else np.diff(w)
    diff_t = wt[:, None] - wt[None, :] if w.size <= 64 else np.diff(wt)
    scale = (
        (np.abs(wt[:, None]) + np.abs(wt[None, :]))
        if w.size <= 64
        else (np.abs(wt[1:]) + np.abs(wt[:-1]))
    )
    assert np.all(np.abs(diff_t - diff_w) <= 2 * U * scale)


@given(w=S.positive_vectors(max_size=500), tau=S.taus())
def test_translated_min(w: np.ndarray, tau: float) -> None:
    """min wt = (1 - tau) min w (relative error <= u/(1 - tau) + u), attained at argmin w.

    Proof: docs/src/theory/invariants.md#translation-min
    """
    wt, w_min = stages.translate(w, tau)
    assert wt.min() == wt[np.argmin(w)]
    assert math.isclose(wt.min(), (1 - tau) * w_min, rel_tol=2 * U / (1 - tau) + 2 * U)
