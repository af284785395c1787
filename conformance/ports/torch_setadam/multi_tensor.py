r"""The multi-tensor (foreach) SET-Adam step: ``torch._foreach_*`` ops, no host synchronisation,
stages recorded natively. One implementation for CPU and CUDA.

The arithmetic is the single-tensor path's, op for op (see
:mod:`~conformance.ports.torch_setadam.single_tensor`), on lists:

1. moments per *unit* (a sub-list of one device, parameter dtype and state dtype):
   ``_foreach_lerp_`` for $m$, ``_foreach_mul_`` / ``_foreach_addcmul_`` for $v$, then the
   unit's partial sums while its $v$ is still in cache;
2. the layer scalars from all partials
   (:func:`~conformance.ports.torch_setadam.layer_stats.step_scalars`): 0-d device tensors;
3. per unit $W = \sqrt{a v + \epsilon} - \text{shift}$ through ``_foreach_mul`` /
   ``_foreach_add_`` / ``_foreach_sqrt_`` / ``_foreach_sub_`` with per-tensor 0-d tensors, then
   ``_foreach_addcdiv_(p, m, W, -lr/(1-beta1^t))``.

Nothing is read back from the device: the step counts are CPU tensors, as in ``torch.optim.Adam``
without ``capturable``, so the bias corrections are host floats. On CPU torch's foreach ops are a
loop over the per-tensor kernels, so this path agrees with the single-tensor one bit for bit; a
CPU unit is a sub-list of about ``_CPU_UNIT_BYTES`` per buffer, so that its $p, g, m, v$ and
temporaries stay in cache between the ops. A CUDA unit is a whole (dtype, dtype) bucket. The ops
taking per-tensor 0-d tensors are one kernel per tensor on CUDA (torch's multi-tensor kernels
take host scalars only); a ``torch.compile`` path is where those would fuse.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .dtypes import compute_dtype
from .group import GroupTensors
from .hyper import Hyper
from .layer_stats import Reduced, ScalarsFn, group_scalars, reduce
from .stages import Recorder, Stages, new_stages

RECORDS_STAGES = True

_CPU_UNIT_BYTES = 1 << 20

Unit = tuple[tuple[torch.device, torch.dtype, torch.dtype], list[int]]


def _foreach_units(params: list[Tensor], exp_avgs: list[Tensor]) -> list[Unit]:
    """Sub-lists that one foreach call can take (same device, param dtype, state dtype)."""
    buckets: dict[tuple[torch.device, torch.dtype, torch.dtype], list[int]] = {}
    for i, p in enumerate(params):
        buckets.setdefault((p.device, p.dtype, exp_avgs[i].dtype), []).append(i)
    units: list[Unit] = []
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


def _moments(
    dev: torch.device,
    ps: list[Tensor],
    gs: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    hyper: Hyper,
) -> None:
    r"""$m$ and $v$ of one unit, in place (and the decoupled decay of a full-precision $\theta$)."""
    pdt, mdt = ps[0].dtype, ms[0].dtype
    if hyper.maximize:
        gs = list(torch._foreach_neg(gs))
    if hyper.decays_params and pdt == mdt == compute_dtype(pdt):
        torch._foreach_mul_(ps, hyper.decay_factor())
    elif hyper.l2:
        gs = list(torch._foreach_add(gs, ps, alpha=hyper.weight_decay))
    if pdt != mdt:
        gs = [g.to(mdt) for g in gs]
    torch._foreach_lerp_(ms, gs, 1.0 - hyper.beta1)
    if dev.type == "cpu" and mdt in (torch.bfloat16, torch.float16):
        # torch's CPU foreach fallback rounds a Python scalar multiplier to the tensor's 16-bit
        # dtype before multiplying (Tensor.mul_ does not): multiply per tensor
        for v in vs:
            v.mul_(hyper.beta2)
    else:
        torch._foreach_mul_(vs, hyper.beta2)
    torch._foreach_addcmul_(vs, gs, gs, value=1.0 - hyper.beta2)


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
    if not params:
        return new_stages(0) if record else None
    rec = Recorder(params) if record else None
    torch._foreach_add_(state_steps, 1)
    steps = [float(s) for s in torch.stack(state_steps).tolist()]  # CPU tensors: no sync
    units = _foreach_units(params, exp_avgs)

    reds: dict[int, Reduced] = {}
    for (udev, _pdt, _mdt), idx in units:
        vs = [exp_avg_sqs[i] for i in idx]
        _moments(
            udev,
            [params[i] for i in idx],
            [grads[i] for i in idx],
            [exp_avgs[i] for i in idx],
            vs,
            hyper,
        )
        live = [j for j, v in enumerate(vs) if v.numel() > 0]
        if live:
            # the unit's statistics while its v is still in cache
            reds.update(zip([idx[j] for j in live], reduce([vs[j] for j in live])))

    bias2 = [hyper.bias2(t) for t in steps]
    sc = scalars(params, reds, layer_of, bias2, eps=hyper.eps, tau=hyper.tau)

    for (_udev, pdt, mdt), idx in units:
        ps = [params[i] for i in idx]
        ms = [exp_avgs[i] for i in idx]
        cd = compute_dtype(pdt)
        vcd = [exp_avg_sqs[i] for i in idx]
        if mdt != cd:
            vcd = [v.to(cd) for v in vcd]
        ws = list(torch._foreach_mul(vcd, [sc.a[i] for i in idx]))
        torch._foreach_add_(ws, hyper.eps)
        torch._foreach_sqrt_(ws)
        if rec is not None:
            scaled = torch._foreach_mul(vcd, [sc.c[i].to(cd) for i in idx])
            w_copy = torch._foreach_mul(ws, 1.0)
            for j, i in enumerate(idx):
                rec.embedded(i, scaled[j], w_copy[j])
        del vcd
        torch._foreach_sub_(ws, [sc.shift[i] for i in idx])
        sizes = [hyper.step_size(steps[i]) for i in idx]
        if pdt == mdt == cd:
            torch._foreach_addcdiv_(ps, ms, ws, sizes)
        else:
            p32 = [p.to(torch.float32, copy=True) for p in ps]
            if hyper.decays_params:
                torch._foreach_mul_(p32, hyper.decay_factor())
            m32 = [m.to(torch.float32) for m in ms]
            torch._foreach_addcdiv_(p32, m32, ws, sizes)
            torch._foreach_copy_(ps, p32)
        if rec is not None:
            for j, i in enumerate(idx):
                rec.updated(i, params[i], ws[j], sc.c[i])
    return rec.stages if rec is not None else None
