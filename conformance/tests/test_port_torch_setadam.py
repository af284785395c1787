"""Tests of our torch SET-Adam port (conformance/ports/torch_setadam.py), real torch on CPU.

The expected values come from a tiny NumPy float64 implementation written here from the
mathematics (not from setadam_ref: comparing against the reference is the harness's job).
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.ports.torch_setadam import STAGE_KEYS, SETAdam  # noqa: E402

SHAPES = [(3, 4), (5,), (2, 1, 3)]


# ---------------------------------------------------------------------------------------------
# independent NumPy float64 SET-Adam
# ---------------------------------------------------------------------------------------------


def np_setadam(
    params: Sequence[np.ndarray],
    grad_steps: Sequence[Sequence[np.ndarray | None]],
    layers: Sequence[Sequence[int]],
    *,
    lr: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    tau: float = 0.5,
    wd: float = 0.0,
    decoupled: bool = False,
    maximize: bool = False,
) -> list[np.ndarray]:
    p = [np.array(x, dtype=np.float64) for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    t = [0] * len(p)
    for grads in grad_steps:
        live = [i for i, g in enumerate(grads) if g is not None]
        g: dict[int, np.ndarray] = {}
        for i in live:
            gi = np.array(grads[i], dtype=np.float64)
            gi = -gi if maximize else gi
            if wd and not decoupled:
                gi = gi + wd * p[i]
            if wd and decoupled:
                p[i] = p[i] * (1.0 - lr * wd)
            g[i] = gi
            t[i] += 1
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
        for layer in layers:
            idx = [i for i in layer if i in g and p[i].size > 0]
            if not idx:
                continue
            vl = np.concatenate([v[i].ravel() for i in idx])
            c = 1.0 if not vl.any() else vl.sum() ** 2 / (vl.size * np.sum(vl * vl))
            w = {i: np.sqrt(c * v[i] / (1 - b2 ** t[i]) + eps) for i in idx}
            wmin = min(w[i].min() for i in idx)
            for i in idx:
                p[i] = p[i] - lr / (1 - b1 ** t[i]) * m[i] / (w[i] - tau * wmin)
    return p


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


def run_torch(
    params: Sequence[np.ndarray],
    grad_steps: Sequence[Sequence[np.ndarray | None]],
    *,
    dtype: torch.dtype = torch.float64,
    groups: Sequence[dict[str, object]] | None = None,
    record: bool = False,
    **kw: object,
) -> tuple[list[torch.Tensor], SETAdam]:
    ps = [torch.nn.Parameter(torch.tensor(x, dtype=dtype)) for x in params]
    if groups is None:
        opt = SETAdam(ps, **kw)  # type: ignore[arg-type]
    else:
        spec = [dict(g, params=[ps[i] for i in g["params"]]) for g in groups]  # type: ignore[attr-defined]
        opt = SETAdam(spec, **kw)  # type: ignore[arg-type]
    opt.record_stages = record
    for grads in grad_steps:
        for p, g in zip(ps, grads):
            p.grad = None if g is None else torch.tensor(g, dtype=dtype)
        opt.step()
    return ps, opt


def as_np(ps: Sequence[torch.Tensor]) -> list[np.ndarray]:
    return [p.detach().to(torch.float64).numpy() for p in ps]


HYPER = [
    {"lr": 1e-2},
    {"lr": 1e-2, "tau": 0.0, "betas": (0.5, 0.9)},
    {"lr": 3e-2, "tau": 0.9, "eps": 1e-6, "weight_decay": 0.1},
    {"lr": 1e-2, "weight_decay": 0.2, "decoupled_weight_decay": True, "maximize": True},
]


def _np_kw(h: dict[str, object]) -> dict[str, object]:
    betas = h.get("betas", (0.9, 0.999))
    assert isinstance(betas, tuple)
    return {
        "lr": h["lr"],
        "b1": betas[0],
        "b2": betas[1],
        "eps": h.get("eps", 1e-8),
        "tau": h.get("tau", 0.5),
        "wd": h.get("weight_decay", 0.0),
        "decoupled": h.get("decoupled_weight_decay", False),
        "maximize": h.get("maximize", False),
    }


# ---------------------------------------------------------------------------------------------
# against NumPy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_float64_matches_numpy(foreach: bool, hyper: dict[str, object], layer: str) -> None:
    params, grads = make_data(1)
    ps, _ = run_torch(
        params, grads, groups=[{"params": [0, 1, 2], "layer": layer}], foreach=foreach, **hyper
    )
    layers = [[0], [1], [2]] if layer == "tensor" else [[0, 1, 2]]
    expect = np_setadam(params, grads, layers, **_np_kw(hyper))  # type: ignore[arg-type]
    for got, exp in zip(as_np(ps), expect):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("foreach", [False, True])
def test_float32_close_to_numpy(foreach: bool) -> None:
    params, grads = make_data(2)
    params = [x.astype(np.float32).astype(np.float64) for x in params]
    grads = [[g.astype(np.float32).astype(np.float64) for g in gs] for gs in grads]
    ps, _ = run_torch(params, grads, dtype=torch.float32, foreach=foreach, lr=1e-2)
    expect = np_setadam(params, grads, [[0], [1], [2]], lr=1e-2)
    for got, exp, p0 in zip(as_np(ps), expect, params):
        # compare the displacement: float32 rounding of a few ops on the step, plus the final
        # rounding of theta (half an ulp of |theta|)
        np.testing.assert_allclose(got - p0, exp - p0, rtol=1e-4, atol=4e-7 * np.abs(p0).max())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("foreach", [False, True])
def test_low_precision_state_dtype_and_eps(dtype: torch.dtype, foreach: bool) -> None:
    params, grads = make_data(3)
    # gradients of order 1 (a float16 v = 1e-3 g^2 of a 1e-3 gradient would underflow, as in
    # torch.optim.Adam with float16 state), and a zero layer: v = 0 there, and eps = 1e-8
    # computed in float16 would be 0 (0/0); we compute w in float32
    grads[0] = [np.sign(g) * np.linspace(0.5, 2.0, g.size).reshape(g.shape) for g in grads[0]]
    grads[0][1][:] = 0.0
    ps, opt = run_torch(params, grads[:1], dtype=dtype, foreach=foreach, lr=1e-2)
    for p in ps:
        st = opt.state[p]
        assert st["exp_avg"].dtype == dtype and st["exp_avg_sq"].dtype == dtype
        assert st["step"].dtype == torch.float32 and float(st["step"]) == 1.0
        assert torch.isfinite(p).all()
    exp = np_setadam([np.asarray(torch.tensor(x, dtype=dtype).double()) for x in params], grads[:1], [[0], [1], [2]], lr=1e-2)  # fmt: skip
    for got, e in zip(as_np(ps), exp):
        np.testing.assert_allclose(got, e, rtol=1e-2, atol=1e-2)


# ---------------------------------------------------------------------------------------------
# for-loop vs foreach
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hyper", HYPER)
def test_foreach_matches_forloop_bitwise_on_cpu(
    dtype: torch.dtype, hyper: dict[str, object]
) -> None:
    """On CPU torch's foreach ops fall back to a loop over the very per-tensor kernels the
    for-loop path calls (same ops, same order, same scalars), so the two paths agree bit for bit.
    On CUDA the foreach kernels are different code (multi-tensor apply, other reduction trees):
    expect agreement within a few ulps there, not bitwise."""
    params, grads = make_data(4)
    groups = [{"params": [0, 1], "layer": "group"}, {"params": [2], "tau": 0.25}]
    a, oa = run_torch(
        params, grads, dtype=dtype, groups=groups, foreach=False, record=True, **hyper
    )
    b, ob = run_torch(params, grads, dtype=dtype, groups=groups, foreach=True, record=True, **hyper)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for p, q in zip(a, b):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(oa.state[p][key], ob.state[q][key])
    assert oa.last_stages is not None and ob.last_stages is not None
    for key in STAGE_KEYS:
        for x, y in zip(oa.last_stages[key], ob.last_stages[key]):
            assert torch.equal(x, y), key


def test_foreach_default_rule_is_forloop_on_cpu() -> None:
    params, grads = make_data(5)
    a, _ = run_torch(params, grads, foreach=None, lr=1e-2)
    b, _ = run_torch(params, grads, foreach=False, lr=1e-2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------
# state_dict, groups, layers, skipping
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_state_dict_round_trip_bit_identical(foreach: bool, dtype: torch.dtype) -> None:
    params, grads = make_data(6, steps=5)
    hyper = {"lr": 1e-2, "weight_decay": 0.05, "tau": 0.3}
    full, _ = run_torch(params, grads, dtype=dtype, foreach=foreach, **hyper)  # type: ignore[arg-type]
    half, opt = run_torch(params, grads[:3], dtype=dtype, foreach=foreach, **hyper)  # type: ignore[arg-type]
    buf = io.BytesIO()
    torch.save({"model": [p.detach() for p in half], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    ps = [torch.nn.Parameter(x.clone()) for x in saved["model"]]
    opt2 = SETAdam(ps, foreach=foreach, **hyper)  # type: ignore[arg-type]
    opt2.load_state_dict(saved["opt"])
    for gs in grads[3:]:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g, dtype=dtype)
        opt2.step()
    for x, y in zip(full, ps):
        assert torch.equal(x, y)


def test_param_groups_own_hyperparameters_and_group_layer() -> None:
    params, grads = make_data(7)
    g1 = {"lr": 3e-2, "tau": 0.2, "betas": (0.8, 0.99)}
    g2 = {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True}
    groups = [dict(g1, params=[0, 1], layer="group"), dict(g2, params=[2])]
    ps, _ = run_torch(params, grads, groups=groups, lr=5.0)
    exp01 = np_setadam(params[:2], [gs[:2] for gs in grads], [[0, 1]], **_np_kw(g1))  # type: ignore[arg-type]
    exp2 = np_setadam(params[2:], [gs[2:] for gs in grads], [[0]], **_np_kw(g2))  # type: ignore[arg-type]
    for got, exp in zip(as_np(ps), exp01 + exp2):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("foreach", [False, True])
def test_grad_none_is_skipped_and_not_counted(foreach: bool) -> None:
    params, grads = make_data(8)
    steps: list[list[np.ndarray | None]] = [list(gs) for gs in grads]
    steps[0][1] = None
    steps[2][1] = None
    ps, opt = run_torch(
        params, steps, groups=[{"params": [0, 1, 2], "layer": "group"}], foreach=foreach, lr=1e-2, record=True
    )  # fmt: skip
    exp = np_setadam(params, steps, [[0, 1, 2]], lr=1e-2)
    for got, e in zip(as_np(ps), exp):
        np.testing.assert_allclose(got, e, rtol=1e-12, atol=1e-15)
    assert float(opt.state[ps[1]]["step"]) == 1.0 and float(opt.state[ps[0]]["step"]) == 3.0
    st = opt.last_stages
    assert st is not None
    assert torch.equal(st["update"][1], torch.zeros(SHAPES[1], dtype=torch.float64))
    assert math.isnan(float(st["cos2"][1])) and not math.isnan(float(st["cos2"][0]))
    # a parameter that never had a gradient has no state and does not move
    q = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    r = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt2 = SETAdam([q, r], foreach=foreach)
    r.grad = torch.ones(2, dtype=torch.float64)
    opt2.step()
    assert len(opt2.state[q]) == 0 and torch.equal(q, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_zero_size_params(foreach: bool, layer: str) -> None:
    params, grads = make_data(9, shapes=[(0,), (4,), (2, 0)])
    ps, opt = run_torch(params, grads, groups=[{"params": [0, 1, 2], "layer": layer}], foreach=foreach, record=True)  # fmt: skip
    exp = np_setadam(params, grads, [[0], [1], [2]] if layer == "tensor" else [[0, 1, 2]])
    for got, e in zip(as_np(ps), exp):
        assert got.shape == e.shape
        np.testing.assert_allclose(got, e, rtol=1e-12, atol=1e-15)
    assert opt.last_stages is not None and opt.last_stages["update"][0].shape == (0,)
    # only zero-size tensors: nothing happens, nothing fails
    z = torch.nn.Parameter(torch.zeros(0))
    z.grad = torch.zeros(0)
    SETAdam([z], foreach=foreach).step()


@pytest.mark.parametrize("foreach", [False, True])
def test_grads_are_not_mutated(foreach: bool) -> None:
    params, grads = make_data(10, steps=1)
    ps = [torch.nn.Parameter(torch.tensor(x)) for x in params]
    gs = [torch.tensor(g) for g in grads[0]]
    for p, g in zip(ps, gs):
        p.grad = g
    before = [g.clone() for g in gs]
    for kw in ({"maximize": True, "weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True}):  # fmt: skip
        SETAdam(ps, foreach=foreach, **kw).step()  # type: ignore[arg-type]
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
def test_constructor_validation(kw: dict[str, object], name: str) -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        SETAdam([p], **kw)  # type: ignore[arg-type]


def test_group_validation_and_layer_mode() -> None:
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="tau"):
        SETAdam([{"params": [p], "tau": 1.5}])
    with pytest.raises(ValueError, match="layer"):
        SETAdam([{"params": [p], "layer": "row"}])
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
# numerics: NaN, overflow, stages
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("foreach", [False, True])
def test_nan_poisons_its_layer_only(foreach: bool) -> None:
    """Documented behaviour: a NaN (or inf) gradient entry makes c and min w of its layer NaN, so
    the whole layer's parameters (and state) become NaN; other layers are untouched by it."""
    params, grads = make_data(11, steps=2)
    grads[0][0][1, 2] = np.nan
    grads[0][1][3] = np.inf
    ps, opt = run_torch(params, grads, foreach=foreach, record=True)
    assert torch.isnan(ps[0]).all() and torch.isnan(ps[1]).all()
    assert torch.isfinite(ps[2]).all()
    exp = np_setadam(params[2:], [gs[2:] for gs in grads], [[0]])
    np.testing.assert_allclose(as_np(ps[2:])[0], exp[0], rtol=1e-12)
    assert opt.last_stages is not None
    assert math.isnan(float(opt.last_stages["cos2"][0]))
    assert torch.isnan(opt.state[ps[0]]["exp_avg_sq"]).any()


