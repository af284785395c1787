"""Tests of the compiled CPU path of our torch SET-Adam (``SETAdam(compiled=True)``, modules
``compiled``, ``compiled_kernels``, ``compiled_scalars`` of conformance/ports/torch_setadam).

Trajectories are judged by the shared oracle (``oracle.assert_within_budget``). Compilation is the
cost here: every test uses small shapes and chunks of ``CHUNK_IN_TESTS`` tensor slots (smaller
graphs than the production chunk, and more chunk boundaries for the same tensors), and the graphs
are traced once per dtype for the whole module (the compiled path caches them per signature).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conformance.ports.torch_setadam import SETAdam, records_stages  # noqa: E402
from conformance.ports.torch_setadam import compiled as C  # noqa: E402
from conformance.ports.torch_setadam.compiled_scalars import layer_scalars  # noqa: E402
from conformance.tests.test_port_torch_setadam import (  # noqa: E402
    HYPER,
    Run,
    judge,
    make_data,
    np_setadam_skipping,
    run_torch,
    skipping_rel_bound,
)

CHUNK_IN_TESTS = 2
pytestmark = pytest.mark.slow  # the first test of each dtype compiles (seconds)


@pytest.fixture(autouse=True, scope="module")
def _small_chunks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "CHUNK", CHUNK_IN_TESTS)
        yield


def graphs() -> int:
    """Graphs dynamo has compiled so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# ---------------------------------------------------------------------------------------------
# against the reference, through the oracle
# ---------------------------------------------------------------------------------------------


# L2 weight decay (HYPER[2]) is a graph of its own per dtype (seconds of compilation each): float64
# only here; the harness's weight_decay scenario checks it in float32 (--port '*compiled*')
CASES = [("float64", h) for h in HYPER] + [("float32", h) for h in HYPER if "weight_decay" not in h or h.get("decoupled_weight_decay")]  # fmt: skip


@pytest.mark.parametrize(("dtype", "hyper"), CASES, ids=[f"{d}-{HYPER.index(h)}" for d, h in CASES])
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_within_budget(dtype: str, hyper: dict[str, Any], layer: str) -> None:
    # five tensors: three chunks of two slots, and with layer="group" a layer across them
    shapes = [(3, 4), (5,), (2, 1, 3), (7,), (2, 2)]
    params, grads = make_data(1, shapes=shapes)
    groups = [{"params": list(range(len(shapes))), "layer": layer}]
    r = run_torch(params, grads, dtype=getattr(torch, dtype), groups=groups, compiled=True, **hyper)  # fmt: skip
    judge(r, params, grads, hyper, dtype, None if layer == "tensor" else [list(range(len(shapes)))])


def test_bfloat16_within_budget_with_bfloat16_state() -> None:
    params, grads = make_data(3)
    # gradients of order 1 (bfloat16 v of tiny gradients underflows, as in torch.optim.Adam)
    grads = [
        [np.sign(g) * np.linspace(0.5, 2.0, g.size).reshape(g.shape) for g in gs] for gs in grads
    ]
    r = run_torch(params, grads, dtype=torch.bfloat16, compiled=True, lr=1e-2)
    for p in r.ps:
        assert r.opt.state[p]["exp_avg"].dtype == torch.bfloat16
        assert r.opt.state[p]["exp_avg_sq"].dtype == torch.bfloat16
    judge(r, params, grads, {"lr": 1e-2}, "bfloat16", state_dtype="bfloat16")


def test_param_groups_each_within_budget() -> None:
    params, grads = make_data(7)
    g1 = {"lr": 3e-2, "tau": 0.2, "betas": (0.8, 0.99)}
    g2 = {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}
    groups = [dict(g1, params=[0, 1], layer="group"), dict(g2, params=[2])]
    r = run_torch(params, grads, groups=groups, lr=5.0, compiled=True)
    for h, idx, layers in ((g1, [0, 1], [[0, 1]]), (g2, [2], None)):
        sub = Run(r.ps, r.opt, [[s[i] for i in idx] for s in r.params],
                  [[s[i] for i in idx] for s in r.m], [[s[i] for i in idx] for s in r.v])  # fmt: skip
        judge(sub, [params[i] for i in idx], [[gs[i] for i in idx] for gs in grads], h, "float64", layers)  # fmt: skip


