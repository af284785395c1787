"""CPU timing of our SET-Adam ports against torch.optim.Adam and optax.adam, in one process.

    python -m conformance.bench.cpu_ports [--params N | --scale F] [--tensors K] [--steps S]
                                          [--warmup W] [--dtype float64 --dtype float32]
                                          [--only compiled|numba ...] [--no-jax] [--threads T]
                                          [--recompile-steps R] [--cold-cache]

Each implementation gets its own copy of a K-tensor parameter set (default: the ~21.5M-parameter,
50-tensor set of design/ANCHORS.md: 25 weight matrices of width 1024 and their biases; ``--scale``
multiplies the parameter count) and a fixed gradient set (N(0, 1e-3^2)). After ``W`` warm-up
steps, the implementations are timed in turns, one step each per round, for ``S`` rounds (so a
slow phase of a noisy machine hits all of them), and the table gives the median milliseconds per
step and the ratio to the matching baseline, the median (and quartiles) of the per-round ratios,
measured in the same rounds, and the ratio of the fastest steps ("best"; on a shared machine the
undisturbed step): our compiled path and our numba path (``--only numba``) vs
torch ``Adam(fused=True)``, our foreach vs ``Adam(foreach=True)``, our for-loop vs
``Adam(foreach=False)``, our jitted JAX port vs jitted ``optax.adam`` (parameters and state
donated). The fused and compiled rows also give bytes moved per parameter (the floors of
ANCHORS.md: 28 for Adam, 36 for SET-Adam in float32, twice that in float64) and the effective
bandwidth, next to a plain copy of the parameter set.

The header names ``OMP_WAIT_POLICY``: unset, torch's OpenMP threads spin for a while after each
parallel region, on the cores the numba path's own threads then need; ``OMP_WAIT_POLICY=PASSIVE``
(set before the process starts) makes them sleep instead, for every implementation of the run.

Compile time is reported apart from the step time: the first step of ``SETAdam(compiled=True)``
(which traces and compiles; ``--cold-cache`` points inductor at an empty cache directory, else
its on-disk cache may serve earlier compilations), and the graphs compiled over ``R`` more steps
whose learning rate a ``LambdaLR`` scheduler changes every step (0 is the goal).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WIDTH = 1024
_ROWS = (512, 768, 1024, 1280, 640)
_ANCHOR_PARAMS = 21_500_000

#: (ours, baseline, which ``--only`` selects them)
_PAIRS = (
    ("ours SETAdam compiled", "torch Adam fused", "compiled"),
    ("ours SETAdam numba", "torch Adam fused", "numba"),
    ("ours SETAdam foreach", "torch Adam foreach", "foreach"),
    ("ours SETAdam for-loop", "torch Adam for-loop", "for-loop"),
    ("ours jax setadam (jit)", "optax.adam (jit)", "jax"),
)
#: bytes moved per parameter element per step (the floors of design/ANCHORS.md, in elements)
_ELEMENTS_MOVED = {
    "torch Adam fused": 7,
    "ours SETAdam compiled": 9,
    "ours SETAdam numba": 9,
    "copy (read + write)": 2,
}


def anchor_shapes(n_params: int = _ANCHOR_PARAMS, n_tensors: int = 50) -> list[tuple[int, ...]]:
    """Weight (rows, 1024) / bias (rows,) pairs, rows cycling through 512..1280, ~n_params total."""
    pairs = max(1, n_tensors // 2)
    rows = [_ROWS[i % len(_ROWS)] for i in range(pairs)]
    scale = n_params / (sum(rows) * (WIDTH + 1))
    rows = [max(1, round(r * scale)) for r in rows]
    shapes: list[tuple[int, ...]] = []
    for r in rows:
        shapes += [(r, WIDTH), (r,)]
    if n_tensors % 2:
        shapes.append((WIDTH,))
    return shapes


def _time_rounds(
    fns: dict[str, Callable[[], None]], steps: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds of each step, per implementation, one step each per round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(1e3 * (time.perf_counter() - t0))
    return times


def _ratio(times: dict[str, list[float]], ours: str, base: str) -> str:
    """Median and quartiles of the per-round ratios ours / base (a round's two steps are
    adjacent in time, so a slow phase of a loaded machine hits both)."""
    r = np.array(times[ours]) / np.array(times[base])
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return f"{med:6.2f} [{q1:4.2f}-{q3:4.2f}]"


def _best(times: dict[str, list[float]], ours: str, base: str) -> str:
    """The ratio of the fastest steps, ours / base: on a shared machine the step that no other
    job disturbed is the closest to each implementation's own speed (both are printed)."""
    return f"best {min(times[ours]):.1f}/{min(times[base]):.1f} = {min(times[ours]) / min(times[base]):.2f}"


