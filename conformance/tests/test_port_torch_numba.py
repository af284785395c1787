"""Tests of the numba CPU path of our torch SET-Adam (``SETAdam(compiled="numba")``, modules
``numba_path`` and ``numba_kernels`` of conformance/ports/torch_setadam).

Trajectories are judged by the shared oracle, as the compiled path's are
(test_port_torch_compiled). Shapes cross the kernels' ``TILE`` and, with ``BLOCK`` made small
here, many blocks per tensor, so that the per-block partials and their combination are exercised.
Skipped, with the reason, where numba is not installed (an optional dependency).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba", reason="numba (the optional extra setadam-ref[numba]) not installed")

from conformance.ports.torch_setadam import SETAdam  # noqa: E402
from conformance.ports.torch_setadam import numba_kernels as NK  # noqa: E402
from conformance.tests.test_port_torch_setadam import (  # noqa: E402
    HYPER,
    Run,
    judge,
    judge_subset,
    make_data,
    run_torch,
    step_run,
)

NUMBA = "numba"
SMALL_BLOCK = 1000  # not a multiple of TILE: blocks end inside tiles


@pytest.fixture(autouse=True, scope="module")
def _small_blocks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NK, "BLOCK", SMALL_BLOCK)
        yield


SHAPES = [(3, 4), (2500,), (2, 1, 3), (41, 53), (7,)]  # 2500, 2173: several blocks and tiles


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("h", range(len(HYPER)))
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_within_budget(dtype: str, h: int, layer: str) -> None:
    params, grads = make_data(1, shapes=SHAPES)
    groups = [{"params": list(range(len(SHAPES))), "layer": layer}]
    r = run_torch(params, grads, dtype=getattr(torch, dtype), groups=groups, compiled=NUMBA, **HYPER[h])  # fmt: skip
    judge(r, params, grads, HYPER[h], dtype, None if layer == "tensor" else [list(range(len(SHAPES)))])  # fmt: skip


def test_mixed_dtypes_and_param_groups_each_within_budget() -> None:
    params, grads = make_data(7, shapes=SHAPES)
    g1 = {"lr": 3e-2, "tau": 0.2, "betas": (0.8, 0.99)}
    g2 = {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}
    groups = [dict(g1, params=[0, 1, 2], layer="group"), dict(g2, params=[3, 4])]
    r = run_torch(params, grads, groups=groups, lr=5.0, compiled=NUMBA)
    for h, idx, layers in ((g1, [0, 1, 2], [[0, 1, 2]]), (g2, [3, 4], None)):
        judge_subset(r, idx, params, grads, h, "float64", layers)


@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_zero_size_single_element_and_zero_layers(layer: str) -> None:
    shapes = [(0,), (1,), (), (1, 1), (4,), (2, 0), (3,)]
    params, grads = make_data(9, shapes=shapes)
    for gs in grads:
        gs[4][:] = 0.0
    groups = [{"params": list(range(len(shapes))), "layer": layer}]
    r = run_torch(params, grads, groups=groups, compiled=NUMBA, lr=1e-2)
    assert [tuple(p.shape) for p in r.ps] == shapes
    judge(r, params, grads, {"lr": 1e-2}, "float64", None if layer == "tensor" else [list(range(len(shapes)))])  # fmt: skip
    if layer == "tensor":
        assert np.array_equal(r.params[-1][4], params[4])


def test_constant_layer_exactly() -> None:
    """A constant v gives c = 1 and w - tau w = (1 - tau) w, a closed form."""
    q = torch.nn.Parameter(torch.ones(2049, dtype=torch.float64))
    opt = SETAdam([q], lr=0.1, compiled=NUMBA)
    q.grad = torch.full_like(q, 0.3)
    opt.step()
    w = math.sqrt(0.3**2 + 1e-8)
    torch.testing.assert_close(q, torch.full_like(q, 1 - 0.1 * 0.3 / (0.5 * w)), rtol=4e-16, atol=0)


def test_nan_poisons_its_layer_only() -> None:
    params, grads = make_data(11, shapes=SHAPES, steps=2)
    grads[0][1][1700] = np.nan
    r = run_torch(params, grads, compiled=NUMBA)
    assert torch.isnan(r.ps[1]).all()
    keep = [0, 2, 3, 4]
    judge_subset(r, keep, params, grads, {}, "float64")


def test_non_contiguous_parameters_in_place_and_within_budget() -> None:
    params, grads = make_data(4, shapes=[(50, 30), (2, 3, 4, 4)])
    ps = [torch.nn.Parameter(torch.tensor(params[0]).t().contiguous().t()),
          torch.nn.Parameter(torch.tensor(params[1]).contiguous(memory_format=torch.channels_last))]  # fmt: skip
    layout = [(p.data_ptr(), p.stride()) for p in ps]
    r = step_run(ps, SETAdam(ps, lr=1e-2, compiled=NUMBA), grads)
    assert [(p.data_ptr(), p.stride()) for p in ps] == layout
    judge(r, params, grads, {"lr": 1e-2}, "float64")


def test_state_moves_to_and_from_the_for_loop_path() -> None:
    params, grads = make_data(6, shapes=SHAPES, steps=5)
    h: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05, "tau": 0.3}
    ours = run_torch(params, grads[:3], compiled=NUMBA, **h)
    loop = run_torch(params, grads[:3], foreach=False, **h)
    for first, then in ((ours, False), (loop, NUMBA)):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in first.ps]
        opt = SETAdam(ps, **h, compiled=then)
        opt.load_state_dict(first.opt.state_dict())
        # torch's loader restores the saved group's flags: the path is chosen after loading
        opt.param_groups[0]["compiled"] = then
        rest = step_run(ps, opt, grads[3:])
        whole = Run(ps, opt, first.params + rest.params, first.m + rest.m, first.v + rest.v)
        judge(whole, params, grads, h, "float64")


def test_another_compiled_string_is_refused() -> None:
    with pytest.raises(ValueError, match="numba"):
        SETAdam([torch.nn.Parameter(torch.ones(2))], compiled="inductor")


def _exact_cos2(v: np.ndarray) -> Fraction:
    xs = [Fraction(float(x)) for x in v.ravel()]
    return sum(xs, Fraction(0)) ** 2 / (len(xs) * sum((x * x for x in xs), Fraction(0)))


@pytest.mark.parametrize(
    ("dtype", "magnitude"),
    [(np.float32, 1e38), (np.float32, 1e-38), (np.float32, 1e-44),
     (np.float64, 1e300), (np.float64, 1e-300), (np.float64, 1e-310), (np.float64, 1.0)],
)  # fmt: skip
def test_partials_at_the_ends_of_the_range(dtype: type, magnitude: float) -> None:
    """Min, max and the three pairs of sums of v from the kernel's blocks (the bit-pattern min and
    max, reassociated sums over tiles and blocks) against exact values: min and max exactly, c
    of the chosen pair within (3d + 3) u of the exact rational (two sums of d terms, a square, a
    product, a division), whatever the summation order."""
    from conformance.ports.torch_setadam.compiled_scalars import layer_scalars

    rng = np.random.default_rng(12)
    d = 2600
    v = (magnitude * rng.uniform(0.05, 3.0, size=d)).astype(dtype)
    v[0] = 0.0
    z = [np.zeros(d, dtype) for _ in range(3)]
    addr = np.array([[z[0].ctypes.data, z[1].ctypes.data, z[2].ctypes.data, v.ctypes.data]])
    blocks = NK.make_blocks(np.array([d]))
    assert blocks.shape[0] == 3
    out = np.empty((blocks.shape[0], NK.PARTIALS))
    wide = dtype == np.float64
    info = np.iinfo(np.int64 if wide else np.int32)
    ints = np.array([info.max, info.min], dtype=info.dtype)
    sc = np.array([0.1, 1.0, 0.0, 1.0, 0.0, 0.9], dtype=dtype)  # beta2 = 1, no gradient: v kept
    NK.stats(addr, blocks, sc, ints, False, out)
    parts = NK.combine_blocks(out, blocks, 1)
    if wide:  # the step's second read of a float64 layer whose magnitude needs them
        NK.scaled_sums(addr, blocks, sc, False, out)
        cols = [NK.S1_DOWN, NK.S2_DOWN, NK.S1_UP, NK.S2_UP]
        parts[:, cols] = NK.combine_blocks(out, blocks, 1)[:, cols]
    assert parts[0, NK.VMIN] == 0.0
    if wide:
        assert parts[0, NK.VMAX] == v.max()
    c, _, _ = layer_scalars(
        parts, np.array([wide]), np.array([not wide]), np.array([0]), np.array([float(d)]),
        np.array([1.0]), eps=1e-8, tau=0.5,
    )  # fmt: skip
    exact = _exact_cos2(v.astype(np.float64))
    assert abs(Fraction(float(c[0])) - exact) <= (3 * d + 3) * 2.0**-53 * exact


def test_registry_leaves_the_numba_port_out_of_the_default_run_only() -> None:
    """Out of ``run`` with a note (its first step JIT-compiles), in with ``--port``."""
    from conformance.adapters.registry import NUMBA_NOTE, available_ports

    specs, notes = available_ports("cpu")
    assert "ours.torch.SETAdam[numba]" not in {s.name for s in specs} and NUMBA_NOTE in notes
    specs, _ = available_ports("cpu", None, ["ours.torch.SETAdam[[]numba[]]*"])
    assert sorted(s.dtype for s in specs) == ["float32", "float64"]


def test_without_numba_the_port_is_skipped_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.adapters import ours_torch
    from conformance.ports.torch_setadam import numba_path
    from setadam_ref import SETAdamConfig

    assert ours_torch.supports_numba(SETAdamConfig()) is None
    monkeypatch.setattr(numba_path, "available", lambda: False)
    assert "numba is not installed" in str(ours_torch.supports_numba(SETAdamConfig()))


@pytest.mark.parametrize("magnitude", [1e300, 1e-300, 1e-310, 1.0])
def test_scaled_sums_against_exact_sums(magnitude: float) -> None:
    """The first pass leaves the scaled sums out; the step's second read of v gives them:
    the sums of 2^-600 v and 2^600 v (exact scalings: the terms that stay in range) within
    (d - 1) u of the exact sum, and of their squares within d u (one rounding per square)."""
    rng = np.random.default_rng(5)
    d = 2600
    v = magnitude * rng.uniform(0.05, 3.0, size=d)
    z = [np.zeros(d) for _ in range(3)]
    addr = np.array([[z[0].ctypes.data, z[1].ctypes.data, z[2].ctypes.data, v.ctypes.data]])
    ints = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min])
    sc = np.array([0.1, 1.0, 0.0, 1.0, 0.0, 0.9])  # beta2 = 1, no gradient: v kept
    blocks = NK.make_blocks(np.array([d]))
    out = np.empty((blocks.shape[0], NK.PARTIALS))
    NK.stats(addr, blocks, sc, ints, False, out)
    cols = [NK.S1_DOWN, NK.S2_DOWN, NK.S1_UP, NK.S2_UP]
    assert not out[:, cols].any()
    NK.scaled_sums(addr, blocks, sc, False, out)
    got = NK.combine_blocks(out, blocks, 1)[0]
    for col, f, power, slack in [(NK.S1_DOWN, NK.DOWN, 1, d - 1), (NK.S2_DOWN, NK.DOWN, 2, d),
                                 (NK.S1_UP, NK.UP, 1, d - 1), (NK.S2_UP, NK.UP, 2, d)]:  # fmt: skip
        with np.errstate(over="ignore", under="ignore"):
            scaled = (v * f) ** power
        if not (np.isfinite(scaled).all() and (scaled > 1e-290).all()):
            continue  # a pair the layer would not choose (its terms leave the normal range)
        exact = sum((Fraction(float(x * f)) ** power for x in v), Fraction(0))
        assert abs(Fraction(float(got[col])) - exact) <= slack * 2.0**-53 * exact * 1.001


@pytest.mark.parametrize("scale", [1e150, 1e-150])
def test_float64_layers_of_extreme_magnitude_within_budget(scale: float) -> None:
    """v of order 1e297 (its squares overflow unscaled) and of order 1e-303 (they underflow)
    beside an ordinary layer: the step takes the scaled sums where the layer needs them."""
    params, grads = make_data(3, shapes=SHAPES)
    grads = [[x * scale if i % 2 == 0 else x for i, x in enumerate(step)] for step in grads]
    groups = [{"params": list(range(len(SHAPES))), "layer": "tensor"}]
    r = run_torch(params, grads, dtype=torch.float64, groups=groups, compiled=NUMBA, **HYPER[0])
    judge(r, params, grads, HYPER[0], "float64")


def test_step_counters_advance_by_one_in_place_whatever_their_dtype() -> None:
    """The counters of the state (float32 0-d tensors) advance in one kernel call; a counter
    loaded as another dtype advances through torch, as on the other paths."""
    ps = [torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(3)]
    opt = SETAdam(ps, lr=1e-3, compiled=NUMBA)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    opt.step()
    steps = [opt.state[p]["step"] for p in ps]
    assert [float(s) for s in steps] == [2.0, 2.0, 2.0] and steps[0].dtype == torch.float32
    opt.state[ps[1]]["step"] = torch.tensor(2.0, dtype=torch.float64)
    opt.step()
    assert [float(opt.state[p]["step"]) for p in ps] == [3.0, 3.0, 3.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta1", [0.0, 0.3, 0.5, 0.9])
def test_first_moment_is_the_two_branch_lerp_bitwise(dtype: type, beta1: float) -> None:
    """m' is torch's two-branch lerp(m, g, w = 1 - beta1), m + w (g - m) for w < 1/2 and
    g - (g - m)(1 - w) otherwise, one IEEE rounding per operation (NumPy in the tensor dtype;
    torch's vectorised lerp fuses the last two with an FMA, which the tolerance model covers as
    well); beta1 = 0 gives m' = g exactly. Found by `setadam-conformance fuzz
    'ours.torch.SETAdam[numba]' --seed 11`: the kernel took the lower branch for every w, m + (g -
    m) for m' = g at beta1 = 0 (3 ulps, 1.13 x budget, re-synced step 2, one-element arrays)."""
    rng = np.random.default_rng(4)
    d = 2600
    p, m = rng.standard_normal(d).astype(dtype), rng.standard_normal(d).astype(dtype)
    g = (-np.sign(m) * rng.uniform(0.01, 1.0, d)).astype(dtype)  # opposite signs: |g - m| > |g|
    v = np.ones(d, dtype)
    m0 = m.copy()
    w = dtype(1.0 - beta1)
    sc = np.array([w, 0.999, 0.001, 1.0, 0.0, dtype(1.0) - w], dtype=dtype)
    addr = np.array([[p.ctypes.data, g.ctypes.data, m.ctypes.data, v.ctypes.data]])
    blocks = NK.make_blocks(np.array([d]))
    p0 = p.copy()
    table = np.array([[1.0, 0.0, 0.0, 1.0, 1e-8]], dtype=dtype)  # step size 0: theta kept
    NK.step(addr, blocks, sc, False, table)
    np.testing.assert_array_equal(p, p0)
    want = m0 + w * (g - m0) if w < 0.5 else g - (g - m0) * (dtype(1.0) - w)
    np.testing.assert_array_equal(m, want)
    if beta1 == 0.0:
        np.testing.assert_array_equal(m, g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l2", [False, True])
def test_first_pass_statistics_are_those_of_the_stored_v(dtype: type, l2: bool) -> None:
    """The first pass computes the new v without storing it and the step computes it again:
    the min and max it reports are exactly those of the v the step stores, and its sums are
    within gamma_{d-1} of the exact sums of that v (maximize, L2 decay, layers of 1 to 2
    blocks plus a tail)."""
    rng = np.random.default_rng(9)
    sizes = [1, 5, NK.BLOCK + 3]
    cols = [[(rng.standard_normal(n) * s).astype(dtype) for n in sizes] for s in (1, 1e-3, 1e-2)]
    vs = [(rng.uniform(0, 1e-4, n)).astype(dtype) for n in sizes]
    addr = np.array([[c[i].ctypes.data for c in cols] + [vs[i].ctypes.data] for i in range(3)])
    blocks = NK.make_blocks(np.array(sizes))
    info = np.iinfo(np.int64 if dtype == np.float64 else np.int32)
    sc = np.array([0.1, 0.999, 0.001, -1.0, 0.05, 0.9], dtype=dtype)
    out = np.empty((blocks.shape[0], NK.PARTIALS))
    NK.stats(addr, blocks, sc, np.array([info.max, info.min], dtype=info.dtype), l2, out)
    parts = NK.combine_blocks(out, blocks, 3)
    table = np.array([[0.5, 1e-5, -1e-3, 1.0, 1e-8]] * 3, dtype=dtype)
    NK.step(addr, blocks, sc, l2, table)
    for i, v in enumerate(vs):
        assert parts[i, NK.VMIN] == v.min() and parts[i, NK.VMAX] == v.max()
        exact = sum((Fraction(float(x)) for x in v), Fraction(0))
        slack = (v.size - 1) * 2.0**-53 * exact
        assert abs(Fraction(float(parts[i, NK.S1])) - exact) <= slack
