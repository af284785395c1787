r"""ZeRO-1-style torch Adams for DTensor parameters: m and v in one flat buffer per param group.

Written as an outside implementer would (DeepSpeed/apex style, from the paper's formulas, no
``exp_avg`` anywhere): per param group, each rank owns its piece of the group's flat fp buffers
``group["m_flat"]`` and ``group["v_flat"]`` (plain tensors): its local shards of the group's
parameters (``p.to_local()``, ``Shard(0)`` rows; a replicated 0-d parameter whole) back to back,
and a Python int count ``group["n_steps"]``. The math runs on views of the buffers, rank-local:
Adam is elementwise, so no collective. With $g \leftarrow g + \lambda\theta$ (l2 decay) or
$\theta \leftarrow \theta(1 - \text{lr}\,\lambda)$ (decoupled),
$m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
$\theta \leftarrow \theta - \text{lr}\,\hat m / (\sqrt{\hat v} + \epsilon)$,
$\hat m = m/(1-\beta_1^t)$, $\hat v = v/(1-\beta_2^t)$, $t$ the group's count.

- :class:`ShardFlatAdam`: correct (the control);
- :class:`HoistedShardFlatAdam`: planted, the buffers hoisted out of the group loop: every group
  steps in group 0's buffers from offset 0, so group 1's first array overlaps group 0's (its
  offsets are wrong). Right with one group;
- :class:`Group0HyperShardFlatAdam`: planted, every group stepped with group 0's lr, betas, eps
  and weight decay. Right whenever the groups share their options;
- :class:`RankFlatAdam`: correct, one flat m and v per rank across every group (offsets running
  over the groups, the sentinel's included): no group's buffer of its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class ShardFlatAdam(torch.optim.Optimizer):
    """m and v of a group in one flat buffer per rank (its shards back to back), int count."""

    HOISTED = False
    GROUP0_OPTIONS = False

    def __init__(self, params: Any, lr: float = 1e-3, betas: Any = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:  # fmt: skip
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay)  # fmt: skip
        super().__init__(params, defaults)

    def _flat(self, group: dict[str, Any]) -> dict[str, Any]:
        """The group's buffers, made at its first step: this rank's shards' sizes summed."""
        if "m_flat" not in group:
            locs = [_local(p) for p in group["params"]]
            n = sum(x.numel() for x in locs)
            group["m_flat"] = torch.zeros(n, dtype=locs[0].dtype)
            group["v_flat"] = torch.zeros(n, dtype=locs[0].dtype)
            group["n_steps"] = 0
        return group

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            if all(p.grad is None for p in group["params"]):
                continue
            own = self._flat(group)
            self._step_group(group, self._flat(self.param_groups[0]) if self.HOISTED else own)

    def _step_group(self, group: dict[str, Any], buf: dict[str, Any]) -> None:
        """One group's step on ``buf``'s m_flat, v_flat (the group's arrays from offset 0)."""
        group["n_steps"] += 1
        t = group["n_steps"]
        opts = self.param_groups[0] if self.GROUP0_OPTIONS else group
        lr, (b1, b2), eps, wd = opts["lr"], opts["betas"], opts["eps"], opts["weight_decay"]
        start = 0
        for p in group["params"]:
            x = _local(p)
            n = x.numel()
            m = buf["m_flat"][start : start + n].view_as(x)
            v = buf["v_flat"][start : start + n].view_as(x)
            start += n
            if p.grad is None:
                continue
            g = _local(p.grad)
            if wd and opts["decoupled_weight_decay"]:
                x.mul_(1 - lr * wd)
            elif wd:
                g = g + wd * x
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            den = v.div(1 - b2**t).sqrt_().add_(eps)
            x.addcdiv_(m, den, value=-lr / (1 - b1**t))


class HoistedShardFlatAdam(ShardFlatAdam):
    """Every group steps in group 0's flat buffers (group 1's offsets overlap group 0's)."""

    HOISTED = True


class Group0HyperShardFlatAdam(ShardFlatAdam):
    """Every group steps with group 0's options."""

    GROUP0_OPTIONS = True


class RankFlatAdam(ShardFlatAdam):
    """Correct, one flat m and one flat v per rank over every group's shards (offsets running
    across the groups, the sentinel's included), attributes of the optimizer: no param group's
    buffer of its own, so not re-synced per group."""

    def _flat(self, group: dict[str, Any]) -> dict[str, Any]:
        if not hasattr(self, "flat"):
            locs = [_local(p) for g in self.param_groups for p in g["params"]]
            n = sum(x.numel() for x in locs)
            self.flat = {"m_flat": torch.zeros(n, dtype=locs[0].dtype),
                         "v_flat": torch.zeros(n, dtype=locs[0].dtype)}  # fmt: skip
        group.setdefault("n_steps", 0)
        return group

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        start = 0
        for group in self.param_groups:
            size = sum(_local(p).numel() for p in group["params"])
            if all(p.grad is None for p in group["params"]):
                start += size
                continue
            self._flat(group)
            view = {k: b[start : start + size] for k, b in self.flat.items()}
            self._step_group(group, view)
            start += size


def rank_buffers() -> tuple[int, int]:
    """A job (in each rank): sizes of this rank's ``m_flat`` of groups 0 and 1 after one step on
    the arrays of ``test_a_given_state_lands_in_each_ranks_buffer_and_reads_back``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    ps = [distribute_tensor(torch.ones(s, dtype=torch.float64), mesh, [Shard(0)],
                            src_data_rank=None).requires_grad_(True)
          for s in [(5, 3), (3,), (6, 2), (1,)]]  # fmt: skip
    opt = ShardFlatAdam([{"params": ps[0::2]}, {"params": ps[1::2]}])
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    return tuple(int(g["m_flat"].numel()) for g in opt.param_groups)  # type: ignore[return-value]
