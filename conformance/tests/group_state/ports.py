r"""Adams whose m, v and step count live per param group (``conformance.tests.group_state``).

Each is the same mathematics, from the paper's formulas: with $g \leftarrow g + \lambda\theta$
(l2 decay) or $\theta \leftarrow \theta(1 - \text{lr}\,\lambda)$ (decoupled),
$m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$ and
$\theta \leftarrow \theta - \text{lr}\,\hat m / (\sqrt{\hat v} + \epsilon)$ with
$\hat m = m/(1-\beta_1^t)$, $\hat v = v/(1-\beta_2^t)$, $t$ the group's step count. A group
none of whose parameters has a gradient is skipped (no state, no count); a parameter without
gradient in a stepped group keeps its m and v (its bias correction is the group's: right
whenever a group's parameters step together, as in the ``groups`` scenarios).

- :class:`ListAdam`: ``group["moments"]``, ``group["squares"]`` lists of tensors (one per
  parameter of the group, in its order) and ``group["t"]`` a Python int;
- :class:`FlatAdam`: ``group["flat_m"]``, ``group["flat_v"]`` one flat buffer each holding the
  group's parameters back to back, the math done on views of them, ``group["step"]`` a 0-d
  tensor (one t per launch, as fused multi-tensor kernels keep it).

Correct ports whose state is read through the probe with the run's groups plus the sentinel
(``state_spans``, ``optimizer.state`` keys that are not parameters; re-synced in the group
scenarios and, probed again with the sentinel, with one group):

- :class:`GlobalFlatAdam`: one flat buffer for m and one for v over every parameter of every
  group (offsets running across the groups, the sentinel group's included), attributes of the
  optimizer, one Python int count;
- :class:`KeyedFlatAdam`: per group a flat gradient buffer (``group["flat_grad"]``) and the
  moments in ``self.state[flat_grad]``, keyed by that tensor rather than by a parameter
  (DeepSpeed's inner optimizer keys its state by the flat partition it steps).

Planted mistakes:

- :class:`SharedFlatAdam`: the flat buffers hoisted out of the group loop: every group steps in
  group 0's buffers at its own offsets (group 1's array overlaps group 0's first array). Right
  with one group;
- :class:`ShadowListAdam`: a second copy of v per group (``group["v_fast"]``, the layout its
  kernel wants) that the step reads, updated as ``group["squares"]`` is: equal to the bit while
  free-running, stale once a state is written into ``squares`` from outside.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _GroupAdam(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults)

    def _moments(self, group: dict[str, Any], k: int) -> tuple[list[Tensor], list[Tensor]]:
        """(m, v) tensors of the group's parameters, created on its first step."""
        raise NotImplementedError

    def _count(self, group: dict[str, Any]) -> float:
        """Advance the group's step count and return it."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for k, group in enumerate(self.param_groups):
            if all(p.grad is None for p in group["params"]):
                continue
            ms, vs = self._moments(group, k)
            t = self._count(group)
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p, m, v in zip(group["params"], ms, vs, strict=True):
                if p.grad is None:
                    continue
                g = p.grad
                if wd and group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g + wd * p
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                den = self._denominator(group, p, v).div(1 - b2**t).sqrt_().add_(eps)
                p.addcdiv_(m, den, value=-lr / (1 - b1**t))

    def _denominator(self, group: dict[str, Any], p: Tensor, v: Tensor) -> Tensor:
        return v.clone()


class ListAdam(_GroupAdam):
    """m and v as lists in the param group's dict, a Python int count per group."""

    def _moments(self, group: dict[str, Any], k: int) -> tuple[list[Tensor], list[Tensor]]:
        if "moments" not in group:
            group["moments"] = [torch.zeros_like(p) for p in group["params"]]
            group["squares"] = [torch.zeros_like(p) for p in group["params"]]
            group["t"] = 0
        return group["moments"], group["squares"]

    def _count(self, group: dict[str, Any]) -> float:
        group["t"] += 1
        return float(group["t"])


