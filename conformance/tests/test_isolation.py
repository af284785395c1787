"""Ports that misbehave as badly as they can, checked through the command line as a user would.

Every case runs ``python -m conformance check MODULE:ATTR`` in a fresh process (the targets are
in ``conformance/tests/misbehaving``) and proves: the exit code the README promises, a VERDICT
line last, and a complete report.json that validates against the report schema. A ``run``-like
multi-port check then proves that a port killing its worker takes nothing else down.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("jsonschema")

from conformance import report

ROOT = Path(__file__).resolve().parents[2]
PKG = "conformance.tests.misbehaving"


@dataclass(frozen=True)
class Case:
    target: str
    code: int
    says: str | None = None  # a regular expression the output must contain
    extra: tuple[str, ...] = ()
    verdict: str = ""  # the port's verdict in report.json


CASES: dict[str, Case] = {
    "sys.exit(0) in step": Case("ports:ExitZero", 1, r"raised SystemExit: 0", verdict="fail"),
    "sys.exit(0) at import": Case(
        "exit_at_import:Adam", 2, r"cannot load .*exit_at_import:Adam: SystemExit: 0", verdict="error"
    ),
    "os._exit(3)": Case(
        "ports:HardExit", 1,
        r"process exited with code 3 during step \d+ \(re-synced\) of scenario normal", verdict="fail",
    ),
    "segfault": Case(
        "ports:Segfault", 1,
        r"process died with signal 11 \(SIGSEGV\) during step \d+ \(re-synced\) of scenario normal",
        verdict="fail",
    ),
    "abort": Case("ports:Abort", 1, r"process died with signal 6 \(SIGABRT\)", verdict="fail"),
    "GIL-holding regex": Case(
        "ports:RegexHang", 1, r"port hung: no answer within 3 s \(the worker process was killed\)",
        ("--timeout", "3"), "fail",
    ),
    "sleep past the timeout": Case(
        "ports:Sleeps", 1, r"port hung: no answer within 3 s", ("--timeout", "3"), "fail"
    ),
    "whole-check deadline": Case(
        "ports:Sleeps", 1, r"the whole-check deadline of 5 s passed", ("--deadline", "5"), "fail"
    ),
    "never answers at start": Case(
        "hang_at_import:Adam", 2, r"importing it did not finish", ("--timeout", "3"), "error"
    ),
    "memory bomb under --max-memory": Case(
        "ports:MemoryBomb", 1, r"MemoryError", ("--max-memory", "2G"), "fail"
    ),
    "leftover non-daemon thread": Case("ports:LeavesThread", 0, verdict="pass"),
    "leftover child process": Case("ports:LeavesProcess", 0, verdict="pass"),
    "output flood": Case("ports:Floods", 0, verdict="pass"),
    "chdir": Case("ports:Chdir", 0, verdict="pass"),
    "constructor rejects the calling convention": Case(
        "ports:NoWeightDecay", 2, r"unexpected keyword argument 'weight_decay'", verdict="error"
    ),
}  # fmt: skip


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float
    workdir: Path = Path()
    report: dict[str, Any] = field(default_factory=dict)


def _env() -> dict[str, str]:
    # the code under test, whichever checkout this file belongs to
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _check(name: str, case: Case, base: Path) -> Outcome:
    work = base / re.sub(r"\W+", "_", name)
    work.mkdir()
    cmd = [sys.executable, "-m", "conformance", "check", f"{PKG}.{case.target}",
           "--framework", "torch", "--algorithm", "adam", "--quick", "--scenario", "normal",
           "--no-progress", "--report", "out/report", *case.extra]  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True,
                              timeout=150)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        return Outcome(-999, str(exc.stdout or ""), "the harness did not end", 150.0, work)
    out = Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0, work)
    path = work / "out" / "report" / "report.json"
    if path.is_file():
        out.report = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    base = tmp_path_factory.mktemp("misbehaving")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(_check, n, c, base) for n, c in CASES.items()}
        return {n: f.result() for n, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_misbehaving_port_gets_a_verdict(outcomes: dict[str, Outcome], name: str) -> None:
    case, out = CASES[name], outcomes[name]
    lines = out.stdout.strip().splitlines()
    assert out.code == case.code, f"exit {out.code}\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}"
    assert lines and lines[-1].startswith("VERDICT: "), out.stdout[-2000:]
    if case.says:
        assert re.search(case.says, out.stdout), out.stdout[-3000:]
    rep = out.report
    assert rep, "no report.json"
    report.validate(rep)
    assert rep["complete"] is True and rep["exit_code"] == case.code
    assert [p["verdict"] for p in rep["ports"]] == [case.verdict]


def test_a_flood_stays_out_of_the_terminal_and_is_counted(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["output flood"]
    assert len(out.stdout) + len(out.stderr) < 20_000, "the port's output reached the terminal"
    assert out.stdout.count("says the port") == 0
    port = out.report["ports"][0]
    assert port["output"]["bytes"] > 8 * 2**20
    assert "says the port" in port["output"]["tail"]


def test_a_leftover_thread_does_not_keep_the_harness_alive(outcomes: dict[str, Outcome]) -> None:
    assert outcomes["leftover non-daemon thread"].seconds < 60


def test_processes_a_port_started_end_with_its_worker(outcomes: dict[str, Outcome]) -> None:
    pid_file = outcomes["leftover child process"].workdir / "leftover.pid"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # a killed child of the killed worker is re-parented and reaped; give it a moment
        state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}").exists() else "X"
        if state in ("Z", "X"):
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} started by the port is still alive")


def test_a_port_changing_directory_does_not_move_the_report(outcomes: dict[str, Outcome]) -> None:
    assert outcomes["chdir"].report["ports"][0]["scenarios"][0]["status"] == "pass"


def test_the_parent_never_imports_the_target(tmp_path: Path) -> None:
    """The target (and its framework) are the worker's business: after a whole check, neither
    is imported in the harness's own process."""
    target = f"{PKG}.quirks"
    code = (
        "import sys, conformance.cli as c\n"
        f"rc = c.main(['check', '{target}:HiddenStateAdam', '--framework', 'torch',"
        " '--algorithm', 'adam', '--quick', '--scenario', 'normal', '--no-progress',"
        " '--report', 'r'])\n"
        f"print(sorted(m for m in ('torch', '{target}') if m in sys.modules)); sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-500:]


def test_run_with_every_misbehaviour_keeps_every_other_result(tmp_path: Path) -> None:
    """Every misbehaving target of CASES and two of our ports in one run-like check, two at a
    time, our ports sharing reused workers: each bad port gets its verdict and says what it did,
    and our ports' results are exactly what they are when checked alone."""
    from conformance.adapters import third_party
    from conformance.adapters.registry import available_ports
    from conformance.batch import Limits, check_specs
    from conformance.runner import check_port

    good, _ = available_ports("cpu", None, ["torch.optim.Adam[[]foreach[]]",
                                            "ours.torch.SETAdam[[]foreach[]]"], quick=True)  # fmt: skip
    cases = {n: c for n, c in CASES.items() if "--deadline" not in c.extra}
    bad = {n: third_party.remote_spec(f"{PKG}.{c.target}", "torch", "adam",
                                      timeout_s=3.0 if "--timeout" in c.extra else 60.0)
           for n, c in cases.items()}  # fmt: skip
    specs = [good[0], *list(bad.values())[:7], good[1], *list(bad.values())[7:]]
    scenarios = ["normal", "zero_layers"]
    code = check_specs(
        specs, scenarios=scenarios, quick=True, outdir=tmp_path, options={}, notes=[],
        progress=False, limits=Limits(max_memory=2 * 2**30), jobs=2, reuse=True,
    )  # fmt: skip
    assert code == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    report.validate(rep)
    assert rep["complete"] is True
    got = rep["ports"]
    assert [(p["name"], p["dtype"]) for p in got] == [(s.name, s.dtype) for s in specs]
    for p, s in zip(got, specs, strict=True):
        if s in good:
            alone = check_port(s, scenarios=scenarios, quick=True)
            assert p["verdict"] == alone.verdict == "pass", p["message"]
            assert p["worst"] == report.clean(alone.to_dict())["worst"]
    for name, case in cases.items():
        p = next(q for q in got if q["name"] == bad[name].name)
        assert p["verdict"] == case.verdict, (name, p["message"])
        if case.says:
            text = p["message"] + " ".join(f["message"] for f in p["failures"])
            assert re.search(case.says, text), (name, text[:500])


def test_a_dead_reused_worker_is_replaced() -> None:
    from conformance.adapters.registry import available_ports
    from conformance.batch import Limits, Progress, _Lane

    specs, _ = available_ports("cpu", ("float64",), ["reference-selfcheck[[]identity[]]"])
    lane = _Lane(True, Limits(timeout_s=30.0))
    try:
        first = lane.check(specs[0], None, False, Progress(2, False))
        worker = lane.worker
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(10)
        second = lane.check(specs[0], None, False, Progress(2, False))
        assert first.verdict == "pass"
        # the next port is not blamed for a death it did not cause: it gets a fresh worker
        assert second.verdict == "pass", second.message
        assert lane.worker is not worker and lane.worker.alive
    finally:
        lane.close()


def test_the_parent_refuses_a_crafted_answer() -> None:
    """A worker's answer may hold arrays and the harness's records only: a pickle that names any
    other global (here os.system) is refused, not executed."""
    import pickle

    from conformance.channel import ChannelCorrupt, SafeUnpickler

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, ("true",))

    import io

    with pytest.raises(ChannelCorrupt, match=r"(os|posix)\.system"):
        SafeUnpickler(io.BytesIO(pickle.dumps(Evil()))).load()
