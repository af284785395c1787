"""The optimizer contract beyond one group: param groups, per-step lr, parameters without gradient.

A *contract scenario* (``Problem.groups``, ``Problem.lr_factors`` or ``Problem.active`` set)
asks a port for more than the dense, single-group, constant-lr stream of the other scenarios:

- **groups** ``G_1..G_K``: a partition of the arrays, group ``k`` with its own config ``c_k``
  (lr, betas, eps, weight decay and its mode, tau, maximize, amsgrad);
- **an lr schedule**: step ``t`` uses ``lr_k(t) = lr_k * f_t`` in every group (``f`` =
  ``lr_factors``; torch's ``LambdaLR`` with ``lr_lambda(t - 1) = f_t``, optax's
  ``learning_rate`` as a schedule of the count);
- **a tensor lr** (``tensor_lr``, torch): ``group["lr"]`` a 0-d float64 tensor holding the
  same values, as torch.optim takes it for capturable and compiled runs;
- **sparse participation**: array ``i`` has a gradient at step ``t`` only when
  ``active[t - 1][i]``; an array without gradient is skipped (torch's ``p.grad = None``): its
  parameters, m, v and step count do not change and it does not count in its layer.

The harness hands a port the :class:`Contract` through the optional ``configure(contract)`` of
:mod:`conformance.interface` before its first ``reset``, and then passes ``None`` in ``step()``
for an array without gradient. :func:`apply_contract` (run where the port lives) turns a missing
``configure`` or its ``NotImplementedError`` into the reason the scenario is skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from setadam_ref import Config, SETAdamConfig


class _ContractFields(Protocol):
    """The fields of ``conformance.scenarios.Problem`` a contract is read from."""

    @property
    def params0(self) -> Sequence[Any]: ...
    @property
    def layers(self) -> Sequence[Sequence[int]] | None: ...
    @property
    def groups(self) -> Sequence[GroupSpec] | None: ...
    @property
    def lr_factors(self) -> Sequence[float] | None: ...
    @property
    def active(self) -> Sequence[Sequence[bool]] | None: ...
    @property
    def closed_loop(self) -> bool: ...


@dataclass(frozen=True)
class GroupSpec:
    """One param group of a scenario: its arrays and the hyperparameters it changes."""

    arrays: tuple[int, ...]
    hyper: tuple[tuple[str, Any], ...] = ()  # reference field names, on top of the scenario's


@dataclass(frozen=True)
class Contract:
    """What a contract scenario asks of a port (see the module docstring)."""

    groups: tuple[tuple[tuple[int, ...], Config], ...]  # (arrays, full config) per group
    lr_factors: tuple[float, ...] | None = None  # step t uses lr * lr_factors[t - 1]
    sparse: bool = False  # step() receives None for an array without gradient
    frozen: tuple[int, ...] = ()  # arrays without gradient at every step (a frozen parameter)
    partial: bool = False  # some other array has a gradient at some steps only
    layers: tuple[tuple[int, ...], ...] | None = None  # SET-Adam layers of several arrays
    tensor_lr: bool = False  # torch: each group's lr a 0-d float64 tensor (same values)

    def config_at(self, k: int, t: int) -> Config:
        """Config of group ``k`` at step ``t`` (its lr scaled by the schedule)."""
        cfg = self.groups[k][1]
        if self.lr_factors is None:
            return cfg
        return dataclasses.replace(cfg, lr=cfg.lr * self.lr_factors[t - 1])

    def multi_array_layers(self) -> bool:
        """Whether SET-Adam layers group several arrays (Adam ignores layering)."""
        setadam = isinstance(self.groups[0][1], SETAdamConfig)
        return setadam and self.layers is not None and any(len(x) > 1 for x in self.layers)

    def needs(self) -> str:
        """What the contract asks for, in words (for skip reasons)."""
        parts = []
        if len(self.groups) > 1:
            parts.append(f"{len(self.groups)} param groups with their own hyperparameters")
        if self.lr_factors is not None:
            parts.append("an lr changed before every step")
        if self.sparse:
            parts.append("parameters without gradient on some steps")
        if self.tensor_lr:
            parts.append("a 0-d tensor lr")
        return ", ".join(parts) or "one group, constant lr, every gradient"


def _normal(cfg: Config) -> Config:
    if cfg.weight_decay == 0 and cfg.weight_decay_mode != "l2":
        return dataclasses.replace(cfg, weight_decay_mode="l2")  # as Scenario.config does
    return cfg


def contract_of(problem: _ContractFields, config: Config) -> Contract | None:
    """The contract of ``problem`` on top of the scenario's ``config``; None for a plain one.

    Raises ``ValueError`` when the groups do not partition the arrays, a layer spans groups
    (a layer's statistics would mix two configs: not expressible), or absent gradients are asked
    of a closed loop."""
    if problem.groups is None and problem.lr_factors is None and problem.active is None:
        return None
    if problem.active is not None and problem.closed_loop:
        raise ValueError("absent gradients are an open-loop contract (the driver masks no loss)")
    n = len(problem.params0)
    specs = problem.groups or (GroupSpec(tuple(range(n))),)
    seen = sorted(i for g in specs for i in g.arrays)
    if seen != list(range(n)):
        raise ValueError(f"param groups {[g.arrays for g in specs]} do not partition {n} arrays")
    group_of = {i: k for k, g in enumerate(specs) for i in g.arrays}
    for layer in problem.layers or ():
        if len({group_of[i] for i in layer}) > 1:
            raise ValueError(f"layer {tuple(layer)} spans param groups")
    names = {f.name for f in dataclasses.fields(config)}  # e.g. tau does not apply to Adam
    groups = tuple(
        (g.arrays, _normal(dataclasses.replace(config, **{k: v for k, v in g.hyper if k in names})))
        for g in specs
    )
    lr = None if problem.lr_factors is None else tuple(problem.lr_factors)
    lay = None if problem.layers is None else tuple(tuple(x) for x in problem.layers)
    tensor = bool(getattr(problem, "lr_tensor", False))
    if problem.active is None:
        return Contract(groups, lr, layers=lay, tensor_lr=tensor)
    never = tuple(i for i in range(n) if not any(a[i] for a in problem.active))
    partial = any(not all(a[i] for a in problem.active) for i in range(n) if i not in never)
    return Contract(groups, lr, True, never, partial, lay, tensor)


def apply_contract(port: Any, contract: Contract | None) -> str | None:
    """Hand ``contract`` to ``port`` (where the port lives); the reason it cannot take it, or None."""
    if contract is None:
        return None
    configure = getattr(port, "configure", None)
    if not callable(configure):
        return f"the port has no configure(): it cannot take {contract.needs()}"
    try:
        configure(contract)
    except NotImplementedError as exc:
        return f"the port cannot take {contract.needs()}: {exc}"
    return None
