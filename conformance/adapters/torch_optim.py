"""torch.optim.Adam / AdamW in every implementation path, in their exact reference conventions.

torch.optim.Adam: eps outside the square root (``eps_root = 0``), coupled (``l2``) weight decay,
amsgrad as the running maximum of raw v (``amsgrad_mode="torch"``), ``maximize`` supported.
torch.optim.AdamW: the same with decoupled weight decay ``theta *= 1 - lr * weight_decay``.
Paths: ``forloop`` (``foreach=False``), ``foreach``, ``fused`` (CPU kernel for every float dtype in
torch >= 2.4; CUDA), ``capturable`` (CUDA only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setadam_ref import AdamConfig, Config

from ..results import PortSpec
from ._torch import TorchOptimizerPort

PATHS = ("forloop", "foreach", "fused", "capturable")


def path_kwargs(path: str) -> dict[str, Any]:
    return {
        "forloop": {"foreach": False, "fused": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
        "capturable": {"capturable": True, "foreach": True},
    }[path]


def supports(kind: str) -> Callable[[Config], str | None]:
    def check(cfg: Config) -> str | None:
        if not isinstance(cfg, AdamConfig):
            return "torch.optim implements Adam, not SET-Adam"
        if cfg.eps_root != 0:
            return "torch.optim has no eps_root (eps inside the square root)"
        if cfg.amsgrad and cfg.amsgrad_mode != "torch":
            return "torch.optim's amsgrad is the maximum of raw v (amsgrad_mode='torch')"
        mode = "l2" if kind == "Adam" else "decoupled"
        if cfg.weight_decay > 0 and cfg.weight_decay_mode != mode:
            return f"torch.optim.{kind} uses {mode} weight decay"
        return None

    return check


def group_kwargs(cfg: Config) -> dict[str, Any]:
    """The options of a param group (or the constructor) for ``cfg``."""
    assert isinstance(cfg, AdamConfig)
    return dict(
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        amsgrad=cfg.amsgrad,
        maximize=cfg.maximize,
    )


def factory(kind: str, path: str, dtype: str, device: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> TorchOptimizerPort:
        import torch

        assert isinstance(cfg, AdamConfig)
        cls = torch.optim.Adam if kind == "Adam" else torch.optim.AdamW
        kw = dict(**group_kwargs(cfg), **path_kwargs(path))
        return TorchOptimizerPort(
            f"torch.optim.{kind}[{path}]",
            lambda groups: cls(groups, **kw),
            dtype,
            device,
            betas=cfg.betas,
            group_kwargs=group_kwargs,
        )

    return make_port


def specs(device: str, dtypes: tuple[str, ...]) -> list[PortSpec]:
    out = []
    paths = ("forloop", "foreach", "fused") + (("capturable",) if device == "cuda" else ())
    for kind in ("Adam", "AdamW"):
        for path in paths:
            for dt in dtypes:
                if device == "cuda" and path == "fused" and dt == "float64":
                    pass  # fused CUDA supports float64 too
                out.append(
                    PortSpec(
                        f"torch.optim.{kind}[{path}]" + ("@cuda" if device == "cuda" else ""),
                        "adam",
                        dt,
                        device,
                        factory(kind, path, dt, device),
                        supports(kind),
                    )
                )
    return out