def _torch_params(
    shapes: Sequence[tuple[int, ...]], dtype_name: str
) -> tuple[list[Any], list[Any]]:
    import torch

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    grads = [1e-3 * torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    return init, grads


def _torch_fns(
    shapes: Sequence[tuple[int, ...]],
    dtype_name: str,
    only: set[str],
    report: list[str],
    recompile_steps: int,
) -> dict[str, Callable[[], None]]:
    import torch

    from conformance.ports.torch_setadam import SETAdam

    init, grads = _torch_params(shapes, dtype_name)

    def make(ctor: Callable[[list[Any]], Any]) -> tuple[Callable[[], None], Any]:
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        for p, g in zip(ps, grads):
            p.grad = g
        opt = ctor(ps)
        return opt.step, opt

    fns: dict[str, Callable[[], None]] = {}
    if only & {"compiled", "numba"}:
        fns["torch Adam fused"] = make(lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True))[0]
    if "numba" in only:
        step, opt = make(lambda ps: SETAdam(ps, lr=1e-3, compiled="numba"))
        t0 = time.perf_counter()
        step()
        report.append(
            f'# {dtype_name}: SETAdam(compiled="numba") first step {time.perf_counter() - t0:.1f} s'
            " (numba JIT, or its on-disk cache)"
        )
        fns["ours SETAdam numba"] = step
    if "compiled" in only:
        step, opt = make(lambda ps: SETAdam(ps, lr=1e-3, compiled=True))
        report.append(_compile_report(torch, dtype_name, step, opt, recompile_steps))
        fns["ours SETAdam compiled"] = step
        flat_src = torch.cat([x.reshape(-1) for x in init])
        flat_dst = torch.empty_like(flat_src)

        def copy() -> None:
            flat_dst.copy_(flat_src)

        fns["copy (read + write)"] = copy
    if "foreach" in only:
        fns["torch Adam foreach"] = make(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True))[0]
        fns["ours SETAdam foreach"] = make(lambda ps: SETAdam(ps, lr=1e-3, foreach=True))[0]
    if "for-loop" in only:
        fns["torch Adam for-loop"] = make(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False))[
            0
        ]
        fns["ours SETAdam for-loop"] = make(lambda ps: SETAdam(ps, lr=1e-3, foreach=False))[0]
    return fns


def _compile_report(torch: Any, dtype_name: str, step: Callable[[], None], opt: Any, n: int) -> str:
    """First-step time of the compiled path, then graphs compiled over ``n`` steps with a new lr
    each (a LambdaLR scheduler)."""
    from torch._dynamo.utils import counters

    del step  # the scheduler wraps opt.step: call it through the optimizer
    t0 = time.perf_counter()
    opt.step()
    first = time.perf_counter() - t0
    graphs0 = counters["stats"]["unique_graphs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1.0 + 0.1 * k))
    lrs = set()
    for _ in range(n):
        opt.step()
        sched.step()
        lrs.add(opt.param_groups[0]["lr"])
    graphs = counters["stats"]["unique_graphs"] - graphs0
    return (
        f"# {dtype_name}: SETAdam(compiled=True) first step {first:.1f} s (trace + compile); "
        f"{graphs} graphs compiled over {n} more steps with {len(lrs)} distinct lr values"
    )


def _jax_fns(shapes: Sequence[tuple[int, ...]], dtype_name: str) -> dict[str, Callable[[], None]]:
    import jax as jax_module
    import jax.numpy as jnp
    import optax

    from conformance.ports.jax_setadam import setadam

    jax: Any = jax_module
    if dtype_name == "float64" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype(dtype_name) for s in shapes]
    grads = [jnp.asarray(1e-3 * rng.standard_normal(s), dtype=dtype) for s in shapes]

    def make(tx: Any) -> Callable[[], None]:
        params = [jnp.asarray(x) for x in init]
        opt_state = tx.init(params)

        def upd(p: Any, s: Any, g: Any) -> Any:
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        step_fn = jax.jit(upd, donate_argnums=(0, 1))
        box = [params, opt_state]

        def step() -> None:
            p, s = step_fn(box[0], box[1], grads)
            jax.block_until_ready(p)
            box[0], box[1] = p, s

        return step

    return {
        "optax.adam (jit)": make(optax.adam(1e-3)),
        "ours jax setadam (jit)": make(setadam(1e-3)),
    }


