r"""SET-Adam for PyTorch: ``SETAdam(torch.optim.Optimizer)``, written from the mathematics.

One step, for every layer :math:`l` (by default one layer per parameter tensor):

$$
\begin{aligned}
m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \quad\text{(state keeps } v_t \text{ unscaled)}\\
c_l &= \frac{(\sum_i v_{l,i})^2}{d_l \sum_i v_{l,i}^2}, \qquad
w = \sqrt{\frac{c_l v}{1-\beta_2^t} + \epsilon}, \qquad
\tilde w = w - \tau \min_l w\\
\theta_t &= \theta_{t-1} - \frac{\eta}{1-\beta_1^t}\,\frac{m_t}{\tilde w}
\end{aligned}
$$

Three implementations sit side by side, like ``torch/optim/adam.py``: a single-tensor (for-loop)
one, a multi-tensor one built on ``torch._foreach_*`` ops, and ``fused=True``, which calls the CUDA
kernels of ``conformance.ports.cuda.torch_fused``. ``foreach=None`` follows torch's default rule:
foreach when every parameter is on a CUDA device, the for-loop otherwise (on CPU torch's foreach
ops are a loop over the same per-tensor kernels, so there is nothing to gain there).

On CUDA (one device, no float64 parameters) ``foreach`` runs a device-resident variant,
``_device_multi_tensor_setadam``: the layer statistics never leave the device (no host
synchronisation in the step), every element-wise stage is one multi-tensor op over the whole list
or one op on a flat float32 buffer, and ``sum v``, ``||v||_2`` are accumulated in float64 (safe for
any finite float32 ``v``). It agrees with the for-loop path to a few float32 ulps of theta; the
notes below on host-side statistics describe the for-loop path and the CPU foreach path.

Numerics, per parameter tensor (the *compute dtype* is float64 for float64 parameters and float32
for every other floating dtype):

* Layer statistics are reduced per tensor with ``aminmax``, ``sum`` and a 2-norm, accumulated in
  the state's dtype promoted to at least float32, then combined per layer on the host in float64
  (``math.fsum`` / ``math.hypot``) as ``c = (S1 / ||v||_2)^2 / d``, clamped to ``[1/d, 1]``.
  When the layer's ``max v`` lies outside a window where ``d * max(v)^2`` can neither overflow nor
  lose relative accuracy to underflow in the accumulation dtype, the sums are recomputed in float64
  on ``v * 2^-k`` with ``2^k`` the binade of ``max v``: scaling by a power of two is exact and
  leaves ``c`` unchanged, so float32 ``v`` up to 3.4e38 or down to 1e-45 gives a finite ``c``.
  An all-zero layer gets ``c = 1`` (``c * v = 0`` whatever ``c`` is).
* ``min_l w`` is taken from ``min_l v`` (``w`` is increasing in ``v``), evaluated on the host in
  the compute dtype with IEEE-rounded operations (no extra pass over ``w``). It may differ from
  the minimum of the ``w`` tensor by an ulp, because torch's vectorised CPU ``sqrt`` is not always
  correctly rounded (about 16% of float32 inputs are off by one ulp on AVX2).
* Low-precision parameters (bfloat16, float16) keep ``exp_avg``/``exp_avg_sq`` in the parameter
  dtype as ``torch.optim.Adam`` does (each moment update rounds once to that dtype); ``w``, the
  translation and the step are computed in float32 and the parameter is rounded once. So float16
  with ``eps = 1e-8`` does not underflow ``eps`` to zero. ``fused=True`` keeps float32 state for
  bfloat16 parameters (the kernels' contract).
* A NaN or infinity in one gradient entry poisons that entry's whole layer: ``c`` and ``min w`` are
  layer-wide, so every parameter of the layer becomes NaN in that step, and the state keeps the
  NaN. Nothing is raised (torch's convention); check your gradients or use gradient clipping.

State per parameter: ``step`` (float32 0-d CPU tensor, as in torch.optim), ``exp_avg``,
``exp_avg_sq`` (unscaled :math:`v`). Parameters whose ``grad`` is ``None`` are skipped and do not
count in their layer; zero-size tensors take part but change nothing.

Stage recording (for the conformance harness): set ``opt.record_stages = True``; after each step
``opt.last_stages`` maps ``"down_scaling"`` (``c v``), ``"epsilon_embedding"`` (``w``),
``"down_translating"`` (``w - tau min w``), ``"update"`` (``theta_t - theta_{t-1}``, float64,
weight decay included) to one tensor per parameter in ``param_groups`` order, and ``"cos2"`` to one
0-d float64 tensor per parameter holding its layer's ``c``. Stages are in the compute dtype. A
skipped parameter (``grad is None``) gets NaN stage tensors, ``cos2 = NaN`` and a zero update.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor

__all__ = ["STAGE_KEYS", "SETAdam", "setadam"]

STAGE_KEYS = ("down_scaling", "epsilon_embedding", "down_translating", "update", "cos2")

Stages = dict[str, list[Tensor]]


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        if isinstance(value, Tensor) and value.numel() == 1 and not value.requires_grad:
            return float(value.item())
        raise TypeError(f"SETAdam: {name} must be a real number, got {value!r}")
    return float(value)


def _validate(
    lr: object, betas: object, eps: object, weight_decay: object, tau: object
) -> tuple[float, tuple[float, float], float, float, float]:
    """Check the hyperparameters; ValueError names the argument, its value and the allowed range."""
    lr_f = _real("lr", lr)
    if not (math.isfinite(lr_f) and lr_f > 0.0):
        raise ValueError(f"SETAdam: invalid lr={lr!r}; need a finite lr > 0")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"SETAdam: invalid betas={betas!r}; need a pair (beta1, beta2)")
    bs = []
    for i, b in enumerate(betas):
        bf = _real(f"betas[{i}]", b)
        if not 0.0 <= bf < 1.0:
            raise ValueError(f"SETAdam: invalid betas[{i}]={b!r}; need 0 <= betas[{i}] < 1")
        bs.append(bf)
    eps_f = _real("eps", eps)
    if not (math.isfinite(eps_f) and eps_f > 0.0):
        raise ValueError(f"SETAdam: invalid eps={eps!r}; need a finite eps > 0")
    wd_f = _real("weight_decay", weight_decay)
    if not (math.isfinite(wd_f) and wd_f >= 0.0):
        raise ValueError(
            f"SETAdam: invalid weight_decay={weight_decay!r}; need a finite weight_decay >= 0"
        )
    tau_f = _real("tau", tau)
    if not 0.0 <= tau_f < 1.0:
        raise ValueError(f"SETAdam: invalid tau={tau!r}; need 0 <= tau < 1")
    return lr_f, (bs[0], bs[1]), eps_f, wd_f, tau_f


# --------------------------------------------------------------------------------------------
# numerics shared by all paths
# --------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# exponent facts of the accumulation dtypes: (log2 of the smallest normal, log2 of the overflow
# threshold)
_EXP_RANGE = {torch.float64: (-1022, 1024), torch.float32: (-126, 128)}


def _unscaled_sums_safe(vmax: float, d: int, acc: torch.dtype) -> bool:
    """True when sum(v) and sum(v^2) over d entries with max v = vmax are safe in dtype ``acc``.

    Upper end: d * vmax^2 <= 2^(emax - 2), so nothing overflows. Lower end: each square that falls
    below the normal range is off by at most half a subnormal spacing 2^(emin - p); the total
    d * 2^(emin - p) stays below a quarter ulp of sum(v^2) >= vmax^2 when
    vmax^2 >= d * 2^(emin + 2).
    """
    emin, emax = _EXP_RANGE[acc]
    lb = max(d, 1).bit_length()
    return (
        math.ldexp(1.0, (emin + 3 + lb) // 2 + 1) <= vmax <= math.ldexp(1.0, (emax - 2 - lb) // 2)
    )


class _Reduced(NamedTuple):
    vmin: float
    vmax: float
    s1: float  # sum v
    nrm: float  # ||v||_2


def _acc_dtype(v: Tensor) -> torch.dtype:
    return torch.float64 if v.dtype == torch.float64 else torch.float32


def _reductions_single(v: Tensor) -> list[Tensor]:
    vmin, vmax = torch.aminmax(v)
    acc = _acc_dtype(v)
    return [vmin, vmax, torch.sum(v, dtype=acc), torch.linalg.vector_norm(v, 2, dtype=acc)]


def _reductions_foreach(vs: list[Tensor]) -> list[list[Tensor]]:
    """Same reductions as ``_reductions_single``, the 2-norms through ``torch._foreach_norm``."""
    out: list[list[Tensor]] = []
    for v in vs:
        vmin, vmax = torch.aminmax(v)
        out.append([vmin, vmax, torch.sum(v, dtype=_acc_dtype(v))])
    # group the norms by accumulation dtype (the dtype argument is per call)
    by_acc: dict[torch.dtype, list[int]] = {}
    for i, v in enumerate(vs):
        by_acc.setdefault(_acc_dtype(v), []).append(i)
    for acc, idx in by_acc.items():
        norms = torch._foreach_norm([vs[i] for i in idx], 2, dtype=acc)
        for i, n in zip(idx, norms):
            out[i].append(n)
    return out


def _to_host(values: list[list[Tensor]]) -> list[_Reduced]:
    """All reduced scalars to the host in one transfer per device (a few stacks, no per-scalar
    kernels: this matters on CUDA, where each tiny op is a launch)."""
    flat: list[float] = [0.0] * (4 * len(values))
    groups: dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]] = {}
    for i, row in enumerate(values):
        groups.setdefault((row[0].device, row[0].dtype, row[2].dtype), []).append(i)
    by_dev: dict[torch.device, list[tuple[list[int], Tensor]]] = {}
    for (dev, _vdt, _adt), idx in groups.items():
        cols = [torch.stack([values[i][j] for i in idx]).to(torch.float64) for j in range(4)]
        by_dev.setdefault(dev, []).append((idx, torch.stack(cols, dim=1)))
    for parts in by_dev.values():
        host = cast(list[list[float]], torch.cat([t for _, t in parts]).tolist())
        rows = [i for idx, _ in parts for i in idx]
        for i, row4 in zip(rows, host):
            flat[4 * i : 4 * i + 4] = row4
    return [_Reduced(*flat[4 * i : 4 * i + 4]) for i in range(len(values))]


def _scaled_sums(v: Tensor, scale: float) -> tuple[float, float]:
    """sum and 2-norm of ``v * scale`` in float64 (the overflow-safe fallback)."""
    t = torch.mul(v.to(torch.float64), scale)
    return float(t.sum().item()), float(torch.linalg.vector_norm(t, 2).item())


def _layer_coefficients(
    vs: Sequence[Tensor], red: Sequence[_Reduced | None], layer_of: Sequence[int], n_layers: int
) -> tuple[list[float], list[float]]:
    """Per layer: the down-scaling coefficient c and min v (NaN for an empty layer)."""
    members: list[list[int]] = [[] for _ in range(n_layers)]
    for i, lay in enumerate(layer_of):
        if red[i] is not None:
            members[lay].append(i)
    cs = [1.0] * n_layers
    vmins = [math.nan] * n_layers
    for lay, idx in enumerate(members):
        if not idx:
            continue  # empty layer: nothing to update, c reported as 1
        rs = [cast(_Reduced, red[i]) for i in idx]
        vmaxs = [r.vmax for r in rs]
        vmin_list = [r.vmin for r in rs]
        if any(math.isnan(x) for x in vmaxs + vmin_list):
            cs[lay], vmins[lay] = math.nan, math.nan
            continue
        vmax, vmins[lay] = max(vmaxs), min(vmin_list)
        if not math.isfinite(vmax):
            cs[lay] = math.nan  # inf/inf: the angle is undefined, IEEE gives NaN
            continue
        if vmax == 0.0:
            continue  # all-zero layer: c := 1, c * v = 0 anyway
        d = sum(vs[i].numel() for i in idx)
        if all(_unscaled_sums_safe(vmax, d, _acc_dtype(vs[i])) for i in idx):
            s1s, nrms = [r.s1 for r in rs], [r.nrm for r in rs]
        else:
            scale = math.ldexp(1.0, -math.frexp(vmax)[1])
            pairs = [_scaled_sums(vs[i], scale) for i in idx]
            s1s, nrms = [p[0] for p in pairs], [p[1] for p in pairs]
        s1, nrm = math.fsum(s1s), math.hypot(*nrms)
        if not (math.isfinite(s1) and math.isfinite(nrm)):
            cs[lay] = math.nan
            continue
        r = s1 / nrm
        cs[lay] = min(1.0, max(1.0 / d, r * r / d))
    return cs, vmins


def _w_of(vmin: float, a: float, eps: float, cd: torch.dtype) -> float:
    """sqrt(vmin * a + eps) in dtype ``cd`` with IEEE rounding (the element-wise kernels' ops)."""
    if cd == torch.float64:
        return math.sqrt(vmin * a + eps)
    f32 = np.float32
    return float(np.sqrt(f32(f32(vmin) * f32(a)) + f32(eps)))


class _Plan(NamedTuple):
    """Host-side scalars of one step, per tensor."""

    a: list[float]  # c_l / (1 - beta2^t)
    shift: list[float]  # tau * min_l w
    step_size: list[float]  # -lr / (1 - beta1^t)
    c_of: list[float]  # c of the tensor's layer


def _plan(
    vs: Sequence[Tensor],
    red: Sequence[_Reduced | None],
    layer_of: Sequence[int],
    steps: Sequence[float],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
) -> _Plan:
    n_layers = max(layer_of, default=-1) + 1
    cs, vmins = _layer_coefficients(vs, red, layer_of, n_layers)
    a = [cs[lay] / (1.0 - beta2 ** steps[i]) for i, lay in enumerate(layer_of)]
    wmin = [math.inf] * n_layers
    for i, lay in enumerate(layer_of):
        r = red[i]
        if r is None:
            continue
        # per tensor: its own min v and its own bias correction (step counts may differ within
        # a layer when some tensors had no gradient in earlier steps)
        if math.isnan(vmins[lay]) or math.isnan(a[i]):
            wmin[lay] = math.nan
        elif not math.isnan(wmin[lay]):
            cd = _compute_dtype(vs[i].dtype)
            wmin[lay] = min(wmin[lay], _w_of(r.vmin, a[i], eps, cd))
    shift = [tau * wmin[lay] if math.isfinite(wmin[lay]) else math.nan for lay in layer_of]
    step_size = [-lr / (1.0 - beta1**s) for s in steps]
    return _Plan(a, shift, step_size, [cs[lay] for lay in layer_of])


def _new_stages(n: int) -> Stages:
    return {k: [torch.empty(0)] * n for k in STAGE_KEYS}


# --------------------------------------------------------------------------------------------
# single-tensor (for-loop) implementation
# --------------------------------------------------------------------------------------------


def _single_tensor_setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    record: bool,
) -> Stages | None:
    n = len(params)
    stages = _new_stages(n) if record else None
    old = [p.detach().to(torch.float64, copy=True) for p in params] if record else []
    red: list[_Reduced | None] = []
    raw: list[list[Tensor]] = []
    raw_idx: list[int] = []
    steps: list[float] = []
    for i in range(n):
        p, m, v, st = params[i], exp_avgs[i], exp_avg_sqs[i], state_steps[i]
        g = grads[i] if not maximize else -grads[i]
        st += 1
        steps.append(float(st.item()))
        direct = p.dtype == m.dtype == _compute_dtype(p.dtype)
        if weight_decay != 0.0:
            if decoupled:
                if direct:
                    p.mul_(1.0 - lr * weight_decay)
            else:
                g = g.add(p, alpha=weight_decay)
        if g.dtype != m.dtype:
            g = g.to(m.dtype)
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        if v.numel() > 0:
            raw.append(_reductions_single(v))
            raw_idx.append(i)
        red.append(None)
    for i, r in zip(raw_idx, _to_host(raw)):
        red[i] = r
    plan = _plan(
        exp_avg_sqs, red, layer_of, steps, beta1=beta1, beta2=beta2, lr=lr, eps=eps, tau=tau
    )
    for i in range(n):
        p, m, v = params[i], exp_avgs[i], exp_avg_sqs[i]
        cd = _compute_dtype(p.dtype)
        direct = p.dtype == m.dtype == cd
        w = torch.mul(v.to(cd), plan.a[i])
        w.add_(eps).sqrt_()
        if stages is not None:
            stages["down_scaling"][i] = torch.mul(v.to(cd), plan.c_of[i])
            stages["epsilon_embedding"][i] = w.clone()
        w.sub_(plan.shift[i])
        if direct:
            p.addcdiv_(m, w, value=plan.step_size[i])
        else:
            p32 = p.to(torch.float32, copy=True)
            if weight_decay != 0.0 and decoupled:
                p32.mul_(1.0 - lr * weight_decay)
            p32.addcdiv_(m.to(torch.float32), w, value=plan.step_size[i])
            p.copy_(p32)
        if stages is not None:
            stages["down_translating"][i] = w
            stages["update"][i] = p.detach().to(torch.float64) - old[i]
            stages["cos2"][i] = torch.tensor(plan.c_of[i], dtype=torch.float64)
    return stages


