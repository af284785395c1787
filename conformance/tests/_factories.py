"""Port factories the meta-tests share: a torch optimizer class or an optax factory, called with
a scenario's configuration in the usual conventions (keyword arguments the target does not take
are left out)."""

from __future__ import annotations

import inspect
from typing import Any

from setadam_ref import Config, SETAdamConfig


def torch_factory(cls: Any, dtype: str, *, record_stages: bool = False) -> Any:
    """``make(config) -> TorchOptimizerPort`` for a torch optimizer class."""
    from conformance.adapters._torch import TorchOptimizerPort

    accepted = inspect.signature(cls).parameters

    def options(cfg: Config) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "lr": cfg.lr,
            "betas": cfg.betas,
            "eps": cfg.eps,
            "weight_decay": cfg.weight_decay,
            "decoupled_weight_decay": cfg.weight_decay_mode == "decoupled",
            "maximize": cfg.maximize,
        }
        if isinstance(cfg, SETAdamConfig):
            kw["tau"] = cfg.tau
        else:
            kw.update(amsgrad=cfg.amsgrad, eps_root=cfg.eps_root)
        return {k: v for k, v in kw.items() if k in accepted}  # e.g. a port without a tau

    def make(cfg: Config) -> Any:
        kw = options(cfg)
        name = getattr(cls, "__name__", "port")
        return TorchOptimizerPort(
            name,
            lambda groups: cls(groups, **kw),
            dtype,
            "cpu",
            record_stages=record_stages,
            betas=cfg.betas,
            group_kwargs=options,  # a param group's options: the constructor's, per group
            group_layer={"layer": "group"} if "layer" in accepted else None,
        )

    return make
