r"""Whether one entry of a port's state is the running maximum of another over one probe step.

amsgrad's defining relation, checked on every coordinate (``state_discovery`` uses it to tell
vmax from v after the probe's second step): $\text{vmax}_2 = \max(\text{vmax}_1, c\,v_2)$
with one scalar $c > 0$ ($c = 1$ for torch's maximum of raw v, $1/(1-\beta_2^2)$ for a maximum
of the bias-corrected $\hat v$; estimated from the coordinates where vmax moved, else from step
1's ratio), to 4 units of roundoff $u$ of the entries' dtype, and $\text{vmax}_2 < c\,v_2$
nowhere while $\text{vmax}_2 > c\,v_2$ somewhere (v fell below its maximum): an entry equal to
v on every coordinate is not told from it.
"""

from __future__ import annotations

import math

import numpy as np

#: unit roundoff by the name of a dtype (a name not listed: float32's)
ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def roundoff(dtype: str) -> float:
    """The unit roundoff of a dtype named as the adapters name it (``torch.`` prefix allowed)."""
    return ROUNDOFF.get(dtype.replace("torch.", ""), 2.0**-24)


def is_running_max(
    v1: np.ndarray, v2: np.ndarray, m1: np.ndarray, m2: np.ndarray, u: float
) -> bool:
    """Whether ``m`` (values after steps 1 and 2) is the running maximum of ``v`` (module
    docstring); ``u``: the larger unit roundoff of the two entries' dtypes."""
    if not (v1.shape == v2.shape == m1.shape == m2.shape) or v1.size == 0:
        return False
    if not all(np.all(np.isfinite(x)) for x in (v1, v2, m1, m2)):
        return False
    tol = 4.0 * u
    moved = np.abs(m2 - m1) > tol * np.abs(m1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = m2[moved] / v2[moved] if moved.any() else m1 / v1
    c = float(np.median(ratio))
    if not (math.isfinite(c) and c > 0.0):
        return False
    want = np.maximum(m1, c * v2)
    if not bool(np.all(np.abs(m2 - want) <= tol * want)):
        return False
    return bool(np.any(c * v2 < m2 * (1.0 - tol)))
