r"""One SET-Adam step, as written in docs/src/algorithms/setadam.md: the moments, then per layer
(S), (E), (T), then the descent.

$$g_t = \sigma\nabla_t + \lambda_{\texttt{l2}}\theta_{t-1},\quad
  m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,$$

$$\text{(S)}\ c_l = \frac{(\sum_i v_{l,i})^2}{d_l \sum_i v_{l,i}^2},\ vs_l = c_l v_l,\qquad
  \text{(E)}\ w_l = \sqrt{\frac{vs_l}{1-\beta_2^t} + \epsilon},\qquad
  \text{(T)}\ \tilde w_l = w_l - \tau \min_i w_{l,i},$$

$$\theta_t = \rho\,\theta_{t-1} - \frac{\text{lr}}{1-\beta_1^t}\,\frac{m_t}{\tilde w}.$$

The step is a composition of named stage functions held in a :class:`SETAdamStages` record;
:data:`DEFINITION` is the definition above (``setadam_ref.step`` uses it). The catalogue of known
deviations swaps single stages to replay a port's bug on this very code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from . import shared, stages
from .arrays import F64Array, shaped_like
from .config import SETAdamConfig
from .context import Context, context
from .layers import Layers
from .stages import LayerMoments, layer_min
from .state import State
from .trace import LayerStats, SETAdamTrace

Arrays = tuple[F64Array, ...]


def layer_statistics(v: Arrays, ctx: Context) -> LayerMoments:
    """(S), first half: $d_l$, $c_l$, $\\min v$, $\\max v$ of one layer (``stages.layer_moments``)."""
    return stages.layer_moments(v)


def down_scale(v: Arrays, c: float, ctx: Context) -> Arrays:
    """(S), second half: $vs_l = c_l v_l$."""
    return tuple(stages.down_scale(x, c)[1] for x in v)


def embed(vs: Arrays, v: Arrays, c: float, ctx: Context) -> Arrays:
    """(E): $w_l = \\sqrt{vs_l / (1-\\beta_2^t) + \\epsilon}$ (``v``, ``c``: for variants)."""
    return tuple(stages.embed(x, ctx.bias_correction2, ctx.config.eps) for x in vs)


def translate(w: Arrays, ctx: Context) -> Arrays:
    """(T): $\\tilde w_l = w_l - \\tau \\min_i w_{l,i}$."""
    assert isinstance(ctx.config, SETAdamConfig)
    w_min = layer_min(w)
    return tuple(stages.translate_by(x, ctx.config.tau, w_min) for x in w)


class SETAdamStages(NamedTuple):
    """The stage functions of one SET-Adam step; the defaults are the definition.

    Per array: ``gradient(theta, g, ctx)``, ``moments(m, v, g, ctx) -> (m, v)``,
    ``descend(theta, m, wt, ctx)``. Per layer (tuples of the layer's flattened arrays):
    ``layer_statistics(v, ctx) -> LayerMoments``, ``down_scale(v, c, ctx)``,
    ``embed(vs, v, c, ctx)``, ``translate(w, ctx)``.
    """

    gradient: Callable[[F64Array, F64Array, Context], F64Array] = shared.effective_gradient
    moments: Callable[[F64Array, F64Array, F64Array, Context], tuple[F64Array, F64Array]] = (
        shared.moments
    )
    layer_statistics: Callable[[Arrays, Context], LayerMoments] = layer_statistics
    down_scale: Callable[[Arrays, float, Context], Arrays] = down_scale
    embed: Callable[[Arrays, Arrays, float, Context], Arrays] = embed
    translate: Callable[[Arrays, Context], Arrays] = translate
    descend: Callable[[F64Array, F64Array, F64Array, Context], F64Array] = shared.descend


#: SET-Adam as defined (docs: algorithms/setadam.md).
DEFINITION = SETAdamStages()


def _take(arrays: Sequence[F64Array], layer: tuple[int, ...]) -> Arrays:
    return tuple(arrays[i] for i in layer)


def _put(arrays: list[F64Array], layer: tuple[int, ...], values: Arrays) -> None:
    for i, x in zip(layer, values, strict=True):
        arrays[i] = x


@np.errstate(all="ignore")
def setadam_step(
    params: Sequence[F64Array],
    grads: Sequence[F64Array],
    state: State,
    config: SETAdamConfig,
    layers: Layers,
    stages: SETAdamStages = DEFINITION,
    trace: bool = False,
) -> tuple[Arrays, State, SETAdamTrace | None]:
    """Step $t$ = ``state.step + 1`` from float64 inputs: ``(theta_t, state, trace or None)``.

    No input is checked (``setadam_ref.step`` does that); arithmetic is IEEE (NaN/Inf propagate).
    ``layers`` must partition the arrays. Outputs have the inputs' shapes and are read-only.
    """
    ctx = context(config, int(state.step) + 1, layers)
    theta0 = [np.ravel(p) for p in params]
    g = [stages.gradient(p, np.ravel(x), ctx) for p, x in zip(theta0, grads, strict=True)]
    mv = [
        stages.moments(np.ravel(m0), np.ravel(v0), x, ctx)
        for m0, v0, x in zip(state.m, state.v, g, strict=True)
    ]
    m, v = tuple(x[0] for x in mv), tuple(x[1] for x in mv)
    ctx = ctx._replace(v=v)
    stats: list[LayerMoments] = []
    vs, w, wt = ([np.empty(0)] * len(params) for _ in range(3))
    for layer in layers:  # (S) and (E)
        v_l = _take(v, layer)
        stats.append(stages.layer_statistics(v_l, ctx))
        c = stats[-1].cos2
        _put(vs, layer, stages.down_scale(v_l, c, ctx))
        _put(w, layer, stages.embed(_take(vs, layer), v_l, c, ctx))
    # (T) needs the minimum over the layer's whole w; a variant may look at every layer's.
    ctx = ctx._replace(w=tuple(w))
    for layer in layers:  # (T)
        _put(wt, layer, stages.translate(_take(w, layer), ctx))
    theta = [stages.descend(p, mi, d, ctx) for p, mi, d in zip(theta0, m, wt, strict=True)]

    def shaped(arrays: Sequence[F64Array]) -> Arrays:
        return shaped_like(arrays, params)

    new_state = State(step=ctx.t, m=shaped(m), v=shaped(v))
    if not trace:
        return shaped(theta), new_state, None
    rec = shared.recorded(ctx, g, new_state.m, new_state.v, wt, theta, theta0, params)
    return (
        shaped(theta),
        new_state,
        SETAdamTrace(
            **rec,
            v_scaled=shaped(vs),
            w=shaped(w),
            w_translated=shaped(wt),
            layers=tuple(
                LayerStats(layer, s.size, s.cos2, s.v_min, layer_min(_take(w, layer)))
                for layer, s in zip(layers, stats, strict=True)
            ),
        ),
    )
