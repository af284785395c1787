"""Meta-tests on ports as outside implementers write them: their own state names and containers.

Every catalogue entry is planted in an outside-style port (``conformance.wrong_ports.
outside_torch``: state under other keys, in attributes, in closures, stacked, and hidden out of
reach), in float64 on the scenario that exposes it. With the state readable the harness must
find it by its values, re-sync through it, and rank the planted cause first at the right stage;
with the state hidden it must say so once and still rank the planted cause first, black-box,
from the free-running trajectories. Controls in every style must pass (no false alarm from the
state discovery). Plus: the SET-Adam authors' public port (guard 1e-20 on sum(v^2)), one JAX
port per stage with other field names, torch.optim.NAdam / RAdam checked as Adam.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

pytest.importorskip("torch")

from conformance import catalogue as cat
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.tests._factories import torch_factory
from conformance.wrong_ports import AUTHORS, OUTSIDE_JAX, WrongPort, outside_rows
from conformance.wrong_ports.outside_bugs import ADAM_BUGS, SETADAM_BUGS
from setadam_ref import AdamConfig, Config, SETAdamConfig

SCENARIO = {
    "any": "normal",
    "tiny": "tiny_gradients",
    "zero_layer": "zero_layers",
    "l2": "weight_decay_l2",
    "decoupled": "weight_decay_decoupled",
    "maximize": "maximize",
    "tau": "tau_0.9",
    "amsgrad": "amsgrad",
}
STAGES = {d.name: d.stage for d in (*cat.CATALOGUE, *cat.ADAM_CATALOGUE)}
ROWS = outside_rows(STAGES, list(SETADAM_BUGS), list(ADAM_BUGS))
READABLE = [w for w in ROWS if not w.hidden]
HIDDEN = [w for w in ROWS if w.hidden]
#: the whole-algorithm entries planted as the real thing
TORCH_ALGORITHMS = {"nadam": "torch.optim:NAdam", "radam": "torch.optim:RAdam"}


def _load(target: str) -> Any:
    import importlib

    module, attr = target.split(":", 1)
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _check(
    target: str,
    algorithm: str,
    scenario: str,
    base: tuple[tuple[str, Any], ...],
    dtype: str = "float64",
) -> PortResult:
    config: Config | None = None
    if base:
        config = (AdamConfig if algorithm == "adam" else SETAdamConfig)(**dict(base))
    return check_port(
        torch_factory(_load(target), dtype), algorithm, config, [scenario], quick=True,
        dtype=dtype, name=target.rsplit(":", 1)[1],
    )  # fmt: skip


def _run(w: WrongPort) -> PortResult:
    return _check(w.target, w.algorithm, SCENARIO[w.exposed_by], w.base)


def _top(r: PortResult, slack: float = 0.01) -> set[str]:
    if not r.likely_causes:
        return set()
    best = r.likely_causes[0][1]
    return {name for name, score, _ in r.likely_causes if score <= best + slack}


def _explain(r: PortResult) -> str:
    head = [f"{f.kind} {f.scenario} {f.mode} step {f.step} {f.stage}" for f in r.failures[:4]]
    diag = {k: v for k, v in (r.diagnosis or {}).items() if k != "measures"}
    return (
        f"{r.verdict}: {r.message}\n  stage={r.stage}\n  causes={r.likely_causes[:3]}\n  diag={diag}\n  "
        + "\n  ".join(head)
    )


def test_every_catalogue_entry_is_planted_in_an_outside_style_port() -> None:
    planted = {w.cause for w in ROWS} | set(TORCH_ALGORITHMS)
    entries = {d.name for d in (*cat.CATALOGUE, *cat.ADAM_CATALOGUE) if not d.equivalent}
    assert entries <= planted, sorted(entries - planted)
    assert {w.style for w in READABLE} == {"Dict", "Attr", "Closure", "Stacked"}


@pytest.mark.parametrize("w", READABLE, ids=lambda w: w.attr)
def test_outside_port_with_readable_state_is_diagnosed(w: WrongPort) -> None:
    r = _run(w)
    assert r.verdict == "fail", _explain(r)
    assert w.kind in {f.kind for f in r.failures}, _explain(r)
    assert r.exposes_state, _explain(r)  # found by its values, whatever the container
    assert r.stage == w.stage, _explain(r)
    assert w.cause in _top(r), _explain(r)
    if w.first_step:
        first = (r.diagnosis or {}).get("first_failure") or {}
        assert (first.get("mode"), first.get("step")) == ("resync", w.first_step), _explain(r)


@pytest.mark.parametrize("w", HIDDEN, ids=lambda w: w.attr)
def test_outside_port_with_hidden_state_is_diagnosed_black_box(w: WrongPort) -> None:
    r = _run(w)
    assert r.verdict == "fail", _explain(r)
    assert not r.exposes_state, _explain(r)
    notes = (r.diagnosis or {}).get("state", "")
    assert "cannot" in notes and "black-box" in notes, _explain(r)
    assert r.stage == w.stage, _explain(r)
    assert w.cause in _top(r), _explain(r)


@pytest.mark.parametrize("style", ["Dict", "Attr", "Closure", "Stacked", "Hidden"])
@pytest.mark.parametrize("alg", ["setadam", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outside_controls_are_accepted(style: str, alg: str, dtype: str) -> None:
    label = "Adam" if alg == "adam" else "SETAdam"
    scenarios = ["normal", "tiny_gradients", "zero_layers", "single_element", "weight_decay_l2"]
    if alg == "adam":
        scenarios.append("amsgrad")
    r = check_port(
        torch_factory(_load(f"conformance.wrong_ports.outside_torch:{style}{label}"), dtype),
        alg, scenarios=scenarios, quick=True, dtype=dtype, name=f"{style}{label}",
    )  # fmt: skip
    assert r.verdict == "pass", _explain(r)
    assert r.exposes_state == (style != "Hidden") or r.exposes_state is None


@pytest.mark.parametrize("w", AUTHORS, ids=lambda w: w.attr)
def test_the_authors_public_port_is_diagnosed_as_its_guard(w: WrongPort) -> None:
    """The issue's port: v stored as exp_avg_var, a guard of 1e-20 on sum(v^2). It must be named
    as that guard, in down-scaling, with its state read and with its state hidden."""
    r = _check(w.target, "setadam", "tiny_gradients", ())
    assert r.verdict == "fail", _explain(r)
    assert r.stage == "down_scaling", _explain(r)
    assert r.likely_causes and r.likely_causes[0][0] == "cos2_sum_sq_guard_1e-20", _explain(r)
    assert bool(r.exposes_state) != w.hidden, _explain(r)


@pytest.mark.parametrize("name", sorted(TORCH_ALGORITHMS))
def test_torch_nadam_and_radam_checked_as_adam_are_named_as_such(name: str) -> None:
    from conformance.adapters.third_party import spec

    r = check_port(spec(TORCH_ALGORITHMS[name], "torch", "adam"), scenarios=["normal"], quick=True)
    assert r.verdict == "fail", _explain(r)
    assert name in _top(r), _explain(r)
    assert "not Adam" in r.likely_causes[0][2], _explain(r)


@pytest.mark.parametrize("w", [w for w in OUTSIDE_JAX if not w.must_accept], ids=lambda w: w.attr)
def test_jax_outside_port_per_stage(w: WrongPort) -> None:
    pytest.importorskip("optax")
    from conformance.adapters._jax import OptaxPort

    fn = _load(w.target)

    def make(cfg: Config) -> Any:
        assert isinstance(cfg, SETAdamConfig)
        b1, b2 = cfg.betas
        kw = dict(learning_rate=cfg.lr, b1=b1, b2=b2, eps=cfg.eps, tau=cfg.tau)
        return OptaxPort(w.attr, lambda: fn(**kw), "float64", "cpu", betas=cfg.betas)

    r = check_port(make, "setadam", scenarios=["normal"], quick=True, dtype="float64", name=w.attr)
    assert r.verdict == "fail", _explain(r)
    assert r.exposes_state, _explain(r)
    assert r.stage == w.stage, _explain(r)
    assert w.cause in _top(r), _explain(r)


def test_jax_outside_control_is_accepted() -> None:
    pytest.importorskip("optax")
    from conformance.adapters._jax import OptaxPort
    from conformance.wrong_ports.outside_jax import outside_control

    def make(cfg: Config) -> Any:
        assert isinstance(cfg, SETAdamConfig)
        b1, b2 = cfg.betas
        kw = dict(
            learning_rate=cfg.lr, b1=b1, b2=b2, eps=cfg.eps, tau=cfg.tau,
            weight_decay=cfg.weight_decay, weight_decay_mode=cfg.weight_decay_mode,
        )  # fmt: skip
        return OptaxPort(
            "outside_control", lambda: outside_control(**kw), "float64", "cpu", betas=cfg.betas
        )

    r = check_port(
        make,
        "setadam",
        scenarios=["normal", "zero_layers", "weight_decay_decoupled"],
        quick=True,
        dtype="float64",
    )
    assert r.verdict == "pass", _explain(r)
    assert r.exposes_state


@pytest.mark.parametrize(
    "state_map,read", [("none", False), ("m=exp_avg,v=exp_avg_var,step=step", True)]
)
def test_cli_state_map(tmp_path: Any, state_map: str, read: bool) -> None:
    """``check --state-map``: ``none`` diagnoses black-box; naming the entries re-syncs."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    target = "conformance.wrong_ports.outside_torch:AuthorsStyleSETAdam"
    p = subprocess.run(
        [sys.executable, "-m", "conformance", "check", target, "--framework", "torch",
         "--algorithm", "setadam", "--scenario", "tiny_gradients", "--quick", "--no-progress",
         "--state-map", state_map, "--report", str(tmp_path)],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    assert "cos2_sum_sq_guard_1e-20" in out, out[-3000:]
    port = json.loads((tmp_path / "report.json").read_text())["ports"][0]
    assert port["likely_causes"][0]["cause"] == "cos2_sum_sq_guard_1e-20"
    assert port["stage"] == "down_scaling"
    assert bool(port["state_note"]) != read and bool(port["exposes_state"]) == read
