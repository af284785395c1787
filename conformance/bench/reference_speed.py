"""The reference's speed: its SET-Adam step against torch.optim.Adam(foreach=True) and against its
own Adam, float64, on the ~21.5M-parameter, 50-tensor CPU set of shared/design/ANCHORS.md.

    python -m conformance.bench.reference_speed [--scale 0.25] [--repeats 7]

Everything is measured in one process, interleaved round by round, and reported as medians and
ratios (machines are noisy; only ratios measured side by side mean anything). Goals (issue 2):
SET-Adam <= 1.25x torch foreach Adam, <= 1.15x the reference's Adam. Measured are ``step()``
(which takes the fast path, ``setadam_ref.fast``, for steps this large) and the plain definition
(``setadam_ref.setadam.setadam_step`` / ``setadam_ref.adam.adam_step``), bitwise equal.

Measured (house issue, 2 CPU cores shared with other jobs, load 1.3 to 6; numpy 2.4, torch 2.13
CPU; 8 runs of 7 to 15 rounds): plain SET-Adam / torch foreach Adam = 2.5 to 5.7 (3.4 in the
longest run: 1037 ms against 306 ms), fast path / torch foreach Adam = 1.4 to 2.1 (1.8 in that
run: 554 ms; the blocked two-thread evaluation measured 1.60 before it became the fast path), fast
SET-Adam / fast Adam = 0.9 to 1.26 (1.07). The plain form being far beyond 1.25x, ``step()``
keeps the fast path for untraced steps of at least ``setadam_ref.step.FAST_MIN_SIZE`` entries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

import setadam_ref as R
from setadam_ref.adam import adam_step
from setadam_ref.layers import default_layers
from setadam_ref.setadam import setadam_step


def anchor_sizes(scale: float = 1.0) -> list[int]:
    """50 tensors, 21.45M parameters at scale 1: two large matrices, 30 mid, 18 small."""
    sizes = [8_000_000, 4_000_000] + [300_000] * 30 + [25_000] * 18
    return [max(1, int(n * scale)) for n in sizes]


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the anchor size")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    # torch's OpenMP workers spin after each parallel region by default and then steal the cores
    # the NumPy threads of the reference need (and vice versa): measured here, that made torch's
    # own step 5-10x slower when interleaved with the reference. Passive waiting makes the
    # side-by-side measurement fair to both. Must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    rng = np.random.default_rng(0)
    sizes = anchor_sizes(args.scale)
    params = [rng.normal(size=n) for n in sizes]
    grads = [rng.normal(size=n) * 1e-3 for n in sizes]
    set_cfg, adam_cfg = R.SETAdamConfig(), R.AdamConfig()
    set_state = R.step(params, grads, R.init(params, set_cfg), set_cfg)[1]
    adam_state = R.step(params, grads, R.init(params, adam_cfg), adam_cfg)[1]
    tparams = [torch.from_numpy(p.copy()) for p in params]
    for p, g in zip(tparams, grads):
        p.grad = torch.from_numpy(g)
    opt = torch.optim.Adam(tparams, foreach=True)
    opt.step()
    layers = default_layers(len(params))
    cases: dict[str, Callable[[], object]] = {
        "torch Adam(foreach=True)": opt.step,
        "reference Adam (fast)": lambda: R.step(params, grads, adam_state, adam_cfg),
        "reference SET-Adam (fast)": lambda: R.step(params, grads, set_state, set_cfg),
        "reference Adam, plain": lambda: adam_step(params, grads, adam_state, adam_cfg),
        "reference SET-Adam, plain": lambda: setadam_step(
            params, grads, set_state, set_cfg, layers
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad():
        for _ in range(args.repeats):
            for name, fn in cases.items():
                times[name].append(_time(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{sum(sizes):,} float64 parameters in {len(sizes)} arrays; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads; medians of {args.repeats}"
    )
    print("| implementation | ms / step |")
    print("| --- | --- |")
    for k, v in med.items():
        print(f"| {k} | {v * 1e3:.1f} |")
    torch_ms = med["torch Adam(foreach=True)"]
    for name in ("reference SET-Adam (fast)", "reference SET-Adam, plain"):
        print(f"{name} / torch foreach Adam = {med[name] / torch_ms:.2f} (goal <= 1.25)")
    r2 = med["reference SET-Adam (fast)"] / med["reference Adam (fast)"]
    print(f"reference SET-Adam (fast) / reference Adam (fast) = {r2:.2f} (goal <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
