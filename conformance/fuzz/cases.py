"""Fuzz cases and the hypothesis strategies that draw them within a target's capabilities.

A :class:`Case` is a small, JSON-able description (shapes, per-array gradient kind and
magnitude, hyperparameters, horizon, data seed); the arrays are generated from it by
:func:`conformance.fuzz._gen.make_inputs` (NumPy only, so a reproducer script regenerates them).
Hypothesis shrinks the description, so a shrunk case is small in every dimension that does not
matter: sizes towards 1, magnitudes towards 1, hyperparameters towards the target's defaults,
horizons towards one step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..scenarios import ALL_DTYPES, Problem, Scenario
from ._gen import make_inputs

KINDS: tuple[str, ...] = ("normal", "zero", "onehot", "constant")
#: the largest array drawn (~2^18 elements) and the most element-steps per case (cost bound)
MAX_SIZE = 2**18
MAX_WORK = 2**16
MAX_STEPS = 2000
#: one case in LONG_ODDS draws its horizon from 1..MAX_STEPS (a step costs ~10 ms to judge)
LONG_ODDS = 24
#: sizes one off powers of two and off common chunk / block sizes, ascending
SPECIAL_SIZES: tuple[int, ...] = tuple(
    sorted({n + d for k in range(1, 19) for n in (2**k, 3 * 2**k) if n <= MAX_SIZE
            for d in (-1, 0, 1) if 0 < n + d <= MAX_SIZE})
)  # fmt: skip
#: log10 of the gradient magnitudes by dtype: wide in float64, narrower below
SCALE_RANGE: dict[str, int] = {"float64": 30, "float32": 15, "bfloat16": 6, "float16": 3}


@dataclass(frozen=True)
class Case:
    """One fuzz case: what the port and the reference are run on."""

    algorithm: str
    shapes: tuple[tuple[int, ...], ...]
    kinds: tuple[str, ...]
    scales: tuple[int, ...]  # log10 of each array's gradient magnitude
    hyper: tuple[tuple[str, Any], ...]  # changes from the target's base config
    steps: int
    seed: int

    def inputs(self) -> tuple[Any, Any]:
        return make_inputs(
            [list(s) for s in self.shapes], list(self.kinds), list(self.scales), self.steps,
            self.seed,
        )  # fmt: skip

    def problem(self) -> Problem:
        params0, grads = self.inputs()
        return Problem(params0, self.steps, grads=grads)

    def scenario(self, name: str = "fuzz") -> Scenario:
        """The case as a scenario the harness's driver runs (open loop)."""
        problem = self.problem()
        return Scenario(
            name, self.describe(), lambda _rng, _steps: problem, steps=self.steps,
            quick_steps=self.steps, seed=self.seed, hyper=dict(self.hyper),
            algorithms=(self.algorithm,), dtypes=ALL_DTYPES, tags=("fuzz",),
        )  # fmt: skip

    def config(self, base: Config) -> Config:
        return self.scenario().config(self.algorithm, base)

    def describe(self) -> str:
        arrays = ", ".join(
            f"{list(s)} {k} 1e{e}"
            for s, k, e in zip(self.shapes, self.kinds, self.scales, strict=True)
        )
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyper) or "defaults"
        return f"{self.steps} steps; arrays: {arrays}; {hyper}; seed {self.seed}"

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hyper"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.hyper}
        return d


@dataclass(frozen=True)
class Capabilities:
    """What the target can be asked: the hyperparameters it takes, its dtype."""

    algorithm: str
    dtype: str
    fields: frozenset[str]  # hyperparameters the target takes (reference field names)
    weight_decay_modes: tuple[str, ...]  # the modes it implements ("l2", "decoupled")


def base_of(algorithm: str) -> Config:
    return AdamConfig() if algorithm == "adam" else SETAdamConfig()


def probes(algorithm: str) -> dict[str, dict[str, Any]]:
    """The config changes asked of a target to learn its capabilities (name -> changes)."""
    out: dict[str, dict[str, Any]] = {
        "lr": {"lr": 1e-2}, "betas": {"betas": (0.5, 0.99)}, "eps": {"eps": 1e-4},
        "maximize": {"maximize": True},
        "wd:l2": {"weight_decay": 0.1, "weight_decay_mode": "l2"},
        "wd:decoupled": {"weight_decay": 0.1, "weight_decay_mode": "decoupled"},
    }  # fmt: skip
    if algorithm == "setadam":
        out["tau"] = {"tau": 0.9}
    else:
        out["amsgrad"] = {"amsgrad": True}
        out["eps_root"] = {"eps_root": 1e-10}
    return out