@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_zero_size_single_element_and_zero_layers(layer: str) -> None:
    shapes = [(0,), (1,), (), (1, 1), (4,), (2, 0), (3,)]
    params, grads = make_data(9, shapes=shapes)
    for gs in grads:
        gs[4][:] = 0.0  # an all-zero layer (with layer="tensor")
    groups = [{"params": list(range(len(shapes))), "layer": layer}]
    r = run_torch(params, grads, groups=groups, compiled=True, lr=1e-2)
    assert [tuple(p.shape) for p in r.ps] == shapes
    judge(r, params, grads, {"lr": 1e-2}, "float64", None if layer == "tensor" else [list(range(len(shapes)))])  # fmt: skip
    if layer == "tensor":  # c = 1 and m = 0 there: the parameter does not move
        assert np.array_equal(r.params[-1][4], params[4])
    z = torch.nn.Parameter(torch.zeros(0))
    z.grad = torch.zeros(0)
    SETAdam([z], compiled=True).step()


def test_all_zero_and_constant_layers_exactly() -> None:
    """Zero gradients leave the parameter where it is (c = 1, m = 0); a constant v gives c = 1 and
    w - tau w = (1 - tau) w, a closed form."""
    p = torch.nn.Parameter(torch.ones(3, 3, dtype=torch.float64))
    q = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = SETAdam([p, q], lr=0.1, compiled=True)
    p.grad = torch.zeros_like(p)
    q.grad = torch.full_like(q, 0.3)
    opt.step()
    assert torch.equal(p, torch.ones_like(p))
    w = math.sqrt(0.3**2 + 1e-8)
    torch.testing.assert_close(q, torch.full_like(q, 1 - 0.1 * 0.3 / (0.5 * w)), rtol=4e-16, atol=0)


def test_nan_poisons_its_layer_only() -> None:
    params, grads = make_data(11, steps=2)
    grads[0][0][1, 2] = np.nan
    r = run_torch(params, grads, compiled=True)
    assert torch.isnan(r.ps[0]).all()
    assert torch.isnan(r.opt.state[r.ps[0]]["exp_avg_sq"]).any()
    sub = Run(r.ps, r.opt, [s[1:] for s in r.params], [s[1:] for s in r.m], [s[1:] for s in r.v])
    judge(sub, params[1:], [gs[1:] for gs in grads], {}, "float64")


def test_grad_none_is_skipped_and_not_counted() -> None:
    """Per-tensor step counts within a layer: the independent NumPy re-implementation and bound
    of test_port_torch_setadam (the oracle has one step counter)."""
    params, grads = make_data(8)
    steps: list[list[np.ndarray | None]] = [[np.abs(g) + 1e-4 for g in gs] for gs in grads]
    steps[0][1] = None
    steps[2][1] = None
    r = run_torch(params, steps, groups=[{"params": [0, 1, 2], "layer": "group"}],
                  compiled=True, lr=1e-2)  # fmt: skip
    exp = np_setadam_skipping(params, steps, lr=1e-2)
    rel = skipping_rel_bound(sum(x.size for x in params), len(steps), 0.9, 0.999, 0.5)
    for got, e, p0 in zip(r.params[-1], exp, params):
        tol = rel * np.abs(e - p0) + 2 * len(steps) * 2.0**-53 * np.maximum(np.abs(p0), np.abs(e))
        assert np.all(np.abs(got - e) <= tol), np.max(np.abs(got - e) / tol)
    assert float(r.opt.state[r.ps[1]]["step"]) == 1.0
    assert float(r.opt.state[r.ps[0]]["step"]) == 3.0


# ---------------------------------------------------------------------------------------------
# layouts and state
# ---------------------------------------------------------------------------------------------


def test_non_contiguous_parameters_in_place_and_within_budget() -> None:
    """A transposed leaf and a channels_last weight (gradients contiguous) are stepped in place,
    keep their layout and are within budget."""
    params, grads = make_data(4, shapes=[(5, 3), (2, 3, 4, 4)])
    ps = [torch.nn.Parameter(torch.tensor(params[0]).t().contiguous().t()),
          torch.nn.Parameter(torch.tensor(params[1]).contiguous(memory_format=torch.channels_last))]  # fmt: skip
    assert not ps[0].is_contiguous() and not ps[1].is_contiguous()
    layout = [(p.data_ptr(), p.stride()) for p in ps]
    opt = SETAdam(ps, lr=1e-2, compiled=True)
    r = Run(ps, opt)
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = torch.tensor(g)
        opt.step()
        r.params.append([p.detach().numpy().copy() for p in ps])
        r.m.append([opt.state[p]["exp_avg"].numpy().copy() for p in ps])
        r.v.append([opt.state[p]["exp_avg_sq"].numpy().copy() for p in ps])
    assert [(p.data_ptr(), p.stride()) for p in ps] == layout
    judge(r, params, grads, {"lr": 1e-2}, "float64")