class ShadowListAdam(ListAdam):
    """:class:`ListAdam` whose step reads its own copy of v (``group["v_fast"]``)."""

    def _denominator(self, group: dict[str, Any], p: Tensor, v: Tensor) -> Tensor:
        if "v_fast" not in group:
            group["v_fast"] = [torch.zeros_like(q) for q in group["params"]]
        j = next(i for i, q in enumerate(group["params"]) if q is p)
        fast = group["v_fast"][j]
        g = p.grad
        if group["weight_decay"] and not group["decoupled_weight_decay"]:
            g = g + group["weight_decay"] * p  # p before its update: the g the moments saw
        b2 = group["betas"][1]
        fast.mul_(b2).addcmul_(g, g, value=1 - b2)
        return fast.clone()


class FlatAdam(_GroupAdam):
    """One flat buffer per group for m and one for v (views handed to the math), a 0-d tensor
    count per group."""

    def _buffers(self, k: int) -> dict[str, Any]:
        return self.param_groups[k]

    def _moments(self, group: dict[str, Any], k: int) -> tuple[list[Tensor], list[Tensor]]:
        if "flat_m" not in group:
            n = sum(p.numel() for p in group["params"])
            p0 = group["params"][0]
            group["flat_m"] = torch.zeros(n, dtype=p0.dtype, device=p0.device)
            group["flat_v"] = torch.zeros(n, dtype=p0.dtype, device=p0.device)
            group["step"] = torch.zeros((), dtype=torch.float32)
        buf = self._buffers(k)
        ms, vs, start = [], [], 0
        for p in group["params"]:
            n = p.numel()
            ms.append(buf["flat_m"][start : start + n].view_as(p))
            vs.append(buf["flat_v"][start : start + n].view_as(p))
            start += n
        return ms, vs

    def _count(self, group: dict[str, Any]) -> float:
        group["step"] += 1
        return float(group["step"])


class SharedFlatAdam(FlatAdam):
    """:class:`FlatAdam` stepping every group in group 0's buffers (hoisted out of the loop)."""

    def _buffers(self, k: int) -> dict[str, Any]:
        return self.param_groups[0]


class GlobalFlatAdam(_GroupAdam):
    """One flat m and one flat v over all groups' parameters, a count for the optimizer."""

    def _moments(self, group: dict[str, Any], k: int) -> tuple[list[Tensor], list[Tensor]]:
        params = [p for g in self.param_groups for p in g["params"]]
        if not hasattr(self, "flat_m"):
            n = sum(p.numel() for p in params)
            self.flat_m = torch.zeros(n, dtype=params[0].dtype)
            self.flat_v = torch.zeros(n, dtype=params[0].dtype)
            self.steps = 0
            self._stepped: set[int] = set()
        start = sum(p.numel() for g in self.param_groups[:k] for p in g["params"])
        ms, vs = [], []
        for p in group["params"]:
            n = p.numel()
            ms.append(self.flat_m[start : start + n].view_as(p))
            vs.append(self.flat_v[start : start + n].view_as(p))
            start += n
        return ms, vs

    def _count(self, group: dict[str, Any]) -> float:
        if not self._stepped or id(group) in self._stepped:  # a new step: the first group again
            self.steps += 1
            self._stepped = set()
        self._stepped.add(id(group))
        return float(self.steps)


class KeyedFlatAdam(_GroupAdam):
    """The moments of a group in ``self.state[group["flat_grad"]]`` (a flat gradient buffer)."""

    def _moments(self, group: dict[str, Any], k: int) -> tuple[list[Tensor], list[Tensor]]:
        if "flat_grad" not in group:
            n = sum(p.numel() for p in group["params"])
            group["flat_grad"] = torch.zeros(n, dtype=group["params"][0].dtype)
            self.state[group["flat_grad"]] = {
                "exp_avg": torch.zeros_like(group["flat_grad"]),
                "exp_avg_sq": torch.zeros_like(group["flat_grad"]),
                "step": 0,
            }
        st = self.state[group["flat_grad"]]
        ms, vs, start = [], [], 0
        for p in group["params"]:
            n = p.numel()
            if p.grad is not None:  # the group's gradients, flat (as a fused kernel takes them)
                group["flat_grad"][start : start + n].copy_(p.grad.reshape(-1))
            ms.append(st["exp_avg"][start : start + n].view_as(p))
            vs.append(st["exp_avg_sq"][start : start + n].view_as(p))
            start += n
        return ms, vs

    def _count(self, group: dict[str, Any]) -> float:
        st = self.state[group["flat_grad"]]
        st["step"] += 1
        return float(st["step"])
