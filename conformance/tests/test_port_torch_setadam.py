"""Tests of our torch SET-Adam port (the package conformance/ports/torch_setadam), real torch on CPU.

Trajectories are judged by the shared oracle (``oracle.assert_within_budget``: the reference run
on the same inputs, checked step by step with the harness's tolerance model). One test keeps a
NumPy re-implementation on purpose (``grad=None`` with per-tensor step counts, which the oracle's
one-step-counter problems cannot express); its bound is derived next to it.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.ports.torch_setadam import STAGE_KEYS, SETAdam  # noqa: E402
from conformance.tests.oracle import assert_within_budget  # noqa: E402
from setadam_ref import SETAdamConfig  # noqa: E402
from setadam_ref import stage_names as N  # noqa: E402

SHAPES = [(3, 4), (5,), (2, 1, 3)]
U64 = 2.0**-53  # float64 unit roundoff


def make_data(
    seed: int = 0, shapes: Sequence[tuple[int, ...]] = SHAPES, steps: int = 3
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s) for s in shapes]
    # per-entry scales spread over decades so that c is far from 1 and min w matters
    grads = [
        [rng.standard_normal(s) * 10.0 ** rng.uniform(-5, -1, size=s) for s in shapes]
        for _ in range(steps)
    ]
    return params, grads


@dataclass
class Run:
    """The parameters, the optimizer and per-step snapshots (float64) of params, m and v."""

    ps: list[torch.Tensor]
    opt: SETAdam
    params: list[list[np.ndarray]] = field(default_factory=list)
    m: list[list[np.ndarray]] = field(default_factory=list)
    v: list[list[np.ndarray]] = field(default_factory=list)


def judge_subset(
    r: Run, idx: Sequence[int], params0: Sequence[np.ndarray], grads: Any, h: dict[str, Any],
    dtype: str, layers: Sequence[Sequence[int]] | None = None,
) -> None:  # fmt: skip
    """:func:`judge` on the tensors ``idx`` of a run alone (one param group, say)."""
    sub = Run(r.ps, r.opt, [[s[i] for i in idx] for s in r.params],
              [[s[i] for i in idx] for s in r.m], [[s[i] for i in idx] for s in r.v])  # fmt: skip
    judge(sub, [params0[i] for i in idx], [[gs[i] for i in idx] for gs in grads], h, dtype, layers)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.asarray(t.detach().to(torch.float64).numpy(), dtype=np.float64).copy()


def run_torch(
    params: Sequence[np.ndarray],
    grad_steps: Sequence[Sequence[np.ndarray | None]],
    *,
    dtype: torch.dtype = torch.float64,
    groups: Sequence[dict[str, Any]] | None = None,
    record: bool = False,
    **kw: Any,
) -> Run:
    ps = [torch.nn.Parameter(torch.tensor(x, dtype=dtype)) for x in params]
    if groups is None:
        opt = SETAdam(ps, **kw)
    else:
        opt = SETAdam([dict(g, params=[ps[i] for i in g["params"]]) for g in groups], **kw)
    opt.record_stages = record
    return step_run(ps, opt, grad_steps, dtype)


def step_run(
    ps: list[torch.Tensor],
    opt: SETAdam,
    grad_steps: Sequence[Sequence[np.ndarray | None]],
    dtype: torch.dtype = torch.float64,
) -> Run:
    """Step ``opt`` over ``ps`` with each step's gradients, recording every step."""
    out = Run(ps, opt)
    for grads in grad_steps:
        for p, g in zip(ps, grads):
            p.grad = None if g is None else torch.tensor(g, dtype=dtype)
        opt.step()
        out.params.append([_np(p) for p in ps])
        out.m.append([_np(opt.state[p]["exp_avg"]) for p in ps if opt.state[p]])
        out.v.append([_np(opt.state[p]["exp_avg_sq"]) for p in ps if opt.state[p]])
    return out


