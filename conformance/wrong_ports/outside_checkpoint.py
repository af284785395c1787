"""Planted torch SET-Adam ports whose checkpoints lose part of the state, as authors write them.

Both are the Dict-style outside port (``outside_torch.DictSETAdam``: ``self.state[p]`` with
``"exp_avg"``, ``"exp_avg_var"`` and an int ``"step"``) with a hand-written ``state_dict`` /
``load_state_dict``. Every step they take is right, so only a checkpoint round trip mid-run (the
``resume`` family) shows the mistake:

- ``TensorsOnlyCheckpointSETAdam``: the author saves "the tensors" of each state entry (a
  compact checkpoint: Python numbers are bookkeeping) and, on load, fills in what an older
  checkpoint lacks with ``setdefault("step", 0)``: the resumed run restarts the bias corrections
  at t = 1;
- ``MomentOnlyCheckpointSETAdam``: the author's checkpoint keeps m and the step but rebuilds v
  as zeros on load ("v is re-estimated within a few steps"), so the first resumed step divides
  by a fresh v.
"""

from __future__ import annotations

from typing import Any

import torch

from .outside_torch import PORTS

_BASE: Any = PORTS["DictSETAdam"]


class TensorsOnlyCheckpointSETAdam(_BASE):  # type: ignore[misc]
    """DictSETAdam whose checkpoint drops the int step counter."""

    def state_dict(self) -> dict[str, Any]:
        sd: dict[str, Any] = super().state_dict()
        sd["state"] = {
            k: {n: x for n, x in st.items() if torch.is_tensor(x)} for k, st in sd["state"].items()
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for st in self.state.values():
            st.setdefault("step", 0)  # the planted mistake: "old checkpoints have no step"


class MomentOnlyCheckpointSETAdam(_BASE):  # type: ignore[misc]
    """DictSETAdam whose checkpoint leaves v out and rebuilds it as zeros."""

    def state_dict(self) -> dict[str, Any]:
        sd: dict[str, Any] = super().state_dict()
        sd["state"] = {
            k: {n: x for n, x in st.items() if n != "exp_avg_var"} for k, st in sd["state"].items()
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for st in self.state.values():
            if "exp_avg" in st:  # the planted mistake: v "re-estimated" from zero
                st.setdefault("exp_avg_var", torch.zeros_like(st["exp_avg"]))


#: planted port -> the family that exposes it
PLANTED: dict[str, str] = {
    "TensorsOnlyCheckpointSETAdam": "resume",
    "MomentOnlyCheckpointSETAdam": "resume",
}
