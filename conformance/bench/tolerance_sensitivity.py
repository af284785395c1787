"""How tight the tolerance model is: worst budget fractions of correct ports, and its sensitivity.

    python -m conformance.bench.tolerance_sensitivity [--cases N] [--seed S] [--no-sensitivity]

Run from a source checkout (it uses the operation-order ports of ``conformance/tests``).

1. **Worst fractions.** Draws ``N`` random re-synced steps per dtype (configurations, layerings,
   gradient magnitudes from ordinary to subnormal-producing, step numbers from 1 to 1000) and for
   each one random legitimate operation order (``conformance.tests.op_orders``); prints the worst
   budget fraction per quantity and dtype (a correct port must stay <= 1) and the case where it
   happened.
2. **Sensitivity.** For the harness's scenarios (re-synced steps of the reference runs, as the
   harness builds them) and float64 / float32: the smallest systematic relative error ``delta``
   of the denominator (``wt`` for SET-Adam, ``denom`` for Adam) that the per-coordinate budget
   rejects. A port dividing by ``D (1 + delta)`` changes the update by ``|U| delta`` (first order),
   so it is rejected on the parameters once ``delta > min_i B_i / |U_i|`` and, when it reports the
   stage, on the denominator once ``delta > min_i B_{D,i} / D_i``. Both minima are printed, the
   best scenario and the median over scenarios.
3. **Statistical sensitivity** (``conformance.systematic``). A correct port of each algorithm
   (torch.optim.Adam's for-loop, our torch SET-Adam) is checked on every scenario; a port
   whose step is off by a relative ``delta`` is found by the statistical verdict once
   ``|delta|`` exceeds the floor plus the interval's half-width, ``floor + (high - low) / 2``
   of the (scenario, quantity) test. The best and median over the tests are printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig

DTYPES: tuple[tuple[str, str | None], ...] = (
    ("float64", None),
    ("float32", None),
    ("bfloat16", None),
    ("float16", None),
    ("bfloat16", "float32"),
    ("float16", "float32"),
)

#: decades of gradient magnitude drawn per dtype: ordinary values down to subnormal intermediates
_G_DECADES = {
    "float64": (-170.0, 10.0),
    "float32": (-44.0, 8.0),
    "bfloat16": (-44.0, 8.0),
    "float16": (-8.0, 1.5),
}


def _log(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(10.0 ** rng.uniform(lo, hi))


def random_config(rng: np.random.Generator, algorithm: str, dtype: str) -> Config:
    """A configuration with every hyperparameter drawn over its legitimate range."""
    b1 = float(rng.choice([0.0, 0.5, 0.9, 0.99, rng.uniform(0.0, 0.999)]))
    b2 = float(rng.choice([0.0, 0.9, 0.99, 0.999, 0.9999, rng.uniform(0.0, 0.9999)]))
    lr = _log(rng, -7, 0)
    eps_lo = -8.0 if dtype == "float16" else -30.0
    eps = _log(rng, eps_lo, -1)
    wd = float(rng.choice([0.0, 0.0, _log(rng, -4, -0.5)]))
    mode = str(rng.choice(["l2", "decoupled"]))
    maximize = bool(rng.random() < 0.2)
    if algorithm == "adam":
        return AdamConfig(
            lr=lr,
            betas=(b1, b2),
            eps=float(rng.choice([eps, 0.0])) if rng.random() < 0.3 else eps,
            eps_root=float(rng.choice([0.0, 0.0, eps])),
            weight_decay=wd,
            weight_decay_mode=mode,  # type: ignore[arg-type]
            amsgrad=bool(rng.random() < 0.3),
            amsgrad_mode=str(rng.choice(["torch", "optax"])),  # type: ignore[arg-type]
            maximize=maximize,
        )
    tau = float(rng.choice([0.0, 0.5, 0.9, 0.99, rng.uniform(0.0, 0.999)]))
    return SETAdamConfig(
        lr=lr,
        betas=(b1, b2),
        eps=eps,
        tau=tau,
        weight_decay=wd,
        weight_decay_mode=mode,  # type: ignore[arg-type]
        maximize=maximize,
    )


def _values(rng: np.random.Generator, n: int, scale: float, zeros: float) -> np.ndarray:
    x = rng.standard_normal(n) * scale * 10.0 ** rng.uniform(-3.0, 0.0, n)
    x[rng.random(n) < zeros] = 0.0
    return x


#: gradient magnitudes of the *ordinary* regime (every intermediate in the normal range, mostly)
_G_ORDINARY = (-6.0, 1.0)


def random_case(
    rng: np.random.Generator, dtype: str, state_dtype: str | None, extreme: bool = True
) -> Any:
    """A random re-synced step (a ``conformance.tests.order_cases.Case``); ``extreme=False``
    keeps gradients within 1e-6..10 (the ordinary regime), otherwise the dtype's whole range."""
    from conformance.tests.order_cases import Case

    algorithm = "adam" if rng.random() < 0.35 else "setadam"
    cfg = random_config(rng, algorithm, dtype)
    sizes = tuple(int(rng.integers(1, 13)) for _ in range(int(rng.integers(1, 4))))
    layers = None
    if len(sizes) > 1 and rng.random() < 0.3:
        layers = (tuple(range(len(sizes))),)
    n = sum(sizes)
    lo, hi = _G_DECADES[dtype] if extreme else _G_ORDINARY
    gs = _log(rng, lo, hi)
    g = _values(rng, n, gs, 0.2)
    theta = _values(rng, n, _log(rng, -6, 1), 0.1)
    t = int(rng.choice([1, 1, 2, 3, 5, 10, 100, 1000]))
    b1 = cfg.betas[0]
    m0 = _values(rng, n, gs * (1.0 - b1**t), 0.2) if t > 1 else np.zeros(n)
    v0 = np.abs(_values(rng, n, gs * gs * rng.uniform(0.1, 3.0), 0.2)) if t > 1 else np.zeros(n)
    return Case(cfg, sizes, t, theta, g, m0, v0, dtype, state_dtype, layers)


