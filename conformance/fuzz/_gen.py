"""The fuzz cases' input generator: NumPy only, copied verbatim into every reproducer script."""

from __future__ import annotations

import numpy as np


def make_inputs(
    shapes: list[list[int]], kinds: list[str], scales: list[int], steps: int, seed: int
) -> tuple[tuple[np.ndarray, ...], tuple[tuple[np.ndarray, ...], ...]]:
    """(params0, grads) of a fuzz case: params ~ N(0, 1); the gradient of array i at step t is
    N(0, 1) * 10**scales[i] ("normal"), all zero ("zero"), zero but for its first coordinate
    ("onehot") or the constant 10**scales[i] ("constant")."""
    rng = np.random.default_rng(seed)
    params0 = tuple(rng.standard_normal(tuple(s)) for s in shapes)
    grads: list[tuple[np.ndarray, ...]] = []
    for _t in range(steps):
        row: list[np.ndarray] = []
        for shape, kind, e in zip(shapes, kinds, scales, strict=True):
            s = tuple(shape)
            scale = 10.0**e
            if kind == "zero":
                g = np.zeros(s)
            elif kind == "onehot":
                g = np.zeros(s)
                if g.size:
                    g.flat[0] = rng.standard_normal() * scale
            elif kind == "constant":
                g = np.full(s, scale)
            else:
                g = rng.standard_normal(s) * scale
            row.append(np.asarray(g, dtype=np.float64))
        grads.append(tuple(row))
    return params0, tuple(grads)


def lr_factors(schedule: str, steps: int) -> list[float]:
    """The lr factors f_1..f_steps of a named schedule (step t uses lr * f_t in every group):
    "cosine": linear warm-up t / 4 for t <= 4, then cosine from 1 down to 0.1; "alternate":
    1 on odd steps, 0.25 on even ones; "decay": 0.9**(t - 1). Each changes the lr every step
    (but for the cosine's last); f_t depends on t and the horizon only."""
    out: list[float] = []
    for t in range(1, steps + 1):
        if schedule == "cosine":
            x = (t - 4) / max(steps - 4, 1)
            out.append(t / 4 if t <= 4 else 0.1 + 0.9 * 0.5 * (1.0 + float(np.cos(np.pi * x))))
        elif schedule == "alternate":
            out.append(1.0 if t % 2 else 0.25)
        else:
            out.append(0.9 ** (t - 1))
    return out


def has_grad(period: int, t: int) -> bool:
    """Whether an array with absence ``period`` has a gradient at step t: 0 always, -1 never
    (a frozen parameter), p >= 2 not on the steps t divisible by p."""
    return period == 0 or (period > 0 and t % period != 0)
