"""Epsilon-embedding (E): w = sqrt(vs / (1 - beta2^t) + eps).

Proofs: docs/src/theory/invariants.md (sections named in each docstring).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

import setadam_ref as sr
from property_tests import strategies as S
from setadam_ref import stages


@given(
    v=S.v_layers(max_size=500, max_exp=290),
    bc2=st.floats(1e-16, 1.0),
    eps=S.epsilons(),
)
@example(v=np.zeros(3), bc2=1.0, eps=1e-30)  # all-zero layer: w = sqrt(eps) exactly
def test_embedding_floor(v: np.ndarray, bc2: float, eps: float) -> None:
    """w >= sqrt(eps) for every entry (vs >= 0; every rounding is monotone), so no w is zero.

    Proof: docs/src/theory/invariants.md#embedding-floor
    """
    _, vs = stages.down_scale(v)
    w = stages.embed(vs, bc2, eps)
    assert np.all(w >= math.sqrt(eps))
    assert np.all(w > 0)


@given(
    v=S.v_layers(min_size=2, max_size=500, max_exp=290), bc2=st.floats(1e-16, 1.0), eps=S.epsilons()
)
def test_embedding_monotone(v: np.ndarray, bc2: float, eps: float) -> None:
    """v_i <= v_j implies w_i <= w_j (w is increasing in v; rounding preserves <=).

    Proof: docs/src/theory/invariants.md#embedding-monotone
    """
    _, vs = stages.down_scale(v)
    w = stages.embed(vs, bc2, eps)
    order = np.argsort(v, kind="stable")
    assert np.all(np.diff(w[order]) >= 0)


@given(
    structure=S.structures(max_arrays=6, max_size=2_000),
    config=S.setadam_configs(),
    data=st.data(),
)
def test_min_w_from_min_v(
    structure: S.Structure, config: sr.SETAdamConfig, data: st.DataObject
) -> None:
    """min_i w_i = sqrt(c min_i v_i / (1 - beta2^t) + eps): the layer minimum of w computed from
    the minimum of v (what a fused kernel does) equals the minimum over w, bit for bit; and the
    step's layer statistics agree with the stage functions.

    Proof: docs/src/theory/invariants.md#min-commutes
    """
    params = data.draw(S.parameters(structure), label="theta0")
    grads = data.draw(S.gradients(structure), label="grads")
    state = sr.init(params, config)
    _, state, tr = sr.step(params, grads, state, config, layers=structure.layers, trace=True)
    assert isinstance(tr, sr.SETAdamTrace)
    for stats, layer in zip(tr.layers, structure.layer_list(), strict=True):
        assert stats.arrays == layer
        w = np.concatenate([np.ravel(tr.w[i]) for i in layer])
        v = np.concatenate([np.ravel(tr.v[i]) for i in layer])
        assert stats.size == w.size
        if w.size == 0:
            assert math.isnan(stats.w_min) and stats.cos2 == 1.0
            continue
        assert stats.w_min == w.min()
        assert stats.v_min == v.min()
        assert stats.cos2 == stages.cos2([np.ravel(tr.v[i]) for i in layer])
        assert (
            stats.w_min
            == stages.embed(np.array([stats.v_min * stats.cos2]), tr.bias_correction2, config.eps)[
                0
            ]
        )
        for i in layer:
            vs_i = np.ravel(tr.v_scaled[i])  # the stage functions take 1-D arrays
            assert np.array_equal(vs_i, np.ravel(tr.v[i]) * stats.cos2)
            assert np.array_equal(
                np.ravel(tr.w[i]), stages.embed(vs_i, tr.bias_correction2, config.eps)
            )
