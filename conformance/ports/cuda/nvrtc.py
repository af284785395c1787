"""NVRTC compilation of this folder's CUDA sources and the per-device module cache (CuPy).

torch and cupy are imported lazily, inside the functions: importing this module needs neither.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from conformance.ports.cuda import HEADER, SOURCE_DIR

BLOCK = 256
"""Threads per block (``SETADAM_BLOCK`` in the sources)."""


CHUNK = 4096
"""Elements per chunk (a multiple of 4).  Read when a plan is built; changing it between steps
changes the summation order of the layer statistics, so keep it fixed within a run."""

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

