"""Hyperparameters may be any NumPy real scalar and layer indices any NumPy integer, as they come
out of a config file loaded with NumPy or an index array; bool stays refused where a number is
meant. Errors say what was wrong."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import setadam_ref as R

SCALARS = [np.float16(0.5), np.float32(1e-3), np.float64(1e-3), np.int32(1), np.int64(0),
           np.uint8(0)]  # fmt: skip


@pytest.mark.parametrize("x", SCALARS, ids=lambda x: type(x).__name__)
def test_numpy_scalars_are_real_numbers(x: Any) -> None:
    cfg = R.AdamConfig(weight_decay=x, eps=x, eps_root=x)
    assert cfg.weight_decay == float(x) and type(cfg.weight_decay) is float
    if 0 <= float(x) < 1:
        s = R.SETAdamConfig(tau=x, betas=(x, np.float32(0.999)))
        assert s.tau == float(x) and type(s.betas[1]) is float
    if float(x) > 0:
        assert R.AdamConfig(lr=x).lr == float(x)


def test_configs_from_numpy_compare_equal_to_plain_ones() -> None:
    assert R.SETAdamConfig(lr=np.float64(1e-3), tau=np.float64(0.5)) == R.SETAdamConfig()
    assert hash(R.AdamConfig(weight_decay=np.int64(0))) == hash(R.AdamConfig())


@pytest.mark.parametrize("b", [True, np.bool_(True)], ids=["bool", "np.bool_"])
def test_bool_is_not_a_number(b: object) -> None:
    with pytest.raises(ValueError, match="lr must be a real number"):
        R.AdamConfig(lr=b)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers"):
        R.validate_layers([[b]], 1)


def test_numpy_integer_layer_indices() -> None:
    idx = np.arange(3)
    assert R.validate_layers([[idx[0], idx[2]], [np.int32(1)]], 3) == ((0, 2), (1,))
    assert R.validate_layers([idx[:2], idx[2:]], 3) == ((0, 1), (2,))
    assert all(type(i) is int for layer in R.validate_layers([list(idx)], 3) for i in layer)


def test_a_non_finite_state_is_named_not_blamed_on_overflow() -> None:
    params = [np.ones(2), np.ones(3), np.ones(1)]
    grads = [np.ones(2), np.ones(3), np.ones(1)]
    state = R.init(params, R.SETAdamConfig())
    bad_v = (state.v[0], state.v[1], np.array([np.nan]))
    with pytest.raises(R.NonFiniteError, match="state holds NaN in v of array 2") as e:
        R.step(params, grads, state._replace(step=1, v=bad_v), R.SETAdamConfig())
    assert "overflow" not in str(e.value)


def test_adam_with_eps_zero_and_a_zero_gradient_says_so() -> None:
    cfg = R.AdamConfig(eps=0.0)
    params = [np.ones(3)]
    with pytest.raises(R.NonFiniteError, match=r"eps = eps_root = 0 divides 0 by 0") as e:
        R.step(params, [np.array([0.0, 1.0, 0.0])], R.init(params, cfg), cfg)
    assert "overflow" not in str(e.value) and "2 coordinates" in str(e.value)
