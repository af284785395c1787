r"""The one table of stage names, shared by the reference, the ports, the tolerance model, the
diagnosis, the report and the docs.

A step of SET-Adam computes, in this order (docs: algorithms/setadam.md)

$$g \to m_t,\ v_t \to c_l \to vs = c_l v\ \text{(S)} \to w = \sqrt{vs/(1-\beta_2^t)+\epsilon}\
  \text{(E)} \to \tilde w = w - \tau \min_l w\ \text{(T)} \to \theta_t - \theta_{t-1}
  \to \theta_t,$$

and Adam replaces (S), (E), (T) by ``denom`` $= \sqrt{\hat v + \epsilon_\text{root}} + \epsilon$.
This module holds names only (no arithmetic), so a port may import it without borrowing anything
of the reference's computation.
"""

from __future__ import annotations

from typing import Final

GRAD: Final = "grad"
M: Final = "m"
V: Final = "v"
VMAX: Final = "vmax"
COS2: Final = "cos2"
DOWN_SCALING: Final = "down_scaling"
EPSILON_EMBEDDING: Final = "epsilon_embedding"
DOWN_TRANSLATING: Final = "down_translating"
DENOM: Final = "denom"
UPDATE: Final = "update"
PARAMS: Final = "params"

#: SET-Adam's per-coordinate stages in the order they are computed.
SETADAM_STAGES: Final[tuple[str, ...]] = (
    GRAD,
    M,
    V,
    DOWN_SCALING,
    EPSILON_EMBEDDING,
    DOWN_TRANSLATING,
    UPDATE,
)
#: Adam's per-coordinate stages in the order they are computed.
ADAM_STAGES: Final[tuple[str, ...]] = (GRAD, M, V, DENOM, UPDATE)
#: Every quantity the harness can compare, in computation order (the diagnosis reports the first
#: one over budget). ``cos2`` is per layer; all others are per coordinate.
COMPUTATION_ORDER: Final[tuple[str, ...]] = (
    GRAD,
    M,
    V,
    VMAX,
    COS2,
    DOWN_SCALING,
    EPSILON_EMBEDDING,
    DOWN_TRANSLATING,
    DENOM,
    UPDATE,
    PARAMS,
)
#: The moments a port's state holds.
STATE_QUANTITIES: Final[tuple[str, ...]] = (M, V, VMAX)
#: The intermediates a port may record for a step (``Port.stages()`` keys).
RECORDABLE: Final[tuple[str, ...]] = (COS2, DOWN_SCALING, EPSILON_EMBEDDING, DOWN_TRANSLATING, UPDATE)
#: The paper's letters for SET-Adam's three operations.
SYMBOLS: Final[dict[str, str]] = {DOWN_SCALING: "S", EPSILON_EMBEDDING: "E", DOWN_TRANSLATING: "T"}
#: One line per name, with the formula in the symbols of docs/.
DESCRIPTIONS: Final[dict[str, str]] = {
    GRAD: "effective gradient g (negated for maximize, plus lambda*theta for l2 weight decay)",
    M: "first moment m_t = beta1 m_{t-1} + (1 - beta1) g",
    V: "second moment v_t = beta2 v_{t-1} + (1 - beta2) g^2 (unscaled)",
    VMAX: "amsgrad running maximum of v (torch) or of v-hat (optax)",
    COS2: "c_l = (sum v)^2 / (d_l sum v^2), per layer",
    DOWN_SCALING: "(S) vs = c_l v",
    EPSILON_EMBEDDING: "(E) w = sqrt(vs / (1 - beta2^t) + eps)",
    DOWN_TRANSLATING: "(T) wt = w - tau min_l w",
    DENOM: "Adam's denominator sqrt(v-hat + eps_root) + eps",
    UPDATE: "theta_t - theta_{t-1}",
    PARAMS: "theta_t",
}
#: Field of ``setadam_ref.SETAdamTrace`` / ``AdamTrace`` holding each per-coordinate stage.
TRACE_FIELDS: Final[dict[str, str]] = {
    GRAD: "grad",
    M: "m",
    V: "v",
    VMAX: "vmax",
    DOWN_SCALING: "v_scaled",
    EPSILON_EMBEDDING: "w",
    DOWN_TRANSLATING: "w_translated",
    DENOM: "denom",
    UPDATE: "update",
}
