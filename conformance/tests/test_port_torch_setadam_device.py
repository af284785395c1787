"""Tests of the device-resident multi-tensor path of our torch SET-Adam (the CUDA foreach path).

On CUDA ``SETAdam(foreach=True)`` keeps the layer statistics on the device (no host
synchronisation). Here that variant is forced on CPU tensors through the private switch
``_FORCE_DEVICE_RESIDENT`` and compared with the for-loop path, which computes the statistics on
the host. The two differ only in how ``c`` is accumulated (float64 on the device, float32 or
scaled float64 on the host) and, on CPU, in the rounding of torch's vectorised ``sqrt`` for
``min w``; so the parameters agree within a few float32 ulps, not bit for bit.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import conformance.ports.torch_setadam as ts  # noqa: E402
from conformance.ports.torch_setadam import SETAdam  # noqa: E402

SHAPES = [(3, 4), (5,), (0,), (2, 1, 3), (64,), (1,)]


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Force the device-resident variant on CPU; yields a list counting its calls."""
    calls: list[int] = []
    inner = ts._device_multi_tensor_setadam

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        inner(*args, **kwargs)

    monkeypatch.setattr(ts, "_FORCE_DEVICE_RESIDENT", True)
    monkeypatch.setattr(ts, "_device_multi_tensor_setadam", spy)
    yield calls


def make_grads(
    seed: int, shapes: Sequence[tuple[int, ...]], steps: int, none_at: set[tuple[int, int]]
) -> list[list[np.ndarray | None]]:
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray | None]] = []
    for t in range(steps):
        row: list[np.ndarray | None] = []
        for i, s in enumerate(shapes):
            if (t, i) in none_at:
                row.append(None)
                continue
            scale = 10.0 ** rng.uniform(-3, 1, size=s)
            row.append(rng.standard_normal(s) * scale)
        out.append(row)
    return out


def run(
    shapes: Sequence[tuple[int, ...]],
    grads: Sequence[Sequence[np.ndarray | None]],
    *,
    foreach: bool,
    dtype: torch.dtype = torch.float32,
    groups: Sequence[dict[str, Any]] | None = None,
    device: str = "cpu",
    seed: int = 1,
    **hyper: Any,
) -> tuple[list[torch.Tensor], SETAdam]:
    gen = torch.Generator().manual_seed(seed)
    ps = [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64).to(dtype).to(device))
        for s in shapes
    ]
    ps[0].initial = [p.detach().clone() for p in ps]  # type: ignore[attr-defined]
    if groups is None:
        opt = SETAdam(ps, foreach=foreach, **hyper)
    else:
        spec = [dict(g, params=[ps[i] for i in g["params"]]) for g in groups]
        opt = SETAdam(spec, foreach=foreach, **hyper)
    for row in grads:
        for p, g in zip(ps, row):
            p.grad = None if g is None else torch.tensor(g, dtype=dtype, device=device)
        opt.step()
    return ps, opt


def assert_close(
    a: Sequence[torch.Tensor],
    b: Sequence[torch.Tensor],
    lr: float,
    ulps: int,
    atol: float = 0.0,
) -> None:
    """|a - b| within ``ulps`` ulps of max(|b|, |b_0|, lr) (a parameter that crossed zero keeps
    the ulp-sized differences of its larger earlier values), plus ``atol`` (for differences in
    c beyond rounding)."""
    init = getattr(b[0], "initial", [torch.zeros_like(y) for y in b])
    for x, y, y0 in zip(a, b, init):
        assert x.shape == y.shape and x.dtype == y.dtype
        xs = x.detach().cpu().double().numpy()
        ys = y.detach().cpu().double().numpy()
        scale = np.maximum(np.maximum(np.abs(ys), lr), np.abs(y0.cpu().double().numpy()))
        assert np.array_equal(np.isnan(xs), np.isnan(ys))
        ok = ~np.isnan(ys)
        if y.dtype == torch.float32:
            spacing = np.spacing(scale.astype(np.float32)).astype(np.float64)
        else:  # bfloat16: 8 significant bits
            spacing = scale * 2.0**-7
        err = np.maximum(np.abs(xs - ys) - atol, 0.0)[ok]
        if err.size:
            worst = float(np.max(err / spacing[ok]))
            assert worst <= ulps, worst


