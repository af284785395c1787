"""The cost of judging a long horizon: a 1001-step tiny fuzz case, split into bounds and IPC.

    python -m conformance.bench.long_horizon [--port 'ours.torch.SETAdam[single]'] [--repeats 3]
        [--steps 1001] [--baseline DIR]

The case is the fuzzer's (``conformance.fuzz.cases.Case``: SET-Adam, one array of 3 elements,
beta2 = 0.9999, 1001 steps), judged as ``fuzz`` judges it (``conformance.fuzz.engine``: one
worker for the session, a fresh reference run per judgement). Printed per port, as medians over
the repeats in ms per step: *bounds* (the tolerance model, :func:`conformance.tolerance.
comparison_bounds`, free-running and re-synced), *reference* (the rest of the reference run: the
traced steps), *port* (driving the port: worker round trips, the port's own step, the
comparisons) and *total*, with the machine's load (``os.getloadavg``). With ``--baseline DIR``
(a tree of an earlier commit, e.g. ``mkdir /tmp/base && git archive <commit> | tar -x -C
/tmp/base``) this script runs again on that tree's package in a subprocess right after, and the ratios baseline / this tree are
printed (only ratios measured side by side mean anything on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

PORTS = ("ours.torch.SETAdam[single]", "ours.jax.SETAdam[single]")
PARTS = ("bounds", "reference", "port", "total")


def measure(port: str, steps: int, repeats: int) -> dict[str, float]:
    """Median ms per step of each part (see the module docstring) for ``port``."""
    from conformance import reference_run as _rr

    reference_run: Any = _rr  # its functions are wrapped with timers for the measurement
    from conformance.fuzz.cases import Case
    from conformance.fuzz.command import target_spec
    from conformance.fuzz.engine import FuzzOptions, _Target

    spent = {"bounds": 0.0}
    inner = reference_run.comparison_bounds

    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent["bounds"] += time.perf_counter() - t0

    reference_run.comparison_bounds = timed
    build = reference_run.build_reference_for
    ref_s = [0.0]

    def timed_build(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return build(*a, **k)
        finally:
            ref_s[0] += time.perf_counter() - t0

    reference_run.build_reference_for = timed_build
    hyper = (("betas", (0.9, 0.9999)),)
    case = Case("setadam", ((3,),), ("normal",), (0,), hyper, steps, 1)
    target = _Target(target_spec(port, None, None), FuzzOptions())
    try:
        target.judge(Case("setadam", ((3,),), ("normal",), (0,), (), 2, 1))  # start the worker
        rows: dict[str, list[float]] = {p: [] for p in PARTS}
        for _ in range(repeats):
            spent["bounds"], ref_s[0] = 0.0, 0.0
            t0 = time.perf_counter()
            r = target.judge(case)
            total = time.perf_counter() - t0
            assert r.verdict == "pass", r.message
            parts = {
                "bounds": spent["bounds"],
                "reference": ref_s[0] - spent["bounds"],
                "port": total - ref_s[0],
                "total": total,
            }
            for p in PARTS:
                rows[p].append(1e3 * parts[p] / steps)
    finally:
        target.close()
        reference_run.comparison_bounds = inner
        reference_run.build_reference_for = build
    return {p: statistics.median(v) for p, v in rows.items()}


def _line(port: str, ms: dict[str, float], steps: int) -> str:
    parts = ", ".join(f"{p} {ms[p]:.2f}" for p in PARTS)
    return f"{port}: ms/step {parts} (total {ms['total'] * steps / 1e3:.2f} s)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", action="append", help=f"a port by name (default: {', '.join(PORTS)})")
    ap.add_argument("--steps", type=int, default=1001)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="a checkout of an earlier commit")
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the baseline's run
    a = ap.parse_args()
    ports = a.port or list(PORTS)
    load = os.getloadavg()
    out = {p: measure(p, a.steps, a.repeats) for p in ports}
    if a.json:
        print(json.dumps(out))
        return
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (before)")
    for p, ms in out.items():
        print(_line(p, ms, a.steps))
    if a.baseline is None:
        return
    cmd = [sys.executable, os.path.abspath(__file__), "--json"]  # this script, the old package
    cmd += [f"--steps={a.steps}", f"--repeats={a.repeats}", *(f"--port={p}" for p in ports)]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(a.baseline))
    res = subprocess.run(cmd, cwd=a.baseline, env=env, capture_output=True, text=True, check=True)
    base: dict[str, dict[str, float]] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"baseline {a.baseline}:")
    for p, ms in base.items():
        print(_line(p, ms, a.steps))
        ratios = ", ".join(f"{q} {ms[q] / out[p][q]:.2f}x" for q in PARTS if out[p][q] > 0)
        print(f"  speed-up (baseline / this tree): {ratios}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (after)")


if __name__ == "__main__":
    main()
