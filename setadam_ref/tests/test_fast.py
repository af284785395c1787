"""The fast path (``setadam_ref.fast``) is bitwise the plain definition (``setadam.setadam_step``,
``adam.adam_step``), whatever the shapes, layering, configuration, thread count or trace flag.

Bitwise, not within a tolerance: the fast path evaluates the same correctly rounded operations in
the same order, and its one shortcut, min w from min v, is exact (Lemma 4, setadam.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import pytest

import setadam_ref as R
from setadam_ref import adam, fast, setadam
from setadam_ref.layers import Layers, validate_layers
from setadam_ref.stages import BLOCK

step_module = importlib.import_module("setadam_ref.step")

#: shapes: empty, 0-d, one element, just below / at / above a block boundary, several blocks
SHAPES: dict[str, list[tuple[int, ...]]] = {
    "edge": [(3, 4), (5,), (0,), (1,), (2, 0, 3), ()],
    "boundary": [(BLOCK - 1,), (BLOCK,), (BLOCK + 1,), (7,)],
    "blocks": [(3 * BLOCK + 17,), (2, BLOCK // 2 + 3), (1,)],
}
LAYERINGS: dict[str, list[Layers | None]] = {
    "edge": [None, ((0, 2, 4), (1, 3, 5)), ((5, 4, 3, 2, 1, 0),)],
    "boundary": [None, ((0, 1), (2, 3)), ((3, 0, 1, 2),)],
    "blocks": [None, ((2, 0, 1),), ((1,), (0, 2))],
}
CONFIGS: list[R.Config] = [
    R.SETAdamConfig(),
    R.SETAdamConfig(tau=0.0, betas=(0.0, 0.0)),
    R.SETAdamConfig(tau=0.9, eps=1e-12, betas=(0.5, 0.9999), weight_decay=0.1),
    R.SETAdamConfig(weight_decay=0.1, weight_decay_mode="decoupled", maximize=True),
    R.AdamConfig(),
    R.AdamConfig(amsgrad=True, weight_decay=0.1, maximize=True),
    R.AdamConfig(amsgrad=True, amsgrad_mode="optax", eps_root=1e-8),
    R.AdamConfig(weight_decay=0.01, weight_decay_mode="decoupled", eps=0.0, eps_root=1e-10),
    R.AdamConfig(eps_mode="tf", amsgrad=True, weight_decay=0.1, weight_decay_mode="decoupled"),
    R.AdamConfig(eps_mode="tf", eps_root=1e-10, maximize=True),
]
KINDS = ("normal", "mixed")


def _inputs(
    shapes: Sequence[tuple[int, ...]], kind: str, seed: int
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in shapes]
    grads = []
    for t in range(3):
        if kind == "normal":
            g = [rng.normal(size=s) * np.exp(rng.normal(size=s)) for s in shapes]
        else:  # magnitudes over 300 decades, one all-zero array, a zero gradient on step 2
            g = [rng.normal(size=s) * 10.0 ** rng.uniform(-200, 100, size=s) for s in shapes]
            g[1][...] = 0.0
            if t == 1:
                g[0][...] = 0.0
        grads.append(g)
    return params, grads


def _flat(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.ravel(a) for a in arrays]


def _bits(arrays: Sequence[np.ndarray] | None) -> list[bytes] | None:
    return None if arrays is None else [np.ascontiguousarray(a).tobytes() for a in arrays]


def _fast_step(
    p: Sequence[np.ndarray],
    g: Sequence[np.ndarray],
    st: R.State,
    cfg: R.Config,
    lay: Layers,
) -> fast.Result:
    if isinstance(cfg, R.AdamConfig):
        vmax = None if st.vmax is None else _flat(st.vmax)
        return fast.adam_step(
            _flat(p), _flat(g), _flat(st.m), _flat(st.v), vmax, cfg, st.step + 1, True
        )
    return fast.setadam_step(
        _flat(p), _flat(g), _flat(st.m), _flat(st.v), cfg, lay, st.step + 1, True
    )


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=repr)
@pytest.mark.parametrize("shapes", sorted(SHAPES))
def test_fast_path_is_bitwise_the_plain_step(
    shapes: str, cfg: R.Config, kind: str, threads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETADAM_REF_THREADS", threads)
    params, grads = _inputs(SHAPES[shapes], kind, seed=len(shapes) + len(kind))
    layerings = LAYERINGS[shapes] if isinstance(cfg, R.SETAdamConfig) else [None]
    for layers in layerings:
        lay = validate_layers(layers, len(params))
        p: tuple[np.ndarray, ...] = tuple(params)
        st = R.init(params, cfg)
        for g in grads:
            r = _fast_step(p, g, st, cfg, lay)
            for traced in (False, True):
                tr: R.Trace | None
                if isinstance(cfg, R.AdamConfig):
                    p1, st1, tr = adam.adam_step(p, g, st, cfg, trace=traced)
                else:
                    p1, st1, tr = setadam.setadam_step(p, g, st, cfg, lay, trace=traced)
                assert (tr is not None) == traced
                assert _bits(r.params) == _bits(p1), (layers, traced)
                assert _bits(r.m) == _bits(st1.m)
                assert _bits(r.v) == _bits(st1.v)
                assert _bits(r.vmax) == _bits(st1.vmax)
            assert r.suspects == []
            p, st = p1, st1


@pytest.mark.parametrize("cfg", [R.SETAdamConfig(), R.AdamConfig(amsgrad=True)], ids=repr)
def test_step_takes_either_path_with_the_same_result(
    cfg: R.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, grads = _inputs(SHAPES["blocks"], "normal", seed=3)
    st = R.init(params, cfg)
    outs = []
    for min_size in (0, 10**12):  # every untraced step fast / every step plain
        monkeypatch.setattr(step_module, "FAST_MIN_SIZE", min_size)
        for traced in (False, True):
            p, s, _ = R.step(params, grads[0], st, cfg, trace=traced)
            outs.append((_bits(p), _bits(s.m), _bits(s.v), _bits(s.vmax), s.step))
    assert all(o == outs[0] for o in outs)


@pytest.mark.parametrize("cfg", [R.SETAdamConfig(), R.AdamConfig()], ids=repr)
@pytest.mark.parametrize("what", ["grads", "params", "overflow"])
def test_both_paths_raise_the_same_nonfinite_error(
    cfg: R.Config, what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, grads = _inputs(SHAPES["boundary"], "normal", seed=4)
    if what == "overflow":
        grads[0][2][BLOCK] = 1e160  # finite, but its square overflows v
    else:
        target = params if what == "params" else grads[0]
        target[2][[3, BLOCK]] = np.nan
    st = R.init(params, cfg)
    messages = []
    for min_size in (0, 10**12):
        monkeypatch.setattr(step_module, "FAST_MIN_SIZE", min_size)
        with pytest.raises(R.NonFiniteError) as info:
            R.step(params, grads[0], st, cfg)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "[2]" in messages[0] and ("overflowed" in messages[0]) == (what == "overflow")
