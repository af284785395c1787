"""Generic torch.optim.Optimizer port (torch imported lazily, only here and in torch adapters).

``TorchOptimizerPort`` drives any optimizer built as ``make(param_groups)``: parameters are leaf
tensors of the port's dtype/device, gradients are set on ``.grad`` and ``.step()`` is called. The
state convention of torch.optim (``state[p]["step"]``, ``"exp_avg"``, ``"exp_avg_sq"``,
``"max_exp_avg_sq"``) is detected with a one-element probe, so a re-synced step can continue from
a given state in exactly the representation the optimizer itself uses (step as a float tensor
on the CPU, or on the device for fused/capturable paths, or a Python number).

Side effects are watched: every gradient is compared after ``step()`` with a copy taken before,
and a sentinel parameter in a second param group (no gradient) must stay untouched and stateless.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..interface import PortState


def torch_dtype(name: str) -> Any:
    import torch

    return {
        "float64": torch.float64,
        "float32": torch.float32,
        "bfloat16": torch.bfloat16,
        "float16": torch.float16,
    }[name]


def dtype_name(tdt: Any) -> str:
    return str(tdt).replace("torch.", "")


def _same(torch: Any, a: Any, b: Any) -> bool:
    """Bitwise-equal values (NaN equal to NaN), same shape."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())


def to_numpy(t: Any) -> np.ndarray:
    return np.asarray(t.detach().to("cpu", copy=True).double().numpy(), dtype=np.float64)


#: The harness drives small tensors: one intra-op thread avoids OpenMP spin-waits that make tiny
#: fused CPU steps 10-50x slower on a loaded 2-core machine (set False to keep torch's setting).
LIMIT_THREADS = True
_limited = False


def _limit_threads() -> None:
    global _limited
    if LIMIT_THREADS and not _limited:
        import torch

        torch.set_num_threads(1)
        _limited = True


MakeOptimizer = Callable[[list[dict[str, Any]]], Any]


class TorchOptimizerPort:
    """A torch optimizer behind the harness's Port interface."""

    def __init__(
        self,
        name: str,
        make: MakeOptimizer,
        dtype: str = "float64",
        device: str = "cpu",
        *,
        sentinel: bool = True,
        record_stages: bool = False,
    ) -> None:
        import torch

        _limit_threads()
        self.name = name
        self.dtype = dtype
        self.device = device
        self._torch = torch
        self._make = make
        self._tdt = torch_dtype(dtype)
        self._sentinel_on = sentinel
        self._record_stages = record_stages
        self._params: list[Any] = []
        self._opt: Any = None
        self._sentinel: Any = None
        self._sentinel_before: Any = None
        self._effects: list[str] = []
        self._probe: dict[str, Any] | None = None
        self.state_dtype = dtype

    # -- helpers
    def _tensor(self, a: np.ndarray, dtype: Any = None) -> Any:
        return self._torch.tensor(
            np.asarray(a, dtype=np.float64), dtype=dtype or self._tdt, device=self.device
        )

    def _build(self, params: list[Any]) -> Any:
        groups: list[dict[str, Any]] = [{"params": params}]
        if self._sentinel_on:
            self._sentinel = self._tensor(np.linspace(-1.0, 1.0, 3)).requires_grad_(True)
            self._sentinel_before = self._sentinel.detach().clone()
            groups.append({"params": [self._sentinel]})
        try:
            return self._make(groups)
        except (ValueError, TypeError, KeyError):
            if not self._sentinel_on:
                raise
            self._sentinel_on = False  # optimizer refuses a second group: drop the sentinel
            self._sentinel = None
            return self._make(groups[:1])

    def _probe_state(self) -> dict[str, Any]:
        """State layout of the optimizer after one step on a one-element parameter."""
        if self._probe is None:
            p = self._tensor(np.array([0.5])).requires_grad_(True)
            opt = self._make([{"params": [p]}])
            p.grad = self._tensor(np.array([0.25]))
            opt.step()
            st = dict(opt.state[p])
            self._probe = st
            ea = st.get("exp_avg")
            if ea is not None and hasattr(ea, "dtype"):
                self.state_dtype = dtype_name(ea.dtype)
        return self._probe

    # -- Port interface
    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        torch = self._torch
        self._params = [self._tensor(p).requires_grad_(True) for p in params]
        if state is not None:
            probe = self._probe_state()
            if "exp_avg" not in probe or "exp_avg_sq" not in probe or "step" not in probe:
                raise NotImplementedError(
                    f"unknown state layout {sorted(probe)}: cannot continue from a given state"
                )
        self._opt = self._build(self._params)
        if state is None:
            return
        probe = self._probe_state()
        step0 = probe["step"]
        for i, p in enumerate(self._params):
            st: dict[str, Any] = {}
            if isinstance(step0, torch.Tensor):
                st["step"] = torch.full_like(step0, float(state.step))
            else:
                st["step"] = type(step0)(state.step)
            sdt = probe["exp_avg"].dtype
            st["exp_avg"] = self._tensor(state.m[i], sdt).reshape(p.shape)
            st["exp_avg_sq"] = self._tensor(state.v[i], sdt).reshape(p.shape)
            if "max_exp_avg_sq" in probe:
                vmax = state.vmax[i] if state.vmax is not None else np.zeros(p.shape)
                st["max_exp_avg_sq"] = self._tensor(vmax, sdt).reshape(p.shape)
            for k, val in probe.items():  # unknown extra entries: fresh copies of the probe's
                if k not in st:
                    st[k] = val.clone() if isinstance(val, torch.Tensor) and val.dim() == 0 else val
            self._opt.state[p] = st

    def step(self, grads: Sequence[np.ndarray]) -> None:
        torch = self._torch
        if self._record_stages:
            self._opt.record_stages = True
        copies = []
        for p, g in zip(self._params, grads, strict=True):
            p.grad = self._tensor(g).reshape(p.shape)
            copies.append(p.grad.detach().clone())
        self._opt.step()
        self._effects = []
        for i, (p, c) in enumerate(zip(self._params, copies, strict=True)):
            if p.grad is None or not _same(torch, p.grad, c):
                self._effects.append(
                    f"the gradient of parameter {i} was modified in place by step()"
                )
                break
        if self._sentinel is not None:
            if not _same(torch, self._sentinel.detach(), self._sentinel_before):
                self._effects.append(
                    "a parameter of another param group (no gradient) was modified by step()"
                )
            if len(self._opt.state.get(self._sentinel, {})) > 0:
                self._effects.append("step() created state for a parameter without gradient")

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(to_numpy(p) for p in self._params)

    def state(self) -> PortState | None:
        sts = [self._opt.state.get(p, {}) for p in self._params]
        if not sts or any("exp_avg" not in s or "exp_avg_sq" not in s for s in sts):
            return None
        step = sts[0].get("step", 0)
        step_i = int(float(step.item() if hasattr(step, "item") else step))
        return PortState(
            step_i,
            tuple(to_numpy(s["exp_avg"]) for s in sts),
            tuple(to_numpy(s["exp_avg_sq"]) for s in sts),
        )

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        last = getattr(self._opt, "last_stages", None) if self._record_stages else None
        if not last:
            return None
        n = len(self._params)
        out: dict[str, tuple[np.ndarray, ...]] = {}
        for k, tensors in last.items():
            vals = list(tensors)[:n]  # the sentinel has no gradient, so no entry after these
            out[k] = tuple(to_numpy(x) for x in vals)
        return out

    def side_effects(self) -> list[str]:
        return list(self._effects)
