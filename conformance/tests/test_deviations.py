"""Unit tests of the deviation catalogue (``conformance.catalogue``) on synthetic ports (NumPy only):
replays are the reference with one change, and the budget-based ranking names a planted deviation
first, never an equivalent rewrite, never the reference itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

import setadam_ref as ref
from conformance import catalogue as cat
from conformance.formats import round_to
from conformance.wrong_ports import WRONG_PORTS
from setadam_ref import stage_names

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
        if kind == "sparse":  # some coordinates of a layer never see a gradient
            g[0] = np.where(np.arange(g[0].size).reshape(g[0].shape) % 3 == 0, 0.0, g[0])
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
    **{
        d.name: "tiny"
        for d in cat.CATALOGUE
        if d.bug_class.startswith("guard constant") and ("1e-16" in d.name or "1e-20" in d.name)
    },
    "cos2_norm_clamp_eps": "tiny",
    "l2_in_m_only": "l2",
    "min_over_nonzero": "sparse",
    "maximize_ignored": "maximize",
    "weight_decay_ignored": "l2",
    "wd_mode_swapped": "l2",
    "decoupled_without_lr": "decoupled",
    "tau_fixed_half": "tau",
    "cos2_guard_1e-16": "tiny",
    "cos2_zero_layer_nan": "zero_layer",
    "eps_omitted": "tiny",
}
#: entries right on step 1 (the quantity they take from another step coincides there)
FIRST_STEP = {"step_minus_one": 2, "step_frozen": 2, "cos2_of_grad_sq": 2}
#: entries whose effect is a few budgets only (a relative 1e-12 in float64): named, not by far
WEAK = {"w_guard_1e-16", "update_guard_1e-16"}
#: entries that a re-synced step shows in the port's state only (its parameters are right)
IN_STATE = {"m_bias_corrected_in_place", "adam_m_bias_corrected_in_place"}
#: entries that only a free-running port shows (tested in test_blackbox.py)
FREE_ONLY = {"amsgrad_not_asked"}


def _rounded(arrays: Sequence[np.ndarray], dtype: str) -> tuple[np.ndarray, ...]:
    return tuple(round_to(a, dtype) for a in arrays)


def _as_given(state: ref.State, dtype: str) -> ref.State:
    vmax = None if state.vmax is None else _rounded(state.vmax, dtype)
    return ref.State(state.step, _rounded(state.m, dtype), _rounded(state.v, dtype), vmax)


def _port_steps(
    d: cat.Deviation | None,
    cfg: ref.Config,
    params: list[np.ndarray],
    grads: list[list[np.ndarray]],
    dtype: str = "float64",
    layers: ref.Layers | None = None,
    with_state: bool = False,
) -> list[cat.StepEvidence]:
    """Re-synced evidence of a synthetic port computing ``d`` (inputs and outputs in ``dtype``)
    along the reference trajectory, with the tolerance model's budgets."""
    state = ref.init(params, cfg)
    p: tuple[np.ndarray, ...] = tuple(params)
    out = []
    for g in grads:
        pr, gr, sr = _rounded(p, dtype), _rounded(g, dtype), _as_given(state, dtype)
        r = cat.replay(d, pr, gr, sr, cfg, layers)
        port_m = _rounded(r.m, dtype) if with_state else None
        port_v = _rounded(r.v, dtype) if with_state else None
        out.append(
            cat.step_evidence(
                pr, gr, sr, cfg, layers, dtype, _rounded(r.params, dtype), port_m, port_v
            )
        )
        p, state, _ = ref.step(p, g, state, cfg, layers=layers, nonfinite="ieee")
    return out


def _evidence(
    d: cat.Deviation | None, kind: str, dtype: str = "float64", layers: ref.Layers | None = None
) -> tuple[list[cat.StepEvidence], ref.SETAdamConfig]:
    params, grads = _inputs(kind)
    cfg = _config(kind)
    state = d is not None and d.name in IN_STATE
    return _port_steps(d, cfg, params, grads, dtype, layers, with_state=state), cfg


def _top(causes: list[cat.Cause]) -> set[str]:
    """Names tied for first place (ties are honest: some deviations coincide on some inputs)."""
    if not causes:
        return set()
    best = causes[0].distance
    return {c.name for c in causes if c.distance <= best + 1e-3}


def _bits(arrays: Sequence[np.ndarray]) -> list[bytes]:
    return [np.ascontiguousarray(a).tobytes() for a in arrays]


# ----------------------------------------------------------------------------- replay


