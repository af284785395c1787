"""Prepare a framework in a worker process: import it and run one tiny step of it.

A framework's lazy initialisation (torch.optim's first ``step()`` imports ``torch._dynamo``; XLA
starts its backend on the first computation) can take seconds on a loaded machine. The worker
runs it here, under the start-up allowance, so that it is never timed as a port's first step.
"""

from __future__ import annotations

import importlib

#: the modules each framework name stands for
MODULES: dict[str, tuple[str, ...]] = {"torch": ("torch",), "jax": ("jax", "optax")}


def prepare(name: str) -> None:
    """Import framework ``name`` ("torch" or "jax") and run one tiny step of it."""
    if name not in MODULES:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(MODULES)}")
    for module in MODULES[name]:
        importlib.import_module(module)
    if name == "torch":
        import torch

        p = torch.zeros(1, requires_grad=True)
        p.grad = torch.ones(1)
        torch.optim.Adam([p]).step()
    else:
        from ._jax import setup_jax

        jax = setup_jax()
        jax.jit(lambda x: x + 1)(1.0).block_until_ready()
