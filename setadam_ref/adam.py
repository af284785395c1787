r"""One Adam step in any torch.optim / optax convention (docs: algorithms/adam.md).

$$\hat v_t = \frac{v_t}{1-\beta_2^t},\quad
  \text{denom} = \sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon,\quad
  \theta_t = \theta_{t-1}(1 - \text{lr}\,\lambda_\text{dec})
           - \frac{\text{lr}}{1-\beta_1^t}\,\frac{m_t}{\text{denom}} .$$

amsgrad replaces $\hat v_t$ by $v^{\max}_t / (1-\beta_2^t)$ with $v^{\max}_t=\max(v^{\max}_{t-1},
v_t)$ (torch) or by $\max(v^{\max}_{t-1}, \hat v_t)$ (optax, which stores the corrected maximum).
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import F64Array
from .blocks import Block, Scratch, map_blocks, split
from .config import AdamConfig
from .flat import FlatStep
from .moments import (
    descend,
    effective_gradient,
    step_scalars,
    traced_descent_outputs,
    update_moments,
)
from .trace import AdamTrace


def adam_step(
    flat: FlatStep,
    vmax: list[F64Array] | None,
    vmax_out: list[F64Array] | None,
    cfg: AdamConfig,
    t: int,
    trace: bool,
) -> tuple[list[bool], AdamTrace | None]:
    """Fill ``flat``'s outputs (and ``vmax_out``); return per-block suspect flags and the trace."""
    b1, b2 = cfg.betas
    sc = step_scalars(cfg, t)
    bc1, bc2, l2 = sc.bias_correction1, sc.bias_correction2, sc.l2
    tr = {k: flat.traced() for k in ("grad", "denom", "stepsize", "update")} if trace else None

    def block(b: Block, s: Scratch) -> bool:
        i, sl = b.array, slice(b.start, b.stop)
        n = b.stop - b.start
        t1, t2 = s.t1[:n], s.t2[:n]
        p, m_new, v_new = flat.p[i][sl], flat.m_out[i][sl], flat.v_out[i][sl]
        g = effective_gradient(flat.g[i][sl], p, maximize=cfg.maximize, l2=l2, out=t2)
        if tr is not None:
            tr["grad"][i][sl] = g
        update_moments(g, flat.m[i][sl], flat.v[i][sl], b1, b2, m_new, v_new, t1)
        if vmax is not None and vmax_out is not None:
            vm_old, vm_new = vmax[i][sl], vmax_out[i][sl]
            if cfg.amsgrad_mode == "torch":
                np.maximum(vm_old, v_new, out=vm_new)
                np.divide(vm_new, bc2, out=t1)
            else:
                np.divide(v_new, bc2, out=t1)
                np.maximum(vm_old, t1, out=vm_new)
                t1[...] = vm_new
        else:
            np.divide(v_new, bc2, out=t1)
        if cfg.eps_root != 0.0:
            np.add(t1, cfg.eps_root, out=t1)
        np.sqrt(t1, out=t1)
        np.add(t1, cfg.eps, out=t1)
        if tr is not None:
            tr["denom"][i][sl] = t1
        descend(p, m_new, t1, sc, flat.p_out[i][sl], *traced_descent_outputs(tr, i, sl))
        # An overflowed v gives denom = inf and a zero update, so v must be screened too.
        return flat.output_suspect(b) or (
            flat.check_finite and not math.isfinite(float(v_new.sum()))
        )

    suspect = map_blocks(block, split(flat.sizes))
    if tr is None:
        return suspect, None
    return suspect, AdamTrace(
        t=t,
        bias_correction1=bc1,
        bias_correction2=bc2,
        grad=flat.shaped(tr["grad"]),
        m=flat.shaped(flat.m_out),
        v=flat.shaped(flat.v_out),
        vmax=None if vmax_out is None else flat.shaped(vmax_out),
        denom=flat.shaped(tr["denom"]),
        stepsize=flat.shaped(tr["stepsize"]),
        update=flat.shaped(tr["update"]),
    )
