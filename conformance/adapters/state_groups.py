r"""Param groups in state discovery: which layouts depend on them, and a group's views.

A port may keep its state per parameter (torch's ``optimizer.state[p]``, a mapping keyed by the
parameter): what a probe with one param group finds there is where every parameter's state
lives whatever the groups (:func:`per_parameter`). A port may instead keep it per param group:
lists of tensors in the group's dict (``group["exp_avg"][j]``), one flat buffer per group
holding the group's parameters back to back (DeepSpeed/apex style, views of it handed to the
math), an inner transformation's state per group (``optax.multi_transform``), a step count per
group. A one-group probe then tells nothing of a run with several groups (group 0's entries do
not hold group 1's arrays): the adapter probes with the run's own groups and
``state_discovery.discover_groups`` fits each group's arrays on their own, with its betas.
:func:`in_group` turns what it finds for a group into views of the run's arrays; a group's flat
buffer becomes one ``within`` view per array (read and written by :mod:`.state_views`).
:func:`groups_with_state` lists a contract's groups as the probe sees them: per group with a
parameter that ever gets a gradient, those arrays and the group's betas; an array that never
gets one (frozen) keeps no state. Nothing here imports a framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .state_layout import StateLayout, View


def in_group(views: Sequence[View], arrays: Sequence[int]) -> list[View]:
    """Views found for one group's arrays (indices local to ``arrays``) as views of the run's
    arrays: a flat entry of the group's arrays (``array`` None) as one segment per array."""
    idx = tuple(int(i) for i in arrays)
    out: list[View] = []
    for x in views:
        if x.array is None:
            out += [View(x.path, i, x.sub, idx) for i in idx]
        else:
            out.append(View(x.path, idx[x.array], x.sub))
    return out


def _keyed(view: View) -> bool:
    """Whether a view's leaf is keyed by the parameter it holds (``state[p]``, ``{p: ...}``)."""
    return (
        view.array is not None
        and view.within is None
        and any(kind in ("state", "param") and key == view.array for kind, key in view.path)
    )


def per_parameter(layout: StateLayout) -> bool:
    """Whether every m, v and vmax entry found is keyed by its own parameter: a layout that a
    probe with one param group finds as it is in a run with several (the counters found with it
    are written per contract group by the adapter: a group-0 count is every group's)."""
    views = [*layout.m, *layout.v, *layout.vmax]
    return bool(layout.m and layout.v) and all(_keyed(v) for v in views)


def groups_with_state(contract: Any) -> list[tuple[tuple[int, ...], tuple[float, float]]]:
    """Per contract group with an array that gets a gradient: those arrays and its betas."""
    frozen = set(contract.frozen)
    out = []
    for arrays, cfg in contract.groups:
        live = tuple(int(i) for i in arrays if i not in frozen)
        if live:
            out.append((live, (float(cfg.betas[0]), float(cfg.betas[1]))))
    return out