HYPER: list[dict[str, Any]] = [
    {"lr": 1e-2},
    {"lr": 1e-2, "weight_decay": 0.1},
    {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True},
    {"lr": 1e-2, "maximize": True, "tau": 0.9},
    {"lr": 3e-3, "betas": (0.5, 0.9), "eps": 1e-3, "tau": 0.0},
]


@pytest.mark.parametrize("hyper", HYPER)
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_agrees_with_forloop(forced: list[int], hyper: dict[str, Any], layer: str) -> None:
    grads = make_grads(0, SHAPES, 6, set())
    groups = [{"params": list(range(len(SHAPES))), "layer": layer}]
    a, _ = run(SHAPES, grads, foreach=True, groups=groups, **hyper)
    assert len(forced) == 6
    b, _ = run(SHAPES, grads, foreach=False, groups=groups, **hyper)
    # 6 steps; the per-step differences are an ulp or two, l2 decay feeds them back through g
    assert_close(a, b, hyper["lr"], 8)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_agrees_with_forloop(forced: list[int], dtype: torch.dtype) -> None:
    grads = make_grads(1, SHAPES, 4, set())
    hyper: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05, "decoupled_weight_decay": True}
    a, oa = run(SHAPES, grads, foreach=True, dtype=dtype, **hyper)
    assert forced
    b, ob = run(SHAPES, grads, foreach=False, dtype=dtype, **hyper)
    for x, y in zip(a, b):
        assert torch.allclose(x.double(), y.double(), rtol=2e-3, atol=1e-4)
    for p, q in zip(a, b):
        assert oa.state[p]["exp_avg_sq"].dtype == dtype
        assert torch.equal(oa.state[p]["exp_avg_sq"], ob.state[q]["exp_avg_sq"])


def test_param_groups_and_grads_none(forced: list[int]) -> None:
    # tensor 1 misses steps 0 and 2, so the tensors of the group layer differ in step count
    grads = make_grads(2, SHAPES, 6, {(0, 1), (2, 1), (3, 4), (1, 0)})
    groups = [
        {"params": [0, 1, 2], "layer": "group", "lr": 3e-2, "betas": (0.8, 0.99)},
        {"params": [3, 4], "tau": 0.2, "weight_decay": 0.1, "decoupled_weight_decay": True},
        {"params": [5], "maximize": True},
    ]
    a, oa = run(SHAPES, grads, foreach=True, groups=groups, lr=1e-2)
    assert forced
    b, ob = run(SHAPES, grads, foreach=False, groups=groups, lr=1e-2)
    assert_close(a, b, 1e-2, 4)
    for p, q in zip(a, b):
        assert torch.equal(oa.state[p]["step"], ob.state[q]["step"])
        assert oa.state[p]["step"].device.type == "cpu"


def test_all_zero_layers_and_empty_tensors(forced: list[int]) -> None:
    shapes = [(4, 3), (0,), (6,), (0, 2)]
    rng = np.random.default_rng(3)
    grads: list[list[np.ndarray | None]] = [
        [np.zeros((4, 3)), np.zeros((0,)), rng.standard_normal(6), np.zeros((0, 2))]
        for _ in range(3)
    ]
    for layer in ("tensor", "group"):
        groups = [{"params": [0, 1, 2, 3], "layer": layer}]
        a, _ = run(shapes, grads, foreach=True, groups=groups, lr=1e-2)
        b, _ = run(shapes, grads, foreach=False, groups=groups, lr=1e-2)
        assert_close(a, b, 1e-2, 2)
        assert all(torch.isfinite(p).all() for p in a)
    # only empty tensors: nothing to do, nothing raised
    a, _ = run([(0,), (0, 3)], [[np.zeros(0), np.zeros((0, 3))]], foreach=True)
    assert [p.shape for p in a] == [(0,), (0, 3)]


def test_huge_second_moment_does_not_overflow(forced: list[int]) -> None:
    """v up to 3e38 in float32: the float64 accumulation keeps c finite and equal to the host's."""
    rng = np.random.default_rng(4)
    results = []
    for foreach in (True, False):
        ps = [torch.nn.Parameter(torch.zeros(4, 5)), torch.nn.Parameter(torch.ones(7))]
        opt = SETAdam([{"params": ps, "layer": "group"}], foreach=foreach, lr=1e-3)
        for p in ps:
            p.grad = torch.zeros_like(p)
        opt.step()
        v0 = 3e38 * rng.uniform(0.05, 1.0, size=(4, 5))
        v0[0, 0] = 0.0
        opt.state[ps[0]]["exp_avg_sq"].copy_(torch.tensor(v0))
        opt.state[ps[1]]["exp_avg_sq"].fill_(1e-30)
        for p in ps:
            opt.state[p]["step"].fill_(100_000.0)
            opt.state[p]["exp_avg"].fill_(1.0)
        opt.step()
        assert all(torch.isfinite(p).all() for p in ps)
        results.append([p.detach().clone() for p in ps])
    assert_close(results[0], results[1], 1e-3, 2)


