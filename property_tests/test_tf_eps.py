r"""TensorFlow's eps placement against torch's: $\hat\epsilon = \epsilon\sqrt{b_2}$ is the same step.

torch: $U = \frac{\text{lr}}{b_1}\frac{m}{\sqrt{v/b_2} + \epsilon}$; tf (``eps_mode="tf"``):
$U = \frac{\text{lr}\sqrt{b_2}}{b_1}\frac{m}{\sqrt v + \hat\epsilon}$. Multiplying the torch
denominator by $\sqrt{b_2}$ gives $\sqrt v + \epsilon\sqrt{b_2}$, so the two are equal in exact
arithmetic when $\hat\epsilon = \epsilon\sqrt{b_2}$ (docs/src/algorithms/adam.md#tf-form).

Floating-point bound, per coordinate (both sides use the same computed $b_1$, $b_2$, so their
errors are common and cancel): torch rounds $v/b_2$, its root, $+\epsilon$, $m/\cdot$,
$\text{lr}/b_1$ and the product ($\le (1+u)^{5.5}$ relative, a root halving the error under it);
tf rounds $\sqrt v$, $\sqrt{b_2}$, $\epsilon\sqrt{b_2}$ (in the test), $+\hat\epsilon$, $m/\cdot$,
$\text{lr}\sqrt{b_2}$, $/b_1$ and the product ($\le (1+u)^{8}$). Quotients by a perturbed
denominator stay within Higham's $\gamma_k$, so $|U_\text{torch} - U_\text{tf}| \le
(\gamma_6 + \gamma_8 + \gamma_6\gamma_8)|U|$, plus the underflow excess of the roundings that can
fall below the normal range ($v/b_2$ inside a root: $\sqrt{\eta}$ against a denominator
$\ge\epsilon$; $m/D$ scaled by $a_t$; the product), and one rounding of each $\theta_t$.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import setadam_ref as sr
from property_tests import strategies as S
from property_tests._exact import U, gamma

ETA = 2.0**-1074


def _tf(config: sr.AdamConfig, eps: float) -> sr.AdamConfig:
    return sr.AdamConfig(lr=config.lr, betas=config.betas, eps=eps, eps_mode="tf")


def _bound(
    config: sr.AdamConfig, trace: sr.AdamTrace, theta: tuple[np.ndarray, ...]
) -> list[np.ndarray]:
    """The module docstring's bound of |theta_torch - theta_tf| per coordinate."""
    a_t = config.lr / trace.bias_correction1
    rel = gamma(6) + gamma(8) + gamma(6) * gamma(8)
    out = []
    for upd, th in zip(trace.update, theta, strict=True):
        excess = a_t * (2 * ETA + math.sqrt(ETA) / config.eps * np.abs(upd) / a_t) + 2 * ETA
        out.append(rel * np.abs(upd) * (1 + rel) + excess + 2 * U * (np.abs(th) + np.abs(upd)))
    return out


def _step_both(
    config: sr.AdamConfig, params: tuple[np.ndarray, ...], grads: tuple[np.ndarray, ...], k: int
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], list[np.ndarray]]:
    """Step ``k + 1`` from the torch trajectory's state after k steps of ``grads``, both forms."""
    state = sr.init(params, config)
    for _ in range(k):
        params, state, _ = sr.step(params, grads, state, config)
    p_torch, _, tr = sr.step(params, grads, state, config, trace=True)
    assert isinstance(tr, sr.AdamTrace)
    eps_hat = config.eps * math.sqrt(tr.bias_correction2)
    p_tf, _, _ = sr.step(params, grads, state, _tf(config, eps_hat))
    return p_torch, p_tf, _bound(config, tr, params)


@given(
    structure=S.structures(max_arrays=4, max_size=500),
    config=S.adam_configs(eps_root=False),
    k=st.integers(0, 4),
    data=st.data(),
)
def test_tf_eps_hat_is_torch_eps(
    structure: S.Structure, config: sr.AdamConfig, k: int, data: st.DataObject
) -> None:
    """eps_mode="tf" with eps_hat = eps sqrt(1 - beta2^t) steps as torch with eps, within the
    rounding bound of the module docstring (docs/src/algorithms/adam.md#tf-form)."""
    params = data.draw(S.parameters(structure), label="theta0")
    grads = data.draw(S.gradients(structure), label="grads")
    p_torch, p_tf, bound = _step_both(config, params, grads, k)
    for a, b, e in zip(p_torch, p_tf, bound, strict=True):
        assert np.all(np.abs(a - b) <= e), float(np.max(np.abs(a - b) / e))


@pytest.mark.parametrize("k", [0, 3])
def test_tf_with_the_unscaled_eps_is_not_torch(k: int) -> None:
    """The bound is tight enough to see the placement: tf with torch's eps itself (not eps_hat)
    differs by far more than the bound where eps is comparable to sqrt(v)."""
    config = sr.AdamConfig(lr=1e-3, eps=1e-4)
    params: tuple[np.ndarray, ...] = (np.linspace(-1.0, 1.0, 7),)
    grads = (np.full(7, 3e-3),)
    state = sr.init(params, config)
    for _ in range(k):
        params, state, _ = sr.step(params, grads, state, config)
    p_torch, _, tr = sr.step(params, grads, state, config, trace=True)
    assert isinstance(tr, sr.AdamTrace)
    p_tf, _, _ = sr.step(params, grads, state, _tf(config, config.eps))
    (e,) = _bound(config, tr, params)
    assert np.all(np.abs(p_torch[0] - p_tf[0]) > 1e3 * e)