def _label(dtype: str, state_dtype: str | None) -> str:
    return dtype if state_dtype is None else f"{dtype}/{state_dtype}"


def worst_fractions(
    cases: int, seed: int, extreme: bool = True
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]], int]:
    """Worst fraction per dtype label and quantity over ``cases`` random cases per dtype."""
    from conformance.tests.op_orders import random_order
    from conformance.tests.order_cases import _HAS_STATE_DTYPE, judge

    worst: dict[str, dict[str, float]] = {}
    where: dict[str, dict[str, str]] = {}
    skipped = 0
    rng = np.random.default_rng(seed)
    for dtype, sdt in DTYPES:
        if sdt is not None and not _HAS_STATE_DTYPE:
            continue
        lab = _label(dtype, sdt)
        worst[lab], where[lab] = {}, {}
        for _ in range(cases):
            case = random_case(rng, dtype, sdt, extreme)
            order = random_order(rng)
            try:
                vd = judge(case, order)
            except Exception:  # the reference cannot run the case (overflow): not a port's case
                skipped += 1
                continue
            if vd.out_of_range or vd.overflowed:  # the port left its range: outside the class
                skipped += 1
                continue
            for q, f in vd.fraction.items():
                if not math.isfinite(f) or f > worst[lab].get(q, -1.0):
                    if worst[lab].get(q, -1.0) == math.inf:
                        continue
                    worst[lab][q] = f
                    where[lab][q] = f"{order} {case.cfg} t={case.t} sizes={case.sizes}"
    return worst, where, skipped


def _scenario_steps(dtype: str) -> Iterator[tuple[str, Any, Any]]:
    from conformance.reference_run import build_reference
    from conformance.scenarios import list_scenarios

    for sc in list_scenarios():
        for alg in ("setadam", "adam"):
            if not sc.applies_to(alg, dtype):
                continue
            rr = build_reference(sc, sc.config(alg), dtype, quick=True)
            if rr.error is not None:
                continue
            for rs in rr.resync.values():
                yield f"{sc.name}/{alg}", rs, rr


