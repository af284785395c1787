r"""Adams with one flat m and one flat v over every param group (apex/DeepSpeed style), written
as an outside implementer would (``conformance.tests.group_state``; no harness names).

The mathematics is the paper's, per group with its own options and step count $t$: with
$g \leftarrow g + \lambda\theta$ (l2) or $\theta \leftarrow \theta(1 - \text{lr}\,\lambda)$
(decoupled), $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
$\theta \leftarrow \theta - \text{lr}\,\hat m/(\sqrt{\hat v} + \epsilon)$. A group none of whose
parameters has a gradient is skipped. The buffers hold every parameter the optimizer was given
(a param group without gradients too), group by group in the order :meth:`_order` says.

- :class:`ReversedFlatAdam` (near miss, correct): the groups laid out last first;
- :class:`StaleRowsFlatAdam` (planted): v is also kept as a (1, N) "row" copy that the kernel
  reads, ``v = beta2 * rows + (1 - beta2) g^2``, written to both: equal to the bit while
  free-running, stale once a state is written into ``exp_avg_sq_flat`` from outside;
- :class:`MirroredFlatAdam` (correct): a 1-D mirror of v beside it, which v is then ambiguous;
- :class:`OverlapFlatAdam` (planted): each group's slice starts one element before the end of
  the previous one (an off-by-one in the offsets), so two groups share one coordinate of m and v.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _OneBufferAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay))  # fmt: skip
        self.t_of: list[int] = [0] * len(self.param_groups)

    def _order(self) -> list[int]:
        """The groups in the order the buffers hold them."""
        return list(range(len(self.param_groups)))

    def _starts(self) -> dict[int, int]:
        """Each group's first offset in the buffers."""
        out, at = {}, 0
        for k in self._order():
            out[k] = at
            at += sum(p.numel() for p in self.param_groups[k]["params"])
        return out

    def _alloc(self) -> None:
        if hasattr(self, "exp_avg_flat"):
            return
        n = sum(p.numel() for g in self.param_groups for p in g["params"])
        p0 = self.param_groups[0]["params"][0]
        self.exp_avg_flat = torch.zeros(n, dtype=p0.dtype, device=p0.device)
        self.exp_avg_sq_flat = torch.zeros(n, dtype=p0.dtype, device=p0.device)

    def _second_moment(self, v: Tensor, g: Tensor, b2: float, lo: int, hi: int) -> None:
        v.mul_(b2).addcmul_(g, g, value=1 - b2)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        self._alloc()
        starts = self._starts()
        for k, group in enumerate(self.param_groups):
            if all(p.grad is None for p in group["params"]):
                continue
            self.t_of[k] += 1
            t = self.t_of[k]
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            at = starts[k]
            for p in group["params"]:
                n = p.numel()
                lo, at = at, at + n
                if p.grad is None:
                    continue
                m = self.exp_avg_flat[lo:at].view_as(p)
                v = self.exp_avg_sq_flat[lo:at].view_as(p)
                g = p.grad
                if wd and group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g + wd * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                self._second_moment(v, g, b2, lo, at)
                den = v.div(1 - b2**t).sqrt_().add_(eps)
                p.addcdiv_(m, den, value=-lr / (1 - b1**t))


class ReversedFlatAdam(_OneBufferAdam):
    """The last param group first in the buffers (correct)."""

    def _order(self) -> list[int]:
        return list(reversed(range(len(self.param_groups))))


class StaleRowsFlatAdam(_OneBufferAdam):
    """v read from a (1, N) copy of its own, written back with the flat buffer."""

    def _second_moment(self, v: Tensor, g: Tensor, b2: float, lo: int, hi: int) -> None:
        if not hasattr(self, "v_rows"):
            self.v_rows = torch.zeros_like(self.exp_avg_sq_flat).reshape(1, -1)
        old = self.v_rows[0, lo:hi].view_as(v)
        v.copy_(old * b2 + (1 - b2) * g * g)  # the kernel's copy, not v itself
        old.copy_(v)


class OverlapFlatAdam(_OneBufferAdam):
    """Every group after the first starts one element early: its first coordinate is the
    previous group's last."""

    def _starts(self) -> dict[int, int]:
        return {k: max(at - k, 0) for k, at in super()._starts().items()}


class MirroredFlatAdam(_OneBufferAdam):
    """Correct, with a 1-D mirror of v (``v_mirror``, for a logger) copied after every step: two
    entries over every group respond to the probe alike, so which is v is ambiguous."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        super().step(closure)
        if not hasattr(self, "v_mirror"):
            self.v_mirror = torch.zeros_like(self.exp_avg_sq_flat)
        self.v_mirror.copy_(self.exp_avg_sq_flat)
