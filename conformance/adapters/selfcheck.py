"""Self-checks of the reference, run by the harness like any other port.

``reference-selfcheck[identity]``: with tau = 0 and every layer a single coordinate, SET-Adam is
Adam with eps inside the square root: ``AdamConfig(eps=0, eps_root=eps)``. The "port" is the
reference's Adam path, compared with the reference's SET-Adam path on the single-element scenario
(both sides in float64: the float64 budget covers both roundings).

``reference-selfcheck[mpmath]``: Adam and SET-Adam written out coordinate by coordinate in mpmath
at 50 significant digits, outputs rounded once to float64: an independent, essentially exact
computation. Passing means the reference's float64 results lie within the float64 tolerance model
of the exact values (plus one final rounding on the exact side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import setadam_ref as R
from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..interface import PortState
from ..results import PortSpec


class IdentityPort:
    """SET-Adam(tau=0, singleton layers) computed as Adam(eps_root=eps, eps=0) by the reference."""

    dtype = "float64"
    device = "cpu"

    def __init__(self, cfg: SETAdamConfig) -> None:
        self.name = "reference-selfcheck[identity]"
        self.cfg = AdamConfig(
            lr=cfg.lr,
            betas=cfg.betas,
            eps=0.0,
            eps_root=cfg.eps,
            weight_decay=cfg.weight_decay,
            weight_decay_mode=cfg.weight_decay_mode,
            maximize=cfg.maximize,
        )
        self._p: tuple[np.ndarray, ...] = ()
        self._s: R.State | None = None

    def reset(self, params: Sequence[np.ndarray], state: R.State | None = None) -> None:
        if any(np.size(p) > 1 for p in params):
            raise NotImplementedError("the identity holds for single-coordinate layers only")
        self._p = tuple(np.array(p, dtype=np.float64) for p in params)
        self._s = R.init(self._p, self.cfg) if state is None else state

    def step(self, grads: Sequence[np.ndarray]) -> None:
        assert self._s is not None
        self._p, self._s, _ = R.step(self._p, grads, self._s, self.cfg)

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(np.array(p) for p in self._p)

    def state(self) -> PortState | None:
        assert self._s is not None
        return PortState(self._s.step, tuple(self._s.m), tuple(self._s.v))

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return None


class MpmathPort:
    """Adam / SET-Adam in mpmath (50 digits), one layer per array, outputs rounded to float64."""

    dtype = "float64"
    device = "cpu"
    DIGITS = 50

    def __init__(self, cfg: Config) -> None:
        import mpmath

        self.name = "reference-selfcheck[mpmath]"
        self.cfg = cfg
        self.mp = mpmath.MPContext()  # private context: the global precision is left alone
        self.mp.dps = self.DIGITS
        self._shapes: list[tuple[int, ...]] = []
        self._p: list[list[Any]] = []
        self._m: list[list[Any]] = []
        self._v: list[list[Any]] = []
        self._vmax: list[list[Any]] = []
        self._t = 0
        self._stages: dict[str, tuple[np.ndarray, ...]] | None = None

    def _mpf(self, a: np.ndarray) -> list[Any]:
        return [self.mp.mpf(float(x)) for x in np.ravel(np.asarray(a, dtype=np.float64))]

    def _out(self, xs: list[Any], i: int) -> np.ndarray:
        return np.array([float(x) for x in xs], dtype=np.float64).reshape(self._shapes[i])

    def reset(self, params: Sequence[np.ndarray], state: R.State | None = None) -> None:
        self._shapes = [np.shape(p) for p in params]
        self._p = [self._mpf(p) for p in params]
        if state is None:
            self._t = 0
            self._m = [[self.mp.mpf(0)] * len(p) for p in self._p]
            self._v = [[self.mp.mpf(0)] * len(p) for p in self._p]
            self._vmax = [[self.mp.mpf(0)] * len(p) for p in self._p]
        else:
            self._t = state.step
            self._m = [self._mpf(a) for a in state.m]
            self._v = [self._mpf(a) for a in state.v]
            vmax = state.vmax if state.vmax is not None else [np.zeros(s) for s in self._shapes]
            self._vmax = [self._mpf(a) for a in vmax]

    def step(self, grads: Sequence[np.ndarray]) -> None:
        mp, cfg = self.mp, self.cfg
        self._t += 1
        t = self._t
        b1, b2 = mp.mpf(cfg.betas[0]), mp.mpf(cfg.betas[1])
        lr, wd = mp.mpf(cfg.lr), mp.mpf(cfg.weight_decay)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        stages: dict[str, list[np.ndarray]] = {
            k: [] for k in ("down_scaling", "epsilon_embedding", "down_translating", "update")
        }
        cos2: list[np.ndarray] = []
        for i, gi in enumerate(grads):
            g = self._mpf(gi)
            p = self._p[i]
            if cfg.maximize:
                g = [-x for x in g]
            if cfg.weight_decay_mode == "l2" and cfg.weight_decay > 0:
                g = [x + wd * th for x, th in zip(g, p, strict=True)]
            m = [b1 * mi + (1 - b1) * x for mi, x in zip(self._m[i], g, strict=True)]
            v = [b2 * vi + (1 - b2) * x * x for vi, x in zip(self._v[i], g, strict=True)]
            self._m[i], self._v[i] = m, v
            if isinstance(cfg, AdamConfig):
                if cfg.amsgrad:
                    if cfg.amsgrad_mode == "torch":
                        vm = [max(a, b) for a, b in zip(self._vmax[i], v, strict=True)]
                        vhat = [x / bc2 for x in vm]
                    else:
                        vm = [max(a, b / bc2) for a, b in zip(self._vmax[i], v, strict=True)]
                        vhat = vm
                    self._vmax[i] = vm
                else:
                    vhat = [x / bc2 for x in v]
                denom = [mp.sqrt(x + mp.mpf(cfg.eps_root)) + mp.mpf(cfg.eps) for x in vhat]
            else:
                d = len(v)
                s1 = mp.fsum(v)
                s2 = mp.fsum(x * x for x in v)
                c = (s1 * s1) / (d * s2) if s1 > 0 else mp.mpf(1)
                vs = [c * x for x in v]
                w = [mp.sqrt(x / bc2 + mp.mpf(cfg.eps)) for x in vs]
                wmin = min(w) if w else mp.mpf(0)
                denom = [x - mp.mpf(cfg.tau) * wmin for x in w]
                stages["down_scaling"].append(self._out(vs, i))
                stages["epsilon_embedding"].append(self._out(w, i))
                stages["down_translating"].append(self._out(denom, i))
                cos2.append(np.array(float(c)))
            base = [th * (1 - lr * wd) for th in p] if cfg.weight_decay_mode == "decoupled" else p
            new = [th - lr / bc1 * mi / de for th, mi, de in zip(base, m, denom, strict=True)]
            stages["update"].append(self._out([a - b for a, b in zip(new, p, strict=True)], i))
            self._p[i] = new
        if isinstance(cfg, SETAdamConfig):
            self._stages = {k: tuple(v) for k, v in stages.items()}
            self._stages["cos2"] = tuple(cos2)
        else:
            self._stages = None

    def params(self) -> tuple[np.ndarray, ...]:
        return tuple(self._out(p, i) for i, p in enumerate(self._p))

    def state(self) -> PortState | None:
        return PortState(
            self._t,
            tuple(self._out(m, i) for i, m in enumerate(self._m)),
            tuple(self._out(v, i) for i, v in enumerate(self._v)),
        )

    def stages(self) -> dict[str, tuple[np.ndarray, ...]] | None:
        return self._stages


def _identity_supports(cfg: Config) -> str | None:
    if not isinstance(cfg, SETAdamConfig) or cfg.tau != 0:
        return "the identity needs SET-Adam with tau = 0"
    return None


MPMATH_SCENARIOS = ("single_element", "zero_layers", "tau_0.9", "weight_decay_decoupled")


def specs() -> list[PortSpec]:
    out = [
        PortSpec(
            "reference-selfcheck[identity]",
            "setadam",
            "float64",
            "cpu",
            lambda cfg: IdentityPort(cfg),  # type: ignore[arg-type]
            _identity_supports,
            SETAdamConfig(tau=0.0),
            scenarios=("single_element",),
        )
    ]
    try:
        import mpmath  # noqa: F401
    except ImportError:
        return out
    for alg in ("setadam", "adam"):
        out.append(
            PortSpec(
                f"reference-selfcheck[mpmath,{alg}]",
                alg,
                "float64",
                "cpu",
                MpmathPort,
                None,
                scenarios=MPMATH_SCENARIOS if alg == "setadam" else ("single_element", "amsgrad"),
            )
        )
    return out
