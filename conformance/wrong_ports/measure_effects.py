"""Measure how large each catalogued deviation is: relative parameter error after N steps.

Every deviation of ``conformance.catalogue.CATALOGUE`` is run free (its own state carried from
step to step, NumPy float64) next to the reference ``setadam_ref.step`` on a few seeded
scenarios; reported is

    rel. error = max_i |theta_dev[i] - theta_ref[i]| / max_i |theta_ref[i] - theta_0[i]|

after ``--steps`` steps (10 by default): the deviation's error in units of the distance the
reference itself travelled. 1e-16 is rounding, 1 means the deviation moved the parameters as
far off as SET-Adam moved them at all. "nan" marks a non-finite result.

Scenarios (each three arrays: a 16x8 matrix, a 8-vector, a 4x4 matrix; lr 1e-3, tau 0.5):

- ``normal``: gradients N(0, 1) times a log-normal spread per coordinate;
- ``tiny``: gradients of magnitude log-uniform in [1e-12, 1e-4] (v << eps, eps dominates);
- ``l2`` / ``decoupled``: ``normal`` with weight decay 0.1 in that mode;
- ``maximize``: ``normal`` with maximize=True;
- ``zero_layer``: ``normal`` with the 8-vector's gradient always zero;
- ``tau_0.9``: ``normal`` with tau = 0.9.

Run: ``python -m conformance.wrong_ports.measure_effects [--steps 10] [--markdown]``. The table in
docs/src/guide/deviations.md was produced by ``--markdown``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

import setadam_ref as ref
from conformance import catalogue as dev

SHAPES: tuple[tuple[int, ...], ...] = ((16, 8), (8,), (4, 4))
SCENARIOS = ("normal", "tiny", "l2", "decoupled", "maximize", "zero_layer", "tau_0.9")

GradFn = Callable[[int], list[np.ndarray]]


def _scenario(name: str, seed: int = 0) -> tuple[list[np.ndarray], GradFn, ref.SETAdamConfig]:
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in SHAPES]
    spread = [np.exp(rng.normal(size=s)) for s in SHAPES]
    cfg = ref.SETAdamConfig(lr=1e-3)
    if name == "l2":
        cfg = replace(cfg, weight_decay=0.1, weight_decay_mode="l2")
    elif name == "decoupled":
        cfg = replace(cfg, weight_decay=0.1, weight_decay_mode="decoupled")
    elif name == "maximize":
        cfg = replace(cfg, maximize=True)
    elif name == "tau_0.9":
        cfg = replace(cfg, tau=0.9)

    def grads(t: int) -> list[np.ndarray]:
        r = np.random.default_rng(seed * 1000 + t)
        if name == "tiny":
            out = [
                r.choice([-1.0, 1.0], size=s) * 10.0 ** r.uniform(-12, -4, size=s) for s in SHAPES
            ]
        else:
            out = [r.normal(size=s) * k for s, k in zip(SHAPES, spread, strict=True)]
        if name == "zero_layer":
            out[1] = np.zeros(SHAPES[1])
        return out

    return params, grads, cfg


def relative_error(deviation: dev.Deviation, scenario: str, steps: int = 10) -> float:
    """Relative parameter error of ``deviation`` against the reference after ``steps`` steps."""
    params, grads, cfg = _scenario(scenario)
    p_ref: tuple[np.ndarray, ...] = tuple(params)
    s_ref = ref.init(params, cfg)
    p_dev: tuple[np.ndarray, ...] = tuple(params)
    s_dev = ref.init(params, cfg)
    for t in range(1, steps + 1):
        g = grads(t)
        p_ref, s_ref, _ = ref.step(p_ref, g, s_ref, cfg, nonfinite="ieee")
        r = dev.replay(deviation, p_dev, g, s_dev, cfg)
        p_dev = r.params
        s_dev = ref.State(step=t, m=r.m, v=r.v)
    travelled = max(float(np.max(np.abs(a - b))) for a, b in zip(p_ref, params, strict=True))
    if not all(np.all(np.isfinite(a)) for a in p_dev):
        return math.nan
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(p_dev, p_ref, strict=True))
    return err / travelled


def measure(steps: int = 10) -> dict[str, dict[str, float]]:
    """{deviation name: {scenario: relative error}} for the whole catalogue."""
    return {d.name: {s: relative_error(d, s, steps) for s in SCENARIOS} for d in dev.CATALOGUE}


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if x == 0.0:
        return "0"
    return f"{x:.1e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args(argv)
    table = measure(args.steps)
    if args.markdown:
        print("| deviation | " + " | ".join(SCENARIOS) + " |")
        print("| --- |" + " --- |" * len(SCENARIOS))
        for name, row in table.items():
            print(f"| `{name}` | " + " | ".join(_fmt(row[s]) for s in SCENARIOS) + " |")
    else:
        print(f"{'deviation':30s}" + "".join(f"{s:>12s}" for s in SCENARIOS))
        for name, row in table.items():
            print(f"{name:30s}" + "".join(f"{_fmt(row[s]):>12s}" for s in SCENARIOS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
