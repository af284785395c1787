"""The tensors of one param group as every path takes them, in matching order."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class GroupTensors(NamedTuple):
    """Parallel lists over the group's parameters that have a gradient: ``state_steps`` are the
    float32 0-d CPU ``step`` tensors, ``exp_avg_sqs`` hold the unscaled $v$."""

    params: list[Tensor]
    grads: list[Tensor]
    exp_avgs: list[Tensor]
    exp_avg_sqs: list[Tensor]
    state_steps: list[Tensor]
