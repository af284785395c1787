"""The records of the tolerance model: one step's reference values, input errors, and bounds.

``StepRef`` holds the reference values of every quantity of one step (the exact float64 trace,
flattened with :class:`conformance.layout.Flat`); ``InputErrors`` the absolute error bounds of
the step's inputs (zero for a re-synced step); ``Bounds`` the absolute error bound of every
quantity the model bounds (``QUANTITIES``), per coordinate (``cos2``: per layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from setadam_ref import State
from setadam_ref.trace import AdamTrace, SETAdamTrace, Trace

from ..layout import Flat

F = np.ndarray

#: quantities the model bounds (flat float64 arrays of all coordinates, except "cos2": per layer)
QUANTITIES: tuple[str, ...] = (
    "grad",
    "m",
    "v",
    "vmax",
    "denom",
    "down_scaling",
    "epsilon_embedding",
    "down_translating",
    "update",
    "params",
    "cos2",
)


@dataclass
class StepRef:
    """Reference values of one step, flattened (float64, exact reference arithmetic)."""

    t: int
    theta0: F
    m0: F
    v0: F
    vmax0: F | None
    grad: F  # effective gradient (after maximize / l2)
    m: F
    v: F
    vmax: F | None
    theta1: F
    update: F
    bias_correction1: float
    bias_correction2: float
    denom: F | None = None  # Adam
    cos2: F | None = None  # SET-Adam: per layer
    v_scaled: F | None = None
    w: F | None = None
    w_translated: F | None = None

    @staticmethod
    def from_trace(
        flat: Flat,
        params: Sequence[np.ndarray],
        state: State,
        new_params: Sequence[np.ndarray],
        trace: Trace,
        views: bool = False,
    ) -> StepRef:
        """The flat reference of a traced step; with ``views``, the step's outputs and trace of
        a one-array problem are read in place (the reference's arrays are read-only), not
        copied: the inputs, which a port is given, stay copies."""
        c = flat.cat
        o = c if not views or len(flat.shapes) != 1 else _ravel
        common = dict(
            t=int(trace.t),
            theta0=c(params),
            m0=c(state.m),
            v0=c(state.v),
            vmax0=None if state.vmax is None else c(state.vmax),
            grad=o(trace.grad),
            m=o(trace.m),
            v=o(trace.v),
            theta1=o(new_params),
            update=o(trace.update),
            bias_correction1=float(trace.bias_correction1),
            bias_correction2=float(trace.bias_correction2),
        )
        if isinstance(trace, AdamTrace):
            return StepRef(
                vmax=None if trace.vmax is None else o(trace.vmax),
                denom=o(trace.denom),
                **common,  # type: ignore[arg-type]
            )
        assert isinstance(trace, SETAdamTrace)
        return StepRef(
            vmax=None,
            cos2=np.array([s.cos2 for s in trace.layers], dtype=np.float64),
            v_scaled=o(trace.v_scaled),
            w=o(trace.w),
            w_translated=o(trace.w_translated),
            **common,  # type: ignore[arg-type]
        )


def _ravel(arrays: Sequence[np.ndarray]) -> F:
    """The one array of a one-array problem, flat (a view of a contiguous one)."""
    return np.ravel(np.asarray(arrays[0], dtype=np.float64))


@dataclass
class InputErrors:
    """Absolute error bounds of a step's inputs (flat); all zero for a re-synced step."""

    theta: F
    m: F
    v: F
    vmax: F | None = None
    grad: F | None = None  # error of the raw gradient (closed loop), None = exact

    @staticmethod
    def zeros(n: int, amsgrad: bool = False) -> InputErrors:
        z = np.zeros(n)
        return InputErrors(z, z, z, z if amsgrad else None)


@dataclass
class Bounds:
    """Absolute error bounds of every quantity of one step (flat arrays; ``cos2`` per layer)."""

    values: dict[str, F] = field(default_factory=dict)

    def __getitem__(self, k: str) -> F:
        return self.values[k]

    def __contains__(self, k: object) -> bool:
        return k in self.values

    def __add__(self, other: Bounds) -> Bounds:
        return Bounds({k: v + other.values[k] for k, v in self.values.items()})

    def scaled(self, factor: float) -> Bounds:
        return Bounds({k: v * factor for k, v in self.values.items()})

    def next_inputs(self) -> InputErrors:
        """Input errors of the next step of a free-running trajectory (open loop)."""
        v = self.values
        return InputErrors(v["params"], v["m"], v["v"], v.get("vmax"))