def sensitivity(dtype: str) -> dict[str, tuple[float, float, str]]:
    """(best, median, best scenario) of the smallest rejected relative denominator error."""
    best: dict[str, dict[str, float]] = {"params": {}, "denominator": {}}
    for name, rs, rr in _scenario_steps(dtype):
        r = rs.ref
        key = "down_translating" if r.w_translated is not None else "denom"
        den = r.w_translated if r.w_translated is not None else r.denom
        if den is None:
            continue
        with np.errstate(all="ignore"):
            core = rr.config.lr / r.bias_correction1 * np.abs(r.m / den)  # |U|, decay excluded
            per = {
                "params": rs.bounds["params"] / np.where(core > 0, core, np.nan),
                "denominator": rs.bounds[key] / den,
            }
        for k, arr in per.items():
            fin = arr[np.isfinite(arr) & (arr > 0)]
            if fin.size:
                best[k][name] = min(best[k].get(name, math.inf), float(np.min(fin)))
    out: dict[str, tuple[float, float, str]] = {}
    for k, d in best.items():
        if d:
            name = min(d, key=lambda n: d[n])
            out[k] = (d[name], statistics.median(d.values()), name)
    return out


#: correct ports whose noise the statistical sensitivity is measured on (one per algorithm)
_STAT_PORTS = ("torch.optim.Adam[forloop]", "ours.torch.SETAdam[single]")


def statistical_sensitivity(dtype: str) -> dict[str, tuple[float, float, str]]:
    """Per port: (best, median, best test) of the smallest relative bias the statistical verdict
    rejects, ``floor + (high - low) / 2`` over its (scenario, quantity) tests."""
    from conformance.adapters.registry import find_spec
    from conformance.runner import check_port

    out: dict[str, tuple[float, float, str]] = {}
    for name in _STAT_PORTS:
        try:
            spec = find_spec(name, dtype, "cpu")
        except KeyError:
            continue
        r = check_port(spec, dtype=dtype, diagnose=False)
        reach = {
            f"{t['scenario']} {t['quantity']}": t["floor"] + (t["high"] - t["low"]) / 2
            for t in (r.systematic or {}).get("tests", [])
            if isinstance(t["floor"], float) and isinstance(t["high"], float)
        }
        if reach:
            best = min(reach, key=lambda k: reach[k])
            out[f"{name} ({r.verdict})"] = (reach[best], statistics.median(reach.values()), best)
    return out


def _print_table(
    worst: dict[str, dict[str, float]],
    where: dict[str, dict[str, str]],
    skipped: int,
    cases: int,
    seed: int,
    extreme: bool,
    seconds: float,
) -> None:
    qs = sorted({q for d in worst.values() for q in d})
    regime = "whole range, subnormal intermediates" if extreme else "ordinary |g| in 1e-6..10"
    print(
        f"\nworst budget fraction of correct ports ({regime}; {cases} cases per dtype, seed {seed})"
    )
    print("quantity".ljust(18) + "".join(lab.rjust(18) for lab in worst))
    for q in qs:
        row = q.ljust(18)
        for lab in worst:
            f = worst[lab].get(q)
            row += ("-" if f is None else f"{f:.3g}").rjust(18)
        print(row)
    print(
        f"(skipped: {skipped} cases the reference cannot run or whose port statistics left the range"
        f" without rescaling; {seconds:.0f} s)"
    )
    for lab, d in worst.items():
        if d:
            q = max(d, key=lambda k: d[k])
            if d[q] > 1.0:
                print(f"  worst {lab} {q} {d[q]:.3g}: {where[lab][q]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-sensitivity", action="store_true")
    a = ap.parse_args(argv)
    for extreme in (False, True):
        t0 = time.perf_counter()
        worst, where, skipped = worst_fractions(a.cases, a.seed, extreme)
        _print_table(worst, where, skipped, a.cases, a.seed, extreme, time.perf_counter() - t0)
    if not a.no_sensitivity:
        print("\nsmallest systematic relative error of the denominator the budget rejects")
        for dtype in ("float64", "float32"):
            for k, (b, med, name) in sensitivity(dtype).items():
                print(f"  {dtype:8s} on {k:12s}: best {b:.2g} ({name}), median {med:.2g}")
        print("\nsmallest systematic relative bias the statistical verdict rejects")
        for dtype in ("float64", "float32"):
            for k, (b, med, name) in statistical_sensitivity(dtype).items():
                print(f"  {dtype:8s} {k}: best {b:.2g} ({name}), median {med:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
