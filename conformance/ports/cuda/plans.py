"""The device tables (plans) of a tensor list for the fused kernels, and the launchers' checks.

A plan holds the tensor table (pointers, sizes, layer of every tensor) and the chunk table
(``CHUNK`` elements each) the kernels walk; it is rebuilt only when the tensor list changes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.ports.cuda import nvrtc

if TYPE_CHECKING:
    from torch import Tensor

_TENSOR_DESC = np.dtype(
    [
        ("p", "<u8"),
        ("g", "<u8"),
        ("m", "<u8"),
        ("v", "<u8"),
        ("numel", "<i8"),
        ("layer", "<i4"),
        ("vec", "<i4"),
    ]
)
_CHUNK_DESC = np.dtype([("start", "<i8"), ("tensor", "<i4"), ("len", "<i4")])
assert _TENSOR_DESC.itemsize == 48 and _CHUNK_DESC.itemsize == 16


# ---- validation ---------------------------------------------------------------------------------


def _check_lists(what: str, params: Sequence[Any], others: dict[str, Sequence[Any]]) -> None:
    n = len(params)
    for name, seq in others.items():
        if len(seq) != n:
            raise ValueError(f"{what}: {name} has {len(seq)} entries, params has {n}")


def _check_device(what: str, torch: Any, params: Sequence[Tensor]) -> int:
    """Device index of params[0]; RuntimeError when it is not a usable CUDA tensor."""
    p0 = params[0]
    if not isinstance(p0, torch.Tensor):
        raise RuntimeError(f"{what}: params[0] is a {type(p0).__name__}, not a torch.Tensor")
    if not p0.is_cuda:
        avail = torch.cuda.is_available()
        raise RuntimeError(
            f"{what} runs CUDA kernels and needs CUDA tensors, but params[0] is on {p0.device}"
            + (
                ""
                if avail
                else " and torch sees no CUDA device (torch.cuda.is_available() is False)"
            )
        )
    return int(p0.device.index if p0.device.index is not None else torch.cuda.current_device())


def _validate(
    what: str,
    torch: Any,
    device: int,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
) -> None:
    dev = torch.device("cuda", device)
    pdtype = params[0].dtype
    if pdtype not in (torch.float32, torch.bfloat16):
        raise RuntimeError(
            f"{what} supports float32 and bfloat16 params (with float32 state); params[0] is {pdtype}"
        )
    for i, p in enumerate(params):
        trip = (
            ("params", p, pdtype),
            ("grads", grads[i], pdtype),
            ("exp_avgs", exp_avgs[i], torch.float32),
            ("exp_avg_sqs", exp_avg_sqs[i], torch.float32),
        )
        for name, t, dt in trip:
            if not isinstance(t, torch.Tensor):
                raise RuntimeError(
                    f"{what}: {name}[{i}] is a {type(t).__name__}, not a torch.Tensor"
                )
            if t.device != dev:
                raise RuntimeError(f"{what}: {name}[{i}] is on {t.device}, params[0] on {dev}")
            if t.dtype != dt:
                raise RuntimeError(
                    f"{what}: {name}[{i}] is {t.dtype}, expected {dt} (one param dtype per call, "
                    "float32 or bfloat16; grads of the param dtype; float32 exp_avg/exp_avg_sq)"
                )
            if t.layout != torch.strided:
                raise RuntimeError(f"{what}: {name}[{i}] has layout {t.layout}; only dense tensors")
            if not t.is_contiguous():
                raise RuntimeError(f"{what}: {name}[{i}] is not contiguous")
            if t.shape != p.shape:
                raise RuntimeError(
                    f"{what}: {name}[{i}] has shape {tuple(t.shape)}, params[{i}] {tuple(p.shape)}"
                )


# ---- plans: the device tables of one tensor list -----------------------------------------------


def layer_order(layer_of: Sequence[int]) -> list[int]:
    """The distinct layer ids in order of first appearance: row k of ``stats_out`` is layer
    ``layer_order(layer_of)[k]``."""
    seen: dict[int, None] = {}
    for lid in layer_of:
        seen.setdefault(int(lid), None)
    return list(seen)


@dataclass
class _Plan:
    desc: np.ndarray  # host copy of the TensorDesc table (its g field patched when grads move)
    g_ptrs: tuple[int, ...]
    tensors_dev: Any
    chunks_dev: Any
    layer_off_dev: Any
    layer_numel_dev: Any
    partials: Any
    counters: Any
    coef: Any
    stats: Any
    n_chunks: int
    n_layers: int
    args: dict[str, np.uint64]  # device pointers of the tables as kernel arguments


_plans: OrderedDict[tuple[Any, ...], _Plan] = OrderedDict()
_MAX_PLANS = 8


def _aligned(ptr: int, nbytes: int) -> bool:
    return ptr % nbytes == 0


def _build_plan(
    torch: Any,
    device: int,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    layer_of: Sequence[int],
    g_ptrs: tuple[int, ...],
) -> _Plan:
    elem = params[0].element_size()
    order = layer_order(layer_of)
    dense = {lid: k for k, lid in enumerate(order)}
    n = len(params)
    desc = np.zeros(n, dtype=_TENSOR_DESC)
    numel_of_layer = [0] * len(order)
    for i in range(n):
        p, m, v = params[i], exp_avgs[i], exp_avg_sqs[i]
        pp, mp, vp = p.data_ptr(), m.data_ptr(), v.data_ptr()
        gp = g_ptrs[i]
        k = dense[int(layer_of[i])]
        numel = int(p.numel())
        desc[i] = (
            pp,
            gp,
            mp,
            vp,
            numel,
            k,
            int(
                _aligned(pp, 4 * elem)
                and _aligned(gp, 4 * elem)
                and _aligned(mp, 16)
                and _aligned(vp, 16)
            ),
        )
        numel_of_layer[k] += numel
    # chunks in layer order (then tensor order, then offset)
    chunk_rows: list[tuple[int, int, int]] = []
    layer_off = [0] * (len(order) + 1)
    by_layer: list[list[int]] = [[] for _ in order]
    for i in range(n):
        by_layer[int(desc[i]["layer"])].append(i)
    for k, members in enumerate(by_layer):
        layer_off[k] = len(chunk_rows)
        for i in members:
            numel = int(desc[i]["numel"])
            chunk = nvrtc.CHUNK  # read at plan time: the GPU bench sweeps it
            for start in range(0, numel, chunk):
                chunk_rows.append((start, i, min(chunk, numel - start)))
    layer_off[len(order)] = len(chunk_rows)
    n_chunks = len(chunk_rows)
    if n_chunks >= 2**31 - 2**20:
        raise RuntimeError(f"too many chunks ({n_chunks}); raise CHUNK")
    chunks = np.zeros(max(n_chunks, 1), dtype=_CHUNK_DESC)
    for j, row in enumerate(chunk_rows):
        chunks[j] = row
    dev = torch.device("cuda", device)

    def up(arr: np.ndarray) -> Any:
        return torch.from_numpy(np.ascontiguousarray(arr).view(np.uint8).copy()).to(dev)

    tensors_dev = up(desc)
    chunks_dev = up(chunks)
    layer_off_dev = torch.tensor(layer_off, dtype=torch.int32, device=dev)
    layer_numel_dev = torch.tensor(
        [float(x) for x in numel_of_layer], dtype=torch.float64, device=dev
    )
    partials = torch.empty(3 * max(n_chunks, 1), dtype=torch.float64, device=dev)
    counters = torch.zeros(4, dtype=torch.int32, device=dev)
    coef = torch.empty(4 * max(len(order), 1), dtype=torch.float32, device=dev)
    stats = torch.empty(4 * max(len(order), 1), dtype=torch.float64, device=dev)
    args = {
        "tensors": np.uint64(tensors_dev.data_ptr()),
        "chunks": np.uint64(chunks_dev.data_ptr()),
        "layer_off": np.uint64(layer_off_dev.data_ptr()),
        "layer_numel": np.uint64(layer_numel_dev.data_ptr()),
        "partials": np.uint64(partials.data_ptr()),
        "counter0": np.uint64(counters.data_ptr()),
        "counter1": np.uint64(counters.data_ptr() + 4),
        "counter2": np.uint64(counters.data_ptr() + 8),
        "coef": np.uint64(coef.data_ptr()),
        "stats": np.uint64(stats.data_ptr()),
    }
    return _Plan(
        desc,
        g_ptrs,
        tensors_dev,
        chunks_dev,
        layer_off_dev,
        layer_numel_dev,
        partials,
        counters,
        coef,
        stats,
        n_chunks,
        len(order),
        args,
    )


def _plan(
    what: str,
    torch: Any,
    device: int,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    layer_of: Sequence[int],
) -> _Plan:
    """The cached plan of this tensor list; built (after full validation) on first sight.

    The key holds every param / state data pointer, every param's numel, the layering and CHUNK;
    a plan whose only change is where the grads live gets its pointer table re-uploaded (grads are
    re-validated then).  Tensors already seen at the same addresses are not re-validated.
    """
    dp = torch.Tensor.data_ptr
    key = (
        device,
        params[0].dtype,
        nvrtc.CHUNK,
        tuple(map(dp, params)),
        tuple(map(dp, exp_avgs)),
        tuple(map(dp, exp_avg_sqs)),
        tuple(map(torch.Tensor.numel, params)),
        tuple(layer_of),
    )
    g_ptrs = tuple(map(dp, grads))
    plan = _plans.get(key)
    if plan is None:
        _validate(what, torch, device, params, grads, exp_avgs, exp_avg_sqs)
        plan = _build_plan(torch, device, params, grads, exp_avgs, exp_avg_sqs, layer_of, g_ptrs)
        _plans[key] = plan
        while len(_plans) > _MAX_PLANS:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
        if g_ptrs != plan.g_ptrs:
            _validate(what, torch, device, params, grads, exp_avgs, exp_avg_sqs)
            elem = params[0].element_size()
            desc = plan.desc.copy()
            desc["g"] = np.asarray(g_ptrs, dtype=np.uint64)
            desc["vec"] = np.where(
                (desc["p"] % (4 * elem) == 0)
                & (desc["g"] % (4 * elem) == 0)
                & (desc["m"] % 16 == 0)
                & (desc["v"] % 16 == 0),
                1,
                0,
            ).astype(np.int32)
            host = torch.from_numpy(desc.view(np.uint8)).pin_memory()
            plan.tensors_dev.copy_(host, non_blocking=True)  # stream-ordered after earlier steps
            plan.desc = desc
            plan.g_ptrs = g_ptrs
    return plan


def _check_hyper(
    what: str,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    tau: float | None,
) -> None:
    checks = [
        ("step", step, step >= 1, ">= 1"),
        ("lr", lr, math.isfinite(lr) and lr >= 0.0, "finite, >= 0"),
        ("beta1", beta1, 0.0 <= beta1 < 1.0, "in [0, 1)"),
        ("beta2", beta2, 0.0 <= beta2 < 1.0, "in [0, 1)"),
        ("eps", eps, math.isfinite(eps) and eps > 0.0, "finite, > 0"),
        ("weight_decay", weight_decay, math.isfinite(weight_decay) and weight_decay >= 0.0, ">= 0"),
    ]
    if tau is not None:
        checks.append(("tau", tau, 0.0 <= tau < 1.0, "in [0, 1)"))
    for name, value, ok, rng in checks:
        if not ok:
            raise ValueError(f"{what}: {name}={value!r} is out of range ({rng})")

