"""Tests of the CUDA port (conformance/ports/cuda).

Without a GPU: every kernel source compiles with nvcc (skipped when nvcc is absent), the NVRTC
text is self-contained, the fused entry points refuse CPU tensors with a clear RuntimeError, and
the torch package's fused path keeps its launcher semantics and records no stages (driven on CPU
through a stand-in kernel).
With a GPU (``-m gpu``): results against a float64 torch computation written here from the
mathematics, bitwise determinism, overflow / underflow safety of the layer statistics, bfloat16
params, moving grad pointers, and the missing-CuPy error. (``SETAdam(fused=True)`` on a GPU is
judged by the shared oracle in test_port_torch_setadam_device.py.)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from conformance.ports.cuda import KERNEL_SOURCES  # noqa: E402
from conformance.ports.cuda.compile_check import compile_all, find_nvcc  # noqa: E402
from conformance.ports.cuda.torch_fused import (  # noqa: E402
    fused_adam_,
    fused_setadam_,
    kernel_source,
    kernels_info,
    layer_order,
)

HAS_CUDA = bool(torch.cuda.is_available())
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch.cuda.is_available())")

HYPER: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)


# ---- no GPU needed -------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_source_compiles_with_nvcc() -> None:
    nvcc = find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found (PATH, NVCC, CUDA_HOME): cannot compile the CUDA sources")
    results = compile_all(nvcc)
    bad = [f"sm_{r.arch} {r.source}:\n{r.output}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)
    assert {r.source.split()[0] for r in results} == set(KERNEL_SOURCES)


def test_nvrtc_text_is_self_contained() -> None:
    for name in KERNEL_SOURCES:
        text = kernel_source(name)
        assert not [ln for ln in text.splitlines() if ln.lstrip().startswith("#include")]
        assert "struct TensorDesc" in text
        assert 'extern "C"' in text


def _cpu_group(n: int = 3) -> tuple[list[Any], ...]:
    p = [torch.randn(5) for _ in range(n)]
    return p, [torch.randn(5) for _ in p], [torch.zeros(5) for _ in p], [torch.zeros(5) for _ in p]


def test_setadam_refuses_cpu_tensors() -> None:
    p, g, m, v = _cpu_group()
    with pytest.raises(RuntimeError, match=r"needs CUDA tensors.*cpu"):
        fused_setadam_(
            p, g, m, v, [0, 1, 2], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER
        )


def test_adam_refuses_cpu_tensors() -> None:
    p, g, m, v = _cpu_group()
    with pytest.raises(RuntimeError, match=r"needs CUDA tensors"):
        fused_adam_(p, g, m, v, step=1, decoupled=False, maximize=False, **HYPER)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_message_names_missing_device() -> None:
    p, g, m, v = _cpu_group()
    with pytest.raises(RuntimeError, match="no CUDA device"):
        fused_setadam_(
            p, g, m, v, [0, 0, 0], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER
        )


def test_empty_group_is_a_no_op() -> None:
    fused_setadam_([], [], [], [], [], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER)
    fused_adam_([], [], [], [], step=1, decoupled=False, maximize=False, **HYPER)


@pytest.mark.parametrize(
    ("name", "value"), [("tau", 1.0), ("beta2", 1.0), ("eps", 0.0), ("step", 0), ("lr", math.nan)]
)
def test_bad_hyperparameters_raise_value_error(name: str, value: float) -> None:
    p, g, m, v = _cpu_group()
    kw: dict[str, Any] = dict(HYPER, step=1, tau=0.5, decoupled=False, maximize=False)
    kw[name] = value
    with pytest.raises(ValueError, match=name):
        fused_setadam_(p, g, m, v, [0, 1, 2], **kw)


def test_layer_order_is_first_appearance() -> None:
    assert layer_order([3, 3, 1, 7, 1]) == [3, 1, 7]


def test_mismatched_lists_raise() -> None:
    p, g, m, v = _cpu_group()
    with pytest.raises(ValueError, match="layer_of"):
        fused_setadam_(p, g, m, v, [0], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER)


# ---- SETAdam(fused=True): launcher semantics on CPU through a stand-in kernel; no stages --------


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Let the fused path run on CPU tensors: its CUDA check passes and ``fused_setadam_`` is a
    stand-in that records its calls and moves every parameter by -1."""
    import conformance.ports.cuda.torch_fused as tf
    import conformance.ports.torch_setadam.fused as fz
    import conformance.ports.torch_setadam.single_tensor as st

    calls: list[dict[str, Any]] = []

    def kernel(params: list[torch.Tensor], grads: Any, m: Any, v: Any, layer_of: list[int],
               **kw: Any) -> None:  # fmt: skip
        calls.append(dict(kw, n=len(params), layer_of=list(layer_of)))
        for p in params:
            p.sub_(1.0)

    def no_shadow(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the fused path ran the single-tensor path")

    monkeypatch.setattr(fz, "_require_cuda", lambda params: None)
    monkeypatch.setattr(tf, "fused_setadam_", kernel)
    monkeypatch.setattr(st, "step", no_shadow)
    return calls


def test_fused_records_no_stages_and_runs_no_shadow_path(fake_kernel: list[dict[str, Any]]) -> None:
    from conformance.ports.torch_setadam import SETAdam, records_stages

    assert not records_stages("fused") and records_stages("single") and records_stages("foreach")
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    opt = SETAdam([{"params": [p], "fused": True}, {"params": [q], "foreach": True}], lr=0.1)
    opt.record_stages = True
    p.grad, q.grad = torch.ones(3), torch.ones(2)
    opt.step()
    assert opt.last_stages is None  # one group ran the fused path: no record for this step
    assert torch.equal(p, torch.full((3,), -1.0)) and len(fake_kernel) == 1
    assert fake_kernel[0]["step"] == 1 and fake_kernel[0]["lr"] == 0.1


def test_fused_launcher_groups_by_step_count(fake_kernel: list[dict[str, Any]]) -> None:
    from conformance.ports.torch_setadam import SETAdam

    ps = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    opt = SETAdam(ps, fused=True, tau=0.3, weight_decay=0.1, decoupled_weight_decay=True)
    ps[0].grad = torch.ones(2)
    opt.step()
    for p in ps:
        p.grad = torch.ones(2)
    opt.step()  # tensor 0 takes step 2, tensors 1 and 2 their step 1: two kernel calls
    assert [(c["step"], c["n"], c["layer_of"]) for c in fake_kernel] == [
        (1, 1, [0]), (2, 1, [0]), (1, 2, [0, 1])
    ]  # fmt: skip
    assert fake_kernel[-1]["tau"] == 0.3 and fake_kernel[-1]["decoupled"] is True
    grouped = SETAdam(ps, fused=True)
    grouped.load_state_dict(opt.state_dict())
    grouped.param_groups[0]["layer"] = "group"  # one layer whose tensors differ in step count
    with pytest.raises(RuntimeError, match="differ in step count"):
        grouped.step()


# ---- float64 computation from the mathematics (for the GPU tests) --------------------------------


def ref_setadam(
    p: Sequence[Any],
    g: Sequence[Any],
    m: Sequence[Any],
    v: Sequence[Any],
    layer_of: Sequence[int],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> tuple[list[Any], list[Any], list[Any], dict[int, float]]:
    """One SET-Adam step in float64; returns new params, m, v and c per layer id."""
    f = [x.double() for x in p]
    bc1, bc2 = 1 - beta1**step, 1 - beta2**step
    ms, vs = [], []
    for i in range(len(p)):
        ge = -g[i].double() if maximize else g[i].double()
        if weight_decay and not decoupled:
            ge = ge + weight_decay * f[i]
        ms.append(beta1 * m[i].double() + (1 - beta1) * ge)
        vs.append(beta2 * v[i].double() + (1 - beta2) * ge * ge)
    cs: dict[int, float] = {}
    wmin: dict[int, float] = {}
    for lid in layer_order(layer_of):
        members = [i for i, x in enumerate(layer_of) if x == lid]
        flat = torch.cat([vs[i].reshape(-1) for i in members])
        s2 = float((flat * flat).sum())
        c = float(flat.sum()) ** 2 / (flat.numel() * s2) if s2 > 0 else 1.0
        cs[lid] = c
        wmin[lid] = math.sqrt(c * float(flat.min()) / bc2 + eps) if flat.numel() else math.nan
    out = []
    for i in range(len(p)):
        lid = layer_of[i]
        w = torch.sqrt(cs[lid] * vs[i] / bc2 + eps)
        wt = w - tau * wmin[lid]
        q = f[i] * (1 - lr * weight_decay) if decoupled else f[i]
        out.append(q - lr / bc1 * ms[i] / wt)
    return out, ms, vs, cs


def ref_adam(
    p: Sequence[Any],
    g: Sequence[Any],
    m: Sequence[Any],
    v: Sequence[Any],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> tuple[list[Any], list[Any], list[Any]]:
    bc1, bc2 = 1 - beta1**step, 1 - beta2**step
    out, ms, vs = [], [], []
    for i in range(len(p)):
        f = p[i].double()
        ge = -g[i].double() if maximize else g[i].double()
        if weight_decay and not decoupled:
            ge = ge + weight_decay * f
        mm = beta1 * m[i].double() + (1 - beta1) * ge
        vv = beta2 * v[i].double() + (1 - beta2) * ge * ge
        q = f * (1 - lr * weight_decay) if decoupled else f
        out.append(q - lr / bc1 * mm / (torch.sqrt(vv / bc2) + eps))
        ms.append(mm)
        vs.append(vv)
    return out, ms, vs


def _rel(a: Any, b: Any) -> float:
    if b.numel() == 0:
        return 0.0
    a, b = a.double(), b.double()
    den = float(b.abs().max()) if b.numel() else 0.0
    return float((a - b).abs().max()) / den if den > 0 else float((a - b).abs().max())


SHAPES: list[tuple[int, ...]] = [
    (7,),
    (1024,),
    (33, 65),
    (0,),
    (4097,),
    (3, 1000),
    (16384 * 2 + 5,),
]


def _group(
    dtype: Any, shapes: Sequence[tuple[int, ...]] = SHAPES, seed: int = 0, unaligned: bool = True
) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Random params/grads/state on the GPU; with unaligned, one tensor is a contiguous view at an
    odd offset (scalar path)."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    p = [torch.randn(s, generator=gen, device=dev).to(dtype) for s in shapes]
    g = [torch.randn(s, generator=gen, device=dev).mul_(1e-3).to(dtype) for s in shapes]
    m = [torch.randn(s, generator=gen, device=dev).mul_(1e-4) for s in shapes]
    v = [torch.rand(s, generator=gen, device=dev).mul_(1e-6) for s in shapes]
    if unaligned:
        n = 1001
        base = torch.randn(n + 1, generator=gen, device=dev).to(dtype)
        gbase = torch.randn(n + 1, generator=gen, device=dev).mul_(1e-3).to(dtype)
        mbase = torch.zeros(n + 1, device=dev)
        vbase = torch.rand(n + 1, generator=gen, device=dev).mul_(1e-6)
        p.append(base[1:])
        g.append(gbase[1:])
        m.append(mbase[1:])
        v.append(vbase[1:])
    return p, g, m, v


def _update_close(p_new: Any, p0: Any, rp: Any, bf16: bool = False) -> bool:
    """Port's new params against the float64 ones: the update to 1e-4 of its largest entry, plus
    the final rounding to the param dtype (2 ulp float32, 1 ulp bfloat16)."""
    if p_new.numel() == 0:
        return True
    err = (p_new.double() - rp).abs()
    delta = float((rp - p0.double()).abs().max())
    rel = 2.0**-7 if bf16 else 2.0**-22
    return bool((err <= 1e-4 * delta + rel * rp.abs()).all())


def _c_of(v: Sequence[Any], layer_of: Sequence[int], lid: int) -> float:
    """c = (sum v)^2 / (d sum v^2) of the port's own float32 v, summed in float64 on the CPU."""
    flat = torch.cat([v[i].double().reshape(-1).cpu() for i, x in enumerate(layer_of) if x == lid])
    s2 = float((flat * flat).sum())
    return float(flat.sum()) ** 2 / (flat.numel() * s2) if s2 > 0 else 1.0


def _clone(xs: Sequence[Any]) -> list[Any]:
    return [x.clone() for x in xs]


# ---- GPU tests -----------------------------------------------------------------------------------

CASES: list[dict[str, Any]] = [
    dict(weight_decay=0.0, decoupled=False, maximize=False, tau=0.5),
    dict(weight_decay=0.1, decoupled=False, maximize=False, tau=0.5),
    dict(weight_decay=0.1, decoupled=True, maximize=True, tau=0.25),
    dict(weight_decay=0.0, decoupled=False, maximize=True, tau=0.0),
]


@gpu
@needs_cuda
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("grouping", ["per-tensor", "grouped"])
def test_setadam_float32_matches_float64(case: dict[str, Any], grouping: str) -> None:
    p, g, m, v = _group(torch.float32, seed=1)
    n = len(p)
    layer_of = list(range(n)) if grouping == "per-tensor" else [i // 2 for i in range(n)]
    kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **case)
    stats = torch.empty(len(layer_order(layer_of)), 4, dtype=torch.float64, device="cuda")
    for t in (1, 2, 3, 10):
        g = [x.normal_(0.0, 1e-3) for x in g]
        rp, rm, rv, rc = ref_setadam(p, g, m, v, layer_of, step=t, **kw)
        p0 = _clone(p)
        fused_setadam_(p, g, m, v, layer_of, step=t, stats_out=stats, **kw)
        torch.cuda.synchronize()
        for i in range(n):
            assert _rel(v[i], rv[i]) < 2e-6, (t, i, "v")
            assert _rel(m[i], rm[i]) < 2e-6, (t, i, "m")
            assert _update_close(p[i], p0[i], rp[i]), (t, i)
        for k, lid in enumerate(layer_order(layer_of)):
            # c against c of the port's own v (tight: float64 sums), and against float64 v
            assert abs(float(stats[k, 0]) - _c_of(v, layer_of, lid)) <= 1e-10 * rc[lid], (t, lid)
            assert abs(float(stats[k, 0]) - rc[lid]) <= 1e-6 * rc[lid], (t, lid)


@gpu
@needs_cuda
def test_setadam_is_bitwise_deterministic() -> None:
    p, g, m, v = _group(torch.float32, shapes=[(50304, 64), (1024, 1024), (3,), (40000,)], seed=2)
    layer_of = [0, 1, 1, 2, 3]
    kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, tau=0.5)
    kw.update(weight_decay=0.01, decoupled=False, maximize=False)
    results = []
    for _ in range(3):
        pp, mm, vv = _clone(p), _clone(m), _clone(v)
        st = torch.empty(4, 4, dtype=torch.float64, device="cuda")
        for t in (1, 2):
            fused_setadam_(pp, g, mm, vv, layer_of, step=t, stats_out=st, **kw)
        torch.cuda.synchronize()
        results.append((pp, mm, vv, st))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            if isinstance(a, list):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
            else:
                assert torch.equal(a, b)


@gpu
@needs_cuda
def test_statistics_survive_extreme_v() -> None:
    """v near the float32 maximum and v subnormal: c, the update and the state stay finite and
    right (float32 sums of v^2 would overflow / flush to zero)."""
    dev = "cuda"
    huge = torch.rand(5000, device=dev, dtype=torch.float64).mul(0.5).add(0.5).mul(3e38).float()
    tiny = torch.rand(5000, device=dev, dtype=torch.float64).mul(0.5).add(0.5).mul(1e-40).float()
    mixed = torch.cat([huge[:100], tiny[:100]])
    v = [huge, tiny, mixed]
    p = [torch.randn(x.shape, device=dev) for x in v]
    g = [torch.zeros_like(x) for x in v]  # g = 0 keeps v_new = beta2 * v, inside float32
    m = [torch.randn(x.shape, device=dev) * 1e-3 for x in v]
    kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, tau=0.5)
    kw.update(weight_decay=0.0, decoupled=False, maximize=False)
    layer_of = [0, 1, 2]
    rp, _rm, rv, rc = ref_setadam(p, g, m, v, layer_of, step=1, **kw)
    p0 = _clone(p)
    st = torch.empty(3, 4, dtype=torch.float64, device=dev)
    fused_setadam_(p, g, m, v, layer_of, step=1, stats_out=st, **kw)
    torch.cuda.synchronize()
    assert torch.isfinite(st).all()
    assert kernels_info()["ieee_subnormals"], "kernels built with -ftz=true: subnormal v flush"
    assert float(st[1, 3]) > 0.0, "subnormal v flushed to zero"
    for k in range(3):
        assert abs(float(st[k, 0]) - rc[k]) <= 1e-6 * rc[k], (k, float(st[k, 0]), rc[k])
        assert torch.isfinite(p[k]).all() and torch.isfinite(v[k]).all()
        # subnormal v carries fewer significant bits: allow one subnormal ulp (2^-149) absolute
        err = float((v[k].double() - rv[k]).abs().max())
        assert err <= 2e-6 * float(rv[k].abs().max()) + 2.0**-149, (k, err)
        assert _update_close(p[k], p0[k], rp[k]), k


@gpu
@needs_cuda
def test_all_zero_layer_is_well_defined() -> None:
    dev = "cuda"
    p = [torch.randn(100, device=dev), torch.randn(10, device=dev)]
    g = [torch.zeros(100, device=dev), torch.randn(10, device=dev)]
    m = [torch.zeros(100, device=dev), torch.zeros(10, device=dev)]
    v = [torch.zeros(100, device=dev), torch.zeros(10, device=dev)]
    p0 = _clone(p)
    st = torch.empty(2, 4, dtype=torch.float64, device=dev)
    fused_setadam_(
        p, g, m, v, [0, 1], step=1, tau=0.5, decoupled=False, maximize=False, stats_out=st, **HYPER
    )
    torch.cuda.synchronize()
    assert float(st[0, 0]) == 1.0
    assert torch.equal(p[0], p0[0])
    assert torch.isfinite(p[1]).all() and not torch.equal(p[1], p0[1])


@gpu
@needs_cuda
def test_setadam_bfloat16_params() -> None:
    p, g, m, v = _group(torch.bfloat16, seed=3)
    layer_of = list(range(len(p)))
    kw: dict[str, Any] = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, tau=0.5)
    kw.update(weight_decay=0.0, decoupled=False, maximize=False)
    rp, rm, rv, _ = ref_setadam(p, g, m, v, layer_of, step=1, **kw)
    p0 = _clone(p)
    fused_setadam_(p, g, m, v, layer_of, step=1, **kw)
    torch.cuda.synchronize()
    for i in range(len(p)):
        assert p[i].dtype == torch.bfloat16 and m[i].dtype == torch.float32
        assert _rel(v[i], rv[i]) < 2e-6 and _rel(m[i], rm[i]) < 2e-6
        assert _update_close(p[i], p0[i], rp[i], bf16=True), i