def _cos2(v: np.ndarray) -> float:
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
        (torch.bfloat16, 1e38),
    ],
)
def test_layer_statistics_do_not_overflow(
    foreach: bool, dtype: torch.dtype, magnitude: float
) -> None:
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
    c = float(opt.last_stages["cos2"][0])
    assert math.isfinite(c)
    assert c == pytest.approx(_cos2(v1), rel=1e-6)
    assert torch.isfinite(p).all()
    w = opt.last_stages["epsilon_embedding"][0]
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_stages_relations(foreach: bool, dtype: torch.dtype) -> None:
    params, grads = make_data(13)
    tau = 0.4
    ps, opt = run_torch(
        params, grads, dtype=dtype, foreach=foreach, record=True, tau=tau,
        groups=[{"params": [0, 1], "layer": "group"}, {"params": [2]}],
    )  # fmt: skip
    st = opt.last_stages
    assert st is not None and set(st) == set(STAGE_KEYS)
    bc2 = 1 - 0.999**3
    for i in range(3):
        v = opt.state[ps[i]]["exp_avg_sq"]
        c = float(st["cos2"][i])
        cd = torch.float64 if dtype == torch.float64 else torch.float32
        vs, w, wt = st["down_scaling"][i], st["epsilon_embedding"][i], st["down_translating"][i]
        assert vs.dtype == w.dtype == wt.dtype == cd
        assert st["update"][i].dtype == torch.float64
        torch.testing.assert_close(vs, v.to(cd) * c)
        torch.testing.assert_close(w, torch.sqrt(v.to(cd) * c / bc2 + 1e-8))
    # min w is taken from min v on the host with IEEE rounding; torch's vectorised CPU sqrt is not
    # always correctly rounded, so it may differ from the minimum of the w tensor by an ulp
    # (both tensors of layer 0 share it)
    wmin01 = min(float(st["epsilon_embedding"][i].min()) for i in (0, 1))
    ulp = 2.0**-52 if dtype == torch.float64 else 2.0**-23
    for i, wmin in ((0, wmin01), (1, wmin01), (2, float(st["epsilon_embedding"][2].min()))):
        w, wt = st["epsilon_embedding"][i], st["down_translating"][i]
        torch.testing.assert_close(wt, w - tau * wmin, rtol=0, atol=4 * ulp * float(w.max()))
        assert float(wt.min()) > 0
    cs = [float(x) for x in st["cos2"]]
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
    assert float(st["cos2"][0]) == 1.0 and float(st["cos2"][1]) == 1.0
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


def test_foreach_cpu_units_split_bitwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU foreach path runs its op sequence on cache-sized sub-lists; splitting the list
    changes nothing in the arithmetic."""
    import conformance.ports.torch_setadam as mod

    monkeypatch.setattr(mod, "_CPU_UNIT_BYTES", 100)
    params, grads = make_data(14, shapes=[(3, 4), (5,), (2, 1, 3), (7, 3), (1,)])
    groups = [{"params": [0, 1, 2], "layer": "group"}, {"params": [3, 4]}]
    a, _ = run_torch(params, grads, groups=groups, foreach=False, weight_decay=0.1, lr=1e-2)
    b, _ = run_torch(params, grads, groups=groups, foreach=True, weight_decay=0.1, lr=1e-2)
    assert len(mod._foreach_units(list(b), list(b))) == 4
    assert all(torch.equal(x, y) for x, y in zip(a, b))


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
