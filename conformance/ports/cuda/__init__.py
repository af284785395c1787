"""CUDA C++ kernels for SET-Adam and Adam, and their launcher for torch CUDA tensors.

The kernels (``setadam.cu``, ``adam.cu``, sharing ``multi_tensor.cuh``) are compiled at run time
by NVRTC through CuPy's ``RawModule`` and launched on torch's current stream over the tensors'
own memory (raw data pointers: no copies).  :mod:`conformance.ports.cuda.torch_fused` holds the
entry points; :mod:`conformance.ports.cuda.compile_check` compiles every source with ``nvcc`` so
that a syntax or type error is caught on a machine without a GPU.  Importing this package imports
neither torch nor cupy.
"""

from __future__ import annotations

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
"""Folder of the ``.cu`` / ``.cuh`` sources."""

KERNEL_SOURCES = ("setadam.cu", "adam.cu")
"""The compilation units; each includes ``multi_tensor.cuh``."""

HEADER = "multi_tensor.cuh"

__all__ = ["HEADER", "KERNEL_SOURCES", "SOURCE_DIR"]
