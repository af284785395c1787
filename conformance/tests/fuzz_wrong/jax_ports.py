"""An optax Adam with a mistake only an lr schedule shows, as an outside implementer writes it.

``schedule_read_once_adam``: takes ``learning_rate`` as optax does (a number or a schedule of
the count) but reads a schedule once, at count 0, and builds a constant-lr ``optax.adam`` from
that value (the author "resolved the schedule early" for speed). Right for a constant lr and for
the first step of any schedule; wrong from the first step whose factor differs from step 1's.
"""

from __future__ import annotations

from typing import Any

import optax


def schedule_read_once_adam(
    learning_rate: Any, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    lr = float(learning_rate(0)) if callable(learning_rate) else learning_rate
    return optax.adam(lr, b1=b1, b2=b2, eps=eps)
