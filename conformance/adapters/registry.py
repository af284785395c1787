"""Which ports ``setadam-conformance run`` checks on this machine.

Availability is probed lazily: a framework that is not installed (or a CUDA device that is not
present) removes its ports with a note instead of an error. Every spec carries a
:class:`~conformance.results.PortLocator` (``"registry"``, name, dtype, device), which a worker
process resolves with :func:`find_spec` to rebuild the same port.
"""

from __future__ import annotations

import fnmatch
import glob
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from ..results import PortLocator, PortSpec

DEFAULT_DTYPES = ("float64", "float32", "bfloat16", "float16")
#: dtypes whose default run uses the quick scenario subset (their budgets are wide; the full set
#: adds time, not information). JAX ports use it in every dtype: each scenario costs one XLA
#: compilation (0.5-2 s), which would dominate the run.
HALF_DTYPES = ("bfloat16", "float16")
JAX_DTYPES = ("float64", "float32", "bfloat16")
#: ports (fnmatch patterns) of the --quick run
QUICK_PORTS = (
    "reference-selfcheck[[]identity[]]",
    "torch.optim.Adam[[]foreach[]]*",
    "torch.optim.AdamW[[]fused[]]*",
    "ours.torch.SETAdam[[]foreach[]]*",
    "ours.torch.SETAdam[[]fused[]]*",
    "ours.jax.setadam*",
    "ours.torch.SETAdam[[]sharded-foreach[]]@2ranks",
)
QUICK_DTYPES = ("float64", "float32")
#: JAX ports in --quick: float32 and four scenarios (each scenario is one XLA compilation)
QUICK_JAX = (("float32",), ("normal", "zero_layers", "tau_0.9", "weight_decay_decoupled"))
#: scenarios the default run leaves out for JAX ports: XLA compiles a jitted step over a pytree
#: of 301 leaves for minutes on 2 shared cores (past the per-call timeout)
JAX_SLOW_SCENARIOS = ("many_tensors",)
JAX_SLOW_NOTE = (
    "optax and ours.jax not run on many_tensors in the default run: XLA compiles the jitted step "
    "over 301 leaves for minutes on 2 cores (check it with --port 'optax*' --scenario "
    "many_tensors --timeout 900)"
)


#: found by the harness on an H100 (torch 2.11): the capturable path keeps its step counter as a
#: float32 device tensor and forms 1 - beta^t from it in float32, so float64 parameters get
#: float32-accurate bias corrections (~1e7 x the float64 budget at step 1). A true deviation, not a
#: rounding artefact; left out of the default run, checked with an explicit --dtype float64.
CAPTURABLE_F64_NOTE = (
    "torch.optim Adam/AdamW[capturable] in float64 not in the default run: torch keeps the "
    "capturable step counter in float32 on the device, so bias corrections are float32-accurate "
    "(~1e7 x the float64 budget; check it with --port '*capturable*' --dtype float64)"
)
#: measured on the 2-core development VM under load: the first step of each dtype traces and
#: compiles the inductor kernels (about 90 s per dtype with a cold cache), which alone would take
#: the default run past its 3-minute budget. Checked when asked for by name.
COMPILED_NOTE = (
    "ours.torch.SETAdam[compiled] not in the default run: its first step compiles inductor "
    "kernels (~90 s per dtype on 2 cores, cold cache); check it with "
    "--port 'ours.torch.SETAdam[[]compiled[]]*'"
)

#: numba compiles the two kernels per dtype on the first step of a process without its on-disk
#: cache (~5-15 s on 2 cores); the path is opt-in like the compiled one.
NUMBA_NOTE = (
    "ours.torch.SETAdam[numba] not in the default run: its first step JIT-compiles numba kernels "
    "(optional dependency); check it with --port 'ours.torch.SETAdam[[]numba[]]*'"
)


def _jax_default_scenarios() -> tuple[str, ...]:
    """The quick subset with full horizons, less what XLA compiles too slowly here."""
    from ..scenarios import select

    return tuple(sc.name for sc in select(None, True) if sc.name not in JAX_SLOW_SCENARIOS)


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


#: device nodes without one of which a Linux machine has no GPU torch can use (NVIDIA's, ROCm's
#: kernel driver, WSL's GPU paravirtualisation)
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def no_gpu_here() -> bool:
    """True when this is Linux and none of ``GPU_NODES`` exists: ``torch.cuda.is_available()``
    is then False, found without importing torch in the harness process (~3 s of every run)."""
    return sys.platform.startswith("linux") and not any(os.path.exists(n) for n in GPU_NODES)


