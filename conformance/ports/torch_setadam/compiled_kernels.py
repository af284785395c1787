r"""The two functions that ``torch.compile`` turns into the CPU kernels of the compiled path, each
stepping a *chunk* of tensors in place with one loop per tensor.

:func:`moments` (first pass): per tensor, in the compute dtype, $g \leftarrow \pm g$
($+\lambda\theta$ for ``l2``), $m \leftarrow \operatorname{lerp}(m, g, 1-\beta_1)$,
$v \leftarrow \beta_2 v + ((1-\beta_2) g) g$, both rounded to the state dtype and written back,
and the reductions of the rounded $v$ in the same loop: $\min v$ (in the state dtype, exact) and
$\sum v$, $\sum v^2$ accumulated in float64. It reads $g, m, v$ and writes $m, v$: 20 bytes per
float32 parameter (24 with ``l2``, which also reads $\theta$).

:func:`update` (second pass, after the layer scalars are known): per tensor
$\theta \leftarrow \theta\,\delta + s\,\frac{m}{\sqrt{a v + \epsilon} - \text{shift}}$ with the
decay factor $\delta$ ($1-\eta\lambda$ when decoupled, else 1), the step size
$s = -\eta/(1-\beta_1^t)$, $a = c_l/(1-\beta_2^t)$ and the shift $\tau\min_l w$, all from a
float64 table. It reads $\theta, m, v$ and writes $\theta$: 16 bytes. The two passes move the
36 bytes per float32 parameter of the floor in design/ANCHORS.md.

Sums that cannot overflow. For float32, bfloat16 and float16 $v$ the unscaled float64 sums cannot
overflow or underflow (squares of float32 values lie in $[2^{-298}, 2^{256}]$). Float64 $v$ gets
three pairs of sums in the same loop: unscaled, times $2^{-600}$ and times $2^{+600}$ (exact
multiplications), and its $\max v$; the host
(:mod:`~conformance.ports.torch_setadam.compiled_scalars`) takes the pair of the layer's regime.
The arguments are lists of 1-D tensors and float64 tables, so new hyperparameter values are new
data, not a new graph: ``torch.compile`` traces once per chunk size, dtypes and ``l2``.
"""

from __future__ import annotations

import torch
from torch import Tensor

F64 = torch.float64

# columns of the group scalars ``gsc`` of :func:`moments`
ONE_MINUS_BETA1, BETA2, ONE_MINUS_BETA2, SIGN, WEIGHT_DECAY = range(5)
GROUP_SCALARS = 5
# columns of the per-tensor table ``sc`` of :func:`update`
SCALE, SHIFT, STEP_SIZE, DECAY, EPS = range(5)
UPDATE_SCALARS = 5
# columns of the partials returned by :func:`moments` (float64 state: all eight)
VMIN, S1, S2, VMAX, S1_DOWN, S2_DOWN, S1_UP, S2_UP = range(8)
DOWN, UP = 2.0**-600, 2.0**600


def compute_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return F64 if t.dtype == F64 else torch.float32


def _partials(v: Tensor) -> list[Tensor]:
    """The partials of one tensor's (new, state-dtype) second moment ``v`` (0-d float64)."""
    x = v.to(F64)
    # the minimum in the state dtype: exact, and half the vector work of float64 for float32
    lo = v.amin().to(F64)
    s1, s2 = x.sum(), (x * x).sum()
    if v.dtype != F64:
        return [lo, s1, s2]
    xd, xu = x * DOWN, x * UP
    hi = x.amax()
    return [lo, s1, s2, hi, xd.sum(), (xd * xd).sum(), xu.sum(), (xu * xu).sum()]


def moments(
    ps: list[Tensor], gs: list[Tensor], ms: list[Tensor], vs: list[Tensor], gsc: Tensor, l2: bool
) -> tuple[Tensor, ...]:
    """Update ``ms`` and ``vs`` in place; returns the partials of every tensor in turn (3 0-d
    tensors each, or 8 for float64 state).

    ``gsc`` has one row of group scalars per tensor slot (all rows equal). Why not one shared
    row: a scalar read by every tensor's nodes makes inductor's fusion score join the reductions
    of different tensors first, and then a tensor's $m$ update no longer fits its own $v$ loop
    and gets a loop of its own, which reads $g$ a second time (6 streams instead of 5). Stacking
    the partials in the graph would add a serial copy region per partial, so they come back as
    they are."""
    out: list[Tensor] = []
    for i, (p, g, m, v) in enumerate(zip(ps, gs, ms, vs)):
        row = gsc[i]
        cd = compute_dtype(p)
        gi = g.to(cd) * row[SIGN].to(cd)
        if l2:
            gi = gi + row[WEIGHT_DECAY].to(cd) * p.to(cd)
        m_new = torch.lerp(m.to(cd), gi, row[ONE_MINUS_BETA1].to(cd)).to(m.dtype)
        v_cd = v.to(cd) * row[BETA2].to(cd) + row[ONE_MINUS_BETA2].to(cd) * gi * gi
        v_new = v_cd.to(v.dtype)
        m.copy_(m_new)
        v.copy_(v_new)
        out += _partials(v_new)
    return tuple(out)


def update(ps: list[Tensor], ms: list[Tensor], vs: list[Tensor], sc: Tensor) -> None:
    """Update ``ps`` in place from the moments and the per-tensor scalars ``sc`` (one row each)."""
    for i, (p, m, v) in enumerate(zip(ps, ms, vs)):
        cd = compute_dtype(p)
        w = torch.sqrt(v.to(cd) * sc[i, SCALE].to(cd) + sc[i, EPS].to(cd)) - sc[i, SHIFT].to(cd)
        p_new = p.to(cd) * sc[i, DECAY].to(cd) + sc[i, STEP_SIZE].to(cd) * m.to(cd) / w
        p.copy_(p_new.to(p.dtype))
