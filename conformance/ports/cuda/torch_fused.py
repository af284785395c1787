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
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.ports.cuda import HEADER, SOURCE_DIR

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

BLOCK = 256
"""Threads per block (``SETADAM_BLOCK`` in the sources)."""

CHUNK = 4096
"""Elements per chunk (a multiple of 4).  Read when a plan is built; changing it between steps
changes the summation order of the layer statistics, so keep it fixed within a run."""

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

_lock = threading.Lock()


def kernel_source(name: str) -> str:
    """The text of ``name`` (a ``.cu`` file of this folder) with ``multi_tensor.cuh`` pasted in.

    NVRTC gets one self-contained text, so CuPy's compile cache (keyed on the text) sees every
    change of the header.
    """
    src = (SOURCE_DIR / name).read_text(encoding="utf-8")
    header = (SOURCE_DIR / HEADER).read_text(encoding="utf-8")
    line = f'#include "{HEADER}"'
    if line not in src:
        raise RuntimeError(f"{name} does not include {HEADER}")
    return src.replace(line, header.replace("#pragma once", ""), 1)


# ---- environment --------------------------------------------------------------------------------


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the caller
        raise RuntimeError(f"the fused CUDA optimizers need torch: {exc}") from exc
    return torch


def _cupy(what: str) -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(
            f"{what} needs CuPy (the package cupy-cuda13x) to compile its CUDA kernels with "
            f"NVRTC, and importing cupy failed: {exc}"
        ) from exc
    return cupy


NVRTC_OPTIONS = (
    "--std=c++17",
    f"-DSETADAM_BLOCK={BLOCK}",
    "-ftz=false",  # keep float32 subnormals (CuPy's RawModule forces -ftz=true)
    "-prec-div=true",
    "-prec-sqrt=true",
    "-fmad=true",
)
"""NVRTC options of the kernels: IEEE float32 (subnormals kept, correctly rounded division and
square root); multiply-adds may contract into FMAs."""

_SETADAM_KERNELS = (
    "setadam_stats_f32",
    "setadam_stats_bf16",
    "setadam_reduce",
    "setadam_update_f32",
    "setadam_update_bf16",
)
_ADAM_KERNELS = ("adam_step_f32", "adam_step_bf16")


def _compile(cupy: Any, name: str) -> tuple[Any, bool]:
    """The loaded module of source ``name`` and whether it was built with ``-ftz=false``.

    CuPy's ``RawModule`` appends ``-ftz=true`` to every NVRTC compilation, which would flush
    subnormal float32 v to zero; so the source is compiled through
    ``cupy.cuda.compiler.compile_using_nvrtc`` (no options added beyond the target) and loaded as a
    ``cupy.cuda.function.Module``.  If that lower-level path is unavailable in this CuPy, falls
    back to ``RawModule`` with a warning (subnormals then flush to zero).
    """
    src = kernel_source(name)
    try:
        from cupy.cuda import compiler, function

        obj, _mapping = compiler.compile_using_nvrtc(src, options=NVRTC_OPTIONS)
        mod = function.Module()
        mod.load(obj)
        return mod, True
    except Exception as exc:
        warnings.warn(
            f"compiling {name} with -ftz=false through cupy.cuda.compiler failed "
            f"({type(exc).__name__}: {exc}); falling back to cupy.RawModule, which flushes "
            "float32 subnormals to zero",
            RuntimeWarning,
            stacklevel=3,
        )
        opts = tuple(o for o in NVRTC_OPTIONS if not o.startswith("-ftz"))
        return cupy.RawModule(code=src, options=opts), False


class _Module:
    """The compiled kernels of one device."""

    def __init__(self, cupy: Any, device: int) -> None:
        with cupy.cuda.Device(device):
            setadam, ok1 = _compile(cupy, "setadam.cu")
            adam, ok2 = _compile(cupy, "adam.cu")
            self.ieee_subnormals = ok1 and ok2
            self.fn: dict[str, Any] = {}
            for name in _SETADAM_KERNELS:
                self.fn[name] = setadam.get_function(name)
            for name in _ADAM_KERNELS:
                self.fn[name] = adam.get_function(name)
            sms = int(cupy.cuda.Device(device).attributes["MultiProcessorCount"])
        self.grid: dict[str, int] = {}
        for name, fn in self.fn.items():
            per_sm = 2048 // BLOCK
            try:
                from cupy_backends.cuda.api import driver  # type: ignore[import-untyped,unused-ignore]

                ptr = getattr(fn, "kernel", fn).ptr
                per_sm = int(driver.occupancyMaxActiveBlocksPerMultiprocessor(ptr, BLOCK, 0))
            except Exception:  # pragma: no cover - the occupancy query is an optimisation only
                pass
            self.grid[name] = max(1, per_sm) * sms


def kernels_info(device: int = 0) -> dict[str, Any]:
    """How the kernels of ``device`` were built and launched (compiles them if needed): whether
    float32 subnormals are kept (``-ftz=false``), the grid of each kernel, CHUNK and BLOCK."""
    cupy = _cupy("kernels_info")
    mod = _module(cupy, device)
    return {
        "ieee_subnormals": mod.ieee_subnormals,
        "grid": dict(mod.grid),
        "chunk": CHUNK,
        "block": BLOCK,
    }


_modules: dict[int, _Module] = {}
_streams: dict[tuple[int, int], Any] = {}


def _module(cupy: Any, device: int) -> _Module:
    mod = _modules.get(device)
    if mod is None:
        with _lock:
            mod = _modules.get(device)
            if mod is None:
                try:
                    mod = _Module(cupy, device)
                except Exception as exc:
                    raise RuntimeError(
                        f"could not compile or load the CUDA kernels on cuda:{device} through "
                        f"CuPy/NVRTC: {type(exc).__name__}: {exc}"
                    ) from exc
                _modules[device] = mod
    return mod


def _stream(cupy: Any, torch: Any, device: int) -> Any:
    ts = torch.cuda.current_stream(device)
    key = (device, int(ts.cuda_stream))
    st = _streams.get(key)
    if st is None:
        try:
            st = cupy.cuda.Stream.from_external(ts)
        except Exception:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                st = cupy.cuda.ExternalStream(int(ts.cuda_stream), device)
        _streams[key] = st
    return st


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
            for start in range(0, numel, CHUNK):
                chunk_rows.append((start, i, min(CHUNK, numel - start)))
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
        CHUNK,
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
