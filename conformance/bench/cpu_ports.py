"""CPU timing of our SET-Adam ports against torch.optim.Adam and optax.adam, in one process.

    python -m conformance.bench.cpu_ports [--params N] [--tensors K] [--steps S] [--warmup W]
                                          [--dtype float64 --dtype float32] [--no-jax]
                                          [--threads T]

Each implementation gets its own copy of a K-tensor parameter set (default: the ~21.5M-parameter,
50-tensor set of design/ANCHORS.md: 25 weight matrices of width 1024 and their biases) and a fixed
gradient set (N(0, 1e-3^2)). After ``W`` warm-up steps, the implementations are timed in turns,
one step each per round, for ``S`` rounds (so a slow phase of a noisy machine hits all of them),
and the table gives the median milliseconds per step and the ratio to the matching baseline:
our foreach vs torch ``Adam(foreach=True)``, our for-loop vs torch ``Adam(foreach=False)``, our jitted
JAX port vs jitted ``optax.adam`` (parameters and state donated).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

WIDTH = 1024
_ROWS = (512, 768, 1024, 1280, 640)


def anchor_shapes(n_params: int = 21_500_000, n_tensors: int = 50) -> list[tuple[int, ...]]:
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


def _time_rounds(fns: dict[str, Callable[[], None]], steps: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def _torch_fns(shapes: Sequence[tuple[int, ...]], dtype_name: str) -> dict[str, Callable[[], None]]:
    import torch

    from conformance.ports.torch_setadam import SETAdam

    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]
    grads = [1e-3 * torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]

    def make(ctor: Callable[[list[Any]], Any]) -> Callable[[], None]:
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        for p, g in zip(ps, grads):
            p.grad = g
        opt = ctor(ps)

        def step() -> None:
            opt.step()

        return step

    return {
        "torch Adam foreach": make(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        "ours SETAdam foreach": make(lambda ps: SETAdam(ps, lr=1e-3, foreach=True)),
        "torch Adam for-loop": make(lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False)),
        "ours SETAdam for-loop": make(lambda ps: SETAdam(ps, lr=1e-3, foreach=False)),
    }


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


_PAIRS = (
    ("ours SETAdam foreach", "torch Adam foreach"),
    ("ours SETAdam for-loop", "torch Adam for-loop"),
    ("ours jax setadam (jit)", "optax.adam (jit)"),
)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.bench.cpu_ports", description=__doc__)
    ap.add_argument("--params", type=int, default=21_500_000, help="total parameters")
    ap.add_argument("--tensors", type=int, default=50, help="number of tensors")
    ap.add_argument("--steps", type=int, default=15, help="timed rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    ap.add_argument("--dtype", action="append", choices=("float64", "float32"), default=None)
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX/optax rows")
    ap.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)"
    )
    args = ap.parse_args(argv)
    dtypes = args.dtype or ["float64", "float32"]
    shapes = anchor_shapes(args.params, args.tensors)
    n = sum(int(np.prod(s)) for s in shapes)

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"# {n:,} parameters in {len(shapes)} tensors; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.steps} steps after {args.warmup}"
    )
    print(f"{'dtype':8} {'implementation':26} {'ms/step':>9}   {'ratio':>6}  baseline")
    for dtype_name in dtypes:
        fns = _torch_fns(shapes, dtype_name)
        res = _time_rounds(fns, args.steps, args.warmup)
        del fns
        if not args.no_jax:
            jfns = _jax_fns(shapes, dtype_name)
            res.update(_time_rounds(jfns, args.steps, args.warmup))
            del jfns
        done: set[str] = set()
        for ours, base in _PAIRS:
            if ours not in res:
                continue
            for name in (base, ours):
                if name in done:
                    continue
                done.add(name)
                ratio = f"{res[ours] / res[base]:6.2f}" if name == ours else "      "
                tail = f"  vs {base}" if name == ours else ""
                print(f"{dtype_name:8} {name:26} {res[name]:9.1f}   {ratio}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
