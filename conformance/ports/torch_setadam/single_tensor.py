r"""The single-tensor (for-loop) SET-Adam step: per-tensor torch ops, stages recorded natively.

Per tensor, in order: $g \leftarrow -g$ (``maximize``), $g \leftarrow g + \lambda\theta$ (``l2``)
or $\theta \leftarrow (1-\eta\lambda)\theta$ (decoupled), $m \leftarrow \operatorname{lerp}(m, g,
1-\beta_1)$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$, and the tensor's partial sums
(:func:`~conformance.ports.torch_setadam.layer_stats.partials`) while its $v$ is still in cache.
Then the layer scalars, and per tensor

$$
w = \sqrt{a v + \epsilon}, \qquad \tilde w = w - \text{shift}, \qquad
\theta \leftarrow \theta - \frac{\eta}{1-\beta_1^t}\,\frac{m}{\tilde w}
$$

with $a = c_l/(1-\beta_2^t)$ and shift $= \tau\min_l w$ as 0-d device tensors: no host
synchronisation. The element-wise work is computed in the compute dtype (float32 for 16-bit
parameters, which are rounded once at the end).
"""

from __future__ import annotations

import torch

from .dtypes import compute_dtype
from .group import GroupTensors
from .hyper import Hyper
from .layer_stats import Reduced, ScalarsFn, group_scalars, reduce
from .stages import Recorder, Stages, new_stages

RECORDS_STAGES = True


def step(
    g: GroupTensors,
    layer_of: list[int],
    hyper: Hyper,
    *,
    record: bool,
    scalars: ScalarsFn = group_scalars,
) -> Stages | None:
    """One step over the tensors of a group, in place; the stages when ``record``. ``scalars``
    gives the layer scalars (a sharded path swaps in one that reduces across ranks)."""
    params, grads, exp_avgs, exp_avg_sqs, state_steps = g
    n = len(params)
    if n == 0:
        return new_stages(0) if record else None
    rec = Recorder(params) if record else None
    reds: dict[int, Reduced] = {}
    steps: list[float] = []
    for i in range(n):
        p, m, v, st = params[i], exp_avgs[i], exp_avg_sqs[i], state_steps[i]
        gi = grads[i] if not hyper.maximize else -grads[i]
        st += 1
        steps.append(float(st.item()))  # a CPU tensor: no device synchronisation
        if hyper.decays_params and p.dtype == m.dtype == compute_dtype(p.dtype):
            p.mul_(hyper.decay_factor())
        elif hyper.l2:
            gi = gi.add(p, alpha=hyper.weight_decay)
        if gi.dtype != m.dtype:
            gi = gi.to(m.dtype)
        m.lerp_(gi, 1.0 - hyper.beta1)
        v.mul_(hyper.beta2).addcmul_(gi, gi, value=1.0 - hyper.beta2)
        if v.numel() > 0:
            reds[i] = reduce([v])[0]
    bias2 = [hyper.bias2(t) for t in steps]
    sc = scalars(params, reds, layer_of, bias2, eps=hyper.eps, tau=hyper.tau)
    for i in range(n):
        p, m, v = params[i], exp_avgs[i], exp_avg_sqs[i]
        cd = compute_dtype(p.dtype)
        vcd = v if v.dtype == cd else v.to(cd)
        w = torch.mul(vcd, sc.a[i])
        w.add_(hyper.eps).sqrt_()
        if rec is not None:
            rec.embedded(i, torch.mul(vcd, sc.c[i].to(cd)), w.clone())
        w.sub_(sc.shift[i])
        size = hyper.step_size(steps[i])
        if p.dtype == m.dtype == cd:
            p.addcdiv_(m, w, value=size)
        else:
            p32 = p.to(torch.float32, copy=True)
            if hyper.decays_params:
                p32.mul_(hyper.decay_factor())
            p32.addcdiv_(m.to(torch.float32), w, value=size)
            p.copy_(p32)
        if rec is not None:
            rec.updated(i, p, w, sc.c[i])
    return rec.stages if rec is not None else None
