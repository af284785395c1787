"""Unit tests of the deviation catalogue and of rank_causes on synthetic data (NumPy only)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import setadam_ref as ref
from conformance import deviations as dev
from conformance.wrong_ports import WRONG_PORTS

SHAPES = ((6, 5), (7,), (3, 4))
STEPS = 3


def _inputs(kind: str, seed: int = 0) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    spread = [np.exp(rng.normal(size=s)) for s in SHAPES]
    grads = []
    for _ in range(STEPS):
        if kind == "tiny":
            g = [
                rng.choice([-1.0, 1.0], size=s) * 10.0 ** rng.uniform(-9, -6, size=s)
                for s in SHAPES
            ]
        else:
            g = [0.1 * rng.normal(size=s) * k for s, k in zip(SHAPES, spread, strict=True)]
        if kind == "zero_layer":
            g[1] = np.zeros(SHAPES[1])
        grads.append(g)
    return params, grads


def _config(kind: str) -> ref.SETAdamConfig:
    cfg = ref.SETAdamConfig(lr=1e-2)
    return {
        "l2": replace(cfg, weight_decay=0.1, weight_decay_mode="l2"),
        "decoupled": replace(cfg, weight_decay=0.1, weight_decay_mode="decoupled"),
        "maximize": replace(cfg, maximize=True),
        "tau": replace(cfg, tau=0.2),
    }.get(kind, cfg)


SCENARIO_OF = {
    "maximize_ignored": "maximize",
    "weight_decay_ignored": "l2",
    "wd_mode_swapped": "l2",
    "decoupled_without_lr": "decoupled",
    "tau_fixed_half": "tau",
    "cos2_guard_1e-16": "tiny",
    "cos2_zero_layer_nan": "zero_layer",
    "eps_omitted": "tiny",
}


def _evidence(
    d: dev.Deviation | None, kind: str, dtype: str = "float64", layers: ref.Layers | None = None
) -> tuple[list[dev.StepEvidence], ref.SETAdamConfig]:
    """Re-synced evidence of a synthetic 'port' that computes deviation ``d`` (rounded to dtype)."""
    params, grads = _inputs(kind)
    cfg = _config(kind)
    state = ref.init(params, cfg)
    p: tuple[np.ndarray, ...] = tuple(params)
    out = []
    for g in grads:
        r = dev.replay(d, p, g, state, cfg, layers, dtype)
        port = [dev._round_to(x, dtype) for x in r.params]
        out.append(dev.StepEvidence(p, g, state, port))
        p, state, _ = ref.step(p, g, state, cfg, layers=layers, nonfinite="ieee")
    return out, cfg


def _top(causes: list[dev.Cause]) -> set[str]:
    """Names tied for first place (ties are honest: some deviations coincide on some inputs)."""
    if not causes:
        return set()
    best = causes[0].distance
    return {c.name for c in causes if c.distance <= best + 1e-3}


@pytest.mark.parametrize("kind", ["normal", "l2", "decoupled", "maximize", "zero_layer", "tiny"])
def test_baseline_replay_is_the_reference(kind: str) -> None:
    params, grads = _inputs(kind)
    cfg = _config(kind)
    layers = ((0, 2), (1,))
    for lay in (None, layers):
        state = ref.init(params, cfg)
        p: tuple[np.ndarray, ...] = tuple(params)
        for g in grads:
            r = dev.replay(None, p, g, state, cfg, lay)
            p, state, _ = ref.step(p, g, state, cfg, layers=lay)
            for a, b in zip(r.params, p, strict=True):
                np.testing.assert_allclose(
                    a, b, rtol=0, atol=4 * 2.0**-52 * float(np.max(np.abs(b)))
                )
            for a, b in zip(r.v, state.v, strict=True):
                np.testing.assert_array_equal(a, b)


def test_catalogue_is_well_formed() -> None:
    names = [d.name for d in dev.CATALOGUE]
    assert len(names) == len(set(names))
    stages = (*ref.STAGES,)
    for d in dev.CATALOGUE:
        assert d.stage in stages, d
        assert d.description and d.bug_class and d.shows_when
        assert dev.by_name(d.name) is d
    with pytest.raises(KeyError):
        dev.by_name("no such deviation")
    for w in WRONG_PORTS:
        if w.cause is not None:
            assert not dev.by_name(w.cause).equivalent


@pytest.mark.parametrize("d", [d for d in dev.CATALOGUE if not d.equivalent], ids=lambda d: d.name)
def test_each_deviation_ranks_itself_first(d: dev.Deviation) -> None:
    kind = SCENARIO_OF.get(d.name, "normal")
    ev, cfg = _evidence(d, kind)
    causes = dev.rank_causes_steps(ev, cfg, None, "float64")
    assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    first = next(c for c in causes if c.name == d.name)
    assert first.distance < 0.01
    assert first.first_step == (2 if d.name == "step_minus_one" else 1)


@pytest.mark.parametrize("d", [d for d in dev.CATALOGUE if not d.equivalent], ids=lambda d: d.name)
def test_each_deviation_in_float32(d: dev.Deviation) -> None:
    """In float32 a deviation is either named (first, ties allowed) or below the rounding level."""
    kind = SCENARIO_OF.get(d.name, "normal")
    ev, cfg = _evidence(d, kind, "float32")
    causes = dev.rank_causes_steps(ev, cfg, None, "float32")
    if causes:
        assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    else:
        # not named: then its effect must be within a few float32 ulps of the update
        ev64, _ = _evidence(d, kind)
        ref_ev, _ = _evidence(None, kind)
        for a, b in zip(ev64, ref_ev, strict=True):
            diff = max(
                float(np.max(np.abs(x - y)))
                for x, y in zip(a.port_params_after, b.port_params_after, strict=True)
            )
            assert diff < 1e-5, diff


@pytest.mark.parametrize("d", [d for d in dev.CATALOGUE if d.equivalent], ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_equivalent_rewrites_are_never_causes(d: dev.Deviation, dtype: str) -> None:
    for kind in ("normal", "tiny", "decoupled"):
        ev, cfg = _evidence(d, kind, dtype)
        assert dev.rank_causes_steps(ev, cfg, None, dtype) == []


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
def test_reference_output_has_no_cause(dtype: str) -> None:
    ev, cfg = _evidence(None, "normal", dtype)
    assert dev.rank_causes_steps(ev, cfg, None, dtype) == []


def test_step_onset_rules_out_deviations_that_differ_earlier() -> None:
    ev, cfg = _evidence(dev.by_name("step_minus_one"), "normal")
    causes = dev.rank_causes_steps(ev, cfg, None, "float64")
    assert causes[0].name == "step_minus_one"
    assert causes[0].first_step == 2
    assert "step_plus_one" not in {c.name for c in causes}
    # one step alone (step 1) shows nothing to explain
    assert dev.rank_causes_steps(ev[:1], cfg, None, "float64") == []


def test_rank_causes_single_step_api_and_state_channels() -> None:
    d = dev.by_name("adabelief_v")
    params, grads = _inputs("normal")
    cfg = _config("normal")
    state = ref.init(params, cfg)
    p1, s1, _ = ref.step(params, grads[0], state, cfg)
    r = dev.replay(d, p1, grads[1], s1, cfg)
    causes = dev.rank_causes(
        p1, grads[1], s1, cfg, None, r.params, "float64", port_m=r.m, port_v=r.v
    )
    assert causes[0].name == "adabelief_v"
    assert causes[0].stage == "v"
    # the same with the reference's own output: nothing to explain
    ref_r = dev.replay(None, p1, grads[1], s1, cfg)
    assert (
        dev.rank_causes(p1, grads[1], s1, cfg, None, ref_r.params, port_m=ref_r.m, port_v=ref_r.v)
        == []
    )


def test_grouped_layers_are_respected() -> None:
    layers = ((0, 2), (1,))
    d = dev.by_name("global_cos2")
    ev, cfg = _evidence(d, "normal", layers=layers)
    causes = dev.rank_causes_steps(ev, cfg, layers, "float64")
    assert "global_cos2" in _top(causes)
    ev, cfg = _evidence(None, "normal", layers=layers)
    assert dev.rank_causes_steps(ev, cfg, layers, "float64") == []


def test_nan_port_is_explained_by_the_unguarded_cos2() -> None:
    ev, cfg = _evidence(dev.by_name("cos2_zero_layer_nan"), "zero_layer")
    assert any(not np.all(np.isfinite(x)) for x in ev[0].port_params_after)
    causes = dev.rank_causes_steps(ev, cfg, None, "float64")
    assert causes and causes[0].name == "cos2_zero_layer_nan"


def test_unknown_bug_is_not_forced_onto_the_catalogue() -> None:
    params, grads = _inputs("normal")
    cfg = _config("normal")
    state = ref.init(params, cfg)
    p, _, _ = ref.step(params, grads[0], state, cfg)
    rng = np.random.default_rng(5)
    noisy = [x + 1e-3 * rng.normal(size=x.shape) for x in p]  # random garbage, no known bug
    assert dev.rank_causes(params, grads[0], state, cfg, None, noisy) == []


def test_bad_dtype() -> None:
    with pytest.raises(ValueError, match="dtype"):
        dev.unit_roundoff("int8")


# ----------------------------------------------------------------------------- Adam catalogue
ADAM_CONFIGS = {
    "plain": ref.AdamConfig(lr=1e-2),
    "eps_root": ref.AdamConfig(lr=1e-2, eps=0.0, eps_root=1e-8),
    "l2": ref.AdamConfig(lr=1e-2, weight_decay=0.1),
    "decoupled": ref.AdamConfig(lr=1e-2, weight_decay=0.1, weight_decay_mode="decoupled"),
    "maximize": ref.AdamConfig(lr=1e-2, maximize=True),
    "amsgrad_torch": ref.AdamConfig(lr=1e-2, amsgrad=True),
    "amsgrad_optax": ref.AdamConfig(lr=1e-2, amsgrad=True, amsgrad_mode="optax"),
}
ADAM_SCENARIO_OF = {
    "adam_eps_inside_sqrt": ("plain", "tiny"),
    "adam_eps_root_ignored": ("eps_root", "tiny"),
    "adam_maximize_ignored": ("maximize", "normal"),
    "adam_weight_decay_ignored": ("l2", "normal"),
    "adam_wd_mode_swapped": ("l2", "normal"),
    "adam_decoupled_without_lr": ("decoupled", "normal"),
    "adam_amsgrad_mode_swapped": ("amsgrad_torch", "decaying"),
    "adam_amsgrad_ignored": ("amsgrad_optax", "decaying"),
}


def _adam_evidence(
    d: dev.Deviation | None, cfg: ref.AdamConfig, kind: str, dtype: str = "float64"
) -> list[dev.StepEvidence]:
    if kind == "decaying":  # large gradients first, then small: amsgrad's maximum matters
        params, grads = _inputs("normal")
        grads = [[g * (10.0 if t == 0 else 0.1) for g in gs] for t, gs in enumerate(grads)]
    else:
        params, grads = _inputs(kind)
    state = ref.init(params, cfg)
    p: tuple[np.ndarray, ...] = tuple(params)
    out = []
    for g in grads:
        r = dev.replay(d, p, g, state, cfg, None, dtype)
        out.append(dev.StepEvidence(p, g, state, [dev._round_to(x, dtype) for x in r.params]))
        p, state, _ = ref.step(p, g, state, cfg)
    return out


@pytest.mark.parametrize("name", sorted(ADAM_CONFIGS))
def test_adam_baseline_replay_is_the_reference(name: str) -> None:
    cfg = ADAM_CONFIGS[name]
    params, grads = _inputs("normal")
    state = ref.init(params, cfg)
    p: tuple[np.ndarray, ...] = tuple(params)
    for g in grads:
        r = dev.replay(None, p, g, state, cfg)
        p, state, _ = ref.step(p, g, state, cfg)
        for a, b in zip(r.params, p, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=4 * 2.0**-52 * float(np.max(np.abs(b))))


@pytest.mark.parametrize(
    "d", [d for d in dev.ADAM_CATALOGUE if not d.equivalent], ids=lambda d: d.name
)
def test_each_adam_deviation_ranks_itself_first(d: dev.Deviation) -> None:
    cname, kind = ADAM_SCENARIO_OF.get(d.name, ("plain", "normal"))
    cfg = ADAM_CONFIGS[cname]
    causes = dev.rank_causes_steps(_adam_evidence(d, cfg, kind), cfg, None, "float64")
    assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    assert all(c.name.startswith("adam_") for c in causes)


@pytest.mark.parametrize("d", [d for d in dev.ADAM_CATALOGUE if d.equivalent], ids=lambda d: d.name)
def test_adam_equivalent_rewrites_are_never_causes(d: dev.Deviation) -> None:
    for cname in ("plain", "decoupled", "amsgrad_torch"):
        cfg = ADAM_CONFIGS[cname]
        for dtype in ("float64", "float32"):
            ev = _adam_evidence(d, cfg, "normal", dtype)
            assert dev.rank_causes_steps(ev, cfg, None, dtype) == []


def test_algorithm_mismatch_is_refused() -> None:
    params, grads = _inputs("normal")
    cfg = ref.SETAdamConfig()
    with pytest.raises(ValueError, match="Adam deviation"):
        dev.replay(dev.by_name("adam_swapped_betas"), params, grads[0], ref.init(params, cfg), cfg)


@pytest.mark.parametrize("cfg", [ref.SETAdamConfig(), ref.AdamConfig(amsgrad=True)])
def test_edge_shapes_scalar_empty_and_one_element(cfg: ref.Config) -> None:
    params = [np.array(0.5), np.zeros((0,)), np.ones((1, 1)), np.arange(6.0).reshape(2, 3)]
    grads = [np.array(0.1), np.zeros((0,)), np.full((1, 1), 0.2), np.full((2, 3), 0.3)]
    state = ref.init(params, cfg)
    p, _, _ = ref.step(params, grads, state, cfg)
    catalogue = dev.CATALOGUE if isinstance(cfg, ref.SETAdamConfig) else dev.ADAM_CATALOGUE
    for d in catalogue:
        r = dev.replay(d, params, grads, state, cfg)
        assert [x.shape for x in r.params] == [x.shape for x in params], d.name
    assert dev.rank_causes(params, grads, state, cfg, None, p) == []


def test_state_in_another_convention_does_not_hide_the_cause() -> None:
    """A port that stores v in its own convention (here 2 v) is still diagnosed from its params."""
    d = dev.by_name("eps_outside_sqrt")
    params, grads = _inputs("normal")
    cfg = _config("normal")
    state = ref.init(params, cfg)
    p, state, _ = ref.step(params, grads[0], state, cfg)
    r = dev.replay(d, p, grads[1], state, cfg)
    odd_v = [2.0 * v for v in r.v]
    causes = dev.rank_causes(p, grads[1], state, cfg, None, r.params, port_m=r.m, port_v=odd_v)
    assert causes and causes[0].name == "eps_outside_sqrt"
