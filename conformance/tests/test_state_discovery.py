"""Unit tests of ``conformance.adapters.state_discovery``: the roles of a port's state entries
found from their values (pure NumPy layouts), ``--state-map``, and the round trip through the
torch and optax adapters for every container style of the outside-style ports."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from conformance.adapters import state_discovery as SD
from setadam_ref import State

SHAPES = [(4, 3), (5,), (3,)]
B1, B2 = 0.9, 0.999


def _probe(
    store: Any,  # (m, v, vmax, t) -> {path: value}
    shapes: list[tuple[int, ...]] = SHAPES,
    b1: float = B1,
    b2: float = B2,
    amsgrad: bool = False,
    counter: Any = None,
) -> SD.StateLayout:
    """Run the probe's two steps on a NumPy Adam and lay its state out with ``store``."""
    g1, g2 = SD.probe_gradients(shapes)
    m = [np.zeros(s) for s in shapes]
    v = [np.zeros(s) for s in shapes]
    vm = [np.zeros(s) for s in shapes]
    snaps = [_leaves(store(m, v, vm if amsgrad else None, counter(0) if counter else 0))]
    for k, g in enumerate((g1, g2), 1):
        m = [b1 * a + (1 - b1) * x for a, x in zip(m, g, strict=True)]
        v = [b2 * a + (1 - b2) * x * x for a, x in zip(v, g, strict=True)]
        vm = [np.maximum(a, b) for a, b in zip(vm, v, strict=True)]
        t = counter(k) if counter else k
        snaps.append(_leaves(store(m, v, vm if amsgrad else None, t)))
    return SD.discover(shapes, *snaps)


def _leaves(values: dict[SD.Path, Any]) -> dict[SD.Path, SD.Leaf]:
    out = {}
    for path, x in values.items():
        a = np.array(x, dtype=np.float64)
        out[path] = SD.Leaf(path, a, "float64", a.size == 1 and a.ndim <= 1)
    return out


