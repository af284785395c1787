"""The step is a composition of swappable stage functions: the default record is ``step``, and a
swapped stage acts exactly where it should (checked against configurations that mean the same)."""

from __future__ import annotations

import numpy as np
import pytest

import setadam_ref as R
from setadam_ref import adam, setadam, stages
from setadam_ref.context import Context


def _data() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(7)
    shapes = [(4, 3), (5,), (2, 2)]
    return [rng.normal(size=s) for s in shapes], [rng.normal(size=s) * 1e-3 for s in shapes]


def _bits(arrays: tuple[np.ndarray, ...]) -> list[bytes]:
    return [a.tobytes() for a in arrays]


@pytest.mark.parametrize("trace", [False, True])
def test_definition_is_what_step_computes(trace: bool) -> None:
    params, grads = _data()
    for cfg in (R.SETAdamConfig(weight_decay=0.1), R.AdamConfig(amsgrad=True)):
        st = R.step(params, grads, R.init(params, cfg), cfg)[1]
        p, s, _ = R.step(params, grads, st, cfg, trace=trace)
        if isinstance(cfg, R.AdamConfig):
            q, s2, _ = adam.adam_step(params, grads, st, cfg, adam.DEFINITION)
        else:
            q, s2, _ = setadam.setadam_step(
                params, grads, st, cfg, R.default_layers(3), setadam.DEFINITION
            )
        assert _bits(p) == _bits(q) and _bits(s.v) == _bits(s2.v)


def test_identity_translation_is_tau_zero() -> None:
    params, grads = _data()
    cfg = R.SETAdamConfig()
    st = R.init(params, cfg)
    lay = R.default_layers(3)

    def no_translation(w: tuple[np.ndarray, ...], ctx: Context) -> tuple[np.ndarray, ...]:
        return w

    swapped = setadam.DEFINITION._replace(translate=no_translation)
    p, _, _ = setadam.setadam_step(params, grads, st, cfg, lay, swapped)
    q, _, _ = setadam.setadam_step(params, grads, st, R.SETAdamConfig(tau=0.0), lay)
    assert _bits(p) == _bits(q)
    assert _bits(p) != _bits(setadam.setadam_step(params, grads, st, cfg, lay)[0])


def test_context_holds_the_whole_model_for_global_statistics() -> None:
    """c and min w taken over ``ctx.v`` / ``ctx.w`` equal the whole model as one layer."""
    params, grads = _data()
    cfg = R.SETAdamConfig()
    st = R.init(params, cfg)

    def global_c(v: tuple[np.ndarray, ...], ctx: Context) -> stages.LayerMoments:
        return stages.layer_moments(ctx.v)

    def global_min(w: tuple[np.ndarray, ...], ctx: Context) -> tuple[np.ndarray, ...]:
        return tuple(stages.translate_by(x, cfg.tau, stages.layer_min(ctx.w)) for x in w)

    swapped = setadam.DEFINITION._replace(layer_statistics=global_c, translate=global_min)
    p, _, _ = setadam.setadam_step(params, grads, st, cfg, R.default_layers(3), swapped)
    q, _, _ = setadam.setadam_step(params, grads, st, cfg, ((0, 1, 2),))
    assert _bits(p) == _bits(q)


def test_adam_denominator_swap_is_eps_inside_the_root() -> None:
    params, grads = _data()
    cfg = R.AdamConfig()
    st = R.init(params, cfg)

    def eps_inside(v_hat: np.ndarray, ctx: Context) -> np.ndarray:
        r: np.ndarray = np.sqrt(v_hat + cfg.eps)
        return r

    p, _, _ = adam.adam_step(params, grads, st, cfg, adam.DEFINITION._replace(denom=eps_inside))
    q, _, _ = adam.adam_step(params, grads, st, R.AdamConfig(eps=0.0, eps_root=cfg.eps))
    assert _bits(p) == _bits(q)
