"""Planted torch ports as outside implementers write them: their own state names and containers.

Every port is a ``torch.optim.Optimizer`` with the usual constructor
``cls(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, tau=0.5,
decoupled_weight_decay=False, maximize=False)`` (Adam: ``amsgrad``, ``eps_root`` instead of
``tau``), computing through ``outside_math`` with one planted mistake of ``outside_bugs`` (none
for the controls). What differs is where the state lives, in five styles none of which uses
torch's ``exp_avg``/``exp_avg_sq``/``step`` layout:

- ``Dict``: ``self.state[p]`` with ``"exp_avg"``, ``"exp_avg_var"`` and an int ``"step"`` (the
  SET-Adam paper authors' naming, after AdaBelief's);
- ``Attr``: optimizer attributes, Keras style: ``self.iterations``, ``self.momentums``,
  ``self.velocities`` (lists in parameter order);
- ``Closure``: a step function built in ``__init__`` whose closure holds the moments (a dict of
  tuples keyed by ``id(p)``) and a ``nonlocal`` counter;
- ``Stacked``: one tensor ``self.state[p]["moments"]`` of shape ``(2, *p.shape)`` (3 with amsgrad)
  and the counter in the param group, ``group["t"]``;
- ``Hidden``: everything in a module-level vault keyed by ``id(self)``: state that truly cannot
  be read or written from the optimizer.

Classes are generated: ``{Style}SETAdam`` / ``{Style}Adam`` (controls) and
``{Style}SETAdam_{bug}`` / ``{Style}Adam_{bug}`` for every mistake (``PORTS`` lists them), plus
``AuthorsStyleSETAdam``: the public port of the issue, no ``tau`` argument and a guard of 1e-20
added to sum(v^2) in its down-scaling.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from .outside_bugs import ADAM_BUGS, SETADAM_BUGS
from .outside_math import AdamMath, Hyper, SetAdamMath

STYLES: tuple[str, ...] = ("Dict", "Attr", "Closure", "Stacked", "Hidden")
#: what the harness reads the state from: everything but the vault
READABLE: tuple[str, ...] = STYLES[:-1]
_VAULT: dict[int, dict[str, Any]] = {}


class _Outside(torch.optim.Optimizer):
    """Common constructor and step loop; a style stores (m, v[, vmax], t) its own way."""

    ALGORITHM = "setadam"
    BUG: str | None = None

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        tau: float = 0.5,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        amsgrad: bool = False,
        eps_root: float = 0.0,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, tau=tau,
            decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, amsgrad=amsgrad,
            eps_root=eps_root,
        )  # fmt: skip
        super().__init__(params, defaults)
        bugs = ADAM_BUGS if self.ALGORITHM == "adam" else SETADAM_BUGS
        hooks = bugs[self.BUG] if self.BUG else None
        self._math = AdamMath(hooks) if self.ALGORITHM == "adam" else SetAdamMath(hooks)
        self.scratch: dict[str, Any] = {}
        self._setup()

    def _setup(self) -> None:
        """Style hook: prepare containers."""

    @staticmethod
    def _hyper(group: dict[str, Any]) -> Hyper:
        b1, b2 = group["betas"]
        return Hyper(
            group["lr"], b1, b2, group["eps"], group["weight_decay"],
            group["decoupled_weight_decay"], group["maximize"], group["tau"],
            group["eps_root"], group["amsgrad"],
        )  # fmt: skip

    def _run(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        ms: list[Tensor],
        vs: list[Tensor],
        vmaxes: list[Tensor] | None,
        t: int,
        scratch: dict[str, Any],
    ) -> int:
        hp = self._hyper(group)
        grads = [p.grad for p in params]
        if isinstance(self._math, AdamMath):
            return self._math.step(hp, params, grads, ms, vs, t, vmaxes, scratch)  # type: ignore[arg-type]
        return self._math.step(hp, params, grads, ms, vs, t, scratch)  # type: ignore[arg-type]

    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._group(group, params)
        return loss


def _zeros(p: Tensor) -> Tensor:
    return torch.zeros_like(p, memory_format=torch.preserve_format)


class _Dict(_Outside):
    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        for p in params:
            st = self.state[p]
            if not st:
                st["step"] = 0
                st["exp_avg"] = _zeros(p)
                st["exp_avg_var"] = _zeros(p)
                if group["amsgrad"]:
                    st["max_exp_avg_var"] = _zeros(p)
        # one run per step count: a parameter that missed steps (no gradient) keeps its own count
        by_step: dict[int, list[Tensor]] = {}
        for p in params:
            by_step.setdefault(self.state[p]["step"], []).append(p)
        for t0, ps in by_step.items():
            sts = [self.state[p] for p in ps]
            vmaxes = [s["max_exp_avg_var"] for s in sts] if group["amsgrad"] else None
            t = self._run(group, ps, [s["exp_avg"] for s in sts],
                          [s["exp_avg_var"] for s in sts], vmaxes, t0, self.scratch)  # fmt: skip
            for s in sts:
                s["step"] = t


class _Attr(_Outside):
    def _setup(self) -> None:
        self.iterations = 0
        self.momentums: list[Tensor] = []
        self.velocities: list[Tensor] = []
        self.velocity_hats: list[Tensor] = []

    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        if not self.momentums:
            self.momentums = [_zeros(p) for p in params]
            self.velocities = [_zeros(p) for p in params]
            if group["amsgrad"]:
                self.velocity_hats = [_zeros(p) for p in params]
        vmaxes = self.velocity_hats if group["amsgrad"] else None
        self.iterations = self._run(group, params, self.momentums, self.velocities, vmaxes,
                                    self.iterations, self.scratch)  # fmt: skip


class _Closure(_Outside):
    def _setup(self) -> None:
        moments: dict[int, tuple[Tensor, ...]] = {}
        count = 0
        scratch = self.scratch

        def update(group: dict[str, Any], params: list[Tensor]) -> None:
            nonlocal count
            for p in params:
                if id(p) not in moments:
                    k = 3 if group["amsgrad"] else 2
                    moments[id(p)] = tuple(_zeros(p) for _ in range(k))
            ms = [moments[id(p)][0] for p in params]
            vs = [moments[id(p)][1] for p in params]
            vmaxes = [moments[id(p)][2] for p in params] if group["amsgrad"] else None
            count = self._run(group, params, ms, vs, vmaxes, count, scratch)

        self._update = update

    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        self._update(group, params)


class _Stacked(_Outside):
    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        k = 3 if group["amsgrad"] else 2
        for p in params:
            if "moments" not in self.state[p]:
                self.state[p]["moments"] = torch.zeros((k, *p.shape), dtype=p.dtype)
        stacks = [self.state[p]["moments"] for p in params]
        vmaxes = [s[2] for s in stacks] if group["amsgrad"] else None
        group["t"] = self._run(group, params, [s[0] for s in stacks], [s[1] for s in stacks],
                               vmaxes, group.get("t", 0), self.scratch)  # fmt: skip


class _Hidden(_Outside):
    def _setup(self) -> None:
        # the vault outlives nothing: an id reused by a later optimizer must find it empty
        weakref.finalize(self, _VAULT.pop, id(self), None)

    def _group(self, group: dict[str, Any], params: list[Tensor]) -> None:
        vault = _VAULT.setdefault(id(self), {"m": {}, "v": {}, "vmax": {}, "t": 0, "s": {}})
        for p in params:
            if id(p) not in vault["m"]:
                vault["m"][id(p)], vault["v"][id(p)] = _zeros(p), _zeros(p)
                vault["vmax"][id(p)] = _zeros(p)
        vmaxes = [vault["vmax"][id(p)] for p in params] if group["amsgrad"] else None
        vault["t"] = self._run(group, params, [vault["m"][id(p)] for p in params],
                               [vault["v"][id(p)] for p in params], vmaxes, vault["t"], vault["s"])  # fmt: skip


_BASES: dict[str, type[_Outside]] = {
    "Dict": _Dict, "Attr": _Attr, "Closure": _Closure, "Stacked": _Stacked, "Hidden": _Hidden,
}  # fmt: skip


def _make(style: str, algorithm: str, bug: str | None) -> type[_Outside]:
    alg = "Adam" if algorithm == "adam" else "SETAdam"
    name = f"{style}{alg}_{bug}" if bug else f"{style}{alg}"
    attrs = {"ALGORITHM": algorithm, "BUG": bug, "__module__": __name__}
    what = f" with the planted mistake {bug!r}" if bug else " (control)"
    attrs["__doc__"] = f"{style}-style {alg} port{what}"
    return type(name, (_BASES[style],), attrs)


def style_of(index: int) -> str:
    """The readable style a mistake's port uses (rotating, so every style carries mistakes)."""
    return READABLE[index % len(READABLE)]