# --------------------------------------------------------------------------------------------
# multi-tensor (foreach) implementation
# --------------------------------------------------------------------------------------------


# On CPU torch's foreach ops are a loop over per-tensor kernels, and each op streams the whole
# list through memory before the next one starts. Running the op sequence on sub-lists of about
# this many bytes (per parameter buffer) keeps a sub-list's p, g, m, v and temporaries in cache
# between the ops and keeps the temporaries small. CUDA gets one unit per bucket.
_CPU_UNIT_BYTES = 1 << 20


def _foreach_units(
    params: list[Tensor], exp_avgs: list[Tensor]
) -> list[tuple[tuple[torch.device, torch.dtype, torch.dtype], list[int]]]:
    """Sub-lists that one foreach call can take (same device, param dtype, state dtype)."""
    buckets: dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.device, p.dtype, exp_avgs[i].dtype), []).append(i)
    units: list[tuple[tuple[torch.device, torch.dtype, torch.dtype], list[int]]] = []
    for key, idx in buckets.items():
        if key[0].type != "cpu":
            units.append((key, idx))
            continue
        cur: list[int] = []
        size = 0
        for i in idx:
            nbytes = params[i].numel() * params[i].element_size()
            if cur and size + nbytes > _CPU_UNIT_BYTES:
                units.append((key, cur))
                cur, size = [], 0
            cur.append(i)
            size += nbytes
        if cur:
            units.append((key, cur))
    return units