def _dict_style(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
    out: dict[SD.Path, Any] = {}
    for i in range(len(m)):
        out[(("state", i), ("key", "first"))] = m[i]
        out[(("state", i), ("key", "second"))] = v[i]
        if vm is not None:
            out[(("state", i), ("key", "peak"))] = vm[i]
        out[(("state", i), ("key", "k"))] = t
    out[(("group", 0), ("key", "lr"))] = 1e-3
    return out


def test_roles_are_found_whatever_the_names() -> None:
    lay = _probe(_dict_style)
    assert lay.readable and lay.writable
    assert [v.path[-1] for v in lay.m] == [("key", "first")] * 3
    assert [v.array for v in lay.v] == [0, 1, 2] and lay.v[0].path[-1] == ("key", "second")
    assert not lay.vmax
    assert {c.path for c in lay.counters} == {(("state", i), ("key", "k")) for i in range(3)}


def test_vmax_is_told_from_v_by_its_unchanged_maximum() -> None:
    lay = _probe(_dict_style, amsgrad=True)
    assert lay.v[0].path[-1] == ("key", "second") and lay.vmax[0].path[-1] == ("key", "peak")


def test_swapped_betas_still_have_an_m_and_a_v() -> None:
    """Identification is by form (linear, quadratic in g), not by the coefficients."""
    lay = _probe(_dict_style, b1=B2, b2=B1)
    assert lay.readable and lay.m[0].path[-1] == ("key", "first")


def test_flat_and_stacked_buffers() -> None:
    def flat(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
        cat = np.concatenate
        return {
            (("attr", "buf_m"),): cat([a.ravel() for a in m]),
            (("attr", "buf_v"),): cat([a.ravel() for a in v]),
            (("attr", "t"),): t,
        }

    lay = _probe(flat)
    assert lay.m == [SD.View((("attr", "buf_m"),), None)]
    g1, _ = SD.probe_gradients(SHAPES)
    arrays = [0.1 * g for g in g1]
    leaves = _leaves(flat(arrays, arrays, None, 1))
    got = SD.gather(leaves, lay.m, SHAPES)
    assert all(np.array_equal(a, b) for a, b in zip(got, arrays, strict=True))

    def stacked(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
        out: dict[SD.Path, Any] = {
            (("state", i), ("key", "moments")): np.stack([m[i], v[i]]) for i in range(len(m))
        }
        out[(("group", 0), ("key", "t"))] = t
        return out

    lay = _probe(stacked)
    assert [(v.sub, v.array) for v in lay.m] == [(0, 0), (0, 1), (0, 2)]
    assert [(v.sub, v.array) for v in lay.v] == [(1, 0), (1, 1), (1, 2)]
    assert lay.counters == [SD.Counter((("group", 0), ("key", "t")))]


def test_counters_in_other_forms() -> None:
    twice = _probe(_dict_style, counter=lambda k: 2 * k)
    assert {(c.scale, c.offset) for c in twice.counters} == {(2, 0)}
    ahead = _probe(_dict_style, counter=lambda k: k + 1)
    assert {(c.scale, c.offset) for c in ahead.counters} == {(1, 1)}
    frozen = _probe(_dict_style, counter=lambda k: min(k, 1))
    assert {(c.scale, c.offset) for c in frozen.counters} == {(1, 0)}  # written as the step count
    none = _probe(_dict_style, counter=lambda k: 0.5 * k)
    assert not none.counters and not none.writable and "counts the steps" in none.why_not()


def test_a_stored_gradient_is_not_m() -> None:
    def with_grad(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
        out = _dict_style(m, v, vm, t)
        g1, g2 = SD.probe_gradients(SHAPES)
        for i in range(len(m)):  # the last gradient, stored first in the container
            out = {(("state", i), ("key", "last_grad")): (g1 if t == 1 else g2)[i], **out}
        return out

    lay = _probe(with_grad)
    assert lay.m[0].path[-1] == ("key", "first")


def test_state_in_another_convention_is_not_read() -> None:
    """v stored per layer as c * v (a different factor per array) is no v: not readable."""

    def scaled(m: Any, v: Any, vm: Any, t: int) -> dict[SD.Path, Any]:
        out = _dict_style(m, v, vm, t)
        for i in range(len(m)):
            out[(("state", i), ("key", "second"))] = (0.3 + 0.2 * i) * v[i]
        return out

    lay = _probe(scaled)
    assert not lay.readable and "like v" in lay.why_not() and "parameters only" in lay.describe()


def test_state_map_override_and_parsing() -> None:
    assert SD.parse_state_map(None) is None
    assert SD.parse_state_map("none") == {"none": ""}
    assert SD.parse_state_map("m=first, v=second,step=k") == {
        "m": "first",
        "v": "second",
        "step": "k",
    }
    for bad in ("m", "q=x", "m="):
        with pytest.raises(ValueError, match="ROLE=KEY"):
            SD.parse_state_map(bad)
    g1, g2 = SD.probe_gradients(SHAPES)
    z = [np.zeros(s) for s in SHAPES]
    snaps = [_leaves(_dict_style(z, z, None, 0))]
    snaps += [_leaves(_dict_style(g, [x * x for x in g], None, k)) for k, g in ((1, g1), (2, g2))]
    lay = SD.discover(SHAPES, *snaps, override={"m": "second", "v": "first"})
    assert lay.m[0].path[-1] == ("key", "second") and "--state-map" in lay.describe()
    assert SD.discover(SHAPES, *snaps, override={"none": ""}).hidden
    with pytest.raises(ValueError, match="expected one per parameter array"):
        SD.discover(SHAPES, *snaps, override={"m": "nothing"})


def test_probe_gradients_are_exact_in_half_precision() -> None:
    from conformance.formats import round_to

    g1, g2 = SD.probe_gradients(SD.probe_shapes([(2,), (), (6, 7)]))
    for g in (*g1, *g2):
        assert np.array_equal(round_to(g, "bfloat16"), g) and np.array_equal(
            round_to(g, "float16"), g
        )
    assert all(np.all(np.abs(x) >= 0.5) for x in g1)
    assert all(np.any(x == 0.0) for x in g2)


# ----------------------------------------------------------------------------- through adapters
def _reference_state(shapes: list[tuple[int, ...]], step: int, vmax: bool = False) -> State:
    rng = np.random.default_rng(3)
    m = tuple(rng.normal(size=s) * 0.1 for s in shapes)
    v = tuple(rng.random(size=s) * 1e-3 for s in shapes)
    vm = tuple(x * 1.5 for x in v) if vmax else None
    return State(step, m, v, vm)


TORCH_CASES = [
    ("conformance.wrong_ports.outside_torch:DictSETAdam", {}),
    ("conformance.wrong_ports.outside_torch:AttrSETAdam", {}),
    ("conformance.wrong_ports.outside_torch:ClosureSETAdam", {}),
    ("conformance.wrong_ports.outside_torch:StackedSETAdam", {}),
    ("conformance.wrong_ports.outside_torch:StackedAdam", {"amsgrad": True}),
    ("torch.optim:Adam", {"amsgrad": True}),
    ("torch.optim:AdamW", {"fused": True}),
    ("torch.optim:NAdam", {}),
]


@pytest.mark.parametrize(
    "target,kw", TORCH_CASES, ids=[t.rsplit(":", 1)[1] for t, _ in TORCH_CASES]
)
def test_torch_round_trip(target: str, kw: dict[str, Any]) -> None:
    pytest.importorskip("torch")
    from conformance.adapters._torch import TorchOptimizerPort
    from conformance.adapters.third_party import load_target

    cls = load_target(target)
    port = TorchOptimizerPort("p", lambda g: cls(g, lr=1e-2, **kw), "float64")
    shapes = [(4, 3), (5,), (1,), ()]
    st = _reference_state(shapes, 7, vmax="amsgrad" in kw)
    params = [np.full(s, 0.25) for s in shapes]
    port.reset(params, st)
    back = port.state()
    assert back is not None and back.step == 7 and back.m is not None and back.v is not None
    for a, b in zip((*back.m, *back.v), (*st.m, *st.v), strict=True):
        assert np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(port.params(), params, strict=True))
    assert "m = " in port.state_layout()


def test_torch_hidden_state_is_said_plainly() -> None:
    pytest.importorskip("torch")
    from conformance.adapters._torch import TorchOptimizerPort
    from conformance.wrong_ports.outside_torch import HiddenSETAdam

    port = TorchOptimizerPort("p", lambda g: HiddenSETAdam(g, lr=1e-2), "float32")
    with pytest.raises(NotImplementedError, match="behaves like m and v"):
        port.reset([np.zeros(3)], _reference_state([(3,)], 1))
    port.reset([np.zeros(3)], None)
    port.step([np.ones(3)])
    assert port.state() is None
    assert "parameters only" in port.state_layout()


@pytest.mark.parametrize(
    "which", ["adam", "amsgrad", "inject", "chain", "outside_dict", "outside_inject"]
)
def test_optax_round_trip(which: str) -> None:
    optax = pytest.importorskip("optax")
    from conformance.adapters._jax import OptaxPort
    from conformance.wrong_ports import outside_jax as OJ

    make = {
        "adam": lambda: optax.adam(1e-2),
        "amsgrad": lambda: optax.amsgrad(1e-2),
        "inject": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-2),
        "chain": lambda: optax.chain(optax.clip(10.0), optax.scale_by_adam(), optax.scale(-1e-2)),
        "outside_dict": lambda: OJ.scaling_unbiased_var(1e-2),
        "outside_inject": lambda: OJ.translating_min_before_scaling(1e-2),
    }[which]
    port = OptaxPort(which, make, "float64")
    shapes = [(4, 3), (5,)]
    st = _reference_state(shapes, 5)
    port.reset([np.zeros(s) for s in shapes], st)
    back = port.state()
    assert back is not None and back.step == 5 and back.m is not None and back.v is not None
    for a, b in zip((*back.m, *back.v), (*st.m, *st.v), strict=True):
        assert np.array_equal(a, b)
