"""Meta-tests of fuzz's contract strategies (param groups, an lr schedule, absent gradients), its
statistical verdict and ``--target-hyper``: a planted port only the contract strategies catch is
found and shrunk to the step and absence that matter; a bias below the budget is caught by the
statistical verdict inside fuzz."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.adapters import third_party
from conformance.fuzz._gen import lr_factors
from conformance.fuzz.cases import Case
from conformance.fuzz.command import fuzz_target, target_spec
from conformance.fuzz.engine import FuzzOptions, _Target
from conformance.runner import check_port
from conformance.systematic import ALPHA
from conformance.vectors.inputs import load_manifest, vector_problem

ROOT = Path(__file__).resolve().parents[2]
CACHE = "conformance.tests.fuzz_wrong.ports:GroupLrCacheSETAdam"
HYPER = {"tau": 0.5, "maximize": False}
#: the stated example budgets at SEED
SEED = 1
BUDGET = {"GroupLrCacheSETAdam": 150}


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(0, 2**16))
def test_a_shorter_horizon_is_a_prefix_of_the_longer_case(a: int, b: int, seed: int) -> None:
    # what lets hypothesis shrink the horizon alone: nothing else changes with it
    short, long = sorted((a, b))
    case = Case("setadam", ((3,), (2,)), ("normal", "onehot"), (0, 2), (), long, seed,
                schedule="decay", absent=(0, 2))  # fmt: skip
    cut = Case("setadam", ((3,), (2,)), ("normal", "onehot"), (0, 2), (), short, seed,
               schedule="decay", absent=(0, 2))  # fmt: skip
    pa = case.problem()
    pb = cut.problem()
    assert pa.grads is not None and pb.grads is not None
    for ga, gb in zip(pa.grads, pb.grads):
        for x, y in zip(ga, gb, strict=True):
            assert (x == y).all()
    assert pb.lr_factors == pa.lr_factors[:short]  # type: ignore[index]
    assert pb.active == pa.active[:short]  # type: ignore[index]


def test_target_and_reference_hyper_reach_their_sides_only() -> None:
    spec = target_spec("torch.optim:AdamW", "torch", "adam", weight_decay_mode="decoupled",
                       target_hyper={"foreach": False},
                       reference_hyper={"eps_mode": "tf"})  # fmt: skip
    assert spec.locator is not None
    assert spec.locator.options["target_hyper"] == {"foreach": False}
    assert spec.base_config is not None and spec.base_config.eps_mode == "tf"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        target_spec("ours.torch.SETAdam[single]", None, None, target_hyper={"foreach": False})


@pytest.mark.slow
def test_fuzz_finds_a_cached_group_lr_with_the_contract_strategies(tmp_path: Path) -> None:
    opts = FuzzOptions(max_examples=BUDGET["GroupLrCacheSETAdam"], time_budget_s=None, seed=SEED)
    out = fuzz_target(CACHE, "torch", "setadam", hyper=HYPER, report=tmp_path, options=opts)
    assert out.verdict == "fail", out.message
    case = out.case
    assert case is not None and out.caps is not None
    assert out.caps.contract == {"groups", "schedule", "sparse"}
    # minimal where it matters: two groups, an lr schedule, and the horizon the first step at
    # which the scheduled lr differs from the constructed one (f_t != 1: step 1 for the
    # cosine's warm-up, step 2 for the others), every gradient present
    assert len(case.groups) == 2 and case.schedule and not case.absent
    factors = lr_factors(case.schedule, case.steps)
    assert factors[-1] != 1.0 and all(f == 1.0 for f in factors[:-1])
    summary = json.loads((tmp_path / "fuzz.json").read_text())
    assert summary["case"]["schedule"] == case.schedule and len(summary["case"]["groups"]) == 2
    # the shrunk case as a version-2 golden vector (groups, lr factors): a C port can run it
    assert "vector_error" not in summary
    vec = load_manifest(tmp_path / "vector")["vectors"][0]
    assert vector_problem(vec, 2) is None and len(vec["groups"]) == 2
    assert [float.fromhex(f) for f in vec["lr_factors"]] == factors
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(tmp_path / "reproducer.py")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL" in run.stdout


@pytest.mark.slow
def test_the_default_scenarios_miss_a_cached_group_lr() -> None:
    r = check_port(third_party.spec(CACHE, "torch", "setadam", hyper=HYPER))
    assert r.verdict == "pass", r.message
    assert {s.scenario for s in r.scenarios if s.status == "pass"} >= {"groups", "schedules"}


def test_a_fuzz_case_fails_by_the_statistical_verdict_at_the_sessions_alpha() -> None:
    # lr * (1 + 8u) in float32: below every coordinate's budget, caught by the statistical
    # verdict alone (test_systematic); judged as fuzz judges a case, at ALPHA / max_examples
    opts = FuzzOptions(max_examples=1000, time_budget_s=None)
    spec = target_spec("conformance.wrong_ports.systematic_torch:LrPlus8uAdam", "torch", "adam",
                       dtype="float32")  # fmt: skip
    target = _Target(spec, opts)
    try:
        exact = (("betas", (0.5, 0.75)), ("lr", 1e-2))  # exact betas: a floor below 8u
        case = Case("adam", ((16, 16), (64,)), ("normal", "normal"), (0, 0), exact, 16, 3)
        r = target.judge(case)
        control = _Target(target_spec("conformance.wrong_ports.systematic_torch:HandAdam",
                                      "torch", "adam", dtype="float32"), opts)  # fmt: skip
        ok = control.judge(case)
        control.close()
    finally:
        target.close()
    assert r.verdict == "fail" and {f.kind for f in r.failures} == {"systematic"}, r.message
    assert r.systematic is not None and r.systematic["rejected"] == 1
    assert f"{ALPHA:.0e}/" in r.failures[0].message
    assert ok.verdict == "pass", ok.message
    assert opts.alpha == ALPHA / 1000


def test_fuzz_cli_takes_target_hyper_and_refuses_it_for_our_ports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conformance.cli import main

    assert main(["fuzz", "ours.torch.SETAdam[single]", "--target-hyper", "foreach=False"]) == 2
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("VERDICT: error: usage") and "MODULE:ATTR" in last
