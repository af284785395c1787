r"""One SET-Adam step: moments, then the three stages per layer, then the update.

$$c_l = \frac{(\sum_i v_{l,i})^2}{d_l \sum_i v_{l,i}^2},\quad vs_l = c_l v_l,\quad
  w_l = \sqrt{\frac{vs_l}{1-\beta_2^t} + \epsilon},\quad
  \tilde w_l = w_l - \tau \min_i w_{l,i},\quad
  \theta_t = \theta_{t-1}(1-\text{lr}\,\lambda_\text{dec}) - \frac{\text{lr}}{1-\beta_1^t}
             \frac{m_t}{\tilde w}.$$

Two passes over the blocks: the first forms $m_t, v_t$ and each block's scaled sums; the layer
statistics are then combined (``stages.combine``); the second applies (S), (E), (T) and the update.
$\min_i w_{l,i}$ is obtained from $\min_i v_{l,i}$ through the same operations, which is exact
(each correctly rounded operation is monotone, so the minimum commutes with them).
"""

from __future__ import annotations

import math

from .blocks import Block, Scratch, map_blocks, split
from .config import SETAdamConfig
from .flat import FlatStep
from .layers import Layers
from .moments import (
    descend,
    effective_gradient,
    step_scalars,
    traced_descent_outputs,
    update_moments,
)
from .stages import ScaledSums, combine, down_scale, embed, embed_scalar, scaled_sums, translate_by
from .trace import LayerStats, SETAdamTrace


def setadam_step(
    flat: FlatStep, cfg: SETAdamConfig, layers: Layers, t: int, trace: bool
) -> tuple[list[bool], list[LayerStats], SETAdamTrace | None]:
    """Fill ``flat``'s outputs; return per-block suspect flags, layer statistics and the trace."""
    b1, b2 = cfg.betas
    sc = step_scalars(cfg, t)
    bc1, bc2, l2 = sc.bias_correction1, sc.bias_correction2, sc.l2
    names = ("grad", "v_scaled", "w", "w_translated", "stepsize", "update")
    tr = {k: flat.traced() for k in names} if trace else None

    def moments(b: Block, s: Scratch) -> ScaledSums:
        i, sl = b.array, slice(b.start, b.stop)
        n = b.stop - b.start
        t1, t2 = s.t1[:n], s.t2[:n]
        g = effective_gradient(flat.g[i][sl], flat.p[i][sl], maximize=cfg.maximize, l2=l2, out=t2)
        if tr is not None:
            tr["grad"][i][sl] = g
        v_new = flat.v_out[i][sl]
        update_moments(g, flat.m[i][sl], flat.v[i][sl], b1, b2, flat.m_out[i][sl], v_new, t1)
        return scaled_sums(v_new, t1)

    blocks = split(flat.sizes)
    first = map_blocks(moments, blocks)
    pieces: list[list[ScaledSums]] = [[] for _ in flat.sizes]
    for b, sums in zip(blocks, first):
        pieces[b.array].append(sums)

    stats: list[LayerStats] = []
    c_of = [1.0] * len(flat.sizes)
    w_min_of = [math.nan] * len(flat.sizes)
    for layer in layers:
        lm = combine(p for i in layer for p in pieces[i])
        if lm.size == 0:
            w_min = math.nan
        else:
            # min w from min v through the very operations (S) and (E) apply to each entry.
            w_min = embed_scalar(lm.v_min * lm.cos2, bc2, cfg.eps)
        stats.append(LayerStats(layer, lm.size, lm.cos2, lm.v_min, w_min))
        for i in layer:
            c_of[i], w_min_of[i] = lm.cos2, w_min

    def update(b: Block, s: Scratch) -> bool:
        i, sl = b.array, slice(b.start, b.stop)
        t1 = s.t1[: b.stop - b.start]
        p, m_new = flat.p[i][sl], flat.m_out[i][sl]
        down_scale(flat.v_out[i][sl], c_of[i], out=t1)
        if tr is not None:
            tr["v_scaled"][i][sl] = t1
        embed(t1, bc2, cfg.eps, out=t1)
        if tr is not None:
            tr["w"][i][sl] = t1
        translate_by(t1, cfg.tau, w_min_of[i], out=t1)
        if tr is not None:
            tr["w_translated"][i][sl] = t1
        descend(p, m_new, t1, sc, flat.p_out[i][sl], *traced_descent_outputs(tr, i, sl))
        return flat.output_suspect(b)

    suspect = map_blocks(update, blocks)
    if tr is None:
        return suspect, stats, None
    return (
        suspect,
        stats,
        SETAdamTrace(
            t=t,
            bias_correction1=bc1,
            bias_correction2=bc2,
            grad=flat.shaped(tr["grad"]),
            m=flat.shaped(flat.m_out),
            v=flat.shaped(flat.v_out),
            v_scaled=flat.shaped(tr["v_scaled"]),
            w=flat.shaped(tr["w"]),
            w_translated=flat.shaped(tr["w_translated"]),
            stepsize=flat.shaped(tr["stepsize"]),
            update=flat.shaped(tr["update"]),
            layers=tuple(stats),
        ),
    )
