r"""Tolerance model: rigorous per-coordinate error bounds for one step of Adam / SET-Adam in a dtype.

The derivation is in docs/src/numerics/tolerance.md; the symbols here follow it. Every quantity of
a step is computed from the reference values along the step (the exact float64 trace), and its
*absolute* error bound ``E`` is propagated stage by stage:

- one rounding per floating-point operation, $\max(u|x|, \eta)$: relative $u$ in the normal range,
  and an *underflow excess* $\max(\eta - u|x|, 0)$ that is carried, amplified, through every later
  operation (:mod:`.lemmas`);
- every operation order a correct port may use (the class is listed in the docs and written out
  as ports in ``conformance/tests/op_orders.py``): each stage's bound is the largest over them;
- the constants ($\beta$, $1-\beta$, $1-\beta^t$, lr, eps, tau, lambda) with their exact rounding
  errors in the scalar format, at least float32 (:mod:`.scalars`);
- layer statistics in the ratio, mean or norm form, rescaled or (where it stays in range)
  unscaled (:mod:`.statistics`); rigorous lemmas for quotients, square roots and the layer
  minimum (:mod:`.stages`, :mod:`.update`);
- moments in the state format, everything else in the parameter format or the coarser of the
  two (:mod:`.model`).

Inputs may carry errors (``InputErrors``): zero for a per-step re-synced comparison, the previous
step's output bounds for free-running (the bound of a trajectory is the composition of one-step
bounds along the reference trajectory).
"""

from __future__ import annotations

from .model import coarser, comparison_bounds, statistics_range, step_bounds
from .records import QUANTITIES, Bounds, InputErrors, StepRef
from .scalars import rho_bias_correction, rho_one_minus, scalar_u
from .statistics import RangeNote

__all__ = [
    "QUANTITIES",
    "Bounds",
    "InputErrors",
    "RangeNote",
    "StepRef",
    "coarser",
    "comparison_bounds",
    "rho_bias_correction",
    "rho_one_minus",
    "scalar_u",
    "statistics_range",
    "step_bounds",
]
