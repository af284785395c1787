r"""One Adam step in any torch.optim / optax convention, as written in docs/src/algorithms/adam.md.

$$g_t = \sigma\nabla_t + \lambda_{\texttt{l2}}\theta_{t-1},\quad
  m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$

$$\hat v_t = \frac{v_t}{1-\beta_2^t},\quad
  \text{denom} = \sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon,\quad
  \theta_t = \rho\,\theta_{t-1} - \frac{\text{lr}}{1-\beta_1^t}\,\frac{m_t}{\text{denom}} .$$

With ``eps_mode="tf"`` (TensorFlow, keras) $\epsilon$ is added to the unscaled root and the bias
corrections are folded into the step size: $\text{denom} = \sqrt{v_t + \epsilon_\text{root}} +
\epsilon$, $\theta_t = \rho\,\theta_{t-1} - \frac{\text{lr}\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
\frac{m_t}{\text{denom}}$; the ``vhat`` stage then returns $v_t$ (or $v^{\max}_t$) unscaled.

amsgrad replaces $\hat v_t$ by $v^{\max}_t / (1-\beta_2^t)$ with $v^{\max}_t=\max(v^{\max}_{t-1},
v_t)$ (torch) or by $\max(v^{\max}_{t-1}, \hat v_t)$ (optax, which stores the corrected maximum).
The step is a composition of the stage functions of an :class:`AdamStages` record;
:data:`DEFINITION` is the definition above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from . import shared
from .arrays import F64Array, shaped_like
from .config import AdamConfig
from .context import Context, context
from .state import State
from .trace import AdamTrace


def vhat(v: F64Array, vmax: F64Array | None, ctx: Context) -> tuple[F64Array, F64Array | None]:
    """$(\\hat v_t, v^{\\max}_t)$: ``vmax`` is $v^{\\max}_{t-1}$ with amsgrad, else ``None``."""
    assert isinstance(ctx.config, AdamConfig)
    # tf folds b2 into the step size (context.step_size): the root is of the unscaled v.
    tf = ctx.config.eps_mode == "tf"
    bc2 = ctx.bias_correction2
    if vmax is None:
        if tf:
            return v, None
        return v / bc2, None
    if ctx.config.amsgrad_mode == "torch":
        vm = np.maximum(vmax, v)
        return (vm if tf else vm / bc2), vm
    vm = np.maximum(vmax, v / bc2)
    return vm, vm


def denom(v_hat: F64Array, ctx: Context) -> F64Array:
    """$\\sqrt{\\hat v_t + \\epsilon_\\text{root}} + \\epsilon$."""
    assert isinstance(ctx.config, AdamConfig)
    eps_root = ctx.config.eps_root
    # Adding eps_root = 0 is skipped: it is exact except that it turns -0.0 into +0.0.
    r: F64Array = np.sqrt(v_hat + eps_root if eps_root != 0.0 else v_hat) + ctx.config.eps
    return r


class AdamStages(NamedTuple):
    """The stage functions of one Adam step (per array); the defaults are the definition."""

    gradient: Callable[[F64Array, F64Array, Context], F64Array] = shared.effective_gradient
    moments: Callable[[F64Array, F64Array, F64Array, Context], tuple[F64Array, F64Array]] = (
        shared.moments
    )
    vhat: Callable[[F64Array, F64Array | None, Context], tuple[F64Array, F64Array | None]] = vhat
    denom: Callable[[F64Array, Context], F64Array] = denom
    descend: Callable[[F64Array, F64Array, F64Array, Context], F64Array] = shared.descend


#: Adam as defined (docs: algorithms/adam.md).
DEFINITION = AdamStages()


@np.errstate(all="ignore")
def adam_step(
    params: Sequence[F64Array],
    grads: Sequence[F64Array],
    state: State,
    config: AdamConfig,
    stages: AdamStages = DEFINITION,
    trace: bool = False,
) -> tuple[tuple[F64Array, ...], State, AdamTrace | None]:
    """Step $t$ = ``state.step + 1`` from float64 inputs: ``(theta_t, state, trace or None)``.

    No input is checked (``setadam_ref.step`` does that); arithmetic is IEEE. With amsgrad a
    missing ``state.vmax`` counts as zeros (its initial value). Outputs are read-only.
    """
    ctx = context(config, int(state.step) + 1)
    n = len(params)
    vmax0: Sequence[F64Array | None] = [None] * n
    if config.amsgrad:
        vmax0 = state.vmax if state.vmax is not None else [np.zeros(np.shape(p)) for p in params]
    theta0 = [np.ravel(p) for p in params]
    g = [stages.gradient(p, np.ravel(x), ctx) for p, x in zip(theta0, grads, strict=True)]
    mv = [
        stages.moments(np.ravel(m), np.ravel(v), x, ctx)
        for m, v, x in zip(state.m, state.v, g, strict=True)
    ]
    m, v = [x[0] for x in mv], [x[1] for x in mv]
    vh = [
        stages.vhat(x, None if vm is None else np.ravel(vm), ctx)
        for x, vm in zip(v, vmax0, strict=True)
    ]
    d = [stages.denom(x[0], ctx) for x in vh]
    theta = [stages.descend(p, mi, di, ctx) for p, mi, di in zip(theta0, m, d, strict=True)]

    def shaped(arrays: Sequence[F64Array]) -> tuple[F64Array, ...]:
        return shaped_like(arrays, params)

    vmax = shaped([x[1] for x in vh if x[1] is not None]) if config.amsgrad else None
    new_state = State(step=ctx.t, m=shaped(m), v=shaped(v), vmax=vmax)
    if not trace:
        return shaped(theta), new_state, None
    rec = shared.recorded(ctx, g, new_state.m, new_state.v, d, theta, theta0, params)
    return shaped(theta), new_state, AdamTrace(**rec, vmax=vmax, denom=shaped(d))
