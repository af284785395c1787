"""One step of a port in a chosen operation order, judged against the tolerance model.

A :class:`Case` is the input of one re-synced step (parameters and gradient rounded to the port's
dtype, state to its state dtype, step number, configuration, layering). :func:`judge` runs the
reference step on exactly those inputs, the model's budgets, and the port of
:mod:`conformance.tests.op_orders`, and returns the worst budget fraction per quantity, judged as
the harness judges (``conformance.drive``): an infinite budget is *unresolved* (not judged), ``c``
is not judged on layers whose reference ``v`` is all zero, a non-finite port value against a
finite budget is an infinite fraction.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np

import setadam_ref as R
from conformance import tolerance as T
from conformance.formats import fmt, round_to, ulp
from conformance.layout import Flat
from conformance.tests.op_orders import Order, port_step
from setadam_ref import AdamConfig, Config, State

F = np.ndarray

#: whether the model under test takes a state dtype (the bench also runs against older models)
_HAS_STATE_DTYPE = "state_dtype" in inspect.signature(T.comparison_bounds).parameters


@dataclass
class Case:
    """Inputs of one re-synced step (flat float64 arrays of numbers of the port's formats)."""

    cfg: Config
    sizes: tuple[int, ...]
    t: int
    theta0: F
    g: F
    m0: F
    v0: F
    dtype: str
    state_dtype: str | None = None
    layers: tuple[tuple[int, ...], ...] | None = None
    vmax0: F | None = None
    flat: Flat = field(init=False)

    def __post_init__(self) -> None:
        self.flat = Flat.make([(n,) for n in self.sizes], self.layers)
        sdt = self.state_dtype or self.dtype
        self.theta0 = round_to(self.theta0, self.dtype)
        self.g = round_to(self.g, self.dtype)
        self.m0 = round_to(self.m0, sdt)
        self.v0 = round_to(np.abs(self.v0), sdt)
        if isinstance(self.cfg, AdamConfig) and self.cfg.amsgrad:
            vm = self.v0 if self.vmax0 is None else np.maximum(round_to(self.vmax0, sdt), self.v0)
            self.vmax0 = vm
        else:
            self.vmax0 = None

    def reference(self) -> T.StepRef:
        """The reference step from exactly this case's inputs."""
        split = self.flat.split
        st = State(
            step=self.t - 1,
            m=split(self.m0),
            v=split(self.v0),
            vmax=None if self.vmax0 is None else split(self.vmax0),
        )
        params = split(self.theta0)
        newp, _, tr = R.step(params, split(self.g), st, self.cfg, self.layers, trace=True)
        assert tr is not None
        return T.StepRef.from_trace(self.flat, params, st, newp, tr)

    def bounds(self, ref: T.StepRef) -> T.Bounds:
        if _HAS_STATE_DTYPE:
            return T.comparison_bounds(
                self.cfg, ref, self.flat, self.dtype, state_dtype=self.state_dtype
            )[0]
        return T.comparison_bounds(self.cfg, ref, self.flat, self.dtype)[0]


#: quantity name in the model -> field of StepRef
REF_FIELDS = {
    "grad": "grad",
    "m": "m",
    "v": "v",
    "vmax": "vmax",
    "denom": "denom",
    "cos2": "cos2",
    "down_scaling": "v_scaled",
    "epsilon_embedding": "w",
    "down_translating": "w_translated",
    "update": "update",
    "params": "theta1",
}


@dataclass
class Verdict:
    """Worst budget fraction per quantity, where it is, and its error in ulps."""

    fraction: dict[str, float]
    ulps: dict[str, float]
    where: dict[str, int]
    port: dict[str, F]
    ref: T.StepRef
    bounds: T.Bounds
    outside: np.ndarray  # layers not judged: statistics out of range for this order

    @property
    def out_of_range(self) -> bool:
        """The port's layer statistics left the normal range of their format (an unscaled
        evaluation: outside the model's stated assumption, see ``tolerance.statistics_range``)."""
        o = self.port.get("statistics_out_of_range")
        return bool(o is not None and np.any(o))

    @property
    def overflowed(self) -> bool:
        """An operation of the port overflowed its format: outside the model (stated
        assumption: no intermediate overflows; an overflowing order fails by range, not by
        rounding)."""
        o = self.port.get("overflow")
        return bool(o is not None and np.any(o))

    @property
    def worst(self) -> float:
        return max(self.fraction.values(), default=0.0)

    def describe(self) -> str:
        items = sorted(self.fraction.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {v:.3g} ({self.ulps[k]:.3g} ulp @{self.where[k]})" for k, v in items)


def judge(case: Case, order: Order) -> Verdict:
    """The worst budget fraction of the port in ``order`` on ``case``, per quantity."""
    ref = case.reference()
    b = case.bounds(ref)
    port = port_step(
        order,
        case.cfg,
        case.flat,
        case.t,
        case.theta0,
        case.g,
        case.m0,
        case.v0,
        case.vmax0,
        case.dtype,
        case.state_dtype,
    )
    frac: dict[str, float] = {}
    ulps: dict[str, float] = {}
    where: dict[str, int] = {}
    sdt = case.state_dtype or case.dtype
    zero_layer = case.flat.layer_sum(ref.v) == 0
    outside = outside_layers(case, ref, order)
    skip_coord = outside[case.flat.layer_id]
    for q, fname in REF_FIELDS.items():
        rv = getattr(ref, fname)
        if rv is None or q not in port or q not in b:
            continue
        pv = np.asarray(port[q], dtype=np.float64)
        bound = b[q]
        keep = np.isfinite(bound)
        if q == "cos2":
            keep &= ~zero_layer & ~outside
        else:
            keep &= ~skip_coord
        with np.errstate(all="ignore"):
            diff = np.abs(pv - rv)
            diff = np.where(np.isnan(diff), np.inf, diff)
            fr = np.where(diff == 0, 0.0, diff / np.where(bound > 0, bound, 0.0))
            fr = np.where(np.isnan(fr), np.inf, fr)
        fr = np.where(keep, fr, 0.0)
        if fr.size == 0:
            continue
        k = int(np.argmax(fr))
        frac[q] = float(fr[k])
        where[q] = k
        dq = sdt if q in ("m", "v", "vmax") else case.dtype
        with np.errstate(all="ignore"):
            ulps[q] = float(diff[k] / ulp(np.asarray(rv[k : k + 1]), dq)[0])
    return Verdict(frac, ulps, where, port, ref, b, outside)


def outside_layers(case: Case, ref: T.StepRef, order: Order) -> np.ndarray:
    """Layers whose statistics, evaluated as ``order`` does, the model declares out of range
    (``tolerance.statistics_range``): not judged. All False for models without the function."""
    out = np.zeros(case.flat.n_layers, dtype=bool)
    fn = getattr(T, "statistics_range", None)
    if fn is None:
        return out
    fp, fs = fmt(case.dtype), fmt(case.state_dtype or case.dtype)
    fx = T.coarser(fp, fs)
    g = fx.acc if order.c_precision == "acc" else fx
    name = f"{'scaled' if order.rescaled else 'unscaled'}, {g.name}"
    for note in fn(case.cfg, ref, case.flat, case.dtype, state_dtype=case.state_dtype):
        if note.evaluation == name:
            out[note.layer] = True
    return out
