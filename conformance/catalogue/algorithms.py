r"""Whole-algorithm catalogue entries: other published optimizers, replayed in float64 NumPy.

A port checked as Adam that is in fact NAdam, RAdam, AdaBelief, AMSGrad or Lion fails by orders of
magnitude from step 1; these entries let the report say "this behaves like NAdam, not Adam".
Each step is written from its published update rule, in the convention of its common PyTorch
implementation where the paper leaves a choice (noted per function), from the same inputs as
every replay: $\theta_{t-1}$, $g_t$, the state $(t-1, m, v)$ and the configuration's lr, betas,
eps, weight decay (mode) and maximize. Symbols: $b_1 = 1-\beta_1^t$, $b_2 = 1-\beta_2^t$.

No framework is imported: the arithmetic is NumPy, so the replay is the published rule, not a
library's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from setadam_ref import adam
from setadam_ref.arrays import F64Array
from setadam_ref.config import AdamConfig, Config
from setadam_ref.context import bias_corrections
from setadam_ref.state import State

from .deviation import Deviation, entry

Arrays = tuple[F64Array, ...]
Step = tuple[Arrays, Arrays, Arrays, Arrays | None]

#: torch.optim.NAdam's default momentum decay psi (Dozat 2016: mu_t = beta1 (1 - 0.5 0.96^(t psi)))
MOMENTUM_DECAY = 4e-3


def _prepare(
    params: Sequence[F64Array], grads: Sequence[F64Array], cfg: Config
) -> tuple[list[F64Array], list[F64Array], float]:
    """$(\\rho\\theta, g_{\\text{eff}}, \\rho)$: maximize, then l2 decay into the gradient or the
    decoupled factor $\\rho = 1 - \\text{lr}\\lambda$ applied to $\\theta$ first."""
    theta = [np.ravel(p) for p in params]
    g = [-np.ravel(x) if cfg.maximize else np.ravel(x) for x in grads]
    rho = 1.0
    if cfg.weight_decay:
        if cfg.weight_decay_mode == "decoupled":
            rho = 1.0 - cfg.lr * cfg.weight_decay
        else:
            g = [x + cfg.weight_decay * p for x, p in zip(g, theta, strict=True)]
    return [p * rho for p in theta], g, rho


def _moments(st: State, g: list[F64Array], b1: float, b2: float) -> tuple[Arrays, Arrays]:
    m = tuple(np.ravel(m0) * b1 + x * (1.0 - b1) for m0, x in zip(st.m, g, strict=True))
    v = tuple(np.ravel(v0) * b2 + (x * x) * (1.0 - b2) for v0, x in zip(st.v, g, strict=True))
    return m, v


def _shaped(arrays: Sequence[F64Array], like: Sequence[Any]) -> Arrays:
    return tuple(np.reshape(a, np.shape(x)) for a, x in zip(arrays, like, strict=True))


def _done(params: Any, theta: Sequence[F64Array], m: Arrays, v: Arrays) -> Step:
    return _shaped(theta, params), _shaped(m, params), _shaped(v, params), None


def nadam(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """NAdam (Dozat 2016) as torch.optim.NAdam: momentum schedule
    $\\mu_k = \\beta_1(1 - \\tfrac12 0.96^{k\\psi})$, $\\Pi_t = \\prod_{k\\le t}\\mu_k$,
    $\\theta \\mathrel{-}= \\text{lr}\\,\\frac{1-\\mu_t}{1-\\Pi_t}\\frac{g}{d}
    + \\text{lr}\\,\\frac{\\mu_{t+1}}{1-\\Pi_t\\mu_{t+1}}\\frac{m_t}{d}$,
    $d = \\sqrt{v_t/b_2} + \\epsilon$."""
    b1, b2 = cfg.betas
    t = int(st.step) + 1
    theta, g, _ = _prepare(params, grads, cfg)
    m, v = _moments(st, g, b1, b2)

    def mu(k: int) -> float:
        return b1 * (1.0 - 0.5 * math.pow(0.96, k * MOMENTUM_DECAY))

    prod = math.prod(mu(k) for k in range(1, t + 1))
    mu_t, mu_next = mu(t), mu(t + 1)
    bc2 = bias_corrections(b1, b2, t)[1]
    c_g = cfg.lr * (1.0 - mu_t) / (1.0 - prod)
    c_m = cfg.lr * mu_next / (1.0 - prod * mu_next)
    out = []
    for p, x, mi, vi in zip(theta, g, m, v, strict=True):
        d = np.sqrt(vi / bc2) + cfg.eps
        out.append(p - c_g * x / d - c_m * mi / d)
    return _done(params, out, m, v)


def nadam_nesterov(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """NAdam without the momentum schedule (Keras, optax ``nadam`` / ``scale_by_adam(nesterov=
    True)``): $\\hat m = \\beta_1 m_t/(1-\\beta_1^{t+1}) + (1-\\beta_1) g/b_1$,
    $\\theta \\mathrel{-}= \\text{lr}\\,\\hat m / (\\sqrt{v_t/b_2} + \\epsilon)$."""
    b1, b2 = cfg.betas
    t = int(st.step) + 1
    theta, g, _ = _prepare(params, grads, cfg)
    m, v = _moments(st, g, b1, b2)
    bc1, bc2 = bias_corrections(b1, b2, t)
    bc1_next = bias_corrections(b1, b2, t + 1)[0]
    out = []
    for p, x, mi, vi in zip(theta, g, m, v, strict=True):
        m_hat = b1 * mi / bc1_next + (1.0 - b1) * x / bc1
        out.append(p - cfg.lr * m_hat / (np.sqrt(vi / bc2) + cfg.eps))
    return _done(params, out, m, v)


def radam(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """RAdam (Liu et al. 2020) as torch.optim.RAdam: $\\rho_\\infty = 2/(1-\\beta_2) - 1$,
    $\\rho_t = \\rho_\\infty - 2t\\beta_2^t/b_2$; while $\\rho_t \\le 5$ plain momentum
    $\\theta \\mathrel{-}= \\text{lr}\\, m_t/b_1$, then the rectified step
    $\\text{lr}\\, r_t \\frac{m_t}{b_1} \\frac{\\sqrt{b_2}}{\\sqrt{v_t} + \\epsilon}$ with
    $r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}{(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}$."""
    b1, b2 = cfg.betas
    t = int(st.step) + 1
    theta, g, _ = _prepare(params, grads, cfg)
    m, v = _moments(st, g, b1, b2)
    bc1, bc2 = bias_corrections(b1, b2, t)
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rho_t = rho_inf - 2.0 * t * b2**t / bc2
    out = []
    for p, mi, vi in zip(theta, m, v, strict=True):
        m_hat = mi / bc1
        if rho_t > 5.0:
            r = math.sqrt(
                (rho_t - 4.0)
                * (rho_t - 2.0)
                * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
            )
            out.append(p - cfg.lr * m_hat * r * math.sqrt(bc2) / (np.sqrt(vi) + cfg.eps))
        else:
            out.append(p - cfg.lr * m_hat)
    return _done(params, out, m, v)


def adabelief(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """AdaBelief (Zhuang et al. 2020) as its authors' PyTorch code: $m_t$ as Adam,
    $s_t = \\beta_2 s_{t-1} + (1-\\beta_2)(g - m_t)^2 + \\epsilon$ (eps added to the stored $s$),
    $\\theta \\mathrel{-}= \\frac{\\text{lr}}{b_1} \\frac{m_t}{\\sqrt{s_t}/\\sqrt{b_2} + \\epsilon}$."""
    b1, b2 = cfg.betas
    t = int(st.step) + 1
    theta, g, _ = _prepare(params, grads, cfg)
    m = tuple(np.ravel(m0) * b1 + x * (1.0 - b1) for m0, x in zip(st.m, g, strict=True))
    s = tuple(
        np.ravel(s0) * b2 + ((x - mi) * (x - mi)) * (1.0 - b2) + cfg.eps
        for s0, x, mi in zip(st.v, g, m, strict=True)
    )
    bc1, bc2 = bias_corrections(b1, b2, t)
    out = [
        p - (cfg.lr / bc1) * mi / (np.sqrt(si) / math.sqrt(bc2) + cfg.eps)
        for p, mi, si in zip(theta, m, s, strict=True)
    ]
    return _done(params, out, m, s)


def lion(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """Lion (Chen et al. 2023): $\\theta \\mathrel{-}= \\text{lr}\\,\\mathrm{sign}(\\beta_1 m_{t-1}
    + (1-\\beta_1) g)$, then $m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g$ (no second moment; the
    configuration's betas play Lion's two interpolation factors)."""
    b1, b2 = cfg.betas
    theta, g, _ = _prepare(params, grads, cfg)
    out, m = [], []
    for p, x, m0 in zip(theta, g, st.m, strict=True):
        m0 = np.ravel(m0)
        out.append(p - cfg.lr * np.sign(m0 * b1 + x * (1.0 - b1)))
        m.append(m0 * b2 + x * (1.0 - b2))
    return _done(params, out, tuple(m), tuple(np.ravel(v0) for v0 in st.v))


def _weight_f32(beta: float, t: int) -> float:
    """$1/w_t$ with $w_t = \\beta w_{t-1} + 1$, $w_0 = 0$, every operation in float32."""
    b, w = np.float32(beta), np.float32(0.0)
    for _ in range(t):
        w = np.float32(np.float32(w * b) + np.float32(1.0))
    return float(np.float32(1.0) / w)


def _lerp(a: F64Array, b: F64Array, weight: float) -> F64Array:
    """``torch.lerp``'s two-sided form (exact at both ends)."""
    if weight < 0.5:
        r: F64Array = a + weight * (b - a)
        return r
    r = b - (b - a) * (1.0 - weight)
    return r


def corrected_moments_f32(
    params: Any, grads: Any, st: State, cfg: Config, layers: Any = None
) -> Step:
    """Adam with the bias-corrected moments kept in the state (QHAdam with $\\nu = 1$, Ma and
    Yarats 2019, as pytorch_optimizer writes it): $\\hat m_t = \\mathrm{lerp}(\\hat m_{t-1}, g,
    1/w_t)$, $\\hat v_t$ likewise with $g^2$, where $w_t = \\beta w_{t-1} + 1$ (so that $1/w_t =
    (1-\\beta)/(1-\\beta^t)$) is kept in **float32**; $\\theta \\mathrel{-}= \\text{lr}\\,
    \\hat m_t/(\\sqrt{\\hat v_t} + \\epsilon)$. In exact arithmetic this is Adam; the float32
    weights are off by up to a float32 rounding, relative, at every step. Its state holds
    $\\hat m$, $\\hat v$, not $m$, $v$."""
    b1, b2 = cfg.betas
    t = int(st.step) + 1
    theta, g, _ = _prepare(params, grads, cfg)
    r1, r2 = _weight_f32(b1, t), _weight_f32(b2, t)
    m = tuple(_lerp(np.ravel(m0), x, r1) for m0, x in zip(st.m, g, strict=True))
    v = tuple(_lerp(np.ravel(v0), x * x, r2) for v0, x in zip(st.v, g, strict=True))
    out = [
        p - cfg.lr * (mi / (np.sqrt(vi) + cfg.eps)) for p, mi, vi in zip(theta, m, v, strict=True)
    ]
    return _done(params, out, m, v)


def adam_as_setadam(params: Any, grads: Any, st: State, cfg: Config, layers: Any = None) -> Step:
    """Plain Adam (torch.optim's convention, eps outside the square root) with SET-Adam's
    hyperparameters: the reference's own Adam step (``setadam_ref.adam``)."""
    acfg = AdamConfig(
        lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
        weight_decay_mode=cfg.weight_decay_mode, maximize=cfg.maximize,
    )  # fmt: skip
    theta, new, _ = adam.adam_step(list(params), list(grads), st._replace(vmax=None), acfg)
    return theta, new.m, new.v, None


def _amsgrad_on(cfg: AdamConfig) -> AdamConfig:
    return replace(cfg, amsgrad=True, amsgrad_mode="torch")


_ALG = "different algorithm"


def _w(name: str, title: str, stage: str, rule: str, fn: Any, algorithm: str = "adam") -> Deviation:
    return entry(
        name, _ALG, stage, f"this behaves like {title}, not {'Adam' if algorithm == 'adam' else 'SET-Adam'}: {rule}",
        "always, from step 1", algorithm=algorithm, whole=fn,  # type: ignore[arg-type]
    )  # fmt: skip


ADAM: tuple[Deviation, ...] = (
    _w("nadam", "NAdam", "update", "Nesterov momentum with the momentum schedule (torch.optim.NAdam)", nadam),
    _w("nadam_nesterov", "NAdam", "update", "Nesterov momentum, no schedule (Keras, optax.nadam)", nadam_nesterov),
    _w("radam", "RAdam", "update", "rectified Adam, plain momentum while rho_t <= 5 (torch.optim.RAdam)", radam),
    _w("adabelief", "AdaBelief", "v", "second moment of g - m, eps added to the stored s", adabelief),
    _w("lion", "Lion", "m", "sign of the interpolated momentum, no second moment", lion),
    entry(
        "adam_corrected_moments_float32", "lower precision", "denom",
        "bias-corrected moments kept in the state, their weights 1/w_t (w_t = beta w_{t-1} + 1) "
        "in float32 (pytorch_optimizer's QHAdam with nus = (1, 1))",
        "float64, from step 2", algorithm="adam", whole=corrected_moments_f32,
    ),
    entry(
        "amsgrad_not_asked", _ALG, "vmax",
        "this behaves like AMSGrad, not Adam: a running maximum of v where amsgrad is off",
        "once v decreases (free-running; one re-synced step from a given state cannot show it)",
        algorithm="adam", config=_amsgrad_on,
    ),
)  # fmt: skip

SETADAM: tuple[Deviation, ...] = (
    _w("adam_not_setadam", "Adam", "down_scaling", "no S, E, T: denom = sqrt(v / bc2) + eps",
       adam_as_setadam, algorithm="setadam"),
)  # fmt: skip
