"""Optimizer-step benchmark on the GPT-like parameter set of the anchors (one GPU, one run).

128,137,216 float32 parameters in 74 tensors (vocab 50304 x 1024 embedding, 1024 x 1024
positions, 6 blocks of layer norms, qkv / attention-projection / MLP weights and biases);
gradients ~ N(0, (1e-3)^2), fixed across steps.  Every row is the median of ``--steps`` timed steps
after ``--warmup`` untimed ones, measured side by side in this one process: CUDA events around each
step for torch and the CUDA kernels; for JAX (which exposes no events) the host clock around each
step with ``block_until_ready``, the same for optax.adam and our JAX SET-Adam.

Rows: device-to-device copy (the bandwidth ceiling: bytes read + written), torch.optim.Adam fused /
foreach / for-loop, AdamW fused, optax.adam (jitted, buffers donated), our fused CUDA SET-Adam and
Adam (conformance.ports.cuda; SET-Adam also with l2 weight decay, 40 B/param, and with bfloat16
params, 28 B/param; ``--chunks`` adds a CHUNK sweep), our torch SETAdam (foreach / fused / single, from
conformance.ports.torch_setadam) and our JAX setadam (conformance.ports.jax_setadam).  Rows whose
module is missing are skipped with a note.  Writes ``bench.md`` and ``bench.json`` into the output
directory and prints the Markdown.

``python3 -m conformance.gpu.bench [--out DIR] [--steps 20] [--warmup 5] [--chunks 8192,65536]``
(``--device cpu --scale 0.001`` runs a tiny smoke version without a GPU).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Row", "gpt_shapes", "main", "markdown"]

N_GPT = 128_137_216


def gpt_shapes(scale: float = 1.0) -> list[tuple[int, ...]]:
    """The 74 tensor shapes; ``scale`` < 1 shrinks every first dimension (smoke runs)."""
    shapes: list[tuple[int, ...]] = [(50304, 1024), (1024, 1024)]
    for _ in range(6):
        shapes += [
            (1024,), (1024,),  # ln1 weight, bias
            (3072, 1024), (3072,),  # qkv
            (1024, 1024), (1024,),  # attention projection
            (1024,), (1024,),  # ln2 weight, bias
            (4096, 1024), (4096,),  # mlp fc
            (1024, 4096), (1024,),  # mlp projection
        ]  # fmt: skip
    if scale != 1.0:
        shapes = [(max(1, int(s[0] * scale)), *s[1:]) for s in shapes]
    return shapes


@dataclass
class Row:
    name: str
    group: str
    ms: float | None = None
    bytes_per_param: int | None = None
    gbps: float | None = None
    note: str = ""
    samples_ms: list[float] = field(default_factory=list)


# ---- timing ------------------------------------------------------------------------------------


def _median_ms(samples: Sequence[float]) -> float:
    return float(statistics.median(samples))


def time_torch(
    torch: Any, fn: Callable[[], object], steps: int, warmup: int, cuda: bool
) -> list[float]:
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
        for i in range(steps):
            starts[i].record()
            fn()
            ends[i].record()
        torch.cuda.synchronize()
        return [float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)]
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _fill(row: Row, samples: list[float], n_params: int) -> Row:
    row.samples_ms = [round(x, 5) for x in samples]
    row.ms = _median_ms(samples)
    if row.bytes_per_param:
        row.gbps = row.bytes_per_param * n_params / (row.ms * 1e-3) / 1e9
    return row


# ---- torch rows --------------------------------------------------------------------------------


def copy_row(torch: Any, args: argparse.Namespace) -> Row:
    """Device-to-device copy of a 1 GiB float32 buffer; bandwidth counts bytes read + written."""
    cuda = args.device == "cuda"
    numel = max(1 << 20, int((1 << 28) * min(1.0, args.scale * 4)))
    src = torch.randn(numel, device=torch.device(args.device))
    dst = torch.empty_like(src)
    s = time_torch(torch, lambda: dst.copy_(src), args.steps, args.warmup, cuda)
    copy = Row("device-to-device copy (bandwidth ceiling)", "ceiling")
    copy.ms = _median_ms(s)
    copy.samples_ms = [round(x, 5) for x in s]
    copy.gbps = 2 * 4 * numel / (copy.ms * 1e-3) / 1e9
    copy.note = f"{2 * 4 * numel / 2**30:.1f} GiB moved per copy"
    _progress(copy)
    return copy


def torch_rows(args: argparse.Namespace, shapes: Sequence[tuple[int, ...]]) -> list[Row]:
    import torch

    cuda = args.device == "cuda"
    dev = torch.device(args.device)
    rows: list[Row] = []
    n = sum(math.prod(s) for s in shapes)
    steps, warm = args.steps, args.warmup

    rows.append(copy_row(torch, args))

    gen = torch.Generator(device=dev).manual_seed(0)
    params = [
        torch.nn.Parameter(torch.randn(sh, device=dev, generator=gen).mul_(0.02)) for sh in shapes
    ]
    for p in params:
        p.grad = torch.randn(p.shape, device=dev, generator=gen).mul_(1e-3)

    def run_opt(name: str, group: str, bpp: int, make: Callable[[], Any]) -> None:
        row = Row(name, group, bytes_per_param=bpp)
        try:
            opt = make()
            _fill(row, time_torch(torch, opt.step, steps, warm, cuda), n)
            del opt
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        rows.append(row)
        _progress(row)

    optim = torch.optim
    run_opt(
        "torch.optim.Adam(fused=True)", "torch", 28, lambda: optim.Adam(params, lr=1e-3, fused=True)
    )
    run_opt(
        "torch.optim.AdamW(fused=True)",
        "torch",
        28,
        lambda: optim.AdamW(params, lr=1e-3, fused=True),
    )
    run_opt(
        "torch.optim.Adam(foreach=True)",
        "torch",
        28,
        lambda: optim.Adam(params, lr=1e-3, foreach=True),
    )
    run_opt(
        "torch.optim.Adam(foreach=False)",
        "torch",
        28,
        lambda: optim.Adam(params, lr=1e-3, foreach=False),
    )

    # our CUDA kernels, called directly
    data = [p.detach() for p in params]
    grads: list[Any] = [p.grad for p in params]
    layer_of = list(range(len(params)))
    from conformance.ports.cuda import nvrtc
    from conformance.ports.cuda import torch_fused as tf

    default_chunk = nvrtc.CHUNK
    data16: list[Any] = []
    grads16: list[Any] = []

    def run_ours(name: str, algo: str, bpp: int, chunk: int, wd: float, bf16: bool) -> None:
        gc.collect()  # the previous variant's state is garbage by now
        if cuda:
            torch.cuda.empty_cache()
        row = Row(name, "ours-cuda", bytes_per_param=bpp)
        ps, gs = (data16, grads16) if bf16 else (data, grads)
        m = [torch.zeros(x.shape, device=dev) for x in ps]
        v = [torch.zeros(x.shape, device=dev) for x in ps]
        t = [0]
        hp: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
        hp.update(weight_decay=wd, decoupled=False, maximize=False)

        def step() -> None:
            t[0] += 1
            if algo == "setadam":
                tf.fused_setadam_(ps, gs, m, v, layer_of, step=t[0], tau=0.5, **hp)
            else:
                tf.fused_adam_(ps, gs, m, v, step=t[0], **hp)

        try:
            nvrtc.CHUNK = chunk
            _fill(row, time_torch(torch, step, steps, warm, cuda), n)
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
        finally:
            nvrtc.CHUNK = default_chunk
        rows.append(row)
        _progress(row)

    d = default_chunk
    run_ours("ours fused CUDA SET-Adam", "setadam", 36, d, 0.0, False)
    run_ours("ours fused CUDA Adam", "adam", 28, d, 0.0, False)
    run_ours("ours fused CUDA SET-Adam, l2 weight decay", "setadam", 40, d, 0.01, False)
    if cuda:
        data16 += [x.to(torch.bfloat16) for x in data]
        grads16 += [x.to(torch.bfloat16) for x in grads]
        run_ours("ours fused CUDA SET-Adam, bfloat16 params", "setadam", 28, d, 0.0, True)
        data16.clear()
        grads16.clear()
    for chunk in args.chunks:
        if chunk != d:
            run_ours(f"ours fused CUDA SET-Adam [chunk {chunk}]", "setadam", 36, chunk, 0.0, False)
            run_ours(f"ours fused CUDA Adam [chunk {chunk}]", "adam", 28, chunk, 0.0, False)

    # our torch optimizer class (ports helper)
    try:
        SETAdam = importlib.import_module("conformance.ports.torch_setadam").SETAdam
    except Exception as exc:
        rows.append(
            Row("ours.torch.SETAdam[*]", "ours-torch", note=f"skipped: import failed: {exc}")
        )
    else:
        variants: list[tuple[str, dict[str, Any]]] = [
            ("foreach", dict(foreach=True)),
            ("fused", dict(fused=True)),
            ("single", dict(foreach=False)),
        ]
        for label, kw in variants:
            if label == "fused" and not cuda:
                continue

            def make(kw: dict[str, Any] = kw) -> Any:
                return SETAdam(params, lr=1e-3, **kw)

            run_opt(f"ours.torch.SETAdam[{label}]", "ours-torch", 36, make)
    return rows


# ---- jax rows ----------------------------------------------------------------------------------


def jax_rows(args: argparse.Namespace, shapes: Sequence[tuple[int, ...]]) -> list[Row]:
    rows: list[Row] = []
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except Exception as exc:
        return [Row("optax.adam / ours.jax.setadam", "jax", note=f"skipped: {exc}")]
    block: Any = jax.block_until_ready
    backend = jax.default_backend()
    if args.device == "cuda" and backend != "gpu":
        return [Row("optax.adam / ours.jax.setadam", "jax", note=f"skipped: jax backend {backend}")]
    n = sum(math.prod(s) for s in shapes)
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, 2 * len(shapes))
    grads = [
        jax.random.normal(keys[2 * i + 1], s, jnp.float32) * 1e-3 for i, s in enumerate(shapes)
    ]

    def fresh_params() -> list[Any]:
        return [jax.random.normal(keys[2 * i], s, jnp.float32) * 0.02 for i, s in enumerate(shapes)]

    def bench_tx(name: str, bpp: int, make: Callable[[], Any]) -> None:
        row = Row(name, "jax", bytes_per_param=bpp)
        try:
            tx = make()
            params = fresh_params()
            state = tx.init(params)

            def step(p: Any, s: Any, g: Any) -> Any:
                updates, s = tx.update(g, s, p)
                return optax.apply_updates(p, updates), s

            jstep = jax.jit(step, donate_argnums=(0, 1))
            for _ in range(args.warmup):
                params, state = jstep(params, state, grads)
            block((params, state))
            samples = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                params, state = jstep(params, state, grads)
                block((params, state))
                samples.append((time.perf_counter() - t0) * 1e3)
            _fill(row, samples, n)
            row.note = "host clock + block_until_ready per step"
            del params, state
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
        gc.collect()
        rows.append(row)
        _progress(row)

    bench_tx("optax.adam (jit, donated)", 28, lambda: optax.adam(1e-3))
    try:
        setadam = importlib.import_module("conformance.ports.jax_setadam").setadam
    except Exception as exc:
        rows.append(
            Row("ours.jax.setadam (jit, donated)", "jax", note=f"skipped: import failed: {exc}")
        )
    else:
        bench_tx("ours.jax.setadam (jit, donated)", 36, lambda: setadam(1e-3))
    return rows


# ---- report ------------------------------------------------------------------------------------


def _find(rows: Sequence[Row], name: str) -> Row | None:
    for r in rows:
        if r.name == name and r.ms is not None:
            return r
    return None


def goals(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The ratios the issue sets as goals (None where a row is missing)."""

    def ratio(a: str, b: str) -> float | None:
        ra, rb = _find(rows, a), _find(rows, b)
        if ra is None or rb is None or not rb.ms or ra.ms is None:
            return None
        return ra.ms / rb.ms

    copy = _find(rows, "device-to-device copy (bandwidth ceiling)")
    ours = _find(rows, "ours fused CUDA SET-Adam")
    bw = (
        ours.gbps / copy.gbps
        if ours is not None and copy is not None and ours.gbps and copy.gbps
        else None
    )
    out = [
        ("ours fused CUDA SET-Adam / torch.optim.Adam(fused=True)",
         ratio("ours fused CUDA SET-Adam", "torch.optim.Adam(fused=True)"), "<=", 1.3),
        ("ours fused CUDA SET-Adam bandwidth at 36 B/param / copy bandwidth", bw, ">=", 0.75),
        ("ours fused CUDA Adam / torch.optim.Adam(fused=True)",
         ratio("ours fused CUDA Adam", "torch.optim.Adam(fused=True)"), "info", None),
        ("ours.torch.SETAdam[fused] / ours fused CUDA SET-Adam (wrapper overhead)",
         ratio("ours.torch.SETAdam[fused]", "ours fused CUDA SET-Adam"), "info", None),
        ("ours.torch.SETAdam[foreach] / torch.optim.Adam(foreach=True)",
         ratio("ours.torch.SETAdam[foreach]", "torch.optim.Adam(foreach=True)"), "<=", 1.6),
        ("ours.jax.setadam / optax.adam",
         ratio("ours.jax.setadam (jit, donated)", "optax.adam (jit, donated)"), "<=", 1.5),
    ]  # fmt: skip
    res = []
    for name, val, op, target in out:
        met: bool | None = None
        if val is not None and target is not None:
            met = val <= target if op == "<=" else val >= target
        res.append({"comparison": name, "value": val, "goal": op, "target": target, "met": met})
    return res


