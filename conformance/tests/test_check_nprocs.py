"""``check --nprocs``: a sharded torch target's ranks that raise, hang or die end the check;
``check --devices``: a JAX target on a device mesh, end to end.

The planted sharding bugs and the correct control go through the same pipeline in
``test_sharded_planted.py`` (the spec ``check --nprocs`` builds, in this process). Here: one
command-line check whose rank 1 dies mid-step (exit 1, the rank named, no process left behind),
ranks that raise or hang (in this process, with a short per-call timeout), and the usage errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from conformance.adapters import third_party
from conformance.results import PortResult
from conformance.runner import check_port
from conformance.scenarios import get

ROOT = Path(__file__).resolve().parents[2]
MIS = "conformance.tests.sharded_wrong.misbehaving:"


def _cli(*args: str, report: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "conformance", "check", *args, "--no-progress",
           "--report", str(report)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SETADAM_TEST_MARK": str(report)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)


def _marked(report: Path) -> list[int]:
    """Live processes started by the command line of ``report`` (its worker, its ranks)."""
    mark = f"SETADAM_TEST_MARK={report}".encode()
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and mark in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def test_a_rank_that_dies_ends_the_command_line_check(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _cli(MIS + "RankOneDies", "--framework", "torch", "--algorithm", "setadam",
             "--nprocs", "2", "--scenario", "shard_even", "--scenario", "shard_uneven",
             "--timeout", "20", report=tmp_path)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("VERDICT: NOT conformant"), r.stdout
    (port,) = json.loads((tmp_path / "report.json").read_text())["ports"]
    assert port["verdict"] == "fail" and "rank 1 died (exit code 7)" in port["message"], port
    statuses = {s["scenario"]: s["status"] for s in port["scenarios"]}
    assert statuses == {"shard_even": "fail", "shard_uneven": "not_judged"}, statuses
    assert time.monotonic() - t0 < 200
    deadline = time.monotonic() + 10  # the ranks end on their own once their parent is gone
    while _marked(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _marked(tmp_path)  # the worker, the forkserver and the ranks are gone


def _check(target: str, timeout_s: float) -> PortResult:
    spec = third_party.spec(target, "torch", "setadam", nprocs=2, timeout_s=timeout_s)
    return check_port(spec, scenarios=[get("shard_even"), get("shard_uneven")], quick=True)


@pytest.mark.parametrize(
    ("attr", "kind", "text"),
    [("RankOneRaises", "crash", "rank 1 raised RuntimeError: rank 1 gave up"),
     ("RankOneHangs", "timeout", "did not answer step within 8 s")],
)  # fmt: skip
def test_ranks_that_raise_or_hang_end_the_check_with_every_rank_stopped(
    attr: str, kind: str, text: str
) -> None:
    from conformance.adapters import rank_pool

    t0 = time.monotonic()
    r = _check(MIS + attr, 10.0)
    assert r.verdict == "fail", r.message
    assert [f.kind for f in r.failures] == [kind], r.failures
    assert text in r.failures[0].message, r.failures[0].message
    assert [s.status for s in r.scenarios] == ["fail", "not_judged"]
    assert time.monotonic() - t0 < 60
    pool = rank_pool._SHARED[2]
    assert not pool.alive and not any(p.is_alive() for p in pool._procs)


def test_nprocs_usage_errors(tmp_path: Path) -> None:
    r = _cli("m:C", "--framework", "jax", "--algorithm", "setadam", "--nprocs", "2",
             report=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "VERDICT: error: usage" in r.stdout, r.stdout
    r = _cli("m:C", "--framework", "torch", "--algorithm", "setadam", "--nprocs", "0",
             report=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "1 to 64 ranks" in r.stdout + r.stderr, r.stdout


def test_devices_usage_and_missing_devices(tmp_path: Path) -> None:
    """``--devices`` is for JAX targets; a mesh larger than the devices jax has is a setup
    error naming XLA_FLAGS (the command line sets it for the worker; this process has one)."""
    pytest.importorskip("jax")
    from conformance.session import PortSetupError

    r = _cli("m:C", "--framework", "torch", "--algorithm", "setadam", "--devices", "2",
             report=tmp_path)  # fmt: skip
    assert r.returncode == 2 and "VERDICT: error: usage" in r.stdout, r.stdout
    with pytest.raises(PortSetupError, match="XLA_FLAGS"):
        third_party.spec("conformance.ports.jax_setadam:setadam", "jax", "setadam", devices=64)


@pytest.mark.slow  # ~60 s at load 10 on 2 cores: a worker, a jax import, one compilation
def test_devices_end_to_end_on_a_mesh(tmp_path: Path) -> None:
    """``check --devices 2`` from the command line: the worker gets 2 host devices (XLA_FLAGS set
    by the command line before jax is imported), the target's parameters, gradients and state
    are placed on the mesh and its update jitted. Kept cheap for CI: one scenario whose rows do
    not divide by 2 (split inside the jitted step), its quick horizon (4 steps), one XLA
    compilation."""
    pytest.importorskip("jax")
    r = _cli("conformance.ports.jax_setadam:setadam", "--framework", "jax", "--algorithm",
             "setadam", "--devices", "2", "--scenario", "shard_uneven", "--quick",
             report=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("VERDICT: conformant"), r.stdout
    (port,) = json.loads((tmp_path / "report.json").read_text())["ports"]
    assert port["name"].endswith("@2dev") and port["verdict"] == "pass", port
    assert [(s["scenario"], s["status"]) for s in port["scenarios"]] == [("shard_uneven", "pass")]