@gpu
@needs_cuda
def test_moving_grads_and_layers() -> None:
    """New grad tensors each step (zero_grad(set_to_none=True)) and a changed layering."""
    p, g, m, v = _group(torch.float32, seed=4)
    kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, tau=0.5)
    kw.update(weight_decay=0.0, decoupled=False, maximize=False)
    for t, layer_of in ((1, list(range(len(p)))), (2, [0] * len(p)), (3, [0] * len(p))):
        g = [torch.randn_like(x) * 1e-3 for x in p]
        rp, _rm, _rv, _ = ref_setadam(p, g, m, v, layer_of, step=t, **kw)
        p0 = _clone(p)
        fused_setadam_(p, g, m, v, layer_of, step=t, **kw)
        torch.cuda.synchronize()
        for i in range(len(p)):
            assert _update_close(p[i], p0[i], rp[i]), (t, i)


@gpu
@needs_cuda
@pytest.mark.parametrize("case", CASES[:3], ids=["plain", "l2", "decoupled-max"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_adam_matches_float64(case: dict[str, Any], dtype: str) -> None:
    dt = getattr(torch, dtype)
    p, g, m, v = _group(dt, seed=5)
    kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
    kw.update({k: x for k, x in case.items() if k != "tau"})
    for t in (1, 2, 5):
        rp, rm, rv = ref_adam(p, g, m, v, step=t, **kw)
        p0 = _clone(p)
        fused_adam_(p, g, m, v, step=t, **kw)
        torch.cuda.synchronize()
        for i in range(len(p)):
            assert _rel(v[i], rv[i]) < 2e-6 and _rel(m[i], rm[i]) < 2e-6, (t, i)
            assert _update_close(p[i], p0[i], rp[i], bf16=dt == torch.bfloat16), (t, i)


@gpu
@needs_cuda
def test_refuses_unsupported_dtypes_and_layouts() -> None:
    dev = "cuda"
    p = [torch.randn(8, device=dev, dtype=torch.float64)]
    z = [torch.zeros(8, device=dev, dtype=torch.float64)]
    with pytest.raises(RuntimeError, match="float32 and bfloat16"):
        fused_setadam_(p, p, z, z, [0], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER)
    q = [torch.randn(8, 8, device=dev).t()]
    zz = [torch.zeros(8, 8, device=dev)]
    with pytest.raises(RuntimeError, match="contiguous"):
        fused_setadam_(q, q, zz, zz, [0], step=1, tau=0.5, decoupled=False, maximize=False, **HYPER)


@gpu
@needs_cuda
def test_missing_cupy_is_a_clear_runtime_error() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["cupy"] = None  # makes "import cupy" fail as if it were not installed
        import torch
        from conformance.ports.cuda.torch_fused import fused_setadam_
        p = [torch.randn(4, device="cuda")]
        z = [torch.zeros(4, device="cuda")]
        try:
            fused_setadam_(p, p, z, z, [0], step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                           tau=0.5, weight_decay=0.0, decoupled=False, maximize=False)
        except RuntimeError as exc:
            print("RuntimeError:", exc)
        """
    )
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env
    )
    assert "RuntimeError:" in out.stdout and "cupy-cuda13x" in out.stdout, out.stdout + out.stderr


def test_float64_helper_agrees_with_setadam_ref() -> None:
    """The float64 computation the GPU tests compare against is itself checked against the
    reference (CPU, float64)."""
    np = pytest.importorskip("numpy")
    ref = pytest.importorskip("setadam_ref")
    rng = np.random.default_rng(0)
    shapes = [(7,), (33, 65), (0,), (100,)]
    p = [rng.standard_normal(s) for s in shapes]
    g = [rng.standard_normal(s) * 1e-3 for s in shapes]
    for case in CASES:
        for layers, layer_of in ((None, [0, 1, 2, 3]), (((0, 1), (2, 3)), [0, 0, 1, 1])):
            cfg = ref.SETAdamConfig(
                lr=1e-3,
                betas=(0.9, 0.999),
                eps=1e-8,
                tau=case["tau"],
                weight_decay=case["weight_decay"],
                weight_decay_mode="decoupled" if case["decoupled"] else "l2",
                maximize=case["maximize"],
            )
            m = tuple(rng.standard_normal(s) * 1e-4 for s in shapes)
            v = tuple(rng.random(s) * 1e-6 for s in shapes)
            st = ref.init(p, cfg)._replace(m=m, v=v, step=2)
            new_p, _, _ = ref.step(p, g, st, cfg, layers=layers)
            tp, tg, tm, tv = (list(map(torch.from_numpy, xs)) for xs in (p, g, m, v))
            kw: dict[str, Any] = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **case)
            rp, _, _, _ = ref_setadam(tp, tg, tm, tv, layer_of, step=3, **kw)
            for a, b in zip(rp, new_p, strict=True):
                assert np.allclose(a.numpy(), b, rtol=1e-12, atol=1e-15)


def test_benchmark_parameter_set_and_goals() -> None:
    from conformance.gpu.bench import N_GPT, Row, goals, gpt_shapes, markdown

    shapes = gpt_shapes()
    assert len(shapes) == 74
    assert sum(math.prod(s) for s in shapes) == N_GPT == 128_137_216
    rows = [
        Row("device-to-device copy (bandwidth ceiling)", "ceiling", ms=1.0, gbps=3000.0),
        Row("torch.optim.Adam(fused=True)", "torch", ms=1.4, bytes_per_param=28),
        Row("ours fused CUDA SET-Adam", "ours-cuda", ms=1.6, bytes_per_param=36, gbps=2880.0),
    ]
    g = {x["comparison"]: x for x in goals(rows)}
    first = g["ours fused CUDA SET-Adam / torch.optim.Adam(fused=True)"]
    assert first["value"] == pytest.approx(1.6 / 1.4) and first["met"] is True
    assert g["ours fused CUDA SET-Adam bandwidth at 36 B/param / copy bandwidth"]["met"] is True
    assert g["ours.jax.setadam / optax.adam"]["value"] is None
    md = markdown(rows, {"device": "test", "n_params": 1, "n_tensors": 1})
    assert "| ours fused CUDA SET-Adam | 1.600 | 36 | 2880 | 96% |" in md
