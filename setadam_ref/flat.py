"""The flattened working set of one step: 1-D float64 views of the inputs, fresh outputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .arrays import F64Array
from .blocks import Block


@dataclass
class FlatStep:
    """Inputs as 1-D float64 arrays (never written) and the step's own output buffers."""

    shapes: tuple[tuple[int, ...], ...]
    p: list[F64Array]
    g: list[F64Array]
    m: list[F64Array]
    v: list[F64Array]
    p_out: list[F64Array]
    m_out: list[F64Array]
    v_out: list[F64Array]
    check_finite: bool

    @property
    def sizes(self) -> list[int]:
        return [a.size for a in self.p]

    def traced(self) -> list[F64Array]:
        """A fresh set of per-array buffers for one traced quantity."""
        return [np.empty(n) for n in self.sizes]

    def output_suspect(self, b: Block) -> bool:
        """Cheap test, once block ``b`` of the new parameters is written: could it hold NaN/Inf?

        A non-finite g or theta always reaches the new theta (through m, v and the layer
        statistics), so one sum of the output block screens both inputs. A sum of finite values
        can overflow, so True only means "count exactly"; False is certain.
        """
        if not self.check_finite:
            return False
        return not math.isfinite(float(self.p_out[b.array][b.start : b.stop].sum()))

    def shaped(self, arrays: list[F64Array]) -> tuple[F64Array, ...]:
        out = []
        for a, shape in zip(arrays, self.shapes, strict=False):
            r = a.reshape(shape)
            r.flags.writeable = False
            out.append(r)
        return tuple(out)