def test_state_layout_matches_the_for_loop_path_and_moves_between_paths() -> None:
    params, grads = make_data(6, steps=5)
    h: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05, "tau": 0.3}
    ours = run_torch(params, grads[:3], compiled=True, **h)
    loop = run_torch(params, grads[:3], foreach=False, **h)
    sa, sb = ours.opt.state_dict(), loop.opt.state_dict()
    assert sa["param_groups"][0].keys() == sb["param_groups"][0].keys()
    for pid in sb["state"]:
        a, b = sa["state"][pid], sb["state"][pid]
        assert a.keys() == b.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in a:
            assert (a[key].dtype, a[key].shape, a[key].device, a[key].stride()) == (
                b[key].dtype, b[key].shape, b[key].device, b[key].stride())  # fmt: skip
    # compiled -> for-loop and for-loop -> compiled, then judged as one trajectory
    for first, then in ((ours, {"foreach": False}), (loop, {"compiled": True})):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in first.ps]
        opt = SETAdam(ps, **h, **then)
        opt.load_state_dict(first.opt.state_dict())
        rest = Run(ps, opt)
        for gs in grads[3:]:
            for p, g in zip(ps, gs):
                p.grad = torch.tensor(g)
            opt.step()
            rest.params.append([p.detach().numpy().copy() for p in ps])
            rest.m.append([opt.state[p]["exp_avg"].numpy().copy() for p in ps])
            rest.v.append([opt.state[p]["exp_avg_sq"].numpy().copy() for p in ps])
        whole = Run(ps, opt, first.params + rest.params, first.m + rest.m, first.v + rest.v)
        judge(whole, params, grads, h, "float64")


# ---------------------------------------------------------------------------------------------
# numerics: extreme magnitudes, the scalars
# ---------------------------------------------------------------------------------------------


def _exact_cos2(v: np.ndarray) -> Fraction:
    xs = [Fraction(float(x)) for x in v.ravel()]
    return sum(xs, Fraction(0)) ** 2 / (len(xs) * sum((x * x for x in xs), Fraction(0)))


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(torch.float32, 1e38), (torch.float32, 1e-38), (torch.float32, 1e-44),
     (torch.float64, 1e300), (torch.float64, 1e-300), (torch.float64, 1e-310),
     (torch.float64, 1.0), (torch.bfloat16, 1e38)],
)  # fmt: skip
def test_layer_statistics_at_the_ends_of_the_range(dtype: torch.dtype, magnitude: float) -> None:
    """c of v up to 3e38 in float32 (and float32 subnormals), float64 from subnormal to 3e300,
    through the kernel's partials and the host combination, against exact rationals: two float64
    sums of d = 20 terms, a square, a product, a division (each within (d - 1) u, d u, u, u, u),
    so within (3d + 3) u of c."""
    rng = np.random.default_rng(12)
    v0 = magnitude * rng.uniform(0.05, 3.0, size=20)
    v0[0] = 0.0
    v = torch.tensor(v0, dtype=torch.float64).to(dtype)
    z = torch.zeros_like(v)
    key = (dtype, dtype)
    cols = [[z.clone(), z.clone(), z.clone(), v.clone()]] + list(map(list, C._dummies(key, CHUNK_IN_TESTS - 1)))  # fmt: skip
    ps, gs, ms, vs = (list(x) for x in zip(*cols))
    gsc = torch.tensor([0.1, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # beta2 = 1: v kept
    with torch.no_grad():
        out = C.moments_partials(key, False, [ps, gs, ms, vs], gsc)
    parts = np.zeros((1, 8))
    parts[0, : out.shape[1]] = out[0]
    kept = vs[0].double().numpy()
    c, a, shift = layer_scalars(
        parts, np.array([dtype == torch.float64]), np.array([dtype != torch.float64]),
        np.array([0]), np.array([20.0]), np.array([1.0]), eps=1e-8, tau=0.5,
    )  # fmt: skip
    exact = _exact_cos2(kept)
    assert math.isfinite(c[0]) and 1 / 20 <= c[0] <= 1
    assert abs(Fraction(float(c[0])) - exact) <= (3 * 20 + 3) * Fraction(2) ** -53 * exact
    assert math.isfinite(a[0]) and math.isfinite(shift[0]) and shift[0] > 0
    # and the optimizer there: finite parameters late in training (1 - beta2^t ~ 1)
    p = torch.nn.Parameter(torch.zeros(20, dtype=dtype))
    opt = SETAdam([p], lr=1e-3, compiled=True)
    p.grad = torch.zeros_like(p)
    opt.step()
    opt.state[p]["exp_avg_sq"].copy_(v)
    opt.state[p]["step"].fill_(100_000.0)
    opt.state[p]["exp_avg"].fill_(1.0)
    opt.step()
    assert torch.isfinite(p).all()


def test_regime_of_a_layer_mixing_float64_and_float32_tensors() -> None:
    """One layer of a float64 tensor with v near 1e300 and a float32 one: the host scales the
    float32 sums into the float64 tensor's regime (exactly), so c is that of the union."""
    v64 = np.array([1e300, 3e299, 0.0, 2e300])
    v32 = np.array([1.0, 2.0, 3e38])
    parts = np.zeros((2, 8))
    x = v64 / 2.0**600
    parts[0] = [0.0, v64.sum(), np.inf, v64.max(), x.sum(), (x * x).sum(), np.inf, np.inf]
    parts[1, :3] = [1.0, v32.sum(), (v32 * v32).sum()]
    c, _, _ = layer_scalars(
        parts, np.array([True, False]), np.array([False, True]), np.array([0, 0]),
        np.array([7.0]), np.array([1.0, 1.0]), eps=1e-8, tau=0.5,
    )  # fmt: skip
    exact = _exact_cos2(np.concatenate([v64, v32]))
    d = 7  # the bound of the test above, for the union
    assert abs(Fraction(float(c[0])) - exact) <= (3 * d + 3) * Fraction(2) ** -53 * exact
    assert c[0] == c[1]


# ---------------------------------------------------------------------------------------------
# recompilation, selection, errors
# ---------------------------------------------------------------------------------------------


def test_changing_hyperparameters_and_sizes_do_not_recompile() -> None:
    """After the first step, an LR scheduler, a tensor lr, new betas, eps, tau, maximize, decoupled
    weight decay, another model of the same dtype (other sizes, sizes 1, equal sizes) and another
    optimizer compile nothing."""
    ps = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in [(6, 5), (5,)]]
    opt = SETAdam(ps, lr=1e-2, compiled=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1 + k))

    def step(o: SETAdam, params: list[Any]) -> None:
        for p in params:
            p.grad = torch.randn_like(p)
        o.step()

    step(opt, ps)
    sched.step()
    before = graphs()
    for k in range(6):
        step(opt, ps)
        sched.step()
        if k == 2:
            opt.param_groups[0].update(betas=(0.8, 0.99), eps=1e-6, tau=0.3, maximize=True)
            opt.param_groups[0].update(weight_decay=0.1, decoupled_weight_decay=True)
    opt.param_groups[0]["lr"] = torch.tensor(3e-3)
    step(opt, ps)
    for shapes in ([(1,), (1, 1), (7,)], [(4,), (4,), (4,), (9, 2), (3,)]):
        qs = [torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in shapes]
        step(SETAdam(qs, lr=1e-3, compiled=True), qs)
    assert graphs() == before


