"""A plain SET-Adam in PyTorch, split into one overridable method per stage.

This is the common base of the deliberately wrong torch ports in this package. It is written
from the mathematics (ALGORITHM.md), not from ``setadam_ref``: a wrong port must copy nothing
from the reference, otherwise the meta-tests would prove nothing. Each wrong port overrides
exactly one method, so the planted bug is the only difference from a correct optimizer; the
base itself is checked as a control (``StagedSETAdam`` must be accepted).

Constructor follows the torch.optim convention used by third-party ports::

    cls(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, tau=0.5,
        decoupled_weight_decay=False, maximize=False)

State per parameter: ``"step"`` (float32 0-d tensor, as torch.optim), ``"exp_avg"`` (m) and
``"exp_avg_sq"`` (v, unscaled). Layers: one per parameter tensor. Stage recording like our
torch port: ``opt.record_stages = True``; after ``step()``, ``opt.last_stages`` maps
"down_scaling", "epsilon_embedding", "down_translating", "update" to one tensor per parameter
(param_groups order) and "cos2" to one 0-d tensor per parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

Segment = tuple[int, int]  # [start, stop) in the flat concatenation of a group's parameters


class StagedSETAdam(torch.optim.Optimizer):
    """Correct SET-Adam (control): every wrong port below overrides one stage of it."""

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
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "tau": tau,
            "decoupled_weight_decay": decoupled_weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)
        self.record_stages = False
        self.last_stages: dict[str, list[Tensor]] | None = None

    # ------------------------------------------------------------------ stage hooks
    def _count(self, state: dict[str, Any]) -> int:
        """Advance and return the step counter t (1 on the first step)."""
        state["step"] += 1
        return round(float(state["step"]))

    def _bias_corrections(self, t: int, beta1: float, beta2: float) -> tuple[float, float]:
        return 1.0 - beta1**t, 1.0 - beta2**t

    def _grad(self, p: Tensor, g: Tensor, group: dict[str, Any]) -> Tensor:
        """Effective gradient: maximize, then coupled (l2) weight decay. Never in place."""
        if group["maximize"]:
            g = -g
        wd = group["weight_decay"]
        if wd != 0 and not group["decoupled_weight_decay"]:
            g = g + wd * p
        return g

    def _moments(self, m: Tensor, v: Tensor, g: Tensor, beta1: float, beta2: float) -> None:
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)

    def _segments(self, shapes: list[torch.Size]) -> list[Segment]:
        """Layers as ranges of the flat parameter vector: one per tensor."""
        out: list[Segment] = []
        start = 0
        for s in shapes:
            n = int(torch.Size(s).numel())
            out.append((start, start + n))
            start += n
        return out

    def _scale_segments(self, shapes: list[torch.Size]) -> list[Segment]:
        """Layers over which cos^2 is taken."""
        return self._segments(shapes)

    def _translate_segments(self, shapes: list[torch.Size]) -> list[Segment]:
        """Layers over which the minimum of w is taken."""
        return self._segments(shapes)

    def _cos2(self, v: Tensor) -> Tensor:
        """cos^2 of the angle between v and the all-one vector; 1 for an all-zero layer.

        Computed on v / max(v) so that the sums cannot overflow.
        """
        top = v.max()
        if float(top) == 0.0:
            return torch.ones((), dtype=v.dtype, device=v.device)
        u = v / top
        s1 = u.sum()
        return s1 * s1 / (v.numel() * (u * u).sum())

    def _scale(self, v: Tensor) -> tuple[Tensor, Tensor]:
        c = self._cos2(v)
        return c, c * v

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(vs / bc2 + eps)

    def _translate(self, w: Tensor, tau: float) -> Tensor:
        return w - tau * w.min()

    def _decay(self, p: Tensor, group: dict[str, Any]) -> None:
        """Decoupled weight decay, before the update."""
        wd = group["weight_decay"]
        if wd != 0 and group["decoupled_weight_decay"]:
            p.mul_(1.0 - group["lr"] * wd)

    def _apply(self, p: Tensor, m: Tensor, wt: Tensor, lr: float, bc1: float) -> None:
        p.addcdiv_(m, wt, value=-lr / bc1)

    # ------------------------------------------------------------------ driver
    def _group_params(self, group: dict[str, Any]) -> list[Tensor]:
        return [p for p in group["params"] if p.grad is not None]

    def _init_state(self, p: Tensor) -> dict[str, Any]:
        state: dict[str, Any] = self.state[p]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _layer_pass(
        self, v_flat: Tensor, shapes: list[torch.Size], bc2: float, eps: float, tau: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(vs, w, wt, c per element) on the flat concatenation of one group's v."""
        vs = torch.empty_like(v_flat)
        c_el = torch.empty_like(v_flat)
        for a, b in self._scale_segments(shapes):
            if b > a:
                c, vs[a:b] = self._scale(v_flat[a:b])
                c_el[a:b] = c
        w = torch.empty_like(v_flat)
        for a, b in self._scale_segments(shapes):
            if b > a:
                w[a:b] = self._embed(vs[a:b], v_flat[a:b], c_el[a:b], bc2, eps)
        wt = torch.empty_like(v_flat)
        for a, b in self._translate_segments(shapes):
            if b > a:
                wt[a:b] = self._translate(w[a:b], tau)
        return vs, w, wt, c_el

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rec: dict[str, list[Tensor]] = {
            k: []
            for k in ("down_scaling", "epsilon_embedding", "down_translating", "update", "cos2")
        }
        for group in self.param_groups:
            self._group_step(group, rec)
        self.last_stages = rec if self.record_stages else None
        return loss

    def _group_step(self, group: dict[str, Any], rec: dict[str, list[Tensor]]) -> None:
        params = self._group_params(group)
        if not params:
            return
        beta1, beta2 = group["betas"]
        lr, eps, tau = group["lr"], group["eps"], group["tau"]
        ms: list[Tensor] = []
        ts: list[int] = []
        for p in params:
            state = self._init_state(p)
            g = self._grad(p, p.grad, group)  # type: ignore[arg-type]
            self._moments(state["exp_avg"], state["exp_avg_sq"], g, beta1, beta2)
            ms.append(state["exp_avg"])
            ts.append(self._count(state))
        t = ts[0]
        bc1, bc2 = self._bias_corrections(t, beta1, beta2)
        shapes = [p.shape for p in params]
        v_flat = torch.cat([self.state[p]["exp_avg_sq"].reshape(-1) for p in params])
        vs, w, wt, c_el = self._layer_pass(v_flat, shapes, bc2, eps, tau)
        start = 0
        for p, m in zip(params, ms, strict=True):
            n = p.numel()
            before = p.clone() if self.record_stages else None
            self._decay(p, group)
            self._apply(p, m, wt[start : start + n].view_as(p), lr, bc1)
            if self.record_stages:
                assert before is not None
                rec["down_scaling"].append(vs[start : start + n].view_as(p).clone())
                rec["epsilon_embedding"].append(w[start : start + n].view_as(p).clone())
                rec["down_translating"].append(wt[start : start + n].view_as(p).clone())
                rec["update"].append(p - before)
                c = c_el[start] if n else torch.ones((), dtype=p.dtype)
                rec["cos2"].append(c.reshape(()).clone())
            start += n