@pytest.mark.parametrize("kind", ["normal", "l2", "decoupled", "maximize", "zero_layer", "tiny"])
def test_baseline_replay_is_the_reference_bit_for_bit(kind: str) -> None:
    params, grads = _inputs(kind)
    cfg = _config(kind)
    for lay in (None, ((0, 2), (1,))):
        state = ref.init(params, cfg)
        p: tuple[np.ndarray, ...] = tuple(params)
        for g in grads:
            r = cat.replay(None, p, g, state, cfg, lay)
            p, state, _ = ref.step(p, g, state, cfg, layers=lay)
            assert _bits(r.params) == _bits(p)
            assert _bits(r.m) == _bits(state.m) and _bits(r.v) == _bits(state.v)


def test_layout_and_layering_changes_match_their_meaning() -> None:
    """``whole_model_one_layer`` is the reference with one layer; ``per_row_layers`` is the
    reference on the matrices cut into rows, one layer each."""
    params, grads = _inputs("normal")
    cfg = _config("normal")
    state = ref.init(params, cfg)
    r = cat.replay(cat.by_name("whole_model_one_layer"), params, grads[0], state, cfg)
    p, _, _ = ref.step(params, grads[0], state, cfg, layers=((0, 1, 2),))
    assert _bits(r.params) == _bits(p)
    rows_p = [*params[0], params[1], *params[2]]
    rows_g = [*grads[0][0], grads[0][1], *grads[0][2]]
    q, _, _ = ref.step(rows_p, rows_g, ref.init(rows_p, cfg), cfg)
    r = cat.replay(cat.by_name("per_row_layers"), params, grads[0], state, cfg)
    assert _bits(r.params) == _bits([np.stack(q[:6]), q[6], np.stack(q[7:])])


def test_catalogue_is_well_formed() -> None:
    for catalogue, stages in (
        (cat.CATALOGUE, (*ref.STAGES, stage_names.COS2)),
        (cat.ADAM_CATALOGUE, (*ref.ADAM_STAGES, stage_names.VMAX)),
    ):
        names = [d.name for d in catalogue]
        assert len(names) == len(set(names))
        for d in catalogue:
            assert d.stage in stages, d
            assert d.description and d.bug_class and d.shows_when
            assert cat.by_name(d.name) is d
            changes = (d.stages, d.config, d.counter, d.layout, d.from_inputs, d.whole)
            assert sum(bool(x) for x in changes) >= 1, f"{d.name} changes nothing"
    with pytest.raises(KeyError):
        cat.by_name("no such deviation")
    for w in WRONG_PORTS:
        if w.cause is not None:
            assert not cat.by_name(w.cause).equivalent


def test_entries_are_validated() -> None:
    with pytest.raises(ValueError, match="not fields of SETAdamStages"):
        cat.entry("x", "c", "update", "d", "s", denom=lambda v, ctx: v)
    with pytest.raises(ValueError, match="stage 'nowhere'"):
        cat.entry("x", "c", "nowhere", "d", "s", counter=lambda t: t)


def test_algorithm_mismatch_is_refused() -> None:
    params, grads = _inputs("normal")
    cfg = ref.SETAdamConfig()
    with pytest.raises(ValueError, match="Adam deviation"):
        cat.replay(cat.by_name("adam_swapped_betas"), params, grads[0], ref.init(params, cfg), cfg)


@pytest.mark.parametrize("cfg", [ref.SETAdamConfig(), ref.AdamConfig(amsgrad=True)])
def test_edge_shapes_scalar_empty_and_one_element(cfg: ref.Config) -> None:
    params = [np.array(0.5), np.zeros((0,)), np.ones((1, 1)), np.arange(6.0).reshape(2, 3)]
    grads = [np.array(0.1), np.zeros((0,)), np.full((1, 1), 0.2), np.full((2, 3), 0.3)]
    state = ref.init(params, cfg)
    catalogue = cat.CATALOGUE if isinstance(cfg, ref.SETAdamConfig) else cat.ADAM_CATALOGUE
    for d in catalogue:
        r = cat.replay(d, params, grads, state, cfg)
        assert [x.shape for x in r.params] == [x.shape for x in params], d.name
    p, _, _ = ref.step(params, grads, state, cfg)
    ev = cat.step_evidence(params, grads, state, cfg, None, "float64", p)
    assert cat.rank([ev], cfg, None, "float64") == []


# ----------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("d", [d for d in cat.CATALOGUE if not d.equivalent], ids=lambda d: d.name)
def test_each_deviation_ranks_itself_first(d: cat.Deviation) -> None:
    kind = SCENARIO_OF.get(d.name, "normal")
    ev, cfg = _evidence(d, kind)
    causes = cat.rank(ev, cfg, None, "float64")
    assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    first = next(c for c in causes if c.name == d.name)
    assert first.distance < (cat.CLEARLY_BETTER if d.name in WEAK else 0.01)
    assert (first.stage, first.bug_class) == (d.stage, d.bug_class)
    assert first.first_step == FIRST_STEP.get(d.name, 1)