def _multi_tensor_setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    record: bool,
) -> Stages | None:
    n = len(params)
    if n == 0:
        return _new_stages(0) if record else None
    if _use_device_resident(params, exp_avgs):
        side: Stages | None = None
        if record:
            # stages from a slow side path on copies of the pre-step state (as for fused)
            side = _single_tensor_setadam(
                [p.detach().clone() for p in params],
                [g.clone() for g in grads],
                [m.clone() for m in exp_avgs],
                [v.clone() for v in exp_avg_sqs],
                [s.clone() for s in state_steps],
                layer_of,
                beta1=beta1,
                beta2=beta2,
                lr=lr,
                eps=eps,
                tau=tau,
                weight_decay=weight_decay,
                decoupled=decoupled,
                maximize=maximize,
                record=True,
            )
            old_params = [p.detach().to(torch.float64, copy=True) for p in params]
        _device_multi_tensor_setadam(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            state_steps,
            layer_of,
            beta1=beta1,
            beta2=beta2,
            lr=lr,
            eps=eps,
            tau=tau,
            weight_decay=weight_decay,
            decoupled=decoupled,
            maximize=maximize,
        )
        if side is not None:
            side["update"] = [p.detach().to(torch.float64) - o for p, o in zip(params, old_params)]
        return side
    stages = _new_stages(n) if record else None
    old = [p.detach().to(torch.float64, copy=True) for p in params] if record else []
    torch._foreach_add_(state_steps, 1)
    steps = [float(s) for s in torch.stack(state_steps).tolist()]
    units = _foreach_units(params, exp_avgs)

    raw: list[list[Tensor]] = []
    raw_idx: list[int] = []
    for (dev, pdt, mdt), idx in units:
        ps = [params[i] for i in idx]
        gs = [grads[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        vs = [exp_avg_sqs[i] for i in idx]
        direct = pdt == mdt == _compute_dtype(pdt)
        if maximize:
            gs = list(torch._foreach_neg(gs))
        if weight_decay != 0.0:
            if decoupled:
                if direct:
                    torch._foreach_mul_(ps, 1.0 - lr * weight_decay)
            else:
                gs = list(torch._foreach_add(gs, ps, alpha=weight_decay))
        if pdt != mdt:
            gs = [g.to(mdt) for g in gs]
        torch._foreach_lerp_(ms, gs, 1.0 - beta1)
        if dev.type == "cpu" and mdt in (torch.bfloat16, torch.float16):
            # torch's CPU foreach fallback rounds a Python scalar multiplier to the tensor's
            # 16-bit dtype before multiplying (Tensor.mul_ does not): multiply per tensor
            for v in vs:
                v.mul_(beta2)
        else:
            torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, value=1.0 - beta2)
        del gs
        # the layer statistics of this unit while its v is still in cache
        nonempty = [i for i in idx if exp_avg_sqs[i].numel() > 0]
        raw += _reductions_foreach([exp_avg_sqs[i] for i in nonempty])
        raw_idx += nonempty

    red: list[_Reduced | None] = [None] * n
    for i, r in zip(raw_idx, _to_host(raw)):
        red[i] = r
    plan = _plan(
        exp_avg_sqs, red, layer_of, steps, beta1=beta1, beta2=beta2, lr=lr, eps=eps, tau=tau
    )

    for (_dev, pdt, mdt), idx in units:
        ps = [params[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        vs = [exp_avg_sqs[i] for i in idx]
        cd = _compute_dtype(pdt)
        direct = pdt == mdt == cd
        vcd = vs if mdt == cd else [v.to(cd) for v in vs]
        ws = list(torch._foreach_mul(vcd, [plan.a[i] for i in idx]))
        torch._foreach_add_(ws, eps)
        torch._foreach_sqrt_(ws)
        if stages is not None:
            scaled = torch._foreach_mul(vcd, [plan.c_of[i] for i in idx])
            wcopy = torch._foreach_mul(ws, 1.0)
            for j, i in enumerate(idx):
                stages["down_scaling"][i] = scaled[j]
                stages["epsilon_embedding"][i] = wcopy[j]
        del vcd
        torch._foreach_sub_(ws, [plan.shift[i] for i in idx])
        sizes = [plan.step_size[i] for i in idx]
        if direct:
            torch._foreach_addcdiv_(ps, ms, ws, sizes)
        else:
            p32 = [p.to(torch.float32, copy=True) for p in ps]
            if weight_decay != 0.0 and decoupled:
                torch._foreach_mul_(p32, 1.0 - lr * weight_decay)
            m32 = [m.to(torch.float32) for m in ms]
            torch._foreach_addcdiv_(p32, m32, ws, sizes)
            torch._foreach_copy_(ps, p32)
        if stages is not None:
            for j, i in enumerate(idx):
                stages["down_translating"][i] = ws[j]
                stages["update"][i] = params[i].detach().to(torch.float64) - old[i]
                stages["cos2"][i] = torch.tensor(plan.c_of[i], dtype=torch.float64)
    return stages


# --------------------------------------------------------------------------------------------
# device-resident multi-tensor implementation (CUDA)
# --------------------------------------------------------------------------------------------

# Private switch for the tests: run the device-resident variant on CPU tensors as well (it is
# selected automatically only for CUDA tensors; on CPU the host-statistics path above is kept,
# being bit-identical to the for-loop). The environment variable reaches harness worker processes.
_FORCE_DEVICE_RESIDENT = os.environ.get("SETADAM_TORCH_FORCE_DEVICE_FOREACH", "") == "1"


def _use_device_resident(params: list[Tensor], exp_avgs: list[Tensor]) -> bool:
    """The device-resident variant takes one device and compute dtype float32 (stage recording
    runs a slow side path next to it, like ``fused=True``)."""
    if not params:
        return False
    dev = params[0].device
    if dev.type != "cuda" and not _FORCE_DEVICE_RESIDENT:
        return False
    for p, m in zip(params, exp_avgs):
        if p.device != dev or m.device != dev:
            return False
        if p.dtype == torch.float64 or m.dtype == torch.float64:
            return False  # float64 v^2 may overflow float64 sums: the host path scales them
    return True


def _upload(
    values: Sequence[float] | Sequence[int], dtype: torch.dtype, dev: torch.device
) -> Tensor:
    """Host values to ``dev`` without a host synchronisation (pinned, non-blocking on CUDA)."""
    t = torch.tensor(values, dtype=dtype)
    if dev.type == "cuda":
        return t.pin_memory().to(dev, non_blocking=True)
    return t.to(dev)


class _Layout(NamedTuple):
    """Device index tensors of one (shapes, layers) configuration, built once and cached."""

    nonempty: list[int]  # positions (in the call's lists) of the tensors with entries
    numels: list[int]  # their sizes
    kind: str  # "identity" (a layer per tensor), "single" (one layer) or "general"
    tl: Tensor  # int64 (n_nonempty,): layer of each non-empty tensor
    n_layers: int
    d: Tensor  # float64 (n_layers,): entries per layer
    tseg: Tensor  # int32 (total,): tensor (non-empty numbering) of each entry of the flat buffer


_LAYOUTS: dict[tuple[Any, ...], _Layout] = {}
_LAYOUT_CACHE_SIZE = 8


def _layout(params: list[Tensor], layer_of: list[int], dev: torch.device) -> _Layout:
    key = (dev, tuple(p.numel() for p in params), tuple(layer_of))
    hit = _LAYOUTS.get(key)
    if hit is not None:
        return hit
    nonempty = [i for i, p in enumerate(params) if p.numel() > 0]
    numels = [params[i].numel() for i in nonempty]
    renum: dict[int, int] = {}
    tl_list = [renum.setdefault(layer_of[i], len(renum)) for i in nonempty]
    n_layers = len(renum)
    d_list = [0] * n_layers
    for lay, k in zip(tl_list, numels):
        d_list[lay] += k
    if tl_list == list(range(len(nonempty))):
        kind = "identity"
    elif n_layers == 1:
        kind = "single"
    else:
        kind = "general"
    tl = _upload(tl_list, torch.int64, dev)
    counts = _upload(numels, torch.int64, dev)
    ids = torch.arange(len(nonempty), dtype=torch.int32, device=dev)
    tseg = torch.repeat_interleave(ids, counts, output_size=sum(numels))
    lay_out = _Layout(
        nonempty, numels, kind, tl, n_layers, _upload(d_list, torch.float64, dev), tseg
    )
    if len(_LAYOUTS) >= _LAYOUT_CACHE_SIZE:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    _LAYOUTS[key] = lay_out
    return lay_out


def _per_layer_sum(x: Tensor, lay: _Layout) -> Tensor:
    if lay.kind == "identity":
        return x
    if lay.kind == "single":
        return x.sum(0, keepdim=True)
    return torch.zeros(lay.n_layers, dtype=x.dtype, device=x.device).index_add_(0, lay.tl, x)


def _per_layer_min(x: Tensor, lay: _Layout) -> Tensor:
    if lay.kind == "identity":
        return x
    if lay.kind == "single":
        return x.amin(0, keepdim=True)
    init = torch.full((lay.n_layers,), math.inf, dtype=x.dtype, device=x.device)
    return init.scatter_reduce_(0, lay.tl, x, "amin")


def _per_tensor(x: Tensor, lay: _Layout) -> Tensor:
    if lay.kind == "identity":
        return x
    if lay.kind == "single":
        return x.expand(len(lay.nonempty))
    return x.index_select(0, lay.tl)


def _device_multi_tensor_setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> None:
    """Multi-tensor SET-Adam whose layer statistics never leave the device.

    Every element-wise stage is one ``torch._foreach_*`` call over the whole list (or one op on
    a flat float32 buffer ``W`` holding every entry), so the launch count does not grow with the
    number of tensors. The only per-step host values are the step counts, read from the CPU
    ``state["step"]`` tensors as torch.optim.Adam does (no device synchronisation).

    * ``sum v`` and ``||v||_2`` per tensor: ``torch._foreach_norm(vs, 1 | 2, dtype=float64)``,
      accumulated in float64, which cannot overflow or underflow for any finite float32, bfloat16
      or float16 ``v``; combined per layer on the device; ``c = (S1/||v||)^2 / d`` clamped to
      ``[1/d, 1]``, ``c = 1`` for an all-zero layer, NaN for a non-finite layer.
    * ``a = c / (1 - beta2^t)`` per tensor, rounded to float32 and gathered into ``W = -a`` per
      entry (one ``index_select`` through a cached entry-to-tensor index); ``W *= v`` gives
      ``-(a v)`` with the for-loop's rounding, ``torch._foreach_max(W)`` the per-tensor
      ``-min(a v)``, from which ``min_l w = sqrt(min(a v) + eps)`` (``w`` is increasing in
      ``a v``) and the shift ``tau min_l w``; then ``W = sqrt(eps - W) - shift`` and one
      ``_foreach_addcdiv_`` updates the parameters.
    """
    dev = params[0].device
    torch._foreach_add_(state_steps, 1)
    steps = [float(s) for s in torch.stack(state_steps).tolist()]

    buckets: dict[tuple[torch.dtype, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.dtype, exp_avgs[i].dtype), []).append(i)
    for (pdt, mdt), idx in buckets.items():
        ps = [params[i] for i in idx]
        gs = [grads[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        vs = [exp_avg_sqs[i] for i in idx]
        direct = pdt == mdt == torch.float32
        if maximize:
            gs = list(torch._foreach_neg(gs))
        if weight_decay != 0.0:
            if decoupled:
                if direct:
                    torch._foreach_mul_(ps, 1.0 - lr * weight_decay)
            else:
                gs = list(torch._foreach_add(gs, ps, alpha=weight_decay))
        if pdt != mdt:
            gs = [g.to(mdt) for g in gs]
        torch._foreach_lerp_(ms, gs, 1.0 - beta1)
        if dev.type == "cpu" and mdt in (torch.bfloat16, torch.float16):
            for v in vs:  # see _multi_tensor_setadam
                v.mul_(beta2)
        else:
            torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, gs, gs, value=1.0 - beta2)
        del gs

    lay = _layout(params, layer_of, dev)
    if not lay.nonempty:
        return
    ne = lay.nonempty
    vs = [exp_avg_sqs[i] for i in ne]
    # layer statistics, float64 accumulation
    s1 = _per_layer_sum(torch.stack(torch._foreach_norm(vs, 1, dtype=torch.float64)), lay)
    n2 = torch.stack(torch._foreach_norm(vs, 2, dtype=torch.float64))
    sq = _per_layer_sum(n2 * n2, lay)
    r = s1 / sq.sqrt()
    c = torch.maximum(r * r / lay.d, 1.0 / lay.d).clamp_(max=1.0)
    c = torch.where(sq == 0.0, 1.0, c)
    bc2 = [1.0 - beta2 ** steps[i] for i in ne]
    if all(b == bc2[0] for b in bc2):
        a = _per_tensor(c, lay) / bc2[0]
    else:
        a = _per_tensor(c, lay) / _upload(bc2, torch.float64, dev)
    w_flat = torch.neg(a).to(torch.float32).index_select(0, lay.tseg)
    ws = [t.view(vs[j].shape) for j, t in enumerate(w_flat.split_with_sizes(lay.numels))]
    vcd = [v if v.dtype == torch.float32 else v.to(torch.float32) for v in vs]
    torch._foreach_mul_(ws, vcd)  # W = -(a v), rounded as the for-loop's v * a
    del vcd
    min_av = _per_layer_min(torch.neg(torch.stack(torch._foreach_max(ws))), lay)
    w_min = torch.add(min_av, eps).sqrt_()  # float32, as sqrt(min(a v) + eps) elementwise
    shift = _per_tensor(torch.mul(w_min.to(torch.float64), tau).to(torch.float32), lay)
    w_flat = torch.rsub(w_flat, eps).sqrt_()  # sqrt(a v + eps), rounded as the for-loop's
    w_flat.sub_(shift.index_select(0, lay.tseg))
    ws = [t.view(vs[j].shape) for j, t in enumerate(w_flat.split_with_sizes(lay.numels))]

    pos = {i: j for j, i in enumerate(ne)}
    for (pdt, mdt), idx in buckets.items():
        live = [i for i in idx if i in pos]
        if not live:
            continue
        ps = [params[i] for i in live]
        ms = [exp_avgs[i] for i in live]
        wl = [ws[pos[i]] for i in live]
        sizes = [-lr / (1.0 - beta1 ** steps[i]) for i in live]
        if pdt == mdt == torch.float32:
            torch._foreach_addcdiv_(ps, ms, wl, sizes)
        else:
            p32 = [p.to(torch.float32, copy=True) for p in ps]
            if weight_decay != 0.0 and decoupled:
                torch._foreach_mul_(p32, 1.0 - lr * weight_decay)
            m32 = [m.to(torch.float32) for m in ms]
            torch._foreach_addcdiv_(p32, m32, wl, sizes)
            torch._foreach_copy_(ps, p32)


# --------------------------------------------------------------------------------------------
# fused (CUDA kernels of the cuda helper)
# --------------------------------------------------------------------------------------------


def _fused_setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    record: bool,
) -> Stages | None:
    n = len(params)
    if n == 0:
        return _new_stages(0) if record else None
    for p in params:
        if p.device.type != "cuda":
            raise RuntimeError(
                f"SETAdam(fused=True) needs CUDA tensors; got a {p.dtype} tensor on {p.device}"
            )
    try:
        from conformance.ports.cuda.torch_fused import fused_setadam_
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "SETAdam(fused=True): the fused CUDA kernels are unavailable "
            f"(conformance.ports.cuda.torch_fused: {exc}); use foreach=True instead"
        ) from exc
    stages: Stages | None = None
    old: list[Tensor] = []
    if record:
        # slow side path from the pre-step state: the single-tensor implementation on copies
        side = _single_tensor_setadam(
            [p.detach().clone() for p in params],
            [g.clone() for g in grads],
            [m.clone() for m in exp_avgs],
            [v.clone() for v in exp_avg_sqs],
            [s.clone() for s in state_steps],
            layer_of,
            beta1=beta1,
            beta2=beta2,
            lr=lr,
            eps=eps,
            tau=tau,
            weight_decay=weight_decay,
            decoupled=decoupled,
            maximize=maximize,
            record=True,
        )
        stages = cast(Stages, side)
        old = [p.detach().to(torch.float64) for p in params]
    steps = [int(st.item()) + 1 for st in state_steps]  # the t of the step being taken
    # one kernel call per (step count, device, dtype): the kernels take one of each per call,
    # so a layer must not straddle two of them
    calls: dict[tuple[int, torch.device, torch.dtype], list[int]] = {}
    key_of: list[tuple[int, torch.device, torch.dtype]] = []
    for i, p in enumerate(params):
        key = (steps[i], p.device, p.dtype)
        key_of.append(key)
        calls.setdefault(key, []).append(i)
    layer_key: dict[int, tuple[int, torch.device, torch.dtype]] = {}
    for i, lay in enumerate(layer_of):
        if layer_key.setdefault(lay, key_of[i]) != key_of[i]:
            raise RuntimeError(
                "SETAdam(fused=True): the tensors of one layer differ in step count (some had "
                "grad None in earlier steps), device or dtype; use foreach=True for this model"
            )
    for st in state_steps:
        st += 1
    for (s, _dev, _dt), idx in calls.items():
        renum: dict[int, int] = {}
        sub_layers = [renum.setdefault(layer_of[i], len(renum)) for i in idx]
        fused_setadam_(
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [exp_avgs[i] for i in idx],
            [exp_avg_sqs[i] for i in idx],
            sub_layers,
            step=s,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            tau=tau,
            weight_decay=weight_decay,
            decoupled=decoupled,
            maximize=maximize,
        )
    if stages is not None:
        stages["update"] = [p.detach().to(torch.float64) - o for p, o in zip(params, old)]
    return stages


# --------------------------------------------------------------------------------------------
# functional API and the optimizer
# --------------------------------------------------------------------------------------------


def setadam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    layer_of: list[int],
    *,
    foreach: bool = False,
    fused: bool = False,
    beta1: float,
    beta2: float,
    lr: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    record: bool = False,
) -> Stages | None:
    """Functional SET-Adam step on lists of tensors (in place), like ``torch.optim.adam.adam``.

    ``layer_of[i]`` is the layer index of tensor ``i`` (layers numbered 0..L-1).
    Returns the recorded stages when ``record`` is True, else None.
    """
    if foreach and fused:
        raise ValueError("SETAdam: foreach=True and fused=True are mutually exclusive")
    if not (len(params) == len(grads) == len(exp_avgs) == len(exp_avg_sqs) == len(state_steps)):
        raise ValueError("SETAdam: params, grads and state lists differ in length")
    if len(layer_of) != len(params):
        raise ValueError("SETAdam: layer_of must give one layer index per tensor")
    impl: Callable[..., Stages | None]
    if fused:
        impl = _fused_setadam
    elif foreach:
        impl = _multi_tensor_setadam
    else:
        impl = _single_tensor_setadam
    return impl(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        state_steps,
        layer_of,
        beta1=beta1,
        beta2=beta2,
        lr=lr,
        eps=eps,
        tau=tau,
        weight_decay=weight_decay,
        decoupled=decoupled,
        maximize=maximize,
        record=record,
    )


_LAYER_MODES = ("tensor", "group")


class SETAdam(torch.optim.Optimizer):
    """SET-Adam (down-scaling, epsilon-embedding, down-translating of Adam's second moment).

    Args:
        params: iterable of parameters or of param-group dicts. A group may set its own ``lr``,
            ``betas``, ``eps``, ``weight_decay``, ``tau``, ``decoupled_weight_decay``,
            ``maximize``, ``foreach``, ``fused`` and ``layer``: ``"tensor"`` (default, one layer
            per parameter tensor) or ``"group"`` (all parameters of the group with a gradient
            form one layer, e.g. a weight and its bias).
        lr: learning rate, finite and > 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: > 0, added inside the square root (epsilon-embedding).
        weight_decay: >= 0; ``l2`` (g += wd * theta) unless ``decoupled_weight_decay``, then
            theta *= 1 - lr * wd before the update (AdamW style).
        tau: down-translating strength in [0, 1).
        maximize: ascend instead of descend (g <- -g).
        foreach: None picks foreach when every parameter of the group is on CUDA, else the
            for-loop (torch's default rule; on CPU the foreach ops gain nothing).
        fused: True runs the CUDA kernels of ``conformance.ports.cuda.torch_fused`` (CUDA
            float32/bfloat16 only). Mutually exclusive with ``foreach=True``.
    """

    record_stages: bool
    last_stages: Stages | None

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        tau: float = 0.5,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        lr_f, betas_f, eps_f, wd_f, tau_f = _validate(lr, betas, eps, weight_decay, tau)
        if foreach and fused:
            raise ValueError("SETAdam: foreach=True and fused=True are mutually exclusive")
        defaults: dict[str, Any] = {
            "lr": lr_f,
            "betas": betas_f,
            "eps": eps_f,
            "weight_decay": wd_f,
            "tau": tau_f,
            "decoupled_weight_decay": bool(decoupled_weight_decay),
            "maximize": bool(maximize),
            "foreach": foreach,
            "fused": fused,
            "layer": "tensor",
        }
        self.record_stages = False
        self.last_stages = None
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        lr, betas, eps, wd, tau = _validate(
            group["lr"], group["betas"], group["eps"], group["weight_decay"], group["tau"]
        )
        group.update(lr=lr, betas=betas, eps=eps, weight_decay=wd, tau=tau)
        if group["layer"] not in _LAYER_MODES:
            raise ValueError(
                f"SETAdam: invalid layer={group['layer']!r}; need one of {_LAYER_MODES}"
            )
        if group["foreach"] and group["fused"]:
            raise ValueError("SETAdam: foreach=True and fused=True are mutually exclusive")
        for p in group["params"]:
            if not (p.is_floating_point() and not p.is_complex()):
                raise ValueError(
                    f"SETAdam: parameters must be real floating tensors, got {p.dtype}"
                )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("record_stages", False)
        self.__dict__.setdefault("last_stages", None)
        for group in self.param_groups:
            for key, val in (
                ("tau", 0.5),
                ("decoupled_weight_decay", False),
                ("maximize", False),
                ("foreach", None),
                ("fused", None),
                ("layer", "tensor"),
            ):
                group.setdefault(key, val)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, except that fused groups keep float32 state for bfloat16 parameters."""
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        super().load_state_dict(state_dict)
        for group, saved in zip(self.param_groups, saved_groups):
            if not group.get("fused"):
                continue
            for p, pid in zip(group["params"], saved["params"]):
                st = saved_state.get(pid)
                if st is None or p.dtype != torch.bfloat16:
                    continue
                for key in ("exp_avg", "exp_avg_sq"):
                    val = st.get(key)
                    if isinstance(val, Tensor) and val.dtype == torch.float32:
                        self.state[p][key] = val.to(device=p.device, copy=True)

    def _init_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        steps: list[Tensor] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    "SETAdam does not support sparse gradients (the layer statistics need the "
                    "dense second moment); use dense gradients"
                )
            state = self.state[p]
            if len(state) == 0:
                state_dtype = p.dtype
                if group["fused"] and p.dtype == torch.bfloat16:
                    state_dtype = torch.float32
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(
                    p, dtype=state_dtype, memory_format=torch.preserve_format
                )
                state["exp_avg_sq"] = torch.zeros_like(
                    p, dtype=state_dtype, memory_format=torch.preserve_format
                )
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return params, grads, exp_avgs, exp_avg_sqs, steps

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step (optionally re-evaluating the loss with ``closure``)."""
        loss: float | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        record = bool(self.record_stages)
        all_stages: Stages | None = _new_stages(0) if record else None
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = self._init_group(group)
            if group["layer"] == "group":
                layer_of = [0] * len(params)
            else:
                layer_of = list(range(len(params)))
            fused = bool(group["fused"])
            foreach = group["foreach"]
            if foreach is None:
                foreach = (not fused) and len(params) > 0 and all(p.is_cuda for p in params)
            beta1, beta2 = group["betas"]
            stages = setadam(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps,
                layer_of,
                foreach=bool(foreach),
                fused=fused,
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                eps=group["eps"],
                tau=group["tau"],
                weight_decay=group["weight_decay"],
                decoupled=group["decoupled_weight_decay"],
                maximize=group["maximize"],
                record=record,
            )
            if all_stages is not None:
                got = cast(Stages, stages)
                pos = {id(p): j for j, p in enumerate(params)}
                for p in group["params"]:
                    j = pos.get(id(p))
                    for key in STAGE_KEYS:
                        if j is not None:
                            all_stages[key].append(got[key][j])
                        elif key == "cos2":
                            all_stages[key].append(torch.tensor(math.nan, dtype=torch.float64))
                        elif key == "update":
                            all_stages[key].append(
                                torch.zeros_like(p, dtype=torch.float64, device=p.device)
                            )
                        else:
                            cd = _compute_dtype(p.dtype)
                            all_stages[key].append(
                                torch.full_like(p, math.nan, dtype=cd, device=p.device)
                            )
        self.last_stages = all_stages
        return loss
