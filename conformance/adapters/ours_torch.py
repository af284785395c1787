"""Our torch SET-Adam (conformance.ports.torch_setadam.SETAdam) in every path, stages recorded
where the path records them.

Paths: ``single`` (foreach=False), ``foreach``, ``fused`` (CUDA; float32 / bfloat16 with float32
state), ``compiled`` (CPU; ``torch.compile`` kernels, float64 and float32), ``numba`` (CPU; the
numba kernels, float64 and float32; skipped with the reason where numba is not installed). Every
SETAdamConfig is expressible: tau, weight-decay mode (``decoupled_weight_decay``), maximize. One layer per parameter
tensor (the reference's default layering). The fused and compiled paths record no stages (their
kernels keep no per-coordinate intermediates), so they are judged on parameters and state alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from setadam_ref import Config, SETAdamConfig

from ..results import PortSpec
from ._torch import TorchOptimizerPort

PATHS = ("single", "foreach", "fused", "compiled", "numba")
#: dtypes of the compiled path's ports (each dtype compiles its own kernels on first use)
COMPILED_DTYPES = ("float64", "float32")
#: per-call timeout of the compiled ports: their first step traces and compiles (tens of seconds
#: on a loaded 2-core machine with a cold inductor cache)
COMPILED_TIMEOUT_S = 600.0


def supports(cfg: Config) -> str | None:
    if not isinstance(cfg, SETAdamConfig):
        return "SETAdam implements SET-Adam, not Adam"
    return None


def supports_numba(cfg: Config) -> str | None:
    """:func:`supports`, and numba importable (the numba path's optional dependency)."""
    from ..ports.torch_setadam.numba_path import available

    if not available():
        return "numba is not installed (the optional extra setadam-ref[numba])"
    return supports(cfg)


def group_kwargs(cfg: Config) -> dict[str, Any]:
    """The options of a param group (or the constructor) for ``cfg``."""
    assert isinstance(cfg, SETAdamConfig)
    return dict(
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        tau=cfg.tau,
        decoupled_weight_decay=cfg.weight_decay_mode == "decoupled",
        maximize=cfg.maximize,
    )


def factory(path: str, dtype: str, device: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> TorchOptimizerPort:
        from ..ports.torch_setadam import SETAdam, records_stages

        kw = group_kwargs(cfg)
        if path == "single":
            kw.update(foreach=False, fused=False)
        elif path == "foreach":
            kw.update(foreach=True, fused=False)
        elif path == "compiled":
            kw.update(compiled=True)
        elif path == "numba":
            kw.update(compiled="numba")
        else:
            kw.update(fused=True)
        return TorchOptimizerPort(
            f"ours.torch.SETAdam[{path}]",
            lambda groups: SETAdam(groups, **kw),
            dtype,
            device,
            record_stages=records_stages(path),
            betas=cfg.betas,
            group_kwargs=group_kwargs,
            group_layer={"layer": "group"},
        )

    return make_port


def specs(device: str, dtypes: tuple[str, ...]) -> list[PortSpec]:
    out = []
    paths = ("single", "foreach") + (("fused",) if device == "cuda" else ("compiled", "numba"))
    for path in paths:
        for dt in dtypes:
            if path == "fused" and dt not in ("float32", "bfloat16"):
                continue
            if path in ("compiled", "numba") and dt not in COMPILED_DTYPES:
                continue
            name = f"ours.torch.SETAdam[{path}]" + ("@cuda" if device == "cuda" else "")
            why = supports_numba if path == "numba" else supports
            spec = PortSpec(name, "setadam", dt, device, factory(path, dt, device), why)
            if path in ("compiled", "numba"):
                spec = replace(spec, timeout_s=COMPILED_TIMEOUT_S)
            out.append(spec)
    return out
