"""Fuzz cases and the hypothesis strategies that draw them within a target's capabilities.

A :class:`Case` is a small, JSON-able description (shapes, per-array gradient kind and
magnitude, hyperparameters, horizon, data seed and, where the target takes the contract, param
groups, an lr schedule and absent gradients); the arrays are generated from it by
:func:`conformance.fuzz._gen.make_inputs` (NumPy only, so a reproducer script regenerates them).
Hypothesis shrinks the description, so a shrunk case is small in every dimension that does not
matter: sizes towards 1, magnitudes towards 1, hyperparameters towards the target's defaults,
horizons towards one step, one group, constant lr, every gradient.

**The horizon is one integer.** Row t of the gradients depends on the seed and the shapes only,
never on the horizon, and the schedule's f_t on t (and, for the cosine, the horizon), so
shrinking ``steps`` alone cuts the case to a prefix: hypothesis's integer shrinker then bisects
towards the first failing step. **Cost model**: a case costs about ``steps * (elements +
STEP_COST)`` element-steps to judge (the per-step overhead of the tolerance model and the
worker round trip is that of ~``STEP_COST`` elements); one case in ``LONG_ODDS`` is *long*
(``LONG_STEPS`` steps, up to ``MAX_STEPS``), and a long case has one or two arrays of at most
``LONG_SIZE`` elements, beta2 drawn near 1 (``LONG_BETA2``): the horizons where a late-step
mistake shows, at the least cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..contract import GroupSpec
from ..scenarios import ALL_DTYPES, Problem, Scenario
from ._gen import has_grad, lr_factors, make_inputs

KINDS: tuple[str, ...] = ("normal", "zero", "onehot", "constant")
#: the largest array drawn (~2^18 elements) and the most element-steps per case (cost bound)
MAX_SIZE = 2**18
MAX_WORK = 2**16
MAX_STEPS = 2000
#: one case in LONG_ODDS is long: LONG_STEPS steps, 1-2 arrays of <= LONG_SIZE elements
LONG_ODDS = 4
LONG_STEPS = (1, MAX_STEPS)
LONG_SIZE = 8
#: beta2 of a long case, the first (what a shrunk case keeps) the nearest 1 of common use
LONG_BETA2: tuple[float, ...] = (0.9999, 0.99999, 0.999, 0.99)
#: the per-step cost of judging, in elements (tolerance model + worker round trip)
STEP_COST = 256
#: the contract features a case may draw (Capabilities.contract), and the schedules by name
CONTRACT: tuple[str, ...] = ("groups", "schedule", "sparse")
CONTRACT_ODDS = 2
SCHEDULES: tuple[str, ...] = ("cosine", "alternate", "decay")
#: the absence periods of an array (``_gen.has_grad``): always, every 2nd / 3rd step, never
PERIODS: tuple[int, ...] = (0, 2, 3, -1)
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
    #: param groups: (arrays, the group's changes on top of ``hyper``); () = one group
    groups: tuple[tuple[tuple[int, ...], tuple[tuple[str, Any], ...]], ...] = ()
    schedule: str = ""  # an lr schedule of SCHEDULES (``_gen.lr_factors``); "" = constant lr
    absent: tuple[int, ...] = ()  # per array its absence period (``_gen.has_grad``); () = none

    @property
    def contract(self) -> bool:
        """Whether the case asks for more than one group, constant lr and every gradient."""
        return bool(self.groups or self.schedule or any(self.absent))

    def inputs(self) -> tuple[Any, Any]:
        return make_inputs(
            [list(s) for s in self.shapes], list(self.kinds), list(self.scales), self.steps,
            self.seed,
        )  # fmt: skip

    def active(self) -> tuple[tuple[bool, ...], ...] | None:
        if not any(self.absent):
            return None
        return tuple(tuple(has_grad(p, t) for p in self.absent) for t in range(1, self.steps + 1))

    def problem(self) -> Problem:
        params0, grads = self.inputs()
        groups = tuple(GroupSpec(a, h) for a, h in self.groups) or None
        factors = tuple(lr_factors(self.schedule, self.steps)) if self.schedule else None
        return Problem(params0, self.steps, grads=grads, groups=groups, lr_factors=factors,
                       active=self.active())  # fmt: skip

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
        extra = ""
        if self.groups:
            extra += "; groups: " + ", ".join(
                f"{list(a)} {', '.join(f'{k}={v!r}' for k, v in h) or 'as above'}"
                for a, h in self.groups
            )
        if self.schedule:
            extra += f"; lr schedule {self.schedule}"
        if any(self.absent):
            extra += f"; gradient absence periods {list(self.absent)}"
        return f"{self.steps} steps; arrays: {arrays}; {hyper}{extra}; seed {self.seed}"

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hyper"] = _json_hyper(self.hyper)
        d["groups"] = [{"arrays": list(a), "hyper": _json_hyper(h)} for a, h in self.groups]
        d["absent"] = list(self.absent)
        return d


def _json_hyper(hyper: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hyper}


@dataclass(frozen=True)
class Capabilities:
    """What the target can be asked: the hyperparameters it takes, its dtype."""

    algorithm: str
    dtype: str
    fields: frozenset[str]  # hyperparameters the target takes (reference field names)
    weight_decay_modes: tuple[str, ...]  # the modes it implements ("l2", "decoupled")
    contract: frozenset[str] = frozenset()  # the CONTRACT features it takes (probed)


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
def _hyper(draw: st.DrawFn, caps: Capabilities, long: bool) -> tuple[tuple[str, Any], ...]:
    base = base_of(caps.algorithm)
    out: dict[str, Any] = {}
    f = caps.fields
    if "lr" in f:
        out["lr"] = draw(st.sampled_from((base.lr, 1e-2, 1e-1, 1e-5, 1.0)))
    if "betas" in f:
        b1 = draw(st.sampled_from((0.9, 0.0, 0.5, 0.99, 0.999)))
        b2s = LONG_BETA2 if long else (0.999, 0.9, 0.99, 0.9999, 0.99999, 0.5)
        b2 = draw(st.sampled_from(b2s))
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
def _groups(
    draw: st.DrawFn, caps: Capabilities, n: int
) -> tuple[tuple[tuple[int, ...], tuple[tuple[str, Any], ...]], ...]:
    """2-3 param groups over the n arrays (contiguous runs, none empty), each with its own lr,
    eps, weight decay (in a mode the target implements) and tau where taken; () for one array."""
    if n < 2:
        return ()
    k = draw(st.integers(2, min(3, n)))
    out = []
    for g in range(k):
        arrays = tuple(i for i in range(n) if i * k // n == g)
        h: dict[str, Any] = {}
        if "lr" in caps.fields:
            h["lr"] = draw(st.sampled_from((1e-3, 1e-2, 1e-4, 0.1)))
        if "eps" in caps.fields:
            h["eps"] = draw(st.sampled_from((1e-8, 1e-6, 1e-12, 1e-3)))
        if "tau" in caps.fields:
            h["tau"] = draw(st.sampled_from((0.5, 0.0, 0.2, 0.9)))
        if caps.weight_decay_modes:
            h["weight_decay"] = draw(st.sampled_from((0.0, 1e-2, 0.1)))
            h["weight_decay_mode"] = draw(st.sampled_from(caps.weight_decay_modes))
        out.append((arrays, tuple(h.items())))
    return tuple(out)


@st.composite
def cases(draw: st.DrawFn, caps: Capabilities) -> Case:
    """Cases within ``caps``: 1-4 arrays, sizes 0..2^18 (one off powers of two and chunk sizes
    favoured), per-array gradient kinds and magnitudes, hyperparameters over their valid ranges,
    1..40 steps, one case in LONG_ODDS long (module docstring: the cost model), at most
    MAX_WORK element-steps; param groups, an lr schedule and absent gradients where the target
    takes them (``caps.contract``)."""
    long = draw(st.integers(0, LONG_ODDS - 1)) == LONG_ODDS - 1
    if long:
        n = draw(st.integers(1, 2))
        shapes: tuple[tuple[int, ...], ...] = tuple(
            (draw(st.integers(1, LONG_SIZE)),) for _ in range(n)
        )
    else:
        n = draw(st.integers(1, 4))
        shapes = tuple(draw(_shape()) for _ in range(n))
    kinds = tuple(draw(st.sampled_from(KINDS)) for _ in range(n))
    r = SCALE_RANGE.get(caps.dtype, 3)
    scales = tuple(draw(st.integers(-r, r)) for _ in range(n))
    hyper = draw(_hyper(caps, long))
    if long:
        steps = draw(st.integers(*LONG_STEPS))
    else:
        steps = draw(st.one_of(st.integers(1, 4), st.integers(1, 40)))
    size = sum(_numel(s) for s in shapes)
    steps = max(1, min(steps, MAX_WORK // max(size, 1)))
    seed = draw(st.integers(0, 2**16))
    # each contract feature in about one case of CONTRACT_ODDS (a gate that shrinks to "off")
    on = {
        c: c in caps.contract and draw(st.integers(0, CONTRACT_ODDS - 1)) == CONTRACT_ODDS - 1
        for c in CONTRACT
    }
    groups = draw(_groups(caps, n)) if on["groups"] else ()
    schedule = draw(st.sampled_from(SCHEDULES)) if on["schedule"] else ""
    absent: tuple[int, ...] = ()
    if on["sparse"]:
        absent = tuple(draw(st.sampled_from(PERIODS)) for _ in range(n))
        # at least one array has a gradient at every step: a step without any once gave a false
        # alarm under a schedule (fixed in the harness: such re-synced steps are not compared);
        # still not drawn, so the meta-tests' seeded searches stay the ones measured
        absent = absent if any(absent) and 0 in absent else ()
    return Case(caps.algorithm, shapes, kinds, scales, hyper, steps, seed, groups, schedule,
                absent)  # fmt: skip


def cost(case: Case) -> int:
    """The case's judging cost in element-steps (module docstring)."""
    return case.steps * (sum(_numel(s) for s in case.shapes) + STEP_COST)


def probe_cases(algorithm: str) -> dict[str, Case]:
    """One tiny case per contract feature: the target takes the feature when its check does not
    skip it (``Capabilities.contract``)."""
    plain = Case(algorithm, ((2,), (3,)), ("normal", "normal"), (0, 0), (), 3, 0)
    return {
        "groups": dataclasses.replace(plain, groups=(((0,), (("lr", 1e-2),)), ((1,), ()))),
        "schedule": dataclasses.replace(plain, schedule="alternate"),
        "sparse": dataclasses.replace(plain, absent=(2, 0)),
    }


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
