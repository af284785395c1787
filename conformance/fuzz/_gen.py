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