def _sizes() -> st.SearchStrategy[int]:
    small = tuple(n for n in SPECIAL_SIZES if n <= 8193)
    return st.one_of(
        st.just(1), st.integers(0, 16), st.integers(1, 64), st.sampled_from(small),
        st.sampled_from(SPECIAL_SIZES), st.integers(0, MAX_SIZE // 8),
    )  # fmt: skip


@st.composite
def _shape(draw: st.DrawFn) -> tuple[int, ...]:
    n = draw(_sizes())
    form = draw(st.sampled_from(("1d", "2d", "0d")))
    if form == "0d" and n == 1:
        return ()
    if form == "2d" and n > 1:
        rows = draw(st.sampled_from([d for d in range(1, min(n, 64) + 1) if n % d == 0]))
        return (rows, n // rows)
    return (n,)


@st.composite
def _hyper(draw: st.DrawFn, caps: Capabilities) -> tuple[tuple[str, Any], ...]:
    base = base_of(caps.algorithm)
    out: dict[str, Any] = {}
    f = caps.fields
    if "lr" in f:
        out["lr"] = draw(st.sampled_from((base.lr, 1e-2, 1e-1, 1e-5, 1.0)))
    if "betas" in f:
        b1 = draw(st.sampled_from((0.9, 0.0, 0.5, 0.99, 0.999)))
        b2 = draw(st.sampled_from((0.999, 0.9, 0.99, 0.9999, 0.99999, 0.5)))
        out["betas"] = (b1, b2)
    if "eps" in f:
        out["eps"] = draw(st.sampled_from((base.eps, 1e-16, 1e-12, 1e-6, 1e-3, 1e-1)))
    if "tau" in f:
        out["tau"] = draw(
            st.one_of(st.just(0.5), st.sampled_from((0.0, 0.9, 0.99)), st.floats(0.0, 0.99))
        )
    if "maximize" in f:
        out["maximize"] = draw(st.booleans())
    if "amsgrad" in f:
        out["amsgrad"] = draw(st.booleans())
    if "eps_root" in f:
        out["eps_root"] = draw(st.sampled_from((0.0, 1e-12, 1e-8)))
    if caps.weight_decay_modes:
        wd = draw(st.sampled_from((0.0, 1e-2, 0.1)))
        if wd:
            out["weight_decay"] = wd
            out["weight_decay_mode"] = draw(st.sampled_from(caps.weight_decay_modes))
    return tuple((k, v) for k, v in out.items() if getattr(base, k) != v)


@st.composite
def cases(draw: st.DrawFn, caps: Capabilities) -> Case:
    """Cases within ``caps``: 1-4 arrays, sizes 0..2^18 (one off powers of two and chunk sizes
    favoured), per-array gradient kinds and magnitudes, hyperparameters over their valid ranges,
    1..40 steps, one case in LONG_ODDS up to MAX_STEPS (fewer for big arrays: at most
    MAX_WORK element-steps)."""
    n = draw(st.integers(1, 4))
    shapes = tuple(draw(_shape()) for _ in range(n))
    kinds = tuple(draw(st.sampled_from(KINDS)) for _ in range(n))
    r = SCALE_RANGE.get(caps.dtype, 3)
    scales = tuple(draw(st.integers(-r, r)) for _ in range(n))
    hyper = draw(_hyper(caps))
    long = draw(st.integers(0, LONG_ODDS - 1)) == LONG_ODDS - 1
    steps = draw(
        st.integers(1, MAX_STEPS) if long else st.one_of(st.integers(1, 4), st.integers(1, 40))
    )
    size = sum(_numel(s) for s in shapes)
    steps = max(1, min(steps, MAX_WORK // max(size, 1)))
    seed = draw(st.integers(0, 2**16))
    return Case(caps.algorithm, shapes, kinds, scales, hyper, steps, seed)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
