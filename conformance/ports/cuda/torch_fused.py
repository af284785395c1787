"""Fused multi-tensor SET-Adam and Adam steps on torch CUDA tensors.

``fused_setadam_`` and ``fused_adam_`` update params, exp_avgs and exp_avg_sqs in place through
the CUDA C++ kernels of this folder, compiled at run time by NVRTC (CuPy ``RawModule``) and
launched on torch's current CUDA stream over the tensors' own memory (raw data pointers, no
copies, no host synchronisation).

One SET-Adam step over a whole parameter group is three launches whatever the number of tensors
(statistics + second moment, per-layer reduction, update); Adam is one launch.  The chunk table
and the pointer table live on the device and are rebuilt only when the tensor list changes (a
changed grad pointer only re-uploads the pointer table), so the per-step host work is a few dozen
microseconds.

torch and cupy are imported lazily, inside the functions: importing this module needs neither.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from conformance.ports.cuda.nvrtc import (
    BLOCK,
    CHUNK,
    _cupy,
    _module,
    _stream,
    _torch,
    kernel_source,
    kernels_info,
)
from conformance.ports.cuda.plans import (
    _check_device,
    _check_hyper,
    _check_lists,
    _plan,
    layer_order,
)

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "BLOCK",
    "CHUNK",
    "fused_adam_",
    "fused_setadam_",
    "kernel_source",
    "kernels_info",
    "layer_order",
]

# ---- entry points -------------------------------------------------------------------------------


def fused_setadam_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    layer_of: list[int],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    tau: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
    stats_out: Tensor | None = None,
) -> None:
    """One SET-Adam step, in place, over all tensors of a group (three kernel launches).

    ``step`` is t of the step being taken (1 for the first).  ``layer_of[i]`` is the layer id of
    tensor i; tensors with equal ids form one layer.  Params and grads are float32 or bfloat16
    (one dtype per call), exp_avgs / exp_avg_sqs float32 (exp_avg_sq keeps the unscaled v), all
    contiguous on one CUDA device.

    ``stats_out`` (optional, float64 CUDA tensor of shape (L, 4), L distinct layer ids in order of
    first appearance, see :func:`layer_order`) receives per layer (c, sum v, sum v^2, min v) of
    this step's v, c being the down-scaling factor cos^2(v_l, 1).

    Raises RuntimeError (naming what is missing) when the tensors are not CUDA float32/bfloat16
    tensors, when torch sees no CUDA device, or when CuPy is missing or cannot compile the kernels.
    """
    what = "fused_setadam_"
    if not params:
        return
    _check_lists(
        what,
        params,
        {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "layer_of": layer_of},
    )
    _check_hyper(what, step, lr, beta1, beta2, eps, weight_decay, tau)
    torch = _torch()
    device = _check_device(what, torch, params)
    cupy = _cupy(what)
    mod = _module(cupy, device)
    plan = _plan(what, torch, device, params, grads, exp_avgs, exp_avg_sqs, layer_of)
    if plan.n_chunks == 0 and stats_out is None:
        return
    f32 = np.float32
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    l2 = np.int32(1 if (weight_decay != 0.0 and not decoupled) else 0)
    decay = f32(1.0 - lr * weight_decay) if decoupled else f32(1.0)
    mx = np.int32(1 if maximize else 0)
    wd = f32(weight_decay)
    suffix = "bf16" if params[0].dtype == torch.bfloat16 else "f32"
    a = plan.args
    nc = np.int32(plan.n_chunks)
    with cupy.cuda.Device(device), _stream(cupy, torch, device):
        if plan.n_chunks:
            name = "setadam_stats_" + suffix
            mod.fn[name](
                (min(mod.grid[name], plan.n_chunks),),
                (BLOCK,),
                (
                    a["tensors"],
                    a["chunks"],
                    nc,
                    a["counter0"],
                    a["partials"],
                    f32(beta2),
                    f32(1.0 - beta2),
                    wd,
                    l2,
                    mx,
                ),
            )
        mod.fn["setadam_reduce"](
            (plan.n_layers,),
            (BLOCK,),
            (
                a["partials"],
                nc,
                a["layer_off"],
                a["layer_numel"],
                np.float64(bc2),
                np.float64(eps),
                f32(tau),
                a["coef"],
                a["stats"],
            ),
        )
        if plan.n_chunks:
            name = "setadam_update_" + suffix
            mod.fn[name](
                (min(mod.grid[name], plan.n_chunks),),
                (BLOCK,),
                (
                    a["tensors"],
                    a["chunks"],
                    nc,
                    a["counter1"],
                    a["coef"],
                    f32(beta1),
                    f32(1.0 - beta1),
                    f32(lr / bc1),
                    wd,
                    l2,
                    decay,
                    mx,
                ),
            )
    if stats_out is not None:
        stats_out.copy_(plan.stats[: 4 * plan.n_layers].view(plan.n_layers, 4))


def fused_adam_(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled: bool,
    maximize: bool,
) -> None:
    """One Adam step (torch.optim.Adam's arithmetic; AdamW with ``decoupled=True``), in place,
    over all tensors of a group in one kernel launch.  Same tensor requirements and errors as
    :func:`fused_setadam_`; no amsgrad."""
    what = "fused_adam_"
    if not params:
        return
    _check_lists(what, params, {"grads": grads, "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs})
    _check_hyper(what, step, lr, beta1, beta2, eps, weight_decay, None)
    torch = _torch()
    device = _check_device(what, torch, params)
    cupy = _cupy(what)
    mod = _module(cupy, device)
    plan = _plan(what, torch, device, params, grads, exp_avgs, exp_avg_sqs, [0] * len(params))
    if plan.n_chunks == 0:
        return
    f32 = np.float32
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    l2 = np.int32(1 if (weight_decay != 0.0 and not decoupled) else 0)
    decay = f32(1.0 - lr * weight_decay) if decoupled else f32(1.0)
    name = "adam_step_" + ("bf16" if params[0].dtype == torch.bfloat16 else "f32")
    a = plan.args
    with cupy.cuda.Device(device), _stream(cupy, torch, device):
        mod.fn[name](
            (min(mod.grid[name], plan.n_chunks),),
            (BLOCK,),
            (
                a["tensors"],
                a["chunks"],
                np.int32(plan.n_chunks),
                a["counter2"],
                f32(beta1),
                f32(1.0 - beta1),
                f32(beta2),
                f32(1.0 - beta2),
                f32(lr / bc1),
                f32(math.sqrt(bc2)),
                f32(eps),
                f32(weight_decay),
                l2,
                decay,
                np.int32(1 if maximize else 0),
            ),
        )
