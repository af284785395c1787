"""The tolerance model is an upper bound for correct ports in every covered operation order.

Issue 16 found correct ports whose error exceeded the budget: each of its counterexamples is a
test here of a correctly implemented port in that operation order and that dtype (a NumPy port of
``conformance.tests.op_orders``, every operation rounded once to its format), which must stay
within budget. Issue 11 item 5 (mixed precision, the unbounded layer minimum) has a test each that
fails on the model before the change. ``test_search_over_orders`` lets hypothesis search
operation orders, dtypes and magnitudes (down to subnormal intermediates) for a correct port over
its budget (``ci``: a small derandomized run; ``thorough``: 10^4 examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import example, given, settings, target
from hypothesis import strategies as st

from conformance import tolerance as T
from conformance.formats import FORMATS
from conformance.tests.op_orders import VARIANTS, Order
from conformance.tests.order_cases import Case, judge
from property_tests.profiles import examples, load_from_env
from setadam_ref import AdamConfig, Config, SETAdamConfig
from setadam_ref.errors import NonFiniteError

load_from_env()

UPDATE_ORDERS = ("q_first", "addcdiv", "mhat", "stepsize", "fma")


def _zeros(n: int) -> np.ndarray:
    return np.zeros(n)


def _assert_within(case: Case, order: Order) -> float:
    vd = judge(case, order)
    assert not vd.overflowed, f"{order} overflowed"
    assert vd.worst <= 1.0, f"{order}: {vd.describe()}"
    return vd.worst


# --- issue 16, item 1: underflow carried through later divisions ----------------------------


@pytest.mark.parametrize("update", UPDATE_ORDERS)
@pytest.mark.parametrize("native", [True, False])
def test_float16_addcdiv_subnormal_product_is_within_budget(update: str, native: bool) -> None:
    """Issue 16 item 1: theta + ((-s) m)/wt natively in float16; s m = 1e-6 is subnormal there
    and its absolute error 2^-25, divided by wt, was 3.3 x the budget (addcdiv, native)."""
    cfg = SETAdamConfig(lr=1e-3, betas=(0.0, 0.0), eps=1e-4, tau=0.0)
    g = np.array([2e-3, 5e-4, 1e-3])
    theta = np.array([1e-4, -2e-4, 3e-4])
    case = Case(cfg, (3,), 1, theta, g, _zeros(3), _zeros(3), "float16")
    _assert_within(case, Order(update=update, native_scalars=native))
    acfg = AdamConfig(lr=1e-3, betas=(0.0, 0.0), eps=1e-4)
    _assert_within(
        Case(acfg, (3,), 1, theta, g, _zeros(3), _zeros(3), "float16"),
        Order(update=update, native_scalars=native),
    )


def test_float16_addcdiv_was_over_the_old_budget_by_the_underflow_alone() -> None:
    """The same port's error is 40 float16 ulps of the update: all of it the subnormal s m
    divided by wt; the budget carries it (fraction ~0.7) instead of missing it."""
    cfg = SETAdamConfig(lr=1e-3, betas=(0.0, 0.0), eps=1e-4, tau=0.0)
    case = Case(
        cfg,
        (3,),
        1,
        np.array([1e-4, -2e-4, 3e-4]),
        np.array([2e-3, 5e-4, 1e-3]),
        _zeros(3),
        _zeros(3),
        "float16",
    )
    vd = judge(case, Order(update="addcdiv", native_scalars=True))
    assert vd.ulps["update"] > 30  # the underflow is real, not a rounding artefact
    assert 0.3 < vd.fraction["update"] <= 1.0


@pytest.mark.parametrize("update", UPDATE_ORDERS)
@pytest.mark.parametrize("alg", ["setadam", "setadam_tau0", "adam"])
def test_float32_contrived_underflow_is_within_budget(update: str, alg: str) -> None:
    """Issue 16 item 1 in float32: lr = 1e-12, g = (1e-30, 3e-30), theta = 0, eps = 1e-30,
    betas (0, 0): s m ~ 1e-42 is subnormal; addcdiv with tau = 0 was 632 x the budget."""
    kw = dict(lr=1e-12, eps=1e-30, betas=(0.0, 0.0))
    cfg: Config
    if alg == "adam":
        cfg = AdamConfig(**kw)  # type: ignore[arg-type]
    else:
        cfg = SETAdamConfig(tau=0.0 if alg == "setadam_tau0" else 0.5, **kw)  # type: ignore[arg-type]
    case = Case(cfg, (2,), 1, _zeros(2), np.array([1e-30, 3e-30]), _zeros(2), _zeros(2), "float32")
    for native in (True, False):
        _assert_within(case, Order(update=update, native_scalars=native))


# --- issue 16, item 2: the layer statistics --------------------------------------------------

_ITEM2_G = 0.5 * np.array([1e-9, -3e-10, 2e-11, 5e-10, 0, -1e-10, 4e-11, 8e-10])


def test_unscaled_float32_statistics_are_outside_the_model_and_named() -> None:
    """Issue 16 item 2: mean(v)^2/mean(v^2) in float32 without rescaling, g ~ 1e-10: v^2 ~ 1e-43
    is subnormal, so the port's c is 1.84 x (old budget) off. The model states the assumption
    instead of widening the budget: statistics_range names the layer, the evaluation, the
    quantity and the threshold; the judge does not hold the layer against this port."""
    cfg = SETAdamConfig()
    case = Case(cfg, (8,), 1, np.ones(8), _ITEM2_G, _zeros(8), _zeros(8), "float32")
    ref = case.reference()
    notes = T.statistics_range(cfg, ref, case.flat, "float32")
    unscaled = [n for n in notes if n.evaluation == "unscaled, float32"]
    assert len(unscaled) == 1 and unscaled[0].layer == 0
    note = unscaled[0]
    assert note.quantity == "sum(v^2)" and note.value < FORMATS["float32"].tiny
    assert "unscaled statistics" in note.message and "underflow" in note.message
    assert "|g| below" in note.message  # the threshold on the gradient, from zero state
    assert note.v_needed > note.v_max
    # no note for the rescaled evaluations: the budget is theirs
    assert not [n for n in notes if n.evaluation.startswith("scaled")]
    vd = judge(case, Order(c_form="mean", c_scaling="none"))
    assert vd.outside[0] and vd.worst <= 1.0  # nothing of the layer judged against it


@pytest.mark.parametrize("form", ["ratio", "mean", "norm"])
@pytest.mark.parametrize("scaling", ["pow2", "max"])
@pytest.mark.parametrize("sums", ["seq", "pairwise", "fma"])
def test_rescaled_statistics_pass_where_unscaled_ones_underflow(
    form: str, scaling: str, sums: str
) -> None:
    """The same case with the layer sums rescaled: every form passes, also with eps = 1e-30 and
    tau = 0.999 (where the audit's random case was 2.8 x on c and 1.35 x on w, wt, theta)."""
    for cfg in (SETAdamConfig(), SETAdamConfig(eps=1e-30, tau=0.999)):
        case = Case(cfg, (8,), 1, np.ones(8), _ITEM2_G, _zeros(8), _zeros(8), "float32")
        _assert_within(case, Order(c_form=form, c_scaling=scaling, sums=sums))


def test_unscaled_statistics_in_range_are_covered() -> None:
    """Unscaled evaluation is legitimate where it stays in range: g ~ 1e-3 in float32."""
    g = 1e6 * _ITEM2_G
    case = Case(SETAdamConfig(), (8,), 1, np.ones(8), g, _zeros(8), _zeros(8), "float32")
    assert not T.statistics_range(case.cfg, case.reference(), case.flat, "float32")
    for form in ("ratio", "mean", "norm"):
        _assert_within(case, Order(c_form=form, c_scaling="none"))


# --- issue 16, item 3: c of a layer whose v underflows to zero in the port ------------------


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("c_zero", [0.0, 0.5, 1.0])
def test_float16_all_zero_layer_any_c_passes(d: int, c_zero: float) -> None:
    """Issue 16 item 3: float16, g = 1e-3, beta2 = 0.999, t = 1: v = 1e-9 underflows to 0 in the
    port, whose c for that all-zero layer is a convention (0 gave an infinite fraction at d = 1
    and 2.0 at d = 2). c is unresolved there and c v = 0 either way."""
    cfg = SETAdamConfig(eps=1e-4)
    case = Case(cfg, (d,), 1, np.ones(d), np.full(d, 1e-3), _zeros(d), _zeros(d), "float16")
    vd = judge(case, Order(c_zero=c_zero))
    assert vd.port["v"].max() == 0.0  # the premise: v underflowed in the port
    assert vd.bounds["cos2"][0] == np.inf
    assert vd.worst <= 1.0, vd.describe()


# --- issue 11, item 5: mixed precision and the layer minimum ---------------------------------


def _mixed_case(dtype: str = "bfloat16") -> Case:
    rng = np.random.default_rng(7)
    n = 12
    cfg = SETAdamConfig(lr=1e-3)
    return Case(
        cfg,
        (8, 4),
        5,
        rng.standard_normal(n),
        rng.standard_normal(n) * 1e-2,
        rng.standard_normal(n) * 1e-3,
        rng.random(n) * 1e-4,
        dtype,
        "float32",
    )


def test_moments_are_judged_in_the_state_dtype() -> None:
    """Issue 11 item 5: bfloat16 parameters with float32 state: m and v budgets are those of
    float32 (about 2^16 tighter than bfloat16's), the parameters' those of bfloat16."""
    case = _mixed_case()
    ref = case.reference()
    mixed = T.step_bounds(case.cfg, ref, case.flat, "bfloat16", state_dtype="float32")
    bf16 = T.step_bounds(case.cfg, ref, case.flat, "bfloat16")
    f32 = T.step_bounds(case.cfg, ref, case.flat, "float32")
    for q in ("m", "v"):
        np.testing.assert_allclose(mixed[q], f32[q])
        assert np.all(bf16[q] > 2.0**14 * mixed[q])
    # the parameters: bfloat16's roundings, with the (smaller) float32 moment errors feeding them
    assert np.all(mixed["params"] <= bf16["params"]) and np.all(mixed["params"] > f32["params"])
    for order in (Order(), Order(update="addcdiv", moment="lerp"), Order(native_scalars=True)):
        _assert_within(case, order)


def test_mixed_precision_budget_catches_a_moment_error_bfloat16_budgets_hide() -> None:
    """A float32-state port whose m is off by 1e-5 relative (far above float32 rounding, far
    below bfloat16's) fails the state-dtype budget; the old bfloat16 budget let it pass."""
    case = _mixed_case()
    ref = case.reference()
    b = T.comparison_bounds(case.cfg, ref, case.flat, "bfloat16", state_dtype="float32")[0]
    bad_m = ref.m * (1 + 1e-5)
    assert np.max(np.abs(bad_m - ref.m) / b["m"]) > 1.0
    b16 = T.comparison_bounds(case.cfg, ref, case.flat, "bfloat16")[0]
    assert np.max(np.abs(bad_m - ref.m) / b16["m"]) < 1.0


def test_reference_run_passes_the_state_dtype() -> None:
    """The harness's reference runs build their budgets with the state dtype."""
    from conformance.reference_run import build_reference
    from conformance.scenarios import get

    sc = get("long_run")
    cfg = sc.config("setadam")
    rr = build_reference(sc, cfg, "bfloat16", "float32", quick=True)
    rr16 = build_reference(sc, cfg, "bfloat16", quick=True)
    t = min(rr.resync)
    assert np.all(rr.resync[t].bounds["v"] < 2.0**-10 * rr16.resync[t].bounds["v"])


def test_unbounded_input_makes_the_layer_minimum_unbounded() -> None:
    """Issue 11 item 5: a free-running input error that is already unbounded (E_v = inf at one
    coordinate) makes the port's layer minimum of w unbounded, so every wt of the layer is
    unbounded (tau > 0). The old model replaced the infinite bound by 0 and kept the other
    coordinates' wt bounds finite: a legitimate port with a different v there broke them."""
    cfg = SETAdamConfig(tau=0.5)
    case = Case(
        cfg,
        (4, 2),
        3,
        np.ones(6),
        np.full(6, 1e-2),
        np.full(6, 1e-3),
        np.array([4e-5, 9e-5, 1e-4, 2e-4, 1e-4, 1e-4]),
        "float32",
    )
    ref = case.reference()
    ein = T.InputErrors.zeros(6)
    ein.v = np.array([np.inf, 0, 0, 0, 0, 0])
    b = T.step_bounds(cfg, ref, case.flat, "float32", ein)
    assert np.all(np.isinf(b["down_translating"][:4]))  # the whole first layer
    assert np.all(np.isfinite(b["down_translating"][4:]))  # the other layer is unaffected
    # the port whose v0[0] is 0 instead (any value is within an infinite bound) has a smaller
    # minimum of w and therefore a larger wt at coordinate 1: beyond any finite budget there
    other = Case(
        cfg,
        (4, 2),
        3,
        np.ones(6),
        np.full(6, 1e-2),
        np.full(6, 1e-3),
        np.array([0.0, 9e-5, 1e-4, 2e-4, 1e-4, 1e-4]),
        "float32",
    )
    assert other.reference().w_translated[1] > ref.w_translated[1] + 1e-3 * ref.w_translated[1]
    # and tau = 0: w - 0 * min w = w exactly, the unbounded minimum does not matter
    b0 = T.step_bounds(SETAdamConfig(tau=0.0), ref, case.flat, "float32", ein)
    assert np.all(np.isfinite(b0["down_translating"][1:4]))


def test_empty_layer_has_no_minimum_and_no_term() -> None:
    """An empty layer (a zero-size array as its own layer) has no minimum: its term is 0, and
    it leaves the other layers' bounds finite."""
    cfg = SETAdamConfig(tau=0.5)
    case = Case(
        cfg, (3, 0), 1, np.ones(3), np.array([1e-2, 2e-2, 3e-2]), _zeros(3), _zeros(3), "float32"
    )
    b = T.step_bounds(cfg, case.reference(), case.flat, "float32")
    assert np.all(np.isfinite(b["down_translating"])) and np.isinf(b["cos2"][1])
    _assert_within(case, Order())


# --- the search over operation orders --------------------------------------------------------

DTYPE_PAIRS = (
    ("float64", None),
    ("float32", None),
    ("bfloat16", None),
    ("float16", None),
    ("bfloat16", "float32"),
    ("float16", "float32"),
)
#: decades of |g|: ordinary values down to subnormal-producing ones, per dtype
_DECADES = {
    "float64": (-170.0, 8.0),
    "float32": (-44.0, 8.0),
    "bfloat16": (-44.0, 8.0),
    "float16": (-8.0, 1.5),
}


@dataclass(frozen=True)
class Spec:
    """A re-synced step drawn by the search (tuples: hashable and printable)."""

    cfg: Config
    dtype: str
    state_dtype: str | None
    sizes: tuple[int, ...]
    grouped: bool
    t: int
    theta0: tuple[float, ...]
    g: tuple[float, ...]
    m0: tuple[float, ...]
    v0: tuple[float, ...]

    def case(self) -> Case:
        layers = (tuple(range(len(self.sizes))),) if self.grouped else None
        return Case(
            self.cfg,
            self.sizes,
            self.t,
            np.array(self.theta0),
            np.array(self.g),
            np.array(self.m0),
            np.array(self.v0),
            self.dtype,
            self.state_dtype,
            layers,
        )


def _pow10(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi).map(lambda e: float(10.0**e))


_beta = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999]), st.floats(0.0, 0.9999))