def test_nan_poisons_its_layer_only(forced: list[int]) -> None:
    grads = make_grads(5, SHAPES, 2, set())
    bad = grads[1][0]
    assert bad is not None
    bad[1, 2] = np.nan
    a, _ = run(SHAPES, grads, foreach=True, lr=1e-2)
    b, _ = run(SHAPES, grads, foreach=False, lr=1e-2)
    assert torch.isnan(a[0]).all()
    assert_close(a, b, 1e-2, 4)


def test_state_dict_round_trip(forced: list[int]) -> None:
    grads = make_grads(6, SHAPES, 6, {(4, 2)})
    hyper: dict[str, Any] = {"lr": 1e-2, "weight_decay": 0.05, "tau": 0.3}
    full, _ = run(SHAPES, grads, foreach=True, **hyper)
    half, opt = run(SHAPES, grads[:3], foreach=True, **hyper)
    buf = io.BytesIO()
    torch.save({"model": [p.detach() for p in half], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    ps = [torch.nn.Parameter(x.clone()) for x in saved["model"]]
    opt2 = SETAdam(ps, foreach=True, **hyper)
    opt2.load_state_dict(saved["opt"])
    for row in grads[3:]:
        for p, g in zip(ps, row):
            p.grad = None if g is None else torch.tensor(g, dtype=torch.float32)
        opt2.step()
    for x, y in zip(full, ps):
        assert torch.equal(x, y)


def test_stage_recording_uses_a_side_path(forced: list[int]) -> None:
    """With ``record_stages`` the parameters still come from the device-resident path; the
    stages from a for-loop side path on copies (the "update" stage from the real step)."""
    grads = make_grads(7, SHAPES, 3, set())
    runs = []
    for record in (True, False):
        gen = torch.Generator().manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in SHAPES]
        opt = SETAdam(ps, foreach=True, lr=1e-2)
        opt.record_stages = record
        for row in grads:
            before = [p.detach().double() for p in ps]
            for p, g in zip(ps, row):
                p.grad = torch.tensor(g, dtype=torch.float32)
            opt.step()
        runs.append(ps)
        if record:
            st = opt.last_stages
            assert st is not None and set(st) == set(ts.STAGE_KEYS)
            for p, b, u in zip(ps, before, st["update"]):
                assert torch.equal(p.detach().double() - b, u)
            assert all(x.shape == p.shape for x, p in zip(st["epsilon_embedding"], ps))
    assert len(forced) == 6
    for x, y in zip(*runs):
        assert torch.equal(x, y)


def test_float64_uses_the_host_path(forced: list[int]) -> None:
    run(SHAPES, make_grads(7, SHAPES, 2, set()), foreach=True, dtype=torch.float64)
    assert not forced


def test_cpu_default_keeps_the_host_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(ts, "_device_multi_tensor_setadam", lambda *a, **k: calls.append(1))
    run(SHAPES, make_grads(8, SHAPES, 2, set()), foreach=True)
    assert not calls


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layer", ["tensor", "group"])
def test_cuda_foreach_agrees_with_forloop(layer: str) -> None:
    # sizes where the for-loop's float32 sums of v and v^2 stay accurate to ~1e-7 (on CPU they
    # drift to ~5e-6 at 1e5 entries; the device path sums in float64)
    shapes = [(48, 64), (384,), (0,), (3, 7, 5), (1,), (2_001,)]
    grads = make_grads(9, shapes, 5, {(2, 1)})
    groups = [{"params": list(range(len(shapes))), "layer": layer, "weight_decay": 0.01}]
    calls: list[int] = []
    inner = ts._device_multi_tensor_setadam

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        inner(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ts, "_device_multi_tensor_setadam", spy)
        a, _ = run(shapes, grads, foreach=True, groups=groups, device="cuda", lr=1e-2)
    assert calls
    b, _ = run(shapes, grads, foreach=False, groups=groups, device="cuda", lr=1e-2)
    assert_close(a, b, 1e-2, 16)
