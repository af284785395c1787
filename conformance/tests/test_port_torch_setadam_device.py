"""Tests of what makes our torch SET-Adam device-resident: no host reads, device-side statistics.

The foreach path is one implementation for CPU and CUDA (the CUDA-only "device-resident" variant
of earlier versions is folded into it), and the for-loop path shares its layer statistics. Here:

* both paths run on PyTorch's ``meta`` device, whose tensors hold no data: any read of a device
  value on the host (``.item()``, ``.tolist()``, ``bool(t)``, a CUDA synchronisation in real
  life) raises there, so a completed step proves the step reads nothing back;
* the two routes of the layer sums (CPU: chunked float64 copies; elsewhere:
  ``torch._foreach_norm(dtype=float64)``) agree within the bound of two float64 summations, and
  the statistics stay finite and right from subnormal to near-overflow second moments;
* with a GPU (``-m gpu``), the for-loop, foreach and fused paths on CUDA are judged by the
  shared oracle (the fused one records no stages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.ports.torch_setadam import SETAdam  # noqa: E402
from conformance.ports.torch_setadam import layer_stats as ls  # noqa: E402
from conformance.tests.oracle import assert_within_budget  # noqa: E402
from setadam_ref import SETAdamConfig  # noqa: E402
from setadam_ref import stage_names as N  # noqa: E402

U64 = 2.0**-53
SHAPES = [(3, 4), (5,), (0,), (2, 1, 3), (64,), (1,)]
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("foreach", [False, True])
def test_a_step_reads_nothing_back_from_the_device(dtype: torch.dtype, foreach: bool) -> None:
    """Several groups, both layer modes, a zero-size tensor, grad None, every kind of weight
    decay, stage recording: two steps on ``meta`` tensors complete."""
    ps = [torch.nn.Parameter(torch.empty(s, device="meta", dtype=dtype)) for s in SHAPES]
    groups = [
        {"params": ps[:3], "layer": "group", "weight_decay": 0.1},
        {"params": ps[3:5], "weight_decay": 0.1, "decoupled_weight_decay": True, "tau": 0.2},
        {"params": ps[5:], "maximize": True},
    ]
    opt = SETAdam(groups, foreach=foreach, lr=1e-2)
    opt.record_stages = True
    for none_at in (1, 4):
        for i, p in enumerate(ps):
            p.grad = None if i == none_at else torch.empty_like(p)
        opt.step()
    st = opt.last_stages
    assert st is not None
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    for i, p in enumerate(ps):
        assert st[N.DOWN_TRANSLATING][i].shape == p.shape
        assert st[N.DOWN_TRANSLATING][i].dtype == cd
        assert st[N.COS2][i].dtype == torch.float64 and st[N.COS2][i].dim() == 0
    assert float(opt.state[ps[0]]["step"]) == 2.0 and float(opt.state[ps[1]]["step"]) == 1.0


def _moments(dtype: torch.dtype, magnitudes: Sequence[float], seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for k, mag in enumerate(magnitudes):
        v = mag * rng.uniform(0.05, 3.0, size=7 + 5 * k)
        v[0] = 0.0
        out.append(torch.tensor(v, dtype=torch.float64).to(dtype))
    return out


@pytest.mark.parametrize(
    ("dtype", "mags"),
    [
        (torch.float32, [3e38 / 3, 1e-3, 1e-40]),
        (torch.bfloat16, [1e38, 1.0, 1e-38]),
        (torch.float16, [6e4 / 3, 1.0, 1e-7]),
        (torch.float64, [1e307, 1e-300, 1e-310]),
    ],
)
def test_the_two_sum_routes_agree(
    dtype: torch.dtype, mags: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sums_chunked`` (the CPU route, in small chunks here) and ``sums_foreach`` (the route of
    every other device) sum the same exactly scaled float64 values. A float64 sum of d
    non-negative terms in any order is within (d - 1) u of the exact sum; the sum of squares
    within d u (chunked dot products: one rounding per square) or d + 2 u (a 2-norm, squared:
    its square root and the square). So they differ by at most 2 (d - 1) u and 2 d + 2 u."""
    monkeypatch.setattr(ls, "CPU_CHUNK", 4)
    vs = _moments(dtype, mags, 0)
    prescaled = dtype == torch.float64
    scales = None
    if prescaled:
        scales = ls.pow2(-ls.binade(torch.stack([v.max().double() for v in vs]))).unbind()
    routed = ls.sums_foreach(vs, scales)
    for j, v in enumerate(vs):
        a1, a2 = ls.sums_chunked(v, None if scales is None else scales[j])
        b1, b2 = routed[j]
        d = v.numel()
        assert torch.isfinite(a2) and float(a2) > 0
        assert abs(float(a1 - b1)) <= 2 * (d - 1) * U64 * float(a1)
        assert abs(float(a2 - b2)) <= (2 * d + 2) * U64 * float(a2)