@st.composite
def configs(draw: st.DrawFn, dtype: str) -> Config:
    lr = draw(_pow10(-7, 0))
    betas = (draw(_beta), draw(_beta))
    eps = draw(_pow10(-8.0 if dtype == "float16" else -30.0, -1.0))
    wd = draw(st.one_of(st.just(0.0), _pow10(-4, -0.5)))
    mode = draw(st.sampled_from(["l2", "decoupled"]))
    maximize = draw(st.booleans())
    if draw(st.booleans()):
        return SETAdamConfig(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=wd,
            weight_decay_mode=mode,  # type: ignore[arg-type]
            maximize=maximize,
            tau=draw(st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.floats(0.0, 0.999))),
        )
    return AdamConfig(
        lr=lr,
        betas=betas,
        eps=draw(st.one_of(st.just(eps), st.just(0.0))),
        eps_root=draw(st.one_of(st.just(0.0), st.just(eps))),
        weight_decay=wd,
        weight_decay_mode=mode,
        maximize=maximize,
        amsgrad=draw(st.booleans()),  # type: ignore[arg-type]
        amsgrad_mode=draw(st.sampled_from(["torch", "optax"])),
    )


def _values(draw: st.DrawFn, n: int, scale: float) -> tuple[float, ...]:
    out = []
    for _ in range(n):
        if draw(st.integers(0, 5)) == 0:
            out.append(0.0)
        else:
            e = draw(st.floats(-3.0, 0.0))
            sign = draw(st.sampled_from([-1.0, 1.0]))
            out.append(sign * scale * 10.0**e)
    return tuple(out)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    dtype, sdt = draw(st.sampled_from(DTYPE_PAIRS))
    cfg = draw(configs(dtype))
    sizes = tuple(draw(st.lists(st.integers(1, 8), min_size=1, max_size=3)))
    n = sum(sizes)
    lo, hi = _DECADES[dtype]
    gs = float(10.0 ** draw(st.floats(lo, hi)))
    t = draw(st.sampled_from([1, 2, 3, 5, 10, 100, 1000]))
    m0 = _values(draw, n, gs) if t > 1 else (0.0,) * n
    v0 = tuple(abs(x) for x in _values(draw, n, gs * gs)) if t > 1 else (0.0,) * n
    return Spec(
        cfg,
        dtype,
        sdt,
        sizes,
        len(sizes) > 1 and draw(st.booleans()),
        t,
        _values(draw, n, float(10.0 ** draw(st.floats(-6, 1)))),
        _values(draw, n, gs),
        m0,
        v0,
    )