def config(h: dict[str, Any]) -> SETAdamConfig:
    """The reference configuration of a SETAdam keyword set."""
    return SETAdamConfig(
        lr=h.get("lr", 1e-3),
        betas=h.get("betas", (0.9, 0.999)),
        eps=h.get("eps", 1e-8),
        tau=h.get("tau", 0.5),
        weight_decay=h.get("weight_decay", 0.0),
        weight_decay_mode="decoupled" if h.get("decoupled_weight_decay") else "l2",
        maximize=h.get("maximize", False),
    )


def judge(r: Run, params0: Sequence[np.ndarray], grads: Any, h: dict[str, Any], dtype: str,
          layers: Sequence[Sequence[int]] | None = None, state_dtype: str | None = None) -> None:  # fmt: skip
    assert_within_budget(
        config(h), params0, grads, r.params, dtype, layers=layers, port_m=r.m, port_v=r.v,
        state_dtype=state_dtype, label=f"SETAdam {h}",
    )  # fmt: skip


HYPER: list[dict[str, Any]] = [
    {"lr": 1e-2},
    {"lr": 1e-2, "tau": 0.0, "betas": (0.5, 0.9)},
    {"lr": 3e-2, "tau": 0.9, "eps": 1e-6, "weight_decay": 0.1},
    {"lr": 1e-2, "weight_decay": 0.2, "decoupled_weight_decay": True, "maximize": True},
]


# ---------------------------------------------------------------------------------------------
# against the reference, through the oracle
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_within_budget(dtype: str, foreach: bool, hyper: dict[str, Any], layer: str) -> None:
    params, grads = make_data(1)
    groups = [{"params": [0, 1, 2], "layer": layer}]
    r = run_torch(params, grads, dtype=getattr(torch, dtype), groups=groups, foreach=foreach, **hyper)  # fmt: skip
    judge(r, params, grads, hyper, dtype, None if layer == "tensor" else [[0, 1, 2]])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("foreach", [False, True])
def test_low_precision_state_dtype_and_eps(dtype: str, foreach: bool) -> None:
    params, grads = make_data(3)
    # gradients of order 1 (a float16 v = 1e-3 g^2 of a 1e-3 gradient would underflow, as in
    # torch.optim.Adam with float16 state), and a zero layer: v = 0 there, and eps = 1e-8
    # computed in float16 would be 0 (0/0); we compute w in float32
    grads[0] = [np.sign(g) * np.linspace(0.5, 2.0, g.size).reshape(g.shape) for g in grads[0]]
    grads[0][1][:] = 0.0
    tdt = getattr(torch, dtype)
    r = run_torch(params, grads[:1], dtype=tdt, foreach=foreach, lr=1e-2)
    for p in r.ps:
        st = r.opt.state[p]
        assert st["exp_avg"].dtype == tdt and st["exp_avg_sq"].dtype == tdt
        assert st["step"].dtype == torch.float32 and float(st["step"]) == 1.0
        assert torch.isfinite(p).all()
    judge(r, params, grads[:1], {"lr": 1e-2}, dtype, state_dtype=dtype)


def test_param_groups_own_hyperparameters_and_group_layer() -> None:
    """SET-Adam's groups do not interact (every layer lies in one group), so each group is judged
    by the oracle on its own, with its own configuration."""
    params, grads = make_data(7)
    g1 = {"lr": 3e-2, "tau": 0.2, "betas": (0.8, 0.99)}
    g2 = {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}
    groups = [dict(g1, params=[0, 1], layer="group"), dict(g2, params=[2])]
    r = run_torch(params, grads, groups=groups, lr=5.0)
    for h, idx, layers in ((g1, [0, 1], [[0, 1]]), (g2, [2], None)):
        sub = Run(r.ps, r.opt, [[s[i] for i in idx] for s in r.params],
                  [[s[i] for i in idx] for s in r.m], [[s[i] for i in idx] for s in r.v])  # fmt: skip
        judge(sub, [params[i] for i in idx], [[gs[i] for i in idx] for gs in grads], h, "float64", layers)  # fmt: skip


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_zero_size_params(foreach: bool, layer: str) -> None:
    params, grads = make_data(9, shapes=[(0,), (4,), (2, 0)])
    groups = [{"params": [0, 1, 2], "layer": layer}]
    r = run_torch(params, grads, groups=groups, foreach=foreach, record=True)
    assert [p.shape for p in r.ps] == [(0,), (4,), (2, 0)]
    judge(r, params, grads, {}, "float64", None if layer == "tensor" else [[0, 1, 2]])
    assert r.opt.last_stages is not None and r.opt.last_stages[N.UPDATE][0].shape == (0,)
    # only zero-size tensors: nothing happens, nothing fails
    z = torch.nn.Parameter(torch.zeros(0))
    z.grad = torch.zeros(0)
    SETAdam([z], foreach=foreach).step()


