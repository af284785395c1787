"""Unit tests of the black-box ranking (``conformance.catalogue.rank_free``) and of the combined
explanation (``catalogue.explain``), on synthetic ports: a catalogue entry run free in a dtype
(NumPy only), judged in the free-running budgets of the harness's own reference runs."""

from __future__ import annotations

import importlib
from dataclasses import replace

import numpy as np
import pytest

import setadam_ref as R
from conformance import catalogue as cat
from conformance.formats import round_to
from conformance.reference_run import ReferenceRun, build_reference_for
from conformance.scenarios import get
from conformance.wrong_ports import EXPOSED_BY
from setadam_ref import AdamConfig, Config, SETAdamConfig, State

SCENARIO = {
    "any": "normal", "tiny": "tiny_gradients", "zero_layer": "zero_layers",
    "l2": "weight_decay_l2", "decoupled": "weight_decay_decoupled", "maximize": "maximize",
    "tau": "tau_0.9", "amsgrad": "amsgrad",
}  # fmt: skip


def _reference(scenario: str, base: Config, dtype: str) -> ReferenceRun:
    sc = get(scenario)
    cfg = sc.config("adam" if isinstance(base, AdamConfig) else "setadam", base)
    return build_reference_for(sc.problem(True), cfg, dtype, name=scenario)