orders = st.builds(Order, **{k: st.sampled_from(v) for k, v in VARIANTS.items()})


@settings(max_examples=examples(150))
@given(spec=specs(), order=orders)
@example(  # issue 16 item 1: the float16 addcdiv counterexample (3.3 x the old budget)
    spec=Spec(
        SETAdamConfig(lr=1e-3, betas=(0.0, 0.0), eps=1e-4, tau=0.0),
        "float16",
        None,
        (3,),
        False,
        1,
        (1e-4, -2e-4, 3e-4),
        (2e-3, 5e-4, 1e-3),
        (0.0,) * 3,
        (0.0,) * 3,
    ),
    order=Order(update="addcdiv", native_scalars=True),
)
@example(  # issue 16 item 1 in float32: 632 x the old budget
    spec=Spec(
        SETAdamConfig(lr=1e-12, eps=1e-30, betas=(0.0, 0.0), tau=0.0),
        "float32",
        None,
        (2,),
        False,
        1,
        (0.0, 0.0),
        (1e-30, 3e-30),
        (0.0,) * 2,
        (0.0,) * 2,
    ),
    order=Order(update="addcdiv", native_scalars=True),
)
@example(  # issue 16 item 3: v underflows to 0 in the float16 port, which reports c = 0
    spec=Spec(
        SETAdamConfig(eps=1e-4),
        "float16",
        None,
        (2,),
        False,
        1,
        (1.0, 1.0),
        (1e-3, 1e-3),
        (0.0,) * 2,
        (0.0,) * 2,
    ),
    order=Order(c_zero=0.0),
)
@example(  # found by the thorough search: beta2 = 1.1e-308 rounds to 0 in float32, and the
    # model's exact rounding error of beta^t took log1p(-1) (a crash, not a budget)
    spec=Spec(
        AdamConfig(lr=1.0, betas=(0.0, 1.1125369292536007e-308), eps=0.1),
        "float32",
        None,
        (1,),
        False,
        1,
        (0.0,),
        (0.0,),
        (0.0,),
        (0.0,),
    ),
    order=Order(),
)
def test_search_over_orders(spec: Spec, order: Order) -> None:
    """No correct port in a covered order exceeds its budget (fraction <= 1 everywhere), except
    where it leaves its format's range (overflow, or unscaled statistics that
    ``statistics_range`` names): those are outside the model by its stated assumptions."""
    try:
        case = spec.case()
        vd = judge(case, order)
    except (NonFiniteError, OverflowError):
        return  # the reference itself cannot run this case (e.g. 0/0 with eps = eps_root = 0)
    if vd.overflowed:
        return
    worst = vd.worst
    target(min(worst, 10.0) if math.isfinite(worst) else 10.0, label="budget fraction")
    assert worst <= 1.0, f"{order}\n{spec}\n{vd.describe()}"