PORTS: dict[str, type[_Outside]] = {}
for _alg, _bugs in (("setadam", SETADAM_BUGS), ("adam", ADAM_BUGS)):
    for _style in STYLES:
        _c = _make(_style, _alg, None)
        PORTS[_c.__name__] = _c
    for _i, _bug in enumerate(_bugs):
        for _style in (style_of(_i), "Hidden"):
            _c = _make(_style, _alg, _bug)
            PORTS[_c.__name__] = _c
globals().update(PORTS)


class _AuthorsConstructor(_Outside):
    """The public port's constructor: ``(params, lr, betas, eps, weight_decay)``, no ``tau``."""

    BUG = "cos2_sum_sq_guard_1e-20"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


class AuthorsStyleSETAdam(_AuthorsConstructor, _Dict):
    """The public SET-Adam of the issue, in its authors' style: ``exp_avg`` / ``exp_avg_var`` /
    int ``step`` in ``self.state[p]``, the constructor ``(params, lr, betas, eps, weight_decay)``
    with no ``tau`` (fixed at 0.5), and a guard of 1e-20 added to sum(v^2) in the down-scaling,
    c = S1^2 / (d * (S2 + 1e-20)). Catalogue: ``cos2_sum_sq_guard_1e-20``."""


class AuthorsStyleSETAdamHidden(_AuthorsConstructor, _Hidden):
    """``AuthorsStyleSETAdam`` with its state out of the harness's reach (black-box diagnosis)."""
