"""optax.adam / optax.adamw in their exact reference conventions.

optax.adam: ``AdamConfig(eps=eps, eps_root=eps_root)``, no weight decay, no amsgrad, no maximize.
optax.adamw: the same with decoupled weight decay; optax adds ``weight_decay * theta`` to the Adam
direction before scaling by ``-lr``, i.e. ``theta *= 1 - lr * weight_decay`` as in the reference's
``weight_decay_mode="decoupled"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setadam_ref import AdamConfig, Config

from ..results import PortSpec
from ._jax import OptaxPort


def supports(kind: str) -> Callable[[Config], str | None]:
    def check(cfg: Config) -> str | None:
        if not isinstance(cfg, AdamConfig):
            return "optax.adam implements Adam, not SET-Adam"
        if cfg.amsgrad:
            return "optax.adam has no amsgrad (optax.amsgrad is another transformation)"
        if cfg.maximize:
            return "optax.adam has no maximize"
        if cfg.weight_decay > 0:
            if kind == "adam":
                return "optax.adam has no weight decay"
            if cfg.weight_decay_mode != "decoupled":
                return "optax.adamw uses decoupled weight decay"
        return None

    return check


def factory(kind: str, dtype: str, device: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> OptaxPort:
        import optax

        def make_for(c: Any, learning_rate: Any) -> Any:
            """The transformation for config ``c`` (a float lr or a schedule of the count)."""
            assert isinstance(c, AdamConfig)
            b1, b2 = c.betas
            kw: dict[str, Any] = dict(
                learning_rate=learning_rate, b1=b1, b2=b2, eps=c.eps, eps_root=c.eps_root
            )
            if kind == "adam":
                return optax.adam(**kw)
            return optax.adamw(weight_decay=c.weight_decay, **kw)

        assert isinstance(cfg, AdamConfig)
        return OptaxPort(
            f"optax.{kind}",
            lambda: make_for(cfg, cfg.lr),
            dtype,
            device,
            betas=cfg.betas,
            make_for=make_for,
        )

    return make_port


def specs(device: str, dtypes: tuple[str, ...]) -> list[PortSpec]:
    suffix = "@cuda" if device == "cuda" else ""
    return [
        PortSpec(
            f"optax.{kind}{suffix}", "adam", dt, device, factory(kind, dt, device), supports(kind)
        )
        for kind in ("adam", "adamw")
        for dt in dtypes
    ]
