"""Our torch SET-Adam (conformance.ports.torch_setadam.SETAdam) in every path, stages recorded
where the path records them.

Paths: ``single`` (foreach=False), ``foreach``, ``fused`` (CUDA; float32 / bfloat16 with float32
state). Every SETAdamConfig is expressible: tau, weight-decay mode (``decoupled_weight_decay``),
maximize. One layer per parameter tensor (the reference's default layering). The fused path
records no stages (its kernels keep no per-coordinate intermediates), so it is judged on
parameters and state alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setadam_ref import Config, SETAdamConfig

from ..results import PortSpec
from ._torch import TorchOptimizerPort

PATHS = ("single", "foreach", "fused")


def supports(cfg: Config) -> str | None:
    if not isinstance(cfg, SETAdamConfig):
        return "SETAdam implements SET-Adam, not Adam"
    return None


def factory(path: str, dtype: str, device: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> TorchOptimizerPort:
        from ..ports.torch_setadam import SETAdam, records_stages

        assert isinstance(cfg, SETAdamConfig)
        kw: dict[str, Any] = dict(
            lr=cfg.lr,
            betas=cfg.betas,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            tau=cfg.tau,
            decoupled_weight_decay=cfg.weight_decay_mode == "decoupled",
            maximize=cfg.maximize,
        )
        if path == "single":
            kw.update(foreach=False, fused=False)
        elif path == "foreach":
            kw.update(foreach=True, fused=False)
        else:
            kw.update(fused=True)
        return TorchOptimizerPort(
            f"ours.torch.SETAdam[{path}]",
            lambda groups: SETAdam(groups, **kw),
            dtype,
            device,
            record_stages=records_stages(path),
            betas=cfg.betas,
        )

    return make_port


def specs(device: str, dtypes: tuple[str, ...]) -> list[PortSpec]:
    out = []
    paths = ("single", "foreach") + (("fused",) if device == "cuda" else ())
    for path in paths:
        for dt in dtypes:
            if path == "fused" and dt not in ("float32", "bfloat16"):
                continue
            name = f"ours.torch.SETAdam[{path}]" + ("@cuda" if device == "cuda" else "")
            out.append(PortSpec(name, "setadam", dt, device, factory(path, dt, device), supports))
    return out
