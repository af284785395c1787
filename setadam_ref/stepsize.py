r"""Effective stepsizes and range metrics (docs: theory/stepsize-range.md).

The effective stepsize of coordinate $i$ is $a_i = \text{lr} / ((1-\beta_1^t)\,\tilde w_i)$ for
SET-Adam and $\text{lr}/((1-\beta_1^t)\,\text{denom}_i)$ for Adam. Metrics of a set of stepsizes:
max/min ratio, coefficient of variation (std/mean), and log-spread $\ln(\max/\min)$.
"""

from __future__ import annotations

import math

import numpy as np

from .arrays import F64Array
from .config import AdamConfig, SETAdamConfig
from .context import bias_corrections
from .stages import cos2, embed, translate


def _nonempty(a: F64Array) -> F64Array:
    x = np.ravel(np.asarray(a, dtype=np.float64))
    if x.size == 0:
        raise ValueError("range metrics need at least one stepsize")
    return x


def max_min_ratio(a: F64Array) -> float:
    """$\\max_i a_i / \\min_i a_i$ (>= 1 for positive stepsizes)."""
    x = _nonempty(a)
    return float(x.max() / x.min())


def log_spread(a: F64Array) -> float:
    """$\\ln \\max_i a_i - \\ln \\min_i a_i$."""
    x = _nonempty(a)
    return math.log(float(x.max())) - math.log(float(x.min()))


def coefficient_of_variation(a: F64Array) -> float:
    """Standard deviation over mean (population std)."""
    x = _nonempty(a)
    return float(x.std() / x.mean())


def setadam_stepsizes(v: F64Array, t: int, config: SETAdamConfig) -> F64Array:
    """SET-Adam's stepsizes of one layer with second moment ``v`` (unscaled) at step ``t``."""
    x = np.ravel(np.asarray(v, dtype=np.float64))
    b1, b2 = config.betas
    bc1, bc2 = bias_corrections(b1, b2, t)
    w = embed(x * cos2(x), bc2, config.eps)
    wt, _ = translate(w, config.tau)
    return (config.lr / bc1) / wt


def adam_stepsizes(v: F64Array, t: int, config: AdamConfig) -> F64Array:
    """Adam's stepsizes of one layer with second moment ``v`` at step ``t`` (no amsgrad)."""
    x = np.ravel(np.asarray(v, dtype=np.float64))
    b1, b2 = config.betas
    bc1, bc2 = bias_corrections(b1, b2, t)
    denom = np.sqrt(x / bc2 + config.eps_root) + config.eps
    return (config.lr / bc1) / denom
