"""A fuzz reproducer builds the target with the keyword arguments the harness's worker built it
with, the fields the adapter adds from the target's signature included.

``ForgetfulPeakAdam`` takes ``amsgrad`` only by its signature (no ``--hyper``): the adapter
passes it because the case sets it. The reproducer used to rebuild the kwargs in the harness
process from the case's config alone, so it ran the target without amsgrad (plain Adam) and
printed a port value the harness never saw. Here the script's text names ``amsgrad``, and its
run, alone, prints the very port value the harness's free-running comparison found.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from conformance.fuzz import artifacts
from conformance.fuzz.cases import Case
from conformance.fuzz.command import target_spec
from conformance.results import Failure
from conformance.runner import check_port

ROOT = Path(__file__).resolve().parents[2]
TARGET = "conformance.tests.amsgrad_wrong.ports:ForgetfulPeakAdam"
CACHE = "conformance.tests.fuzz_wrong.ports:GroupLrCacheSETAdam"
#: one one-element array (so the failure's coordinate is the script's first one over budget),
#: beta2 0.5: v falls two steps in a row early
CASE = Case(
    "adam", ((1,),), ("normal",), (0,),
    (("betas", (0.9, 0.5)), ("amsgrad", True), ("weight_decay", 0.01)), 12, 3,
)  # fmt: skip


#: the shrunk case of ``GroupLrCacheSETAdam`` (the guide's): two one-element groups, cosine
#: schedule, one step; the port's second group keeps its constructed lr
GROUPS_CASE = Case(
    "setadam", ((1,), (1,)), ("normal", "normal"), (0, 0), (), 1, 0,
    groups=(((0,), ()), ((1,), ())), schedule="cosine",
)  # fmt: skip


def _reproduce(tmp_path: Path, spec: Any, case: Case) -> tuple[str, str, float]:
    """(script text, its stdout run alone, the harness's port value at the judged failure)."""
    r = check_port(spec, scenarios=[case.scenario()], diagnose=False)
    assert r.verdict == "fail", r.message
    f = artifacts.judged_failure(r.failures)
    assert f is not None and f.mode == "free" and f.port_value is not None
    path = tmp_path / "reproducer.py"
    assert artifacts.write_reproducer(case, spec, f, path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    return path.read_text(), run.stdout, f.port_value


def _line(text: str, start: str) -> str:
    return next(x.strip() for x in text.splitlines() if x.strip().startswith(start))


def test_the_reproducer_builds_the_target_as_the_worker_did(tmp_path: Path) -> None:
    text, out, port_value = _reproduce(tmp_path, target_spec(TARGET, "torch", "adam"), CASE)
    kwargs = _line(text, "KWARGS = ")
    assert "'amsgrad': True" in kwargs and "'weight_decay': 0.01" in kwargs, kwargs
    assert "'amsgrad': True" in _line(out, "target built with")
    assert float(_line(out, "port ").split()[1]) == port_value  # the harness's own port value


def test_the_reproducer_builds_each_param_group_as_the_worker_did(tmp_path: Path) -> None:
    # the failure is the guide's shrunk one (step 1, array 1), given rather than judged again
    spec = target_spec(CACHE, "torch", "setadam", hyper={"tau": 0.5, "maximize": False})
    f = Failure("fuzz", "free", 1, "params", "tolerance", "", array=1)
    path = tmp_path / "reproducer.py"
    assert artifacts.write_reproducer(GROUPS_CASE, spec, f, path)
    groups = ast.literal_eval(_line(path.read_text(), "GROUPS = ").split("=", 1)[1])
    assert [g[0] for g in groups] == [[0], [1]]
    assert all(g[2]["tau"] == 0.5 and g[2]["lr"] == 1e-3 for g in groups), groups
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1 and "step 1, array 1" in run.stdout, run.stdout + run.stderr


#: a JAX contract case: two one-element groups, the cosine schedule (f_1 = 1/4, then larger),
#: three steps; the target reads the schedule once, so steps 2 on move too little
JAX_CASE = Case(
    "adam", ((1,), (1,)), ("normal", "normal"), (0, 0), (), 3, 0,
    groups=(((0,), ()), ((1,), (("lr", 1e-2),))), schedule="cosine",
)  # fmt: skip


def test_a_jax_contract_case_has_a_reproducer_built_as_the_adapter_builds_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("optax")
    target = "conformance.tests.fuzz_wrong.jax_ports:schedule_read_once_adam"
    spec = target_spec(target, "jax", "adam", dtype="float64")
    r = check_port(spec, scenarios=[JAX_CASE.scenario()], diagnose=False)
    assert r.verdict == "fail", r.message
    f = artifacts.judged_failure(r.failures)
    assert f is not None and f.mode == "free" and f.step == 2 and f.port_value is not None
    path = tmp_path / "reproducer.py"
    assert artifacts.write_reproducer(JAX_CASE, spec, f, path)
    text = path.read_text()
    groups = ast.literal_eval(_line(text, "GROUPS = ").split("=", 1)[1])
    assert [g[2]["learning_rate"] for g in groups] == [1e-3, 1e-2], groups
    assert _line(text, "SCHEDULED = ") == "SCHEDULED = True"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"step {f.step}, array {f.array}" in run.stdout
    # the same float64 port value, up to the harness's jit of the update (the script runs eager)
    got = float(_line(run.stdout, "port ").split()[1])
    assert got == pytest.approx(f.port_value, rel=1e-14, abs=0.0), (got, f.port_value)
