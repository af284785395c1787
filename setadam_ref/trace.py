"""Per-step records of every intermediate, named as in docs/ (opt-in: ``step(..., trace=True)``).

Array fields are tuples of float64 arrays with the shapes of the parameters; per-layer scalars are
in ``SETAdamTrace.layers``. Stage names (``STAGES``) are shared with the harness and our ports so a
diagnosis points at the same name everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

from .arrays import F64Array
from .stage_names import ADAM_STAGES, SETADAM_STAGES, TRACE_FIELDS

#: SET-Adam's stages in the order they are computed (``stage_names.SETADAM_STAGES``).
STAGES: tuple[str, ...] = SETADAM_STAGES
__all__ = ["ADAM_STAGES", "STAGES", "AdamTrace", "LayerStats", "SETAdamTrace", "Trace"]


class LayerStats(NamedTuple):
    """Statistics of one layer $l$ at step $t$.

    ``cos2`` is $c_l = (\\sum_i v_i)^2 / (d_l \\sum_i v_i^2)$; it is reported as 1.0 for an
    all-zero or empty layer (no angle exists; $c_l v_l = 0$ whatever value is chosen, and 1 is
    the value that leaves $v$ unchanged). ``v_min`` and ``w_min`` are NaN for an empty layer.
    """

    arrays: tuple[int, ...]
    size: int
    cos2: float
    v_min: float
    w_min: float


class AdamTrace(NamedTuple):
    """Adam's intermediates: denom $= \\sqrt{\\hat v + \\epsilon_\\text{root}} + \\epsilon$,
    stepsize $= \\text{lr}/((1-\\beta_1^t)\\,\\text{denom})$, update $=\\theta_t-\\theta_{t-1}$."""

    t: int
    bias_correction1: float
    bias_correction2: float
    grad: tuple[F64Array, ...]
    m: tuple[F64Array, ...]
    v: tuple[F64Array, ...]
    vmax: tuple[F64Array, ...] | None
    denom: tuple[F64Array, ...]
    stepsize: tuple[F64Array, ...]
    update: tuple[F64Array, ...]


class SETAdamTrace(NamedTuple):
    """SET-Adam's intermediates.

    ``v_scaled`` (down-scaling) $= c_l v$; ``w`` (epsilon-embedding)
    $= \\sqrt{c_l v/(1-\\beta_2^t) + \\epsilon}$; ``w_translated`` (down-translating)
    $= w - \\tau \\min_l w$; ``stepsize`` $= \\text{lr}/((1-\\beta_1^t)\\,\\tilde w)$;
    ``update`` $= \\theta_t - \\theta_{t-1}$ (weight decay included).
    """

    t: int
    bias_correction1: float
    bias_correction2: float
    grad: tuple[F64Array, ...]
    m: tuple[F64Array, ...]
    v: tuple[F64Array, ...]
    v_scaled: tuple[F64Array, ...]
    w: tuple[F64Array, ...]
    w_translated: tuple[F64Array, ...]
    stepsize: tuple[F64Array, ...]
    update: tuple[F64Array, ...]
    layers: tuple[LayerStats, ...]

    def stage(self, name: str) -> tuple[F64Array, ...]:
        """The per-array values of the stage called ``name`` (one of ``STAGES``)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are {STAGES}")
        value: tuple[F64Array, ...] = getattr(self, TRACE_FIELDS[name])
        return value

Trace = AdamTrace | SETAdamTrace
