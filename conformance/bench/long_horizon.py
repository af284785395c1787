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
/tmp/base``) this script also runs on that tree's package in a subprocess, the rounds
interleaved (this tree, the baseline, this tree, ...), and the ratios baseline / this tree are
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

PORTS = ("ours.torch.SETAdam[single]", "ours.jax.setadam")
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
    if a.json:
        print(json.dumps({p: measure(p, a.steps, a.repeats) for p in ports}))
        return
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (before)")
    rounds: list[tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]] = []
    for _ in range(a.repeats if a.baseline else 1):  # interleaved: this tree, then the baseline
        here = {p: measure(p, a.steps, 1 if a.baseline else a.repeats) for p in ports}
        rounds.append((here, _baseline(a.baseline, ports, a.steps) if a.baseline else {}))
    for p in ports:
        ours = _median([r[0][p] for r in rounds])
        print(_line(p, ours, a.steps))
        if a.baseline:
            base = _median([r[1][p] for r in rounds])
            print(f"  baseline {a.baseline}: " + _line(p, base, a.steps).split(": ", 1)[1])
            ratios = ", ".join(f"{q} {base[q] / ours[q]:.2f}x" for q in PARTS if ours[q] > 0)
            print(f"  speed-up (baseline / this tree, medians of {len(rounds)} rounds): {ratios}")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (after)")


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {q: statistics.median(r[q] for r in rows) for q in PARTS}


def _baseline(tree: str, ports: list[str], steps: int) -> dict[str, dict[str, float]]:
    """One round of :func:`measure` on the package of ``tree`` (a subprocess)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--json", f"--steps={steps}", "--repeats=1"]
    cmd += [f"--port={p}" for p in ports]
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    out: dict[str, dict[str, float]] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


if __name__ == "__main__":
    main()