def _c_exact(vs: Sequence[torch.Tensor]) -> float:
    """c of the concatenation of ``vs``, in exact rational arithmetic."""
    from fractions import Fraction

    xs = [Fraction(x) for v in vs for x in v.double().reshape(-1).tolist()]
    s1 = sum(xs, Fraction(0))
    s2 = sum((x * x for x in xs), Fraction(0))
    return float(s1 * s1 / (len(xs) * s2))


@pytest.mark.parametrize("route", ["cpu", "device"])
@pytest.mark.parametrize(
    ("dtype", "mags"),
    [
        (torch.float32, [3e38 / 3, 1e-3, 1e-40]),
        (torch.float32, [1e-44, 0.0]),
        (torch.bfloat16, [1e38, 1e-38]),
        (torch.float16, [6e4 / 3, 1e-7]),
        (torch.float64, [1e307, 1.0]),
        (torch.float64, [1e-300, 1e-310, 0.0]),
        (torch.float64, [1e300, 1e-300]),
    ],
)
def test_layer_c_from_partials(
    route: str, dtype: torch.dtype, mags: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One layer of tensors whose maxima span the dtype's range (a zero tensor among them must not
    set the layer's scale), and each tensor as a layer of its own: c is within 3d + 9 u of the
    exact value. S1 is a float64 sum of d terms (d - 1 u) plus a sum over at most 3 columns
    (2 u), S2 likewise with d + 2 u for its squares (a 2-norm squared on the device route); the
    rescaling of a column is exact, or drops a contribution below 2^-1022 relative; then
    c = S1 S1 / (d S2) rounds three times: 2 (d + 1) + (d + 4) + 3."""
    if route == "device":  # reduce as it runs on a non-CPU device, on these CPU tensors
        monkeypatch.setattr(ls, "_cpu_route", lambda v: False)
        monkeypatch.setattr(ls, "sums_chunked", None)  # any use of the CPU route fails
    vs = _moments(dtype, mags, 1)
    if mags[-1] == 0.0:
        vs[-1].zero_()
    reds = ls.reduce(vs)
    parts = ls.partials(reds, torch.device("cpu"))
    d_all = sum(v.numel() for v in vs)
    for layer_of in ([0] * len(vs), list(range(len(vs)))):
        index = ls.layer_index([v.numel() for v in vs], layer_of, torch.device("cpu"))
        c = ls.combine(parts, index)
        members = [[j for j, lay in enumerate(layer_of) if lay == k] for k in range(len(c))]
        for k, idx in enumerate(members):
            sub = [vs[j] for j in idx]
            if not any(bool((v != 0).any()) for v in sub):
                assert float(c[k]) == 1.0  # all-zero layer
                continue
            exact = _c_exact(sub)
            assert abs(float(c[k]) - exact) <= (3 * d_all + 9) * U64 * exact, (k, float(c[k]))


def test_pow2_and_binade_are_exact() -> None:
    k = torch.arange(-1100, 1024, dtype=torch.int64)
    got = ls.pow2(k).tolist()
    assert got == [2.0**i if i >= -1022 else 0.0 for i in range(-1100, 1024)]
    v = torch.tensor([0.0, 5e-324, 2.0**-1022, 0.75, 1.0, 1.7e308, float("nan"), float("inf")],
                     dtype=torch.float64)  # fmt: skip
    assert ls.binade(v).tolist() == [ls.EXP_MIN, ls.EXP_MIN, ls.EXP_MIN, 0, 1, ls.EXP_MAX,
                                     ls.EXP_MIN, 0]  # fmt: skip


def test_huge_second_moment_does_not_overflow() -> None:
    """v up to 3e38 in float32 next to a layer-mate of 1e-30: c finite, the step finite, both
    paths bitwise equal."""
    rng = np.random.default_rng(4)
    v0 = 3e38 * rng.uniform(0.05, 1.0, size=(4, 5))
    v0[0, 0] = 0.0
    results = []
    for foreach in (True, False):
        ps = [torch.nn.Parameter(torch.zeros(4, 5)), torch.nn.Parameter(torch.ones(7))]
        opt = SETAdam([{"params": ps, "layer": "group"}], foreach=foreach, lr=1e-3)
        opt.record_stages = True
        for p in ps:
            p.grad = torch.zeros_like(p)
        opt.step()
        opt.state[ps[0]]["exp_avg_sq"].copy_(torch.tensor(v0))
        opt.state[ps[1]]["exp_avg_sq"].fill_(1e-30)
        for p in ps:
            opt.state[p]["step"].fill_(100_000.0)
            opt.state[p]["exp_avg"].fill_(1.0)
        opt.step()
        assert opt.last_stages is not None
        c = float(opt.last_stages[N.COS2][0])
        v = [opt.state[p]["exp_avg_sq"] for p in ps]
        assert abs(c - _c_exact(v)) <= (3 * 27 + 9) * U64 * c
        assert all(torch.isfinite(p).all() for p in ps)
        results.append([p.detach().clone() for p in ps])
    assert all(torch.equal(x, y) for x, y in zip(*results))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_cuda_paths_within_budget(foreach: bool, layer: str) -> None:
    """On CUDA the foreach kernels are other code than the for-loop's (multi-tensor apply, other
    reduction trees), so the paths are not bitwise equal there: each is judged by the oracle."""
    rng = np.random.default_rng(9)
    shapes = [(48, 64), (384,), (0,), (3, 7, 5), (1,), (2_001,)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 1, size=s) for s in shapes]
             for _ in range(5)]  # fmt: skip
    ps = [torch.nn.Parameter(torch.tensor(x, dtype=torch.float32, device="cuda")) for x in params]
    opt = SETAdam([{"params": ps, "layer": layer, "weight_decay": 0.01}], foreach=foreach, lr=1e-2)
    snaps: list[list[np.ndarray]] = []
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g, dtype=torch.float32, device="cuda")
        opt.step()
        snaps.append([p.detach().double().cpu().numpy() for p in ps])
    cfg = SETAdamConfig(lr=1e-2, weight_decay=0.01)
    layers: Any = None if layer == "tensor" else [list(range(len(shapes)))]
    assert_within_budget(cfg, params, grads, snaps, "float32", layers=layers, label="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_setadam_optimizer_fused_path(dtype: str) -> None:
    """``SETAdam(fused=True)`` (the torch package's fused path) launches these kernels: within
    the shared oracle's budget of the reference, float32 state for bfloat16 parameters, and no
    stage record (the path records none, and no shadow for-loop run stands in for it)."""
    rng = np.random.default_rng(6)
    shapes = [(48, 64), (384,), (3, 7, 5), (1,)]
    params = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) * 1e-3 for s in shapes] for _ in range(4)]
    dt = getattr(torch, dtype)
    ps = [torch.nn.Parameter(torch.tensor(x, dtype=dt, device="cuda")) for x in params]
    opt = SETAdam(ps, fused=True, lr=1e-2, weight_decay=0.01)
    opt.record_stages = True
    snaps, ms, vs = [], [], []
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g, dtype=dt, device="cuda")
        opt.step()
        assert opt.last_stages is None
        snaps.append([p.detach().double().cpu().numpy() for p in ps])
        ms.append([opt.state[p]["exp_avg"].double().cpu().numpy() for p in ps])
        vs.append([opt.state[p]["exp_avg_sq"].double().cpu().numpy() for p in ps])
    assert all(opt.state[p]["exp_avg_sq"].dtype == torch.float32 for p in ps)
    cfg = SETAdamConfig(lr=1e-2, weight_decay=0.01)
    assert_within_budget(cfg, params, grads, snaps, dtype, port_m=ms, port_v=vs,
                         state_dtype="float32", label="SETAdam(fused=True)")  # fmt: skip