@pytest.mark.parametrize("d", [d for d in cat.CATALOGUE if not d.equivalent], ids=lambda d: d.name)
def test_each_deviation_in_float32(d: cat.Deviation) -> None:
    """In float32 a deviation is either named (first, ties allowed) or within the budget."""
    kind = SCENARIO_OF.get(d.name, "normal")
    ev, cfg = _evidence(d, kind, "float32")
    causes = cat.rank(ev, cfg, None, "float32")
    if causes:
        assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    else:  # not named: then the port is no further from the reference than twice the budget
        for e in ev:
            r = cat.replay(None, e.params, e.grads, e.state, cfg)
            err = cat.ranking.budget_error(
                np.concatenate([np.ravel(x) for x in e.port_params]),
                np.concatenate([np.ravel(x) for x in r.params]),
                e.budgets["params"],
            )
            assert err <= 1.0 / cat.CLEARLY_BETTER, (d.name, err)


@pytest.mark.parametrize("d", [d for d in cat.CATALOGUE if d.equivalent], ids=lambda d: d.name)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_equivalent_rewrites_are_never_causes(d: cat.Deviation, dtype: str) -> None:
    for kind in ("normal", "tiny", "decoupled"):
        ev, cfg = _evidence(d, kind, dtype)
        assert cat.rank(ev, cfg, None, dtype) == []


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
@pytest.mark.parametrize("kind", ["normal", "tiny", "zero_layer"])
def test_reference_output_has_no_cause(dtype: str, kind: str) -> None:
    ev, cfg = _evidence(None, kind, dtype)
    assert cat.rank(ev, cfg, None, dtype) == []


def test_errors_are_measured_in_budgets() -> None:
    """The same port is explained under its step's budgets and is within budget under budgets
    far larger than its departure from the reference."""
    ev, cfg = _evidence(cat.by_name("eps_outside_sqrt"), "normal")
    assert _top(cat.rank(ev, cfg, None, "float64")) == {"eps_outside_sqrt"}
    loose = [e._replace(budgets={k: b * 1e12 for k, b in e.budgets.items()}) for e in ev]
    assert cat.rank(loose, cfg, None, "float64") == []


def test_entries_within_budget_of_the_port_tie() -> None:
    """Inside the budget a difference is rounding: in float32 the eps-placement entries all
    reproduce an eps_outside_sqrt port within its budget, so they share one distance."""
    ev, cfg = _evidence(cat.by_name("eps_outside_sqrt"), "normal", "float32")
    causes = cat.rank(ev, cfg, None, "float32")
    tied = {c.name for c in causes if c.distance == causes[0].distance}
    assert "eps_outside_sqrt" in tied and len(tied) >= 2, [(c.name, c.distance) for c in causes]


def test_step_onset_rules_out_deviations_that_differ_earlier() -> None:
    ev, cfg = _evidence(cat.by_name("step_minus_one"), "normal")
    causes = cat.rank(ev, cfg, None, "float64")
    assert causes[0].name == "step_minus_one"
    assert causes[0].first_step == 2
    assert "step_plus_one" not in {c.name for c in causes}
    # one step alone (step 1) shows nothing to explain
    assert cat.rank(ev[:1], cfg, None, "float64") == []
    # the order in which steps are given does not matter
    assert cat.rank(ev[::-1], cfg, None, "float64") == causes


def test_state_channels_name_a_moment_bug() -> None:
    params, grads = _inputs("normal")
    cfg = _config("normal")
    d = cat.by_name("adabelief_v")
    ev = _port_steps(d, cfg, params, grads[:2], with_state=True)
    causes = cat.rank(ev[1:], cfg, None, "float64")
    assert causes[0].name == "adabelief_v"
    assert causes[0].stage == "v"
    # the reference's own output, state included: nothing to explain
    ev = _port_steps(None, cfg, params, grads[:2], with_state=True)
    assert cat.rank(ev, cfg, None, "float64") == []


def test_grouped_layers_are_respected() -> None:
    layers = ((0, 2), (1,))
    ev, cfg = _evidence(cat.by_name("global_cos2"), "normal", layers=layers)
    assert "global_cos2" in _top(cat.rank(ev, cfg, layers, "float64"))
    ev, cfg = _evidence(None, "normal", layers=layers)
    assert cat.rank(ev, cfg, layers, "float64") == []


def test_nan_port_is_explained_by_the_unguarded_cos2() -> None:
    ev, cfg = _evidence(cat.by_name("cos2_zero_layer_nan"), "zero_layer")
    assert any(not np.all(np.isfinite(x)) for x in ev[0].port_params)
    causes = cat.rank(ev, cfg, None, "float64")
    # torch.var's d - 1 form is NaN on an all-zero layer too: an honest tie
    assert "cos2_zero_layer_nan" in _top(causes)