@pytest.mark.parametrize("foreach", [False, True])
def test_nan_poisons_its_layer_only(foreach: bool) -> None:
    """Documented behaviour: a NaN (or inf) gradient entry makes c and min w of its layer NaN, so
    the whole layer's parameters (and state) become NaN; other layers are untouched by it."""
    params, grads = make_data(11, steps=2)
    grads[0][0][1, 2] = np.nan
    grads[0][1][3] = np.inf
    r = run_torch(params, grads, foreach=foreach, record=True)
    assert torch.isnan(r.ps[0]).all() and torch.isnan(r.ps[1]).all()
    assert r.opt.last_stages is not None
    assert math.isnan(float(r.opt.last_stages[N.COS2][0]))
    assert torch.isnan(r.opt.state[r.ps[0]]["exp_avg_sq"]).any()
    # tensor 2 is a layer of its own: the oracle on it alone
    sub = Run(r.ps, r.opt, [s[2:] for s in r.params], [s[2:] for s in r.m], [s[2:] for s in r.v])
    judge(sub, params[2:], [gs[2:] for gs in grads], {}, "float64")


# ---------------------------------------------------------------------------------------------
# grad None: an independent re-implementation, on purpose
# ---------------------------------------------------------------------------------------------


def np_setadam_skipping(
    params: Sequence[np.ndarray], grad_steps: Sequence[Sequence[np.ndarray | None]], *,
    lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, tau: float = 0.5,
) -> list[np.ndarray]:  # fmt: skip
    """Float64 SET-Adam, one layer of all tensors, where a tensor whose gradient is None is left
    out of that step: no moment update, no step count, not in the layer. Kept independent of the
    oracle on purpose: the reference has one step counter for all tensors and a fixed layering,
    so it cannot express per-tensor step counts or a layer that changes from step to step."""
    p = [np.array(x, dtype=np.float64) for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    t = [0] * len(p)
    for grads in grad_steps:
        live = [i for i, g in enumerate(grads) if g is not None]
        for i in live:
            g = np.asarray(grads[i], dtype=np.float64)
            t[i] += 1
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
        vl = np.concatenate([v[i].ravel() for i in live])
        c = vl.sum() ** 2 / (vl.size * np.sum(vl * vl))
        w = {i: np.sqrt(c * v[i] / (1 - b2 ** t[i]) + eps) for i in live}
        wmin = min(w[i].min() for i in live)
        for i in live:
            p[i] = p[i] - lr / (1 - b1 ** t[i]) * m[i] / (w[i] - tau * wmin)
    return p


def skipping_rel_bound(d: int, steps: int, b1: float, b2: float, tau: float) -> float:
    """Bound on the relative difference of the two float64 displacements theta_T - theta_0 for
    positive gradients: then m > 0, every update of a coordinate has the same sign, and the
    relative error of their sum is at most the largest per-step one. In units of u = 2^-53, per
    step t <= T, for each implementation against the exact values:

    * m, v: sums of positive terms (``lerp`` too, for weight 1 - beta1 < 1/2), 3 per step: 3T;
    * c = S1^2 / (d S2): S1 and S2 are float64 sums of d positive terms (d - 1 each, d for the
      squares) combined over at most 3 tensors (2 more), then two products and a division:
      2 (d + 1) + (d + 2) + 3; plus 4 times the error of v (S1^2 and S2 have degree 2): 12 T;
    * 1 - beta^t: pow is within an ulp (2), the subtraction exact (Sterbenz), so the relative
      error is 2 beta^t / (1 - beta^t) <= 2 beta / (1 - beta) for t >= 1;
    * a = c / (1 - beta2^t): the two above plus 1; w = sqrt(a v + eps): half the error of its
      argument (a, v, a product and a sum of positive terms) plus 1;
    * wt = w - tau min w >= (1 - tau) w: (error of w + 1) (1 + tau) / (1 - tau) + 1;
    * the step lr / (1 - beta1^t) * m / wt, added to theta: the bias correction plus 4.

    The two implementations differ by at most twice the sum.
    """
    t = steps
    d_c = 2 * (d + 1) + (d + 2) + 3 + 12 * t
    d_a = d_c + 2 * b2 / (1 - b2) + 1
    d_w = (d_a + 3 * t + 2) / 2 + 1
    d_wt = (d_w + 1) * (1 + tau) / (1 - tau) + 1
    return 2 * (3 * t + d_wt + 2 * b1 / (1 - b1) + 4) * U64


@pytest.mark.parametrize("foreach", [False, True])
def test_grad_none_is_skipped_and_not_counted(foreach: bool) -> None:
    params, grads = make_data(8)
    steps: list[list[np.ndarray | None]] = [[np.abs(g) + 1e-4 for g in gs] for gs in grads]
    steps[0][1] = None
    steps[2][1] = None
    r = run_torch(params, steps, groups=[{"params": [0, 1, 2], "layer": "group"}],
                  foreach=foreach, lr=1e-2, record=True)  # fmt: skip
    exp = np_setadam_skipping(params, steps, lr=1e-2)
    rel = skipping_rel_bound(sum(x.size for x in params), len(steps), 0.9, 0.999, 0.5)
    for got, e, p0 in zip(r.params[-1], exp, params):
        # plus the rounding of theta (u |theta|) in each step of each implementation; theta
        # moves monotonically from p0 to e, so |theta| <= max(|p0|, |e|) throughout
        tol = rel * np.abs(e - p0) + 2 * len(steps) * U64 * np.maximum(np.abs(p0), np.abs(e))
        assert np.all(np.abs(got - e) <= tol), np.max(np.abs(got - e) / tol)
    opt = r.opt
    assert float(opt.state[r.ps[1]]["step"]) == 1.0 and float(opt.state[r.ps[0]]["step"]) == 3.0
    st = opt.last_stages
    assert st is not None
    assert torch.equal(st[N.UPDATE][1], torch.zeros(SHAPES[1], dtype=torch.float64))
    assert math.isnan(float(st[N.COS2][1])) and not math.isnan(float(st[N.COS2][0]))
    # a parameter that never had a gradient has no state and does not move
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    s = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt2 = SETAdam([q, s], foreach=foreach)
    s.grad = torch.ones(2, dtype=torch.float64)
    opt2.step()
    assert len(opt2.state[q]) == 0 and torch.equal(q, torch.ones(3, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# for-loop vs foreach
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hyper", HYPER)
def test_foreach_matches_forloop_bitwise_on_cpu(
    dtype: torch.dtype, hyper: dict[str, Any]
) -> None:
    """On CPU torch's foreach ops fall back to a loop over the very per-tensor kernels the
    for-loop path calls, and both paths reduce the layer statistics through the same per-tensor
    code, so they agree bit for bit (parameters, state, every stage), also with grad None and
    several groups. On CUDA the foreach kernels are different code (multi-tensor apply, other
    reduction trees): there both paths are judged by the oracle instead (test_..._device.py)."""
    params, grads = make_data(4, shapes=[*SHAPES, (4,)])
    steps: list[list[np.ndarray | None]] = [list(gs) for gs in grads]
    steps[1][1] = None
    groups = [
        {"params": [0, 1], "layer": "group"},
        {"params": [2], "tau": 0.25},
        {"params": [3], "lr": 3e-3, "maximize": True},
    ]
    a = run_torch(params, steps, dtype=dtype, groups=groups, foreach=False, record=True, **hyper)
    b = run_torch(params, steps, dtype=dtype, groups=groups, foreach=True, record=True, **hyper)
    for x, y in zip(a.ps, b.ps):
        assert torch.equal(x, y)
    for p, q in zip(a.ps, b.ps):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a.opt.state[p][key], b.opt.state[q][key])
    assert a.opt.last_stages is not None and b.opt.last_stages is not None
    for key in STAGE_KEYS:
        for x, y in zip(a.opt.last_stages[key], b.opt.last_stages[key]):
            assert torch.equal(x, y) or (x.isnan().all() and y.isnan().all()), key


def test_foreach_cpu_units_split_bitwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU foreach path runs its op sequence on cache-sized sub-lists; splitting the list
    changes nothing in the arithmetic."""
    import conformance.ports.torch_setadam.multi_tensor as mt

    monkeypatch.setattr(mt, "_CPU_UNIT_BYTES", 100)
    params, grads = make_data(14, shapes=[(3, 4), (5,), (2, 1, 3), (7, 3), (1,)])
    groups = [{"params": [0, 1, 2], "layer": "group"}, {"params": [3, 4]}]
    a = run_torch(params, grads, groups=groups, foreach=False, weight_decay=0.1, lr=1e-2)
    b = run_torch(params, grads, groups=groups, foreach=True, weight_decay=0.1, lr=1e-2)
    assert len(mt._foreach_units(list(b.ps), list(b.ps))) == 4
    assert all(torch.equal(x, y) for x, y in zip(a.ps, b.ps))


def test_cpu_chunks_split_bitwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU sums run over float64 copies of chunks; both paths chunk alike, whatever the size."""
    import conformance.ports.torch_setadam.layer_stats as ls

    monkeypatch.setattr(ls, "CPU_CHUNK", 7)
    params, grads = make_data(15)
    for dtype in (torch.float64, torch.float32):
        a = run_torch(params, grads, dtype=dtype, foreach=False, lr=1e-2)
        b = run_torch(params, grads, dtype=dtype, foreach=True, lr=1e-2)
        assert all(torch.equal(x, y) for x, y in zip(a.ps, b.ps))
        judge(a, params, grads, {"lr": 1e-2}, str(dtype).replace("torch.", ""))


def test_foreach_default_rule_is_forloop_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import conformance.ports.torch_setadam.multi_tensor as mt

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("foreach=None ran the foreach path on CPU tensors")

    monkeypatch.setattr(mt, "step", refuse)
    params, grads = make_data(5)
    run_torch(params, grads, foreach=None, lr=1e-2)


# ---------------------------------------------------------------------------------------------
# state_dict, skipping, side effects
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_state_dict_round_trip_bit_identical(foreach: bool, dtype: torch.dtype) -> None:
    params, grads = make_data(6, steps=5)
    hyper: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05, "tau": 0.3}
    full = run_torch(params, grads, dtype=dtype, foreach=foreach, **hyper)
    half = run_torch(params, grads[:3], dtype=dtype, foreach=foreach, **hyper)
    buf = io.BytesIO()
    torch.save({"model": [p.detach() for p in half.ps], "opt": half.opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    ps = [torch.nn.Parameter(x.clone()) for x in saved["model"]]
    opt2 = SETAdam(ps, foreach=foreach, **hyper)
    opt2.load_state_dict(saved["opt"])
    for gs in grads[3:]:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g, dtype=dtype)
        opt2.step()
    for x, y in zip(full.ps, ps):
        assert torch.equal(x, y)


@pytest.mark.parametrize("foreach", [False, True])
def test_grads_are_not_mutated(foreach: bool) -> None:
    params, grads = make_data(10, steps=1)
    ps = [torch.nn.Parameter(torch.tensor(x)) for x in params]
    gs = [torch.tensor(g) for g in grads[0]]
    for p, g in zip(ps, gs):
        p.grad = g
    before = [g.clone() for g in gs]
    for kw in ({"maximize": True, "weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}):  # fmt: skip
        SETAdam(ps, foreach=foreach, **kw).step()
    for g, b in zip(gs, before):
        assert torch.equal(g, b)


# ---------------------------------------------------------------------------------------------
# validation and errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"betas": (1.0, 0.999)}, "betas[0]"),
        ({"betas": (0.9, -0.1)}, "betas[1]"),
        ({"betas": (0.9,)}, "betas"),
        ({"eps": 0.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"tau": 1.0}, "tau"),
        ({"tau": -0.1}, "tau"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"foreach": True, "fused": True}, "fused"),
    ],
)
def test_constructor_validation(kw: dict[str, Any], name: str) -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        SETAdam([p], **kw)


def test_group_validation_and_layer_mode() -> None:
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="tau"):
        SETAdam([{"params": [p], "tau": 1.5}])
    with pytest.raises(ValueError, match="layer"):
        SETAdam([{"params": [p], "layer": "row"}])
    with pytest.raises(ValueError, match="mutually exclusive"):
        SETAdam([{"params": [p], "foreach": True, "fused": True}])
    opt = SETAdam([p])
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [q], "lr": -1.0})
    with pytest.raises(ValueError, match="real floating"):
        SETAdam([torch.nn.Parameter(torch.zeros(2, dtype=torch.complex64))])


