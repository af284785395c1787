r"""Validated, frozen hyperparameter records.

``AdamConfig`` expresses every convention of torch.optim.Adam/AdamW and optax.adam/adamw/amsgrad:

$$\hat v_t = v_t / (1-\beta_2^t),\qquad
  \text{denom} = \sqrt{\hat v_t + \epsilon_\text{root}} + \epsilon .$$

``SETAdamConfig`` holds the hyperparameters of SET-Adam (docs: algorithms/setadam.md).
A bad value raises ``ValueError`` naming the field, the value and the allowed range. Numbers may be
any real scalar (Python or NumPy, e.g. ``np.float32(1e-3)``, ``np.int64(0)``); they are stored as
Python floats. ``bool`` is refused where a number is meant.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

WeightDecayMode = Literal["l2", "decoupled"]
AmsgradMode = Literal["torch", "optax"]
EpsMode = Literal["torch", "tf"]

WEIGHT_DECAY_MODES: tuple[str, ...] = ("l2", "decoupled")
AMSGRAD_MODES: tuple[str, ...] = ("torch", "optax")
EPS_MODES: tuple[str, ...] = ("torch", "tf")


def _real(name: str, value: object) -> float:
    # Every real number type counts (NumPy's float32, int64, ... register as numbers.Real);
    # bool does too in Python, but True as a learning rate is a caller's mistake, not 1.0.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _as_floats(record: object, names: tuple[str, ...]) -> None:
    """Store the (validated) numeric fields ``names`` of a frozen record as Python floats, so a
    NumPy scalar given for one compares, hashes and prints like the float it is."""
    for name in names:
        object.__setattr__(record, name, float(getattr(record, name)))


def _check_lr(lr: object) -> None:
    if _real("lr", lr) <= 0.0:
        raise ValueError(f"lr must be > 0 and finite, got {lr!r}")


def _checked_betas(betas: object) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    out: list[float] = []
    for i, b in enumerate(betas):
        x = _real(f"betas[{i}] (beta{i + 1})", b)
        if not 0.0 <= x < 1.0:
            raise ValueError(f"betas[{i}] (beta{i + 1}) must lie in [0, 1), got {b!r}")
        out.append(x)
    return (out[0], out[1])


def _check_nonneg(name: str, value: object) -> None:
    if _real(name, value) < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _check_mode(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


@dataclass(frozen=True)
class AdamConfig:
    """Adam in any of the conventions of torch.optim and optax.

    Defaults reproduce ``torch.optim.Adam()``: eps outside the square root, ``eps_root = 0``,
    coupled (``"l2"``) weight decay.

    - ``weight_decay_mode="l2"``: $g \\leftarrow g + \\lambda\\theta$ (torch.optim.Adam).
    - ``weight_decay_mode="decoupled"``: $\\theta \\leftarrow \\theta(1-\\text{lr}\\,\\lambda)$
      before the update (torch.optim.AdamW, optax.adamw).
    - ``amsgrad_mode="torch"``: $v^{\\max}_t = \\max(v^{\\max}_{t-1}, v_t)$ on raw $v$, then
      bias-corrected; ``"optax"``: the maximum is taken over bias-corrected $\\hat v_t$.
    - ``maximize``: $g \\leftarrow -g$ (before coupled weight decay, as torch does).
    - ``eps_mode="torch"``: $\\epsilon$ is added to $\\sqrt{\\hat v_t + \\epsilon_\\text{root}}$ (torch,
      optax); ``"tf"``: to the unscaled $\\sqrt{v_t + \\epsilon_\\text{root}}$, with the bias
      corrections folded into the step size $\\text{lr}\\sqrt{1-\\beta_2^t}/(1-\\beta_1^t)$
      (TensorFlow, keras 3). The two agree in exact arithmetic when the tf
      $\\hat\\epsilon = \\epsilon\\sqrt{1-\\beta_2^t}$ (and $\\epsilon_\\text{root} = 0$); amsgrad
      with ``"tf"`` takes the maximum of raw $v$ (``amsgrad_mode="torch"``).

    ``eps = eps_root = 0`` is allowed, as torch allows it: the update is then $0/0$ (NaN) at
    every coordinate whose $v$ is exactly zero, and the step's ``NonFiniteError`` says so (with
    ``nonfinite="ieee"`` the NaN propagates).
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    eps_root: float = 0.0
    weight_decay: float = 0.0
    weight_decay_mode: WeightDecayMode = "l2"
    amsgrad: bool = False
    amsgrad_mode: AmsgradMode = "torch"
    maximize: bool = False
    eps_mode: EpsMode = "torch"

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        # A list is accepted for convenience and stored as a tuple so the record stays hashable.
        object.__setattr__(self, "betas", _checked_betas(self.betas))
        _check_nonneg("eps", self.eps)
        _check_nonneg("eps_root", self.eps_root)
        _check_nonneg("weight_decay", self.weight_decay)
        _check_mode("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        _check_bool("amsgrad", self.amsgrad)
        _check_mode("amsgrad_mode", self.amsgrad_mode, AMSGRAD_MODES)
        _check_bool("maximize", self.maximize)
        _check_mode("eps_mode", self.eps_mode, EPS_MODES)
        if self.eps_mode == "tf" and self.amsgrad and self.amsgrad_mode != "torch":
            # tf forms no bias-corrected v whose maximum optax's convention would take.
            raise ValueError("amsgrad_mode must be 'torch' with eps_mode='tf', got 'optax'")
        _as_floats(self, ("lr", "eps", "eps_root", "weight_decay"))


@dataclass(frozen=True)
class SETAdamConfig:
    """SET-Adam: Adam whose second moment is down-scaled, epsilon-embedded and down-translated.

    Defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8 (inside the square root), tau 0.5,
    no weight decay (mode ``"l2"`` when used), no maximize.
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    tau: float = 0.5
    weight_decay: float = 0.0
    weight_decay_mode: WeightDecayMode = "l2"
    maximize: bool = False

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        # A list is accepted for convenience and stored as a tuple so the record stays hashable.
        object.__setattr__(self, "betas", _checked_betas(self.betas))
        if _real("eps", self.eps) <= 0.0:
            raise ValueError(
                f"eps must be > 0 for SET-Adam (it bounds w from below), got {self.eps!r}"
            )
        tau = _real("tau", self.tau)
        if not 0.0 <= tau < 1.0:
            raise ValueError(f"tau must lie in [0, 1), got {self.tau!r}")
        _check_nonneg("weight_decay", self.weight_decay)
        _check_mode("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        _check_bool("maximize", self.maximize)
        _as_floats(self, ("lr", "eps", "tau", "weight_decay"))


Config = AdamConfig | SETAdamConfig
