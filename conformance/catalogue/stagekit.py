r"""Building blocks of the catalogue's variant stage functions (shared by its entry modules).

- ``each``: an (E) stage from its element-wise formula;
- ``with_cos2`` / ``cos2_from_sums``: a layer's $c_l$ replaced, from plain sums $S_1 = \sum v$,
  $S_2 = \sum v^2$ over the layer's $d$ coordinates;
- ``with_context``: a stage run under a transformed ``Context`` (a scalar computed otherwise:
  kept in float32, another step's bias correction);
- ``array_index``: which array of the step a stage's operand is (stages receive a layer's arrays;
  a variant that looks at another quantity of the same array finds it by identity).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from setadam_ref import stages
from setadam_ref.arrays import F64Array
from setadam_ref.config import SETAdamConfig
from setadam_ref.context import Context
from setadam_ref.stages import LayerMoments

Arrays = tuple[F64Array, ...]
Elementwise = Callable[[F64Array, F64Array, float, Context], F64Array]
F = TypeVar("F", bound=Callable[..., Any])


def each(fn: Elementwise) -> Callable[[Arrays, Arrays, float, Context], Arrays]:
    """An (E) stage from its element-wise formula ``fn(vs, v, c, ctx)``."""

    def embed(vs: Arrays, v: Arrays, c: float, ctx: Context) -> Arrays:
        return tuple(fn(x, y, c, ctx) for x, y in zip(vs, v, strict=True))

    return embed


def tau_of(ctx: Context) -> float:
    """$\\tau$ of a SET-Adam context."""
    assert isinstance(ctx.config, SETAdamConfig)
    return ctx.config.tau


def with_cos2(v: Arrays, c: float) -> LayerMoments:
    """The layer's statistics with $c_l$ replaced by ``c``."""
    return stages.layer_moments(v)._replace(cos2=c)


def cat(arrays: Sequence[F64Array]) -> F64Array:
    """One flat array of a layer's arrays."""
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def cos2_from_sums(
    form: Callable[[float, float, int], float], *, zero_layer: bool = True
) -> Callable[[Arrays, Context], LayerMoments]:
    """(S) statistics with $c_l$ = ``form(S1, S2, d)`` in plain sums. An all-zero layer keeps the
    reference's $c = 1$ (any $c$ gives $c \\cdot 0 = 0$) unless ``zero_layer`` is False, so a
    variant changes one thing: its formula on non-zero layers."""

    def statistics(v: Arrays, ctx: Context) -> LayerMoments:
        x = cat(v)
        s1, s2 = float(np.sum(x)), float(np.sum(x * x))
        if zero_layer and s2 == 0.0:
            return with_cos2(v, 1.0)
        with np.errstate(all="ignore"):
            return with_cos2(v, form(s1, s2, int(x.size)))

    return statistics


def divide(a: float, b: float) -> float:
    """IEEE $a / b$ on floats (0/0 = NaN, x/0 = inf), as a port's tensor arithmetic gives it."""
    return float(np.divide(np.float64(a), np.float64(b)))


def with_context(fn: F, transform: Callable[[Context], Context]) -> F:
    """``fn`` (any stage function; its last argument is the context) under ``transform(ctx)``."""

    def staged(*args: Any) -> Any:
        return fn(*args[:-1], transform(args[-1]))

    return staged  # type: ignore[return-value]


def f32(x: float) -> float:
    """``x`` rounded to float32 (a scalar a port keeps in single precision)."""
    return float(np.float32(x))


def one_minus_power_f32(beta: float, t: int) -> float:
    """$1 - \\beta^t$ evaluated in float32 throughout, as ``1 - beta ** step`` on a float32 step
    tensor computes it (the subtraction cancels: its relative error is about $u_{32}/(1-\\beta^t)$)."""
    b = np.float32(beta)
    return float(np.float32(1.0) - np.power(b, np.float32(t)))


def array_index(x: F64Array, arrays: Sequence[F64Array]) -> int:
    """The index of the array object ``x`` in ``arrays`` (by identity)."""
    for i, a in enumerate(arrays):
        if a is x:
            return i
    raise LookupError("operand is not one of the step's arrays")


def layer_indices(xs: Sequence[F64Array], arrays: Sequence[F64Array]) -> list[int]:
    """``array_index`` of every array of a layer."""
    return [array_index(x, arrays) for x in xs]


def sqrt_or_nan(x: float) -> float:
    return math.sqrt(x) if x >= 0.0 else math.nan