def markdown(rows: Sequence[Row], meta: dict[str, Any]) -> str:
    copy = _find(rows, "device-to-device copy (bandwidth ceiling)")
    lines = [
        f"Device: {meta.get('device')}; {meta.get('versions')}",
        f"{meta.get('n_params'):,} float32 parameters in {meta.get('n_tensors')} tensors; "
        f"median of {meta.get('steps')} timed steps after {meta.get('warmup')} warm-up steps.",
        "",
        "| implementation | ms / step | B/param | effective GB/s | % of copy | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ms = f"{r.ms:.3f}" if r.ms is not None and r.group != "ceiling" else "-"
        gb = f"{r.gbps:.0f}" if r.gbps else "-"
        pct = f"{100 * r.gbps / copy.gbps:.0f}%" if r.gbps and copy and copy.gbps else "-"
        bpp = str(r.bytes_per_param) if r.bytes_per_param else "-"
        lines.append(f"| {r.name} | {ms} | {bpp} | {gb} | {pct} | {r.note} |")
    lines += ["", "| comparison | measured | goal | met |", "| --- | --- | --- | --- |"]
    for g in goals(rows):
        val = "-" if g["value"] is None else f"{g['value']:.3f}"
        goal = "-" if g["target"] is None else f"{g['goal']} {g['target']}"
        met = {True: "yes", False: "NO", None: "-"}[g["met"]]
        lines.append(f"| {g['comparison']} | {val} | {goal} | {met} |")
    return "\n".join(lines) + "\n"


def _progress(row: Row) -> None:
    ms = f"{row.ms:.3f} ms" if row.ms is not None else "-"
    print(f"[bench] {row.name}: {ms} {row.note}", file=sys.stderr, flush=True)


def _meta(args: argparse.Namespace, shapes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    versions = [f"python {platform.python_version()}"]
    device = args.device
    for mod in ("torch", "jax", "optax", "cupy", "numpy"):
        try:
            m = __import__(mod)
            versions.append(f"{mod} {m.__version__}")
        except Exception:
            versions.append(f"{mod} missing")
    try:
        import torch

        if args.device == "cuda" and torch.cuda.is_available():
            prop = torch.cuda.get_device_properties(0)
            device = (
                f"{prop.name} ({prop.multi_processor_count} SMs, "
                f"{prop.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
            )
    except Exception:
        pass
    return {
        "device": device,
        "versions": ", ".join(versions),
        "n_params": sum(math.prod(s) for s in shapes),
        "n_tensors": len(shapes),
        "steps": args.steps,
        "warmup": args.warmup,
        "scale": args.scale,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GPT-like optimizer-step benchmark")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-results")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the set (smoke runs)")
    ap.add_argument(
        "--chunks",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[],
        help="extra CHUNK sizes to time the CUDA kernels at, e.g. 8192,65536",
    )
    ap.add_argument("--skip-jax", action="store_true")
    args = ap.parse_args(argv)
    # JAX must not take 75% of the GPU while torch holds its buffers
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("bench: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
            return 2
    shapes = gpt_shapes(args.scale)
    meta = _meta(args, shapes)
    print(f"[bench] {meta['device']}; {meta['n_params']:,} params", file=sys.stderr, flush=True)
    rows = torch_rows(args, shapes)
    if not args.skip_jax:
        rows += jax_rows(args, shapes)
    md = markdown(rows, meta)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(md, encoding="utf-8")
    payload = {"meta": meta, "rows": [asdict(r) for r in rows], "goals": goals(rows)}
    (out / "bench.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