def _port(d: cat.Deviation | None, rr: ReferenceRun, dtype: str) -> cat.FreeRun:
    """``d`` run free in ``dtype``: parameters and state rounded after every step."""

    def rd(xs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        return tuple(round_to(np.asarray(x), dtype) for x in xs)

    p = rr.params[0]
    st = R.init(p, rr.config)
    out = []
    for t, g in enumerate(rr.grads, 1):
        r = cat.replay(d, p, g, st, rr.config, rr.layers)
        p = rd(r.params)
        st = State(t, rd(r.m), rd(r.v), None if r.vmax is None else rd(r.vmax))
        out.append(rr.flat.cat(p))
    return cat.free_run_of(rr, out)


def _base(d: cat.Deviation) -> Config:
    if d.algorithm == "adam":
        return AdamConfig(eps_root=1e-8) if d.name == "adam_eps_root_ignored" else AdamConfig()
    return SETAdamConfig()


def _names(causes: list[cat.Cause]) -> set[str]:
    return {c.name for c in cat.tied(causes)} | {
        c.name for c in causes if causes and c.distance <= causes[0].distance + 1e-3
    }


ENTRIES = [d for d in (*cat.CATALOGUE, *cat.ADAM_CATALOGUE) if not d.equivalent]


@pytest.mark.parametrize("d", ENTRIES, ids=lambda d: d.name)
def test_each_entry_run_free_ranks_itself_first(d: cat.Deviation) -> None:
    scenario = SCENARIO[EXPOSED_BY.get(d.name, "any")]
    rr = _reference(scenario, _base(d), "float64")
    causes = cat.rank_free([_port(d, rr, "float64")], "float64")
    assert d.name in _names(causes), [(c.name, c.distance) for c in causes[:4]]
    first = next(c for c in causes if c.name == d.name)
    assert first.stage == d.stage and first.first_step is not None


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("alg", ["setadam", "adam"])
def test_a_correct_port_run_free_has_no_cause(dtype: str, alg: str) -> None:
    base: Config = AdamConfig() if alg == "adam" else SETAdamConfig()
    runs = [_port(None, _reference(s, base, dtype), dtype) for s in ("normal", "tiny_gradients")]
    assert cat.rank_free(runs, dtype) == []


def test_garbage_is_explained_by_nothing() -> None:
    rr = _reference("normal", SETAdamConfig(), "float64")
    run = _port(None, rr, "float64")
    rng = np.random.default_rng(2)
    noisy = [p + 1e-4 * rng.normal(size=p.shape) for p in run.port]
    assert cat.rank_free([run._replace(port=noisy)], "float64") == []


def test_one_entry_must_explain_every_failing_scenario() -> None:
    a, b = cat.by_name("eps_outside_sqrt"), cat.by_name("translate_mean")
    rr1, rr2 = (_reference(s, SETAdamConfig(), "float64") for s in ("normal", "weight_decay_l2"))
    same = [_port(a, rr1, "float64"), _port(a, rr2, "float64")]
    assert cat.rank_free(same, "float64")[0].name == "eps_outside_sqrt"
    mixed = [_port(a, rr1, "float64"), _port(b, rr2, "float64")]
    assert cat.rank_free(mixed, "float64") == []  # two bugs: no single known deviation


def test_a_scenario_within_budget_constrains_nothing() -> None:
    d = cat.by_name("weight_decay_ignored")
    runs = [
        _port(d, _reference(s, SETAdamConfig(), "float64"), "float64")
        for s in ("normal", "weight_decay_l2")
    ]
    assert "weight_decay_ignored" in _names(cat.rank_free(runs, "float64"))


@pytest.mark.parametrize(
    "name,title",
    [("nadam", "NAdam"), ("radam", "RAdam"), ("adabelief", "AdaBelief"), ("lion", "Lion")],
)
def test_other_algorithms_are_named_as_such(name: str, title: str) -> None:
    rr = _reference("normal", AdamConfig(), "float32")
    causes = cat.rank_free([_port(cat.by_name(name), rr, "float32")], "float32")
    assert causes and causes[0].name == name
    assert f"behaves like {title}, not Adam" in causes[0].description


def test_amsgrad_when_not_asked_shows_free_running_only() -> None:
    d = cat.by_name("amsgrad_not_asked")
    rr = _reference("normal", AdamConfig(), "float64")
    causes = cat.rank_free([_port(d, rr, "float64")], "float64")
    assert causes and causes[0].name == "amsgrad_not_asked" and (causes[0].first_step or 0) >= 2


def test_dtype_is_checked() -> None:
    with pytest.raises(ValueError, match="dtype"):
        cat.rank_free([], "int8")


# ----------------------------------------------------------------------------- explain
def _resync(
    d: cat.Deviation | None, rr: ReferenceRun, port: cat.Deviation | None = None
) -> list[cat.StepEvidence]:
    """Re-synced evidence of a port computing ``port`` (default ``d``) along ``rr``."""
    out = []
    for t in sorted(rr.resync)[:4]:
        rs = rr.resync[t]
        r = cat.replay(port or d, rs.params, rs.grads, rs.state, rr.config, rr.layers)
        out.append(cat.StepEvidence(
            rs.params, rs.grads, rs.state, r.params, None, None,
            {"params": rs.bounds["params"]}, rr.name, rr.config, rr.layers,
        ))  # fmt: skip
    return out


def test_explain_uses_both_kinds_of_evidence() -> None:
    d = cat.by_name("global_min")
    rr = _reference("normal", SETAdamConfig(), "float64")
    ex = cat.explain(_resync(d, rr), [_port(d, rr, "float64")], rr.config, rr.layers, "float64")
    assert (
        ex.causes[0].name == "global_min" and "re-synced" in ex.basis and "free-running" in ex.basis
    )
    assert not ex.notes


def test_explain_prefers_free_running_when_the_resync_was_misled() -> None:
    """A port re-synced from an incomplete state (here: its re-synced steps look like another
    entry) is explained by its free-running trajectory, with a note saying so."""
    rr = _reference("normal", SETAdamConfig(), "float64")
    free = _port(cat.by_name("stale_min"), rr, "float64")
    misled = _resync(None, rr, cat.by_name("no_down_translating"))
    ex = cat.explain(misled, [free], rr.config, rr.layers, "float64")
    assert ex.causes[0].name == "stale_min" and "free-running" in ex.basis
    assert ex.notes and "no_down_translating" in ex.notes[0]


def test_explain_reports_nothing_the_free_runs_do_not_confirm() -> None:
    rr = _reference("normal", SETAdamConfig(), "float64")
    run = _port(None, rr, "float64")
    rng = np.random.default_rng(4)
    garbage = run._replace(port=[p + 1e-4 * rng.normal(size=p.shape) for p in run.port])
    steps = _resync(cat.by_name("translate_mean"), rr)
    ex = cat.explain(steps, [garbage], rr.config, rr.layers, "float64")
    assert ex.causes == [] and "translate_mean" in ex.notes[0]
    only = cat.explain(steps, [], rr.config, rr.layers, "float64")  # runs within budget
    assert only.causes[0].name == "translate_mean" and only.basis.startswith("re-synced")


def test_free_running_ties_are_ordered_by_the_resynced_steps() -> None:
    def c(name: str, d: float, step: int | None = None) -> cat.Cause:
        return cat.Cause(name, "", d, first_step=step)

    free = [c("a", 0.1, 3), c("b", 0.1, 3), c("z", 0.3)]
    resync = [c("b", 0.01, 1), c("a", 0.2, 2)]
    explain_module = importlib.import_module("conformance.catalogue.explain")
    out = explain_module._ordered(free, resync)
    assert [x.name for x in out] == ["b", "a", "z"]
    assert [x.distance for x in out] == [0.1, 0.1, 0.3]  # the free-running distances
    assert [x.first_step for x in out] == [1, 2, None]  # the re-synced onset where known


def test_explain_black_box_and_ties() -> None:
    rr = _reference("normal", SETAdamConfig(), "float32")
    ex = cat.explain(
        [], [_port(cat.by_name("eps_outside_sqrt"), rr, "float32")], rr.config, rr.layers, "float32"
    )
    assert "black-box" in ex.basis
    assert {"eps_outside_sqrt", "eps_omitted"} <= {c.name for c in ex.best}  # a tie in float32
    nothing = cat.explain([], [], rr.config, rr.layers, "float32")
    assert nothing.causes == [] and nothing.basis == ""


def test_cause_distance_is_the_free_running_one() -> None:
    d = cat.by_name("translate_mean")
    rr = _reference("normal", SETAdamConfig(), "float64")
    steps, runs = _resync(d, rr), [_port(d, rr, "float64")]
    both = cat.explain(steps, runs, rr.config, rr.layers, "float64").causes[0]
    a = cat.rank(steps, rr.config, rr.layers, "float64")[0]
    b = cat.rank_free(runs, "float64")[0]
    assert both == replace(b, first_step=a.first_step)