def test_unknown_bug_is_not_forced_onto_the_catalogue() -> None:
    params, grads = _inputs("normal")
    cfg = _config("normal")
    state = ref.init(params, cfg)
    p, _, _ = ref.step(params, grads[0], state, cfg)
    rng = np.random.default_rng(5)
    noisy = [x + 1e-3 * rng.normal(size=x.shape) for x in p]  # random garbage, no known bug
    ev = cat.step_evidence(params, grads[0], state, cfg, None, "float64", noisy)
    assert cat.rank([ev], cfg, None, "float64") == []


def test_state_in_another_convention_does_not_hide_the_cause() -> None:
    """A port that stores v in its own convention (here 2 v) is still diagnosed from its params."""
    params, grads = _inputs("normal")
    cfg = _config("normal")
    d = cat.by_name("eps_outside_sqrt")
    state = ref.init(params, cfg)
    p, state, _ = ref.step(params, grads[0], state, cfg)
    r = cat.replay(d, p, grads[1], state, cfg)
    odd_v = [2.0 * v for v in r.v]
    ev = cat.step_evidence(p, grads[1], state, cfg, None, "float64", r.params, r.m, odd_v)
    causes = cat.rank([ev], cfg, None, "float64")
    assert causes and causes[0].name in {"eps_outside_sqrt", "eps_omitted"}
    assert "eps_outside_sqrt" in _top(causes)


def test_bad_dtype() -> None:
    ev, cfg = _evidence(None, "normal")
    with pytest.raises(ValueError, match="dtype"):
        cat.rank(ev, cfg, None, "int8")


def test_cause_record() -> None:
    fields = [f.name for f in dataclasses.fields(cat.Cause)]
    assert fields == ["name", "description", "distance", "bug_class", "stage", "first_step"]


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
    "adam_l2_in_m_only": ("l2", "normal"),
}


def _adam_evidence(
    d: cat.Deviation | None, cfg: ref.AdamConfig, kind: str, dtype: str = "float64"
) -> list[cat.StepEvidence]:
    if kind == "decaying":  # large gradients first, then small: amsgrad's maximum matters
        params, grads = _inputs("normal")
        grads = [[g * (10.0 if t == 0 else 0.1) for g in gs] for t, gs in enumerate(grads)]
    else:
        params, grads = _inputs(kind)
    state = d is not None and d.name in IN_STATE
    return _port_steps(d, cfg, params, grads, dtype, with_state=state)


@pytest.mark.parametrize("name", sorted(ADAM_CONFIGS))
def test_adam_baseline_replay_is_the_reference_bit_for_bit(name: str) -> None:
    cfg = ADAM_CONFIGS[name]
    params, grads = _inputs("normal")
    state = ref.init(params, cfg)
    p: tuple[np.ndarray, ...] = tuple(params)
    for g in grads:
        r = cat.replay(None, p, g, state, cfg)
        p, state, _ = ref.step(p, g, state, cfg)
        assert _bits(r.params) == _bits(p) and _bits(r.v) == _bits(state.v)
        assert (r.vmax is None) == (state.vmax is None)
        if r.vmax is not None and state.vmax is not None:
            assert _bits(r.vmax) == _bits(state.vmax)


@pytest.mark.parametrize(
    "d", [d for d in cat.ADAM_CATALOGUE if not d.equivalent and d.name not in FREE_ONLY],
    ids=lambda d: d.name,
)
def test_each_adam_deviation_ranks_itself_first(d: cat.Deviation) -> None:
    cname, kind = ADAM_SCENARIO_OF.get(d.name, ("plain", "normal"))
    cfg = ADAM_CONFIGS[cname]
    causes = cat.rank(_adam_evidence(d, cfg, kind), cfg, None, "float64")
    assert d.name in _top(causes), [(c.name, c.distance) for c in causes[:4]]
    assert {c.name for c in causes} <= {a.name for a in cat.ADAM_CATALOGUE}


@pytest.mark.parametrize("d", [d for d in cat.ADAM_CATALOGUE if d.equivalent], ids=lambda d: d.name)
def test_adam_equivalent_rewrites_are_never_causes(d: cat.Deviation) -> None:
    for cname in ("plain", "decoupled", "amsgrad_torch"):
        cfg = ADAM_CONFIGS[cname]
        for dtype in ("float64", "float32"):
            ev = _adam_evidence(d, cfg, "normal", dtype)
            assert cat.rank(ev, cfg, None, dtype) == []


@pytest.mark.parametrize("name", sorted(ADAM_CONFIGS))
def test_adam_reference_output_has_no_cause(name: str) -> None:
    cfg = ADAM_CONFIGS[name]
    for dtype in ("float64", "bfloat16"):
        assert cat.rank(_adam_evidence(None, cfg, "normal", dtype), cfg, None, dtype) == []
