"""``SETAdam(torch.optim.Optimizer)``: param groups, state, path choice and the stage record.

The optimizer owns what ``torch.optim`` owns: validated param groups with their own
hyperparameters and ``layer`` mode, the per-parameter state (``step`` as a float32 0-d CPU tensor,
``exp_avg``, ``exp_avg_sq`` holding the unscaled $v$), ``state_dict`` round trips, and which path
runs each group. The arithmetic is the paths'.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
from torch import Tensor

from .dtypes import state_dtype
from .functional import PATHS, for_params, path_name, run_path
from .group import GroupTensors
from .hyper import Hyper, validate
from .stages import STAGE_KEYS, Stages, new_stages, skipped_entry

_LAYER_MODES = ("tensor", "group")


class SETAdam(torch.optim.Optimizer):
    """SET-Adam (down-scaling, epsilon-embedding, down-translating of Adam's second moment).

    Args:
        params: iterable of parameters or of param-group dicts. A group may set its own ``lr``,
            ``betas``, ``eps``, ``weight_decay``, ``tau``, ``decoupled_weight_decay``,
            ``maximize``, ``foreach``, ``fused``, ``compiled`` and ``layer``: ``"tensor"`` (default, one layer
            per parameter tensor) or ``"group"`` (all parameters of the group with a gradient
            form one layer, e.g. a weight and its bias).
        lr: learning rate, finite and > 0.
        betas: (beta1, beta2), each in [0, 1).
        eps: > 0, added inside the square root (epsilon-embedding).
        weight_decay: >= 0; ``l2`` (g += wd * theta) unless ``decoupled_weight_decay``, then
            theta *= 1 - lr * wd before the update (AdamW style).
        tau: down-translating strength in [0, 1).
        maximize: ascend instead of descend (g <- -g).
        foreach: None picks foreach when every parameter of the group is on CUDA, else the
            for-loop (torch's default rule; on CPU the foreach ops gain nothing).
        fused: True runs the CUDA kernels of ``conformance.ports.cuda.torch_fused`` (CUDA
            float32/bfloat16 only). Mutually exclusive with ``foreach=True``.
        compiled: True runs the ``torch.compile`` CPU kernels of :mod:`.compiled` (CPU only;
            the first step of a new model compiles); ``"numba"`` runs the numba CPU kernels of
            :mod:`.numba_path` (float32/float64; needs the ``numba`` extra). Mutually exclusive
            with the other two.

    Stage recording: with ``record_stages = True``, ``last_stages`` maps each name of
    ``STAGE_KEYS`` to one tensor per parameter in ``param_groups`` order after every step, or is
    ``None`` when a group ran a path that records no stages (``fused``, ``compiled``).
    """

    record_stages: bool
    last_stages: Stages | None

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        tau: float = 0.5,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        compiled: bool | str = False,
    ) -> None:
        lr_f, betas_f, eps_f, wd_f, tau_f = validate(lr, betas, eps, weight_decay, tau)
        path_name(foreach=bool(foreach), fused=bool(fused), compiled=_compiled_flag(compiled))
        defaults: dict[str, Any] = {
            "lr": lr_f,
            "betas": betas_f,
            "eps": eps_f,
            "weight_decay": wd_f,
            "tau": tau_f,
            "decoupled_weight_decay": bool(decoupled_weight_decay),
            "maximize": bool(maximize),
            "foreach": foreach,
            "fused": fused,
            "compiled": _compiled_flag(compiled),
            "layer": "tensor",
        }
        self.record_stages = False
        self.last_stages = None
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        lr, betas, eps, wd, tau = validate(
            group["lr"], group["betas"], group["eps"], group["weight_decay"], group["tau"]
        )
        group.update(lr=lr, betas=betas, eps=eps, weight_decay=wd, tau=tau)
        if group["layer"] not in _LAYER_MODES:
            raise ValueError(
                f"SETAdam: invalid layer={group['layer']!r}; need one of {_LAYER_MODES}"
            )
        path_name(
            foreach=bool(group["foreach"]),
            fused=bool(group["fused"]),
            compiled=_compiled_flag(group["compiled"]),
        )
        for p in group["params"]:
            if not (p.is_floating_point() and not p.is_complex()):
                raise ValueError(
                    f"SETAdam: parameters must be real floating tensors, got {p.dtype}"
                )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("record_stages", False)
        self.__dict__.setdefault("last_stages", None)
        for group in self.param_groups:
            for key, val in (
                ("tau", 0.5),
                ("decoupled_weight_decay", False),
                ("maximize", False),
                ("foreach", None),
                ("fused", None),
                ("compiled", False),
                ("layer", "tensor"),
            ):
                group.setdefault(key, val)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's loader, except that fused groups keep float32 state for bfloat16 parameters."""
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        super().load_state_dict(state_dict)
        for group, saved in zip(self.param_groups, saved_groups):
            if not group.get("fused"):
                continue
            for p, pid in zip(group["params"], saved["params"]):
                st = saved_state.get(pid)
                if st is None or state_dtype(p.dtype, fused=True) == p.dtype:
                    continue
                for key in ("exp_avg", "exp_avg_sq"):
                    val = st.get(key)
                    if isinstance(val, Tensor) and val.dtype == torch.float32:
                        self.state[p][key] = val.to(device=p.device, copy=True)

    def _gather_group(self, group: dict[str, Any]) -> GroupTensors:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        steps: list[Tensor] = []
        state_of = self.state
        for p in group["params"]:
            grad = p.grad  # read once: a property of the C tensor (~1000 a step on big models)
            if grad is None:
                continue
            if grad.is_sparse:
                raise RuntimeError(
                    "SETAdam does not support sparse gradients (the layer statistics need the "
                    "dense second moment); use dense gradients"
                )
            state = state_of[p]
            if not state:
                sdt = state_dtype(p.dtype, fused=bool(group["fused"]))
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(
                    p, dtype=sdt, memory_format=torch.preserve_format
                )
                state["exp_avg_sq"] = torch.zeros_like(
                    p, dtype=sdt, memory_format=torch.preserve_format
                )
            params.append(p)
            grads.append(grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return GroupTensors(params, grads, exp_avgs, exp_avg_sqs, steps)

    def _path(self, group: dict[str, Any]) -> str:
        """The group's path: ``compiled`` or ``fused`` when asked, else torch's default rule for
        ``foreach``; its sharded variant when the group holds a DTensor."""
        if group.get("compiled"):
            path = path_name(
                foreach=bool(group["foreach"]),
                fused=bool(group["fused"]),
                compiled=_compiled_flag(group["compiled"]),
            )
            return for_params(path, group["params"])
        fused = bool(group["fused"])
        foreach = group["foreach"]
        if foreach is None:
            ps = [p for p in group["params"] if p.grad is not None]
            foreach = (not fused) and len(ps) > 0 and all(p.is_cuda for p in ps)
        return for_params(path_name(foreach=bool(foreach), fused=fused), group["params"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step (optionally re-evaluating the loss with ``closure``)."""
        loss: float | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        paths = [self._path(group) for group in self.param_groups]
        record = bool(self.record_stages) and all(PATHS[p].RECORDS_STAGES for p in paths)
        all_stages: Stages | None = new_stages(0) if record else None
        for group, path in zip(self.param_groups, paths):
            g = self._gather_group(group)
            n = len(g.params)
            layer_of = [0] * n if group["layer"] == "group" else list(range(n))
            hyper = Hyper.from_group(group)
            got = run_path(path, g, layer_of, hyper, record=record, members=group["params"])
            if all_stages is not None:
                _append(all_stages, group["params"], g.params, cast(Stages, got))
        self.last_stages = all_stages
        return loss


def _compiled_flag(value: object) -> bool | str:
    """``compiled`` as given: ``"numba"`` kept, anything else as a bool."""
    return value if isinstance(value, str) else bool(value)


def _append(out: Stages, group_params: list[Tensor], stepped: list[Tensor], got: Stages) -> None:
    """Append one group's record to ``out`` in the group's parameter order (skipped ones too)."""
    pos = {id(p): j for j, p in enumerate(stepped)}
    for p in group_params:
        j = pos.get(id(p))
        for key in STAGE_KEYS:
            out[key].append(got[key][j] if j is not None else skipped_entry(p, key))