def cuda_available() -> bool:
    if not have("torch") or no_gpu_here():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _framework(name: str) -> str | None:
    if name.startswith(("torch.", "ours.torch.")):
        return "torch"
    if name.startswith(("optax.", "ours.jax.")):
        return "jax"
    return None


def _locate(s: PortSpec) -> PortSpec:
    loc = PortLocator("registry", s.name, s.dtype, s.device, _framework(s.name))
    return replace(s, locator=loc)


def find_spec(name: str, dtype: str, device: str) -> PortSpec:
    """The registry's port ``name`` in ``dtype`` on ``device`` (KeyError when there is none)."""
    # by name: the ports the default run leaves out (COMPILED_NOTE) must resolve in a worker too
    specs, notes = available_ports(device, (dtype,), [glob.escape(name)])
    for s in specs:
        if s.name == name and s.dtype == dtype:
            return s
    why = f" ({'; '.join(notes)})" if notes else ""
    raise KeyError(f"no port {name!r} in {dtype} on {device} here{why}")


def available_ports(
    device: str = "auto",
    dtypes: Sequence[str] | None = None,
    patterns: Sequence[str] | None = None,
    quick: bool = False,
) -> tuple[list[PortSpec], list[str]]:
    """(port specs, notes about what is unavailable here)."""
    from . import ours_sharded, selfcheck

    notes: list[str] = []
    want = tuple(dtypes) if dtypes else (QUICK_DTYPES if quick else DEFAULT_DTYPES)
    devices: list[str] = []
    if device in ("auto", "cpu"):
        devices.append("cpu")
    if device in ("auto", "cuda"):
        if cuda_available():
            devices.append("cuda")
        elif device == "cuda":
            notes.append("no CUDA device (torch.cuda.is_available() is False): CUDA ports skipped")
    specs: list[PortSpec] = []
    if "cpu" in devices and "float64" in want:
        specs.extend(selfcheck.specs())
    if have("torch"):
        from . import ours_torch, torch_optim

        for dev in devices:
            specs.extend(torch_optim.specs(dev, want))
            specs.extend(ours_torch.specs(dev, want))
    else:
        notes.append("torch is not installed: torch.optim and our torch port skipped")
    if have("jax") and have("optax"):
        from . import optax_adapter, ours_jax

        jdt = tuple(d for d in want if d in JAX_DTYPES) if "cpu" in devices else ()
        specs.extend(optax_adapter.specs("cpu", jdt))
        specs.extend(ours_jax.specs("cpu", jdt))
    else:
        notes.append("jax/optax are not installed: optax and our JAX port skipped")
    # -- the sharded ports (ours_sharded: rank pools in this process, a JAX mesh in a worker)
    if "cpu" in devices:
        if have("torch"):
            specs.extend(ours_sharded.torch_specs(want, quick and not patterns))
        if have("jax") and have("optax") and not (quick and not patterns):
            specs.extend(ours_sharded.jax_specs(want))
    if quick and not patterns:
        patterns = QUICK_PORTS
    if patterns:
        specs = [s for s in specs if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
    out = []
    if not dtypes and any("[capturable]" in s.name and s.dtype == "float64" for s in specs):
        specs = [s for s in specs if not ("[capturable]" in s.name and s.dtype == "float64")]
        notes.append(CAPTURABLE_F64_NOTE)
    if not patterns and any(s.name.startswith("ours.torch.SETAdam[compiled]") for s in specs):
        specs = [s for s in specs if not s.name.startswith("ours.torch.SETAdam[compiled]")]
        notes.append(COMPILED_NOTE)
    if not patterns and any(s.name.startswith("ours.torch.SETAdam[numba]") for s in specs):
        specs = [s for s in specs if not s.name.startswith("ours.torch.SETAdam[numba]")]
        notes.append(NUMBA_NOTE)
    for s in specs:
        jit_compiled = s.name.startswith(("optax.", "ours.jax."))
        if not quick and s.scenarios is None and jit_compiled:
            s = replace(s, scenarios=_jax_default_scenarios())
            if JAX_SLOW_NOTE not in notes:
                notes.append(JAX_SLOW_NOTE)
        elif not quick and s.scenarios is None and (s.dtype in HALF_DTYPES or jit_compiled):
            s = replace(s, quick_subset=True)
        if quick and jit_compiled and not dtypes:
            if s.dtype not in QUICK_JAX[0]:
                continue
            s = replace(s, scenarios=QUICK_JAX[1])
        out.append(s if ours_sharded.is_pooled(s) else _locate(s))
    if any(s.name.startswith("ours.") and "@" in s.name and "cuda" not in s.name for s in out):
        notes.extend(ours_sharded.notes(quick, want))
    return out, notes
