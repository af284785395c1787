r"""The layer scalars of the compiled path, on the host: from the per-tensor partials of
:func:`~conformance.ports.torch_setadam.compiled_kernels.moments` to the table that
:func:`~conformance.ports.torch_setadam.compiled_kernels.update` takes.

The compiled path runs on CPU tensors, so the partials are host memory already (a zero-copy NumPy
view) and this arithmetic costs no transfer. Per layer $l$ of $d_l$ entries, in float64:

$$
c_l = \min\!\Big(\max\!\Big(\frac{S_1^2}{d_l S_2}, \frac{1}{d_l}\Big), 1\Big)
\quad (c_l = 1 \text{ where } S_2 = 0), \qquad
a = \frac{c_l}{1-\beta_2^t}, \qquad
\text{shift} = \tau \min_{i \in l} \sqrt{a_i \min v_i + \epsilon},
$$

with $a$ and $\sqrt{\cdot}$ rounded to each tensor's compute dtype (NumPy float32 arithmetic is
IEEE single precision, one rounding per operation, as the kernels round) and the shift rounded
to it at the end, as :mod:`~conformance.ports.torch_setadam.layer_stats` rounds them.

Overflow. $S_1 = \sum_j s_{1,j}$ and $S_2 = \sum_j s_{2,j}$ over the layer's tensors. Float32,
bfloat16 and float16 partials are unscaled and cannot overflow or underflow, and $c_l$ from them
equals $c_l$ from exactly power-of-two-scaled sums bit for bit, because scaling by a power of two
commutes with rounding in the normal range. A layer with float64 tensors picks one regime from
its largest entry $M$ (for a narrower tensor its $s_1 \ge \max v$ stands in, which lies in the
unscaled window whenever it is non-zero): unscaled sums for $2^{-400} \le M \le 2^{400}$, the
$2^{-600}$-scaled pair above, the $2^{+600}$-scaled pair below (narrower tensors' sums are scaled
on the host, exactly). In the chosen pair the largest term lies in $[2^{-474}, 2^{424}]$ and its
square in $[2^{-948}, 2^{848}]$, so $S_1^2$ and $d_l S_2$ are finite and normal for
$d_l < 2^{88}$; terms that underflow change $S_2$ by less than $d_l 2^{-126}$ relative. The sums
of $d_l$ float64 terms, in the kernels' order, are within $(d_l - 1)\,2^{-53}$ relative of
exact, as on the other paths (whose order differs). A NaN or infinite entry makes its layer's
$c_l$ and shift NaN.
"""

from __future__ import annotations

import numpy as np

from . import compiled_kernels as K

REGIME_HI, REGIME_LO = 2.0**400, 2.0**-400


def scaled_rows(
    parts: np.ndarray, wide: np.ndarray, layer: np.ndarray, n_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, whether its layer takes the $2^{-600}$-scaled sums (largest entry $M > 2^{400}$)
    and whether it takes the $2^{+600}$-scaled ones ($M < 2^{-400}$); neither: unscaled."""
    top_row = np.where(wide, parts[:, K.VMAX], parts[:, K.S1])
    top = np.full(n_layers, -np.inf)
    np.maximum.at(top, layer, top_row)
    return (top > REGIME_HI)[layer], (top < REGIME_LO)[layer]


def _regime_sums(
    parts: np.ndarray, wide: np.ndarray, layer: np.ndarray, n_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer $S_1$, $S_2$ of the rows ``parts`` (8 columns, float64 tensors ``wide``)."""
    s1, s2 = parts[:, K.S1], parts[:, K.S2]
    big, small = scaled_rows(parts, wide, layer, n_layers)
    f1 = np.where(big, K.DOWN, np.where(small, K.UP, 1.0))
    d1 = np.where(big[:, None], parts[:, [K.S1_DOWN, K.S2_DOWN]], parts[:, [K.S1_UP, K.S2_UP]])
    unscaled = ~(big | small)
    r1 = np.where(wide, np.where(unscaled, s1, d1[:, 0]), s1 * f1)
    r2 = np.where(wide, np.where(unscaled, s2, d1[:, 1]), s2 * f1 * f1)
    S1 = np.zeros(n_layers)
    S2 = np.zeros(n_layers)
    np.add.at(S1, layer, r1)
    np.add.at(S2, layer, r2)
    return S1, S2


def layer_scalars(
    parts: np.ndarray,
    wide: np.ndarray,
    single: np.ndarray,
    layer: np.ndarray,
    numel: np.ndarray,
    bias2: np.ndarray,
    *,
    eps: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""$(c_l, a, \text{shift})$ per tensor (float64 arrays, $a$ and the shift rounded to the
    compute dtype: float32 unless ``wide``).

    ``parts`` holds one row of partials per tensor (8 columns; tensors with narrower state fill
    the first 3), ``wide`` marks float64 state, ``single`` the tensors computed in float32,
    ``layer`` gives dense layer ids ``0..L-1``, ``numel`` the size $d_l$ of each layer and
    ``bias2`` $1-\beta_2^t$ per tensor. Overflow to infinity and NaN propagate silently.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _layer_scalars(parts, wide, single, layer, numel, bias2, eps, tau)


def _layer_scalars(
    parts: np.ndarray,
    wide: np.ndarray,
    single: np.ndarray,
    layer: np.ndarray,
    numel: np.ndarray,
    bias2: np.ndarray,
    eps: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_layers = int(numel.shape[0])
    if wide.any():
        S1, S2 = _regime_sums(parts, wide, layer, n_layers)
    else:
        S1 = np.zeros(n_layers)
        S2 = np.zeros(n_layers)
        np.add.at(S1, layer, parts[:, K.S1])
        np.add.at(S2, layer, parts[:, K.S2])
    c_layer = np.minimum(np.maximum(S1 * S1 / (numel * S2), 1.0 / numel), 1.0)
    c_layer = np.where(S2 == 0.0, 1.0, c_layer)
    c = c_layer[layer]
    a = c / bias2
    vmin = parts[:, K.VMIN]
    a32 = a.astype(np.float32)
    w32 = np.sqrt(a32 * vmin.astype(np.float32) + np.float32(eps)).astype(np.float64)
    w64 = np.sqrt(a * vmin + eps)
    a = np.where(single, a32.astype(np.float64), a)
    w_min = np.where(single, w32, w64)
    lay_min = np.full(n_layers, np.inf)
    np.minimum.at(lay_min, layer, w_min)
    shift64 = (lay_min * tau)[layer]
    shift = np.where(single, shift64.astype(np.float32).astype(np.float64), shift64)
    return c, a, shift
