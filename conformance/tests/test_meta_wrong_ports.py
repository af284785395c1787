"""Meta-tests: the harness rejects every deliberately wrong port, for the right reason, and
accepts every correct or mathematically equivalent one (no false alarms).

The ports are in ``conformance.wrong_ports`` (written from the mathematics, sharing nothing with
``setadam_ref``); ``WRONG_PORTS`` says for each which stage should disagree first, from which step,
on which inputs, and which catalogue entry (``conformance.catalogue``) should be named as its
likely cause. Each check runs a --quick-sized selection: the one scenario that exposes the bug
(wrong ports) or a broad selection (ports that must be accepted).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.tests._factories import torch_factory
from conformance.wrong_ports import WRONG_PORTS, WrongPort

pytest.importorskip("torch")

from conformance.results import PortResult
from conformance.runner import check_port
from setadam_ref import AdamConfig, Config, SETAdamConfig

ROOT = Path(__file__).resolve().parents[2]

#: the harness scenario that exposes each kind of bug (see ``WrongPort.exposed_by``)
SCENARIO = {
    "any": "normal",
    "multi_array": "normal",
    "matrix": "normal",
    "tiny": "tiny_gradients",
    "zero_layer": "zero_layers",
    "l2": "weight_decay_l2",
    "decoupled": "weight_decay_decoupled",
    "maximize": "maximize",
    "multi_group": "normal",  # the torch adapter adds a sentinel param group to every scenario
}
#: fewer for JAX ports (each scenario builds a fresh transformation; slow on 2 cores)
JAX_ACCEPT_SCENARIOS = ("normal", "zero_layers", "weight_decay_decoupled")
#: scenarios on which a port that must be accepted is checked
ACCEPT_SCENARIOS = (
    "normal",
    "tiny_gradients",
    "zero_layers",
    "single_element",
    "weight_decay_l2",
    "weight_decay_decoupled",
    "maximize",
    "tau_0.9",
)

WRONG = [w for w in WRONG_PORTS if not w.must_accept]
ACCEPT = [w for w in WRONG_PORTS if w.must_accept]


def _load(target: str) -> Any:
    import importlib

    module, attr = target.split(":", 1)
    return getattr(importlib.import_module(module), attr)


def _torch_factory(cls: Any, dtype: str) -> Any:
    return torch_factory(cls, dtype, record_stages=True)


def _jax_factory(fn: Any, dtype: str, jit: bool = True) -> Any:
    from conformance.adapters._jax import OptaxPort

    def make(cfg: Config) -> Any:
        assert isinstance(cfg, SETAdamConfig)
        b1, b2 = cfg.betas

        def tx() -> Any:
            return fn(
                learning_rate=cfg.lr,
                b1=b1,
                b2=b2,
                eps=cfg.eps,
                tau=cfg.tau,
                weight_decay=cfg.weight_decay,
                weight_decay_mode=cfg.weight_decay_mode,
                maximize=cfg.maximize,
            )

        return OptaxPort(getattr(fn, "__name__", "port"), tx, dtype, "cpu", jit=jit, betas=cfg.betas)

    return make


@functools.cache
def _check(target: str, dtype: str, scenarios: tuple[str, ...]) -> PortResult:
    w = next(x for x in WRONG_PORTS if x.target == target)
    if w.framework == "jax":
        pytest.importorskip("jax")
        pytest.importorskip("optax")
        factory = _jax_factory(_load(target), dtype)
    else:
        factory = _torch_factory(_load(target), dtype)
    return check_port(
        factory,
        w.algorithm,
        scenarios=list(scenarios),
        quick=True,
        dtype=dtype,
        name=w.attr,
        supports=_adam_supports if w.algorithm == "adam" else None,
    )


def _adam_supports(cfg: Config) -> str | None:
    """The Adam wrong ports have neither amsgrad nor eps_root."""
    if isinstance(cfg, AdamConfig) and (cfg.amsgrad or cfg.eps_root != 0):
        return "no amsgrad / eps_root"
    return None


def _exposing(w: WrongPort) -> tuple[str, ...]:
    return (SCENARIO[w.exposed_by],)


def _top(result: PortResult, slack: float = 0.01) -> set[str]:
    """Causes tied for first place (some deviations coincide on some inputs)."""
    if not result.likely_causes:
        return set()
    best = result.likely_causes[0][1]
    return {name for name, score, _ in result.likely_causes if score <= best + slack}


def _explain(result: PortResult) -> str:
    head = [f"{f.kind} {f.scenario} {f.mode} step {f.step} {f.stage}" for f in result.failures[:4]]
    return (
        f"{result.verdict}: {result.message}\n  stage={result.stage}\n  causes={result.likely_causes[:3]}\n  "
        + "\n  ".join(head)
    )


# ----------------------------------------------------------------------------- wrong ports


@pytest.mark.parametrize("w", WRONG, ids=lambda w: w.attr)
def test_wrong_port_is_rejected_for_the_right_reason(w: WrongPort) -> None:
    r = _check(w.target, "float64", _exposing(w))
    assert r.verdict == "fail", _explain(r)
    kinds = {f.kind for f in r.failures}
    assert w.kind in kinds, _explain(r)
    if w.kind == "side_effect":
        msgs = " ".join(f.message for f in r.failures if f.kind == "side_effect")
        expected = "gradient" if "Grads" in w.attr else "param group"
        assert expected in msgs or "without gradient" in msgs, msgs
        return
    # the right stage, where the port exposes its state and stages (torch ports do); the
    # stage of the best-explaining entry where it exposes nothing closer than its parameters
    if w.stage is not None:
        if w.hidden:  # state not in the reference's convention: black-box, inferred stage
            assert not r.exposes_state and "another convention" in (r.diagnosis or {})["state"]
        elif w.algorithm == "adam":  # state, no stages: m, v right, so inferred from the cause
            assert r.exposes_state and not r.exposes_stages
        elif w.framework == "torch":  # state and stages: the stage that disagrees first
            assert r.exposes_state and r.exposes_stages
        else:  # optax: state (mu, nu) but no stages: inferred from the cause
            assert r.exposes_state and not r.exposes_stages
        assert r.stage == w.stage, _explain(r)
    # from the right step (re-synced comparison)
    first = (r.diagnosis or {}).get("first_failure") or {}
    assert first.get("step") == w.first_step, _explain(r)
    # named by the catalogue
    if w.cause is not None:
        assert w.cause in _top(r), _explain(r)


FLOAT32 = [w for w in WRONG if w.framework == "torch" and w.kind == "tolerance"]


@pytest.mark.parametrize("w", FLOAT32, ids=lambda w: w.attr)
def test_wrong_port_is_rejected_in_float32(w: WrongPort) -> None:
    r = _check(w.target, "float32", _exposing(w))
    assert r.verdict == "fail", _explain(r)
    assert r.stage == w.stage, _explain(r)
    if w.cause is not None:
        assert w.cause in _top(r), _explain(r)


def test_wrong_only_on_some_scenarios() -> None:
    """Ports whose bug needs particular inputs pass where those inputs are absent."""
    for attr, clean in (
        ("IgnoresWeightDecay", "normal"),
        ("DecoupledWithoutLr", "weight_decay_l2"),
        ("IgnoresMaximize", "normal"),
        ("NaNOnZeroLayer", "normal"),
    ):
        w = next(x for x in WRONG_PORTS if x.attr == attr)
        r = _check(w.target, "float64", (clean,))
        assert r.verdict == "pass", (attr, _explain(r))


def test_public_style_port_through_the_third_party_path() -> None:
    """The user's route (``third_party.spec``, as ``check MODULE:ATTR`` builds it): a port with no
    tau argument has the tau scenarios skipped with a reason, and its guard constant is caught."""
    from conformance.adapters.third_party import spec

    target = "conformance.wrong_ports.torch_ports:PublicStyleSETAdam"
    r = check_port(
        spec(target, "torch", "setadam", dtype="float32"),
        scenarios=["normal", "tiny_gradients", "tau_0.9"],
        quick=True,
    )
    status = {s.scenario: s for s in r.scenarios}
    assert status["tau_0.9"].status == "skip" and "tau" in status["tau_0.9"].reason
    assert status["normal"].status == "pass"  # the guard is below float32 rounding there
    assert status["tiny_gradients"].status == "fail"
    assert r.verdict == "fail" and r.stage == "cos2", _explain(r)
    assert "cos2_guard_1e-16" in _top(r), _explain(r)


def test_at_least_twelve_wrong_ports_and_two_jax() -> None:
    assert len(WRONG) >= 12
    assert sum(1 for w in WRONG if w.framework == "jax") >= 2


# ----------------------------------------------------------------------------- no false alarms


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("w", ACCEPT, ids=lambda w: w.attr)
def test_equivalent_and_control_ports_are_accepted(w: WrongPort, dtype: str) -> None:
    if w.framework == "jax" and dtype != "float64":
        pytest.skip("the JAX control runs in float64 only (our JAX port is checked in both)")
    scenarios = JAX_ACCEPT_SCENARIOS if w.framework == "jax" else ACCEPT_SCENARIOS
    r = _check(w.target, dtype, scenarios)
    assert r.verdict == "pass", _explain(r)


def test_our_torch_port_is_accepted() -> None:
    mod = pytest.importorskip("conformance.ports.torch_setadam")
    for dtype in ("float64", "float32"):
        r = check_port(
            _torch_factory(mod.SETAdam, dtype),
            "setadam",
            scenarios=list(ACCEPT_SCENARIOS),
            quick=True,
            dtype=dtype,
            name="ours.torch.SETAdam",
        )
        assert r.verdict == "pass", _explain(r)
        assert r.exposes_stages


def test_our_jax_port_is_accepted() -> None:
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    mod = pytest.importorskip("conformance.ports.jax_setadam")
    for dtype in ("float64", "float32"):
        r = check_port(
            _jax_factory(mod.setadam, dtype),
            "setadam",
            scenarios=list(JAX_ACCEPT_SCENARIOS),
            quick=True,
            dtype=dtype,
            name="ours.jax.setadam",
        )
        assert r.verdict == "pass", _explain(r)


# ----------------------------------------------------------------------------- through the CLI


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "conformance", *args, "--no-progress", "--report", str(tmp)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_check_rejects_a_wrong_port_by_import_path(tmp_path: Path) -> None:
    pytest.importorskip("conformance.cli")
    target = "conformance.wrong_ports.torch_ports:EpsOutsideSqrt"
    p = _cli(
        tmp_path,
        "check",
        target,
        "--framework",
        "torch",
        "--algorithm",
        "setadam",
        "--scenario",
        "normal",
        "--quick",
    )
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    assert "NOT conformant" in last and target in last, last
    assert "epsilon_embedding" in out and "eps_outside_sqrt" in out, out[-3000:]


def test_cli_check_accepts_an_equivalent_port_by_import_path(tmp_path: Path) -> None:
    pytest.importorskip("conformance.cli")
    p = _cli(
        tmp_path,
        "check",
        "conformance.wrong_ports.torch_ports:EqScaleAfterBiasCorrection",
        "--framework",
        "torch",
        "--algorithm",
        "setadam",
        "--scenario",
        "normal",
        "--scenario",
        "tiny_gradients",
        "--quick",
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "conformant" in p.stdout.strip().splitlines()[-1]