def test_selection_stages_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert records_stages("compiled") is False
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    p.grad = torch.ones(4, dtype=torch.float64)
    opt = SETAdam([p], compiled=True)
    opt.record_stages = True
    opt.step()
    assert opt.last_stages is None  # the path records no stages; nothing is shadowed
    for kw in ({"foreach": True}, {"fused": True}):
        with pytest.raises(ValueError, match="mutually exclusive"):
            SETAdam([p], compiled=True, **kw)
    with pytest.raises(ValueError, match="mutually exclusive"):
        SETAdam([{"params": [p], "compiled": True, "foreach": True}])
    q = torch.nn.Parameter(torch.zeros(4))
    q.grad = torch.zeros(4).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        SETAdam([q], compiled=True).step()
    m = torch.nn.Parameter(torch.zeros(4, device="meta"))
    m.grad = torch.zeros(4, device="meta")
    with pytest.raises(RuntimeError, match="CPU path"):
        SETAdam([m], compiled=True).step()

    def broken(name: str) -> Any:
        def fail(*args: Any) -> None:
            raise OSError("no C++ compiler")

        return fail

    monkeypatch.setattr(C, "compiled", broken)
    monkeypatch.setattr(C, "_TRACED", set())
    r = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    r.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"torch.compile of moments failed \(OSError"):
        SETAdam([r], compiled=True).step()


def test_registry_leaves_the_compiled_port_out_of_the_default_run_only() -> None:
    """Its compilation would take the default run past 3 minutes: out of ``run`` with a note, in
    with ``--port``, and resolvable by name in a worker."""
    from conformance.adapters.registry import COMPILED_NOTE, available_ports, find_spec

    name = "ours.torch.SETAdam[compiled]"
    specs, notes = available_ports("cpu")
    assert name not in {s.name for s in specs} and COMPILED_NOTE in notes
    specs, _ = available_ports("cpu", None, ["ours.torch.SETAdam[[]compiled[]]*"])
    assert sorted(s.dtype for s in specs) == ["float32", "float64"]
    assert find_spec(name, "float64", "cpu").name == name