def test_sparse_grad_and_fused_on_cpu_are_clear_errors() -> None:
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.zeros(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        SETAdam([p]).step()
    q = torch.nn.Parameter(torch.zeros(4))
    q.grad = torch.ones(4)
    with pytest.raises(RuntimeError, match="CUDA"):
        SETAdam([q], fused=True).step()


# ---------------------------------------------------------------------------------------------
# numerics: overflow, stages
# ---------------------------------------------------------------------------------------------


def _cos2(v: np.ndarray) -> float:
    """c of float64 v, from v / max v (the division rounds: 1 u per entry)."""
    v = v.astype(np.float64).ravel()
    s = v / v.max()
    return float(s.sum() ** 2 / (v.size * np.sum(s * s)))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [
        (torch.float32, 1e38),
        (torch.float32, 1e-38),
        (torch.float32, 1e-30),
        (torch.float64, 1e300),
        (torch.float64, 1e-300),
        (torch.float64, 1e-310),
        (torch.bfloat16, 1e38),
    ],
)
def test_layer_statistics_do_not_overflow(
    foreach: bool, dtype: torch.dtype, magnitude: float
) -> None:
    """c of v near the ends of each dtype's range (float64 down to subnormal) is finite and as
    accurate as float64 sums make it. Both c's (port, ``_cos2``) are float64 computations on
    exactly scaled entries: sums of d = 20 terms (d - 1 and d u), the squares, three more
    roundings (and 2 u for the scaling division of ``_cos2``), so each is within
    2 (d + 1) + (d + 2) + 3 + 2 = 3d + 9 u of c and they differ by at most twice that."""
    rng = np.random.default_rng(12)
    v0 = magnitude * rng.uniform(0.05, 3.0, size=(4, 5))
    v0[0, 0] = 0.0
    p = torch.nn.Parameter(torch.zeros(4, 5, dtype=dtype))
    opt = SETAdam([p], foreach=foreach, lr=1e-3)
    opt.record_stages = True
    p.grad = torch.zeros_like(p)
    opt.step()
    opt.state[p]["exp_avg_sq"].copy_(torch.tensor(v0))
    # late in training (1 - beta2^t ~ 1): c v / (1 - beta2^t) <= max v stays representable
    opt.state[p]["step"].fill_(100_000.0)
    opt.state[p]["exp_avg"].fill_(1.0)
    opt.step()
    assert opt.last_stages is not None
    v1 = opt.state[p]["exp_avg_sq"].double().numpy()
    c = float(opt.last_stages[N.COS2][0])
    assert math.isfinite(c)
    assert abs(c - _cos2(v1)) <= 2 * (3 * v1.size + 9) * U64 * c
    assert torch.isfinite(p).all()
    assert torch.isfinite(opt.last_stages[N.EPSILON_EMBEDDING][0]).all()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_stages_relations(foreach: bool, dtype: torch.dtype) -> None:
    """The recorded stages satisfy their defining relations with the port's own v and c: each is
    one element-wise op away, so the product c v is exact to one rounding and w to three (mul,
    add, sqrt); the translation uses min w from min v, which may differ from the minimum of the
    w tensor by the ulp of torch's vectorised sqrt (module docstring)."""
    params, grads = make_data(13)
    tau = 0.4
    r = run_torch(params, grads, dtype=dtype, foreach=foreach, record=True, tau=tau,
                  groups=[{"params": [0, 1], "layer": "group"}, {"params": [2]}])  # fmt: skip
    st = r.opt.last_stages
    assert st is not None and set(st) == set(STAGE_KEYS)
    cd = torch.float64 if dtype == torch.float64 else torch.float32
    ulp = 2.0**-52 if cd == torch.float64 else 2.0**-23
    bc2 = 1 - 0.999**3
    for i in range(3):
        v = r.opt.state[r.ps[i]]["exp_avg_sq"].to(torch.float64)
        c = float(st[N.COS2][i])
        vs, w, wt = st[N.DOWN_SCALING][i], st[N.EPSILON_EMBEDDING][i], st[N.DOWN_TRANSLATING][i]
        assert vs.dtype == w.dtype == wt.dtype == cd
        assert st[N.UPDATE][i].dtype == torch.float64 and st[N.COS2][i].dtype == torch.float64
        # c rounded to the compute dtype (1/2 ulp) times v (1/2 ulp)
        assert torch.all((vs.double() - v * c).abs() <= ulp * (v * c))
        w_exact = torch.sqrt(v * c / bc2 + 1e-8)
        assert torch.all((w.double() - w_exact).abs() <= 2 * ulp * w_exact)
    wmin01 = min(float(st[N.EPSILON_EMBEDDING][i].min()) for i in (0, 1))
    for i, wmin in ((0, wmin01), (1, wmin01), (2, float(st[N.EPSILON_EMBEDDING][2].min()))):
        w, wt = st[N.EPSILON_EMBEDDING][i], st[N.DOWN_TRANSLATING][i]
        assert torch.all((wt.double() - (w.double() - tau * wmin)).abs() <= 4 * ulp * float(w.max()))
        assert float(wt.min()) > 0
    cs = [float(x) for x in st[N.COS2]]
    assert cs[0] == cs[1] and 1 / 17 <= cs[0] <= 1 and 1 / 6 <= cs[2] <= 1


