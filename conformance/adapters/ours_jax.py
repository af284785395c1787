"""Our JAX SET-Adam (conformance.ports.jax_setadam.setadam), jitted, state read from the optax
state's ``ScaleBySETAdamState(count, mu, nu)``; stage intermediates are not exposed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from setadam_ref import Config, SETAdamConfig

from ..results import PortSpec
from ._jax import OptaxPort


def supports(cfg: Config) -> str | None:
    if not isinstance(cfg, SETAdamConfig):
        return "setadam implements SET-Adam, not Adam"
    return None


def make_for(c: Config, learning_rate: Any) -> Any:
    """Our setadam for config ``c`` (``learning_rate`` a float or a schedule of the count)."""
    from ..ports.jax_setadam import setadam

    assert isinstance(c, SETAdamConfig)
    b1, b2 = c.betas
    return setadam(
        learning_rate,
        b1=b1,
        b2=b2,
        eps=c.eps,
        tau=c.tau,
        weight_decay=c.weight_decay,
        weight_decay_mode=c.weight_decay_mode,
        maximize=c.maximize,
    )


def transformation(cfg: Config) -> Callable[[], Any]:
    """``make_tx()`` for our setadam with ``cfg``'s hyperparameters (also the mesh port's)."""
    return lambda: make_for(cfg, cfg.lr)


def factory(dtype: str, device: str) -> Callable[[Config], Any]:
    def make_port(cfg: Config) -> OptaxPort:
        return OptaxPort(
            "ours.jax.setadam", transformation(cfg), dtype, device, betas=cfg.betas,
            make_for=make_for,
        )  # fmt: skip

    return make_port


def specs(device: str, dtypes: tuple[str, ...]) -> list[PortSpec]:
    suffix = "@cuda" if device == "cuda" else ""
    return [
        PortSpec(f"ours.jax.setadam{suffix}", "setadam", dt, device, factory(dt, device), supports)
        for dt in dtypes
    ]