def _rows(dtype_name: str, times: dict[str, list[float]], n: int, itemsize: int) -> list[str]:
    res = {k: statistics.median(v) for k, v in times.items()}
    out: list[str] = []
    done: set[str] = set()
    for ours, base, _ in _PAIRS:
        if ours not in res:
            continue
        for name in (base, ours):
            if name in done:
                continue
            done.add(name)
            ratio = _ratio(times, ours, base) if name == ours else " " * 18
            tail = f"  vs {base}; {_best(times, ours, base)}" if name == ours else ""
            out.append(
                f"{dtype_name:8} {name:26} {res[name]:9.1f}   {ratio}{_bandwidth(name, res[name], n, itemsize)}{tail}"
            )
        name = "copy (read + write)"
        if name in res and name not in done and ours.startswith("ours SETAdam"):
            done.add(name)
            out.append(
                f"{dtype_name:8} {name:26} {res[name]:9.1f}   {' ' * 18}{_bandwidth(name, res[name], n, itemsize)}"
            )
    return out


def _bandwidth(name: str, ms: float, n: int, itemsize: int) -> str:
    k = _ELEMENTS_MOVED.get(name)
    if k is None:
        return " " * 24
    return f"  {k * itemsize:3d} B/param {k * itemsize * n / (ms * 1e6):6.1f} GB/s"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.bench.cpu_ports", description=__doc__)
    ap.add_argument("--params", type=int, default=_ANCHOR_PARAMS, help="total parameters")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply --params by this factor")
    ap.add_argument("--tensors", type=int, default=50, help="number of tensors")
    ap.add_argument("--steps", type=int, default=15, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--dtype", action="append", choices=("float64", "float32"), default=None)
    ap.add_argument(
        "--only", action="append", choices=[p[2] for p in _PAIRS], default=None,
        help="comparisons to run (repeatable; default all)",
    )  # fmt: skip
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX/optax rows")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)"
    )
    ap.add_argument("--recompile-steps", type=int, default=20, help="steps of the recompile count")
    ap.add_argument(
        "--cold-cache", action="store_true", help="compile into an empty inductor cache directory"
    )
    args = ap.parse_args(argv)
    dtypes = args.dtype or ["float64", "float32"]
    only = set(args.only or [p[2] for p in _PAIRS])
    if args.no_jax:
        only.discard("jax")
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="setadam-bench-inductor-")
    shapes = anchor_shapes(round(args.params * args.scale), args.tensors)
    n = sum(int(np.prod(s)) for s in shapes)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {n:,} parameters in {len(shapes)} tensors; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.steps} steps after {args.warmup}; "
        f"load average {load:.2f} on {os.cpu_count()} CPUs; "
        # torch's OpenMP threads spin after each parallel region unless told to sleep: the
        # spinning takes the cores from the next step's numba threads (OMP_WAIT_POLICY=PASSIVE)
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    lines: list[str] = []
    report: list[str] = []
    for dtype_name in dtypes:
        fns = _torch_fns(shapes, dtype_name, only, report, args.recompile_steps)
        res: dict[str, list[float]] = _time_rounds(fns, args.steps, args.warmup) if fns else {}
        del fns
        if "jax" in only:
            jfns = _jax_fns(shapes, dtype_name)
            res.update(_time_rounds(jfns, args.steps, args.warmup))
            del jfns
        lines += _rows(dtype_name, res, n, 8 if dtype_name == "float64" else 4)
    for line in report:
        print(line)
    print(
        f"{'dtype':8} {'implementation':26} {'ms/step':>9}   {'ratio [quartiles]':18}  {'moved':>9} {'effective':>11}  baseline"
    )
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