def test_all_zero_layer_and_constant_layer() -> None:
    p = torch.nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
    q = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = SETAdam([p, q], lr=0.1)
    opt.record_stages = True
    p.grad = torch.zeros_like(p)
    q.grad = torch.full_like(q, 0.3)
    opt.step()
    st = opt.last_stages
    assert st is not None
    assert float(st[N.COS2][0]) == 1.0 and float(st[N.COS2][1]) == 1.0
    assert torch.equal(p, torch.ones_like(p))
    # constant v: w is constant, w - tau*w = (1 - tau) w, step = lr * m_hat / ((1-tau) w)
    w = math.sqrt(0.3**2 + 1e-8)
    torch.testing.assert_close(q, torch.full_like(q, 1 - 0.1 * 0.3 / (0.5 * w)))


def test_closure_and_deepcopy() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = SETAdam([p], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return float(loss.detach())

    assert opt.step(closure) == 5.0
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["param_groups"][0]["tau"] == 0.5


@pytest.mark.parametrize("foreach", [False, True])
def test_trains_a_small_model_with_a_scheduler(foreach: bool) -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    groups = [{"params": list(m.parameters()), "layer": "group"} for m in (model[0], model[2])]
    opt = SETAdam(groups, lr=3e-2, foreach=foreach, weight_decay=1e-4, decoupled_weight_decay=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.5)
    first = last = 0.0
    for it in range(80):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        first = loss.item() if it == 0 else first
        last = loss.item()
    assert last < 0.2 * first
    assert opt.param_groups[0]["lr"] == pytest.approx(3e-2 / 4)
