"""Hand-made contract vectors (manifest version 2) for the tests, and outputs written the way a
C port writes them (one ``param``/``m``/``v`` record per step and array, hex floats).

- ``setadam-9101``: two param groups (their own lr and tau), the layer (0, 1) of which array 1
  is frozen (never a gradient: it must not count in its layer), array 2 without gradient every
  3rd step, a cosine-like lr factor per step;
- ``adam-9102``: AMSGrad (torch), two groups (one with decoupled weight decay and its own
  betas), array 1 without gradient every 2nd step, a decaying lr factor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from conformance.vectors.catalogue import VectorSpec, _grad_stream, _params

SHAPES = ((2, 2), (3,), (1,))
STEPS = 6


def _spec(
    vid: str, algorithm: str, groups: Any, layers: Any, active: Any, factors: Any
) -> VectorSpec:
    seed = sum(map(ord, vid))
    flags = ("param-groups", "lr-schedule", "absent-gradients")
    return VectorSpec(
        vid, algorithm, {}, SHAPES, layers, _params(seed, SHAPES), _grad_stream(seed, SHAPES, STEPS),
        flags, f"contract vector {vid} of the tests", groups=groups, lr_factors=factors,
        active=active,
    )  # fmt: skip


def specs() -> list[VectorSpec]:
    cos = tuple(0.1 + 0.45 * (1 + math.cos(math.pi * k / STEPS)) for k in range(STEPS))
    set_groups = (((0, 1), {"lr": 0.01, "tau": 0.5}), ((2,), {"lr": 0.05, "tau": 0.9}))
    set_active = tuple((True, False, k % 3 != 0) for k in range(1, STEPS + 1))
    adam_groups = (
        ((0,), {"lr": 0.01, "amsgrad": True}),
        ((1, 2), {"lr": 0.02, "amsgrad": True, "betas": (0.5, 0.75), "weight_decay": 0.1,
                  "weight_decay_mode": "decoupled"}),
    )  # fmt: skip
    adam_active = tuple((True, k % 2 != 0, True) for k in range(1, STEPS + 1))
    decay = tuple(0.75**k for k in range(STEPS))
    return [
        _spec("setadam-9101", "setadam", set_groups, ((0, 1), (2,)), set_active, cos),
        _spec("adam-9102", "adam", adam_groups, ((0,), (1,), (2,)), adam_active, decay),
    ]


def write_outputs(
    vec: dict[str, Any], rows: list[dict[str, list[list[float]]]], path: Path
) -> None:
    """Write ``rows`` (per step: params/m/v per array) as a port's text output for ``vec``."""
    lines = ["setadam-output 1", f"id {vec['id']}", "dtype float64"]
    for e, row in zip(vec["expected"], rows, strict=True):
        for key, kind in (("param", "params"), ("m", "m"), ("v", "v")):
            for i, a in enumerate(row[kind]):
                lines.append(" ".join([key, str(e["step"]), str(i), str(len(a)),
                                       *(float(x).hex() for x in a)]))  # fmt: skip
    path.write_text("\n".join([*lines, "end"]) + "\n")


def reference_rows(vec: dict[str, Any]) -> list[dict[str, list[list[float]]]]:
    """The vector's own expected values (what a correct port writes, to the last bit)."""
    return [
        {k: [[float.fromhex(x) for x in a] for a in e[k]] for k in ("params", "m", "v")}
        for e in vec["expected"]
    ]
