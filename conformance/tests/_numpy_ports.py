"""Small NumPy ports for the harness's own tests (written from the formulas, not the reference).

``NumpySETAdam`` computes SET-Adam in a chosen dtype (float64 / float32 / float16) with the
ordinary formulas; subclasses break it in one place each, or misbehave (raise, hang, wrong shapes).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from conformance.interface import PortState


class NumpySETAdam:
    device = "cpu"

    def __init__(self, cfg: Any, dtype: str = "float64") -> None:
        self.name = type(self).__name__
        self.dtype = dtype
        self.cfg = cfg
        self.dt = np.dtype(dtype)
        self.p: list[np.ndarray] = []
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.t = 0
        self._stages: dict[str, tuple[np.ndarray, ...]] | None = None

    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        self.p = [np.asarray(p, dtype=self.dt).copy() for p in params]
        if state is None:
            self.t = 0
            self.m = [np.zeros_like(p) for p in self.p]
            self.v = [np.zeros_like(p) for p in self.p]
        else:
            self.t = int(state.step)
            self.m = [np.asarray(a, dtype=self.dt).copy() for a in state.m]
            self.v = [np.asarray(a, dtype=self.dt).copy() for a in state.v]

    def eps_term(self, vs: np.ndarray, bc2: float, eps: float) -> np.ndarray:
        return np.sqrt(vs / bc2 + eps)

    def cos2(self, v: np.ndarray) -> float:
        v64 = v.astype(np.float64).ravel()
        if v64.size == 0 or not np.any(v64):
            return 1.0
        s = v64.max()
        x = v64 / s
        return float(x.sum() ** 2 / (v64.size * (x * x).sum()))

    def step(self, grads: Sequence[np.ndarray]) -> None:
        c = self.cfg
        b1, b2 = c.betas
        self.t += 1
        t = self.t
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        st: dict[str, list[np.ndarray]] = {
            k: []
            for k in ("down_scaling", "epsilon_embedding", "down_translating", "update", "cos2")
        }
        for i, g in enumerate(grads):
            g = np.asarray(g, dtype=self.dt)
            p = self.p[i]
            if c.maximize:
                g = -g
            if c.weight_decay and c.weight_decay_mode == "l2":
                g = g + self.dt.type(c.weight_decay) * p
            self.m[i] = (b1 * self.m[i] + (1 - b1) * g).astype(self.dt)
            self.v[i] = (b2 * self.v[i] + (1 - b2) * g * g).astype(self.dt)
            cc = self.cos2(self.v[i])
            vs = (cc * self.v[i]).astype(self.dt)
            w = self.eps_term(vs, bc2, c.eps).astype(self.dt)
            wt = (w - c.tau * (w.min() if w.size else 0.0)).astype(self.dt)
            old = p.copy()
            if c.weight_decay and c.weight_decay_mode == "decoupled":
                p = (p * (1 - c.lr * c.weight_decay)).astype(self.dt)
            p = (p - (c.lr / bc1) * self.m[i] / wt).astype(self.dt)
            self.p[i] = p
            for k, val in (
                ("down_scaling", vs),
                ("epsilon_embedding", w),
                ("down_translating", wt),
            ):
                st[k].append(val.astype(np.float64))
            st["update"].append(p.astype(np.float64) - old.astype(np.float64))
            st["cos2"].append(np.array(cc))
        self._stages = {k: tuple(v) for k, v in st.items()}

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(p.astype(np.float64) for p in self.p)

    def state(self) -> PortState | None:
        return PortState(
            self.t,
            tuple(a.astype(np.float64) for a in self.m),
            tuple(a.astype(np.float64) for a in self.v),
        )

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return self._stages


class EpsOutside(NumpySETAdam):
    def eps_term(self, vs: np.ndarray, bc2: float, eps: float) -> np.ndarray:
        return np.sqrt(vs / bc2) + eps


class Raises(NumpySETAdam):
    def step(self, grads: Sequence[np.ndarray]) -> None:
        if self.t >= 2:
            raise RuntimeError("boom at step 3")
        super().step(grads)


class WrongShape(NumpySETAdam):
    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(p.astype(np.float64).ravel()[:1] for p in self.p)


class Hangs(NumpySETAdam):
    release = threading.Event()

    def step(self, grads: Sequence[np.ndarray]) -> None:
        if self.t >= 1:
            self.release.wait(30.0)  # a hang, bounded so the test process can exit cleanly
        super().step(grads)


class DtypeLie(NumpySETAdam):
    """Declares float32 but computes and returns float64 values."""

    def __init__(self, cfg: Any, dtype: str = "float32") -> None:
        super().__init__(cfg, "float64")
        self.dtype = "float32"


class MutatesGrads(NumpySETAdam):
    def step(self, grads: Sequence[np.ndarray]) -> None:
        super().step(grads)
        for g in grads:
            np.asarray(g)[...] = 0.0


class NoResync(NumpySETAdam):
    def reset(self, params: Sequence[np.ndarray], state: Any = None) -> None:
        if state is not None:
            raise NotImplementedError("no state import")
        super().reset(params, None)

    def state(self) -> PortState | None:
        return None

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return None


class NaNOnZero(NumpySETAdam):
    def cos2(self, v: np.ndarray) -> float:
        v64 = v.astype(np.float64).ravel()
        with np.errstate(all="ignore"):
            return float(v64.sum() ** 2 / (v64.size * (v64 * v64).sum()))
