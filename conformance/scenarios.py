"""Named, seeded, reproducible scenarios: initial parameters, a gradient stream or a loss, a horizon.

A scenario says which algorithms it applies to ("adam", "setadam") and which hyperparameters it
changes (reference field names: lr, betas, eps, eps_root, tau, weight_decay, weight_decay_mode,
amsgrad, amsgrad_mode, maximize). Open-loop scenarios fix the gradients in advance; closed-loop
scenarios give a gradient function of the parameters, evaluated at the port's *own* parameters
when the port runs free (every framework gets the same NumPy gradient function).

``list_scenarios()`` / ``get(name)`` / ``select(names, quick=...)`` are the public API;
``setadam-conformance scenarios`` prints the table.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from setadam_ref import AdamConfig, Config, SETAdamConfig

from .contract import GroupSpec

Arrays = tuple[np.ndarray, ...]
GradFn = Callable[[int, Arrays], Arrays]

ALGORITHMS: tuple[str, ...] = ("adam", "setadam")
ALL_DTYPES: tuple[str, ...] = ("float64", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Problem:
    """What a scenario hands the harness: initial params, layers, horizon and gradients."""

    params0: Arrays
    steps: int
    grads: tuple[Arrays, ...] | None = None  # open loop: gradients of steps 1..steps
    grad_fn: GradFn | None = None  # closed loop: grad_fn(t, params) -> grads of step t
    layers: tuple[tuple[int, ...], ...] | None = None
    # the contract beyond one group (conformance.contract); None = as the other scenarios
    groups: tuple[GroupSpec, ...] | None = None  # param groups and their hyperparameters
    lr_factors: tuple[float, ...] | None = None  # step t uses lr * lr_factors[t - 1]
    active: tuple[tuple[bool, ...], ...] | None = None  # array i has a gradient at step t
    lr_tensor: bool = False  # torch: group["lr"] a 0-d float64 tensor (conformance.contract)

    @property
    def closed_loop(self) -> bool:
        return self.grad_fn is not None

    def gradient(self, t: int, params: Arrays) -> Arrays:
        """Gradients of step ``t`` (1-based) at ``params`` (ignored for open loop)."""
        if self.grad_fn is not None:
            return tuple(np.asarray(g, dtype=np.float64) for g in self.grad_fn(t, params))
        assert self.grads is not None
        return self.grads[t - 1]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    builder: Callable[[np.random.Generator, int], Problem] = field(repr=False, compare=False)
    steps: int
    quick_steps: int
    seed: int = 0
    hyper: dict[str, Any] = field(default_factory=dict, compare=False)
    algorithms: tuple[str, ...] = ALGORITHMS
    dtypes: tuple[str, ...] = ALL_DTYPES
    quick: bool = False  # part of the --quick subset
    opt_in: bool = False  # too heavy for the default run: runs only when named (--scenario)
    #: the resume family: the free run goes through the port's checkpoint round trip after this
    #: step (``Port.resume``; ``drive.ScenarioDriver._resume``); re-synced steps are not run
    resume_after: int | None = None
    #: the layouts family: each array's memory layout in the port (``interface.LAYOUTS``,
    #: ``Port.lay_out``); None: every array contiguous, as the port makes it
    layouts: tuple[str, ...] | None = None
    #: the compiled family: the port steps through the compiled step users write
    #: (``Port.compile_step``; torch: ``torch.compile(opt.step)``); free run only
    compiled: bool = False
    tags: tuple[str, ...] = ()

    def applies_to(self, algorithm: str, dtype: str | None = None) -> bool:
        return algorithm in self.algorithms and (dtype is None or dtype in self.dtypes)

    def config(self, algorithm: str, base: Config | None = None) -> Config:
        """The reference config of this scenario for ``algorithm`` on top of ``base``."""
        if base is None:
            base = AdamConfig() if algorithm == "adam" else SETAdamConfig()
        if (algorithm == "adam") != isinstance(base, AdamConfig):
            raise ValueError(f"base config {type(base).__name__} does not match {algorithm!r}")
        names = {f.name for f in dataclasses.fields(base)}
        changes = {k: v for k, v in self.hyper.items() if k in names}
        cfg = dataclasses.replace(base, **changes)
        if cfg.weight_decay == 0 and cfg.weight_decay_mode != "l2":
            cfg = dataclasses.replace(cfg, weight_decay_mode="l2")  # normal form: mode irrelevant
        return cfg

    def problem(self, quick: bool = False) -> Problem:
        return self._quick_problem if quick else self._full_problem

    @cached_property
    def _full_problem(self) -> Problem:
        return self.builder(np.random.default_rng(self.seed), self.steps)

    @cached_property
    def _quick_problem(self) -> Problem:
        return self.builder(np.random.default_rng(self.seed), self.quick_steps)


# ----------------------------------------------------------------------------- builders


def _normal_params(rng: np.random.Generator, shapes: Sequence[tuple[int, ...]]) -> Arrays:
    return tuple(rng.standard_normal(s) for s in shapes)


def _open(
    shapes: Sequence[tuple[int, ...]],
    draw: Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray],
) -> Callable[[np.random.Generator, int], Problem]:
    """Open-loop builder: params ~ N(0, 1); gradient of array i at step t from ``draw``."""

    def build(rng: np.random.Generator, steps: int) -> Problem:
        params = _normal_params(rng, shapes)
        grads = tuple(
            tuple(draw(rng, s, i, t) for i, s in enumerate(shapes)) for t in range(1, steps + 1)
        )
        return Problem(params, steps, grads=grads)

    return build


def _gauss(scale: float = 1.0) -> Callable[[np.random.Generator, tuple[int, ...], int, int], Any]:
    def draw(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
        # arrays differ in scale, as layers of a network do
        return rng.standard_normal(s) * scale * (0.3 + 0.4 * (i % 3))

    return draw


def _log_uniform(lo: float, hi: float) -> Callable[..., np.ndarray]:
    def draw(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
        mag = 10.0 ** rng.uniform(np.log10(lo), np.log10(hi), size=s)
        return np.asarray(mag * rng.choice([-1.0, 1.0], size=s), dtype=np.float64)

    return draw


def _heavy(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    return np.asarray(rng.standard_t(1.5, size=s), dtype=np.float64)


def _zero_layers(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    if i in (1, 3):  # always zero: v stays 0, c is a convention
        return np.zeros(s)
    if i == 2 and t <= 3:  # zero first, then alive
        return np.zeros(s)
    if i == 4:  # one non-zero coordinate: c = 1/d
        g = np.zeros(s)
        g.flat[0] = rng.standard_normal()
        return g
    return rng.standard_normal(s)


def _drifting(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    # scale drifts over decades and comes back: exercises bias correction and v's memory
    scale = 10.0 ** (1.5 * np.sin(t / 40.0))
    return np.asarray(rng.standard_normal(s) * scale + 0.1 * np.cos(t / 7.0), dtype=np.float64)


def _decaying(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    # large gradients first, then small: amsgrad's running maximum matters
    return rng.standard_normal(s) * (4.0 if t <= 3 else 0.2)


def _quadratic(rng: np.random.Generator, steps: int) -> Problem:
    shapes = [(12,), (4, 5)]
    params = _normal_params(rng, shapes)
    h = tuple(10.0 ** rng.uniform(-1, 1, size=s) for s in shapes)
    centre = tuple(rng.standard_normal(s) for s in shapes)

    def grad_fn(t: int, p: Arrays) -> Arrays:
        return tuple(hi * (pi - ci) for hi, pi, ci in zip(h, p, centre, strict=True))

    return Problem(params, steps, grad_fn=grad_fn)


def rosen_der(x: np.ndarray) -> np.ndarray:
    """Gradient of the Rosenbrock function (scipy.optimize.rosen_der when scipy is present)."""
    try:
        from scipy.optimize import rosen_der as _rd
    except ImportError:  # pragma: no cover - scipy is a test dependency
        xm, xm_m1, xm_p1 = x[1:-1], x[:-2], x[2:]
        der = np.zeros_like(x)
        der[1:-1] = 200 * (xm - xm_m1**2) - 400 * (xm_p1 - xm**2) * xm - 2 * (1 - xm)
        der[0] = -400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0])
        der[-1] = 200 * (x[-1] - x[-2] ** 2)
        return der
    return np.asarray(_rd(x), dtype=np.float64)


def _rosenbrock(rng: np.random.Generator, steps: int) -> Problem:
    params = (rng.uniform(-1.5, 1.5, size=6), rng.uniform(-1.5, 1.5, size=3))

    def grad_fn(t: int, p: Arrays) -> Arrays:
        return tuple(rosen_der(np.asarray(x, dtype=np.float64)) for x in p)

    return Problem(params, steps, grad_fn=grad_fn)


def mlp_grad(p: Arrays, x: np.ndarray, y: np.ndarray) -> Arrays:
    """Gradient of the mean squared error of a tanh MLP (W1, b1, W2, b2) on data (x, y)."""
    w1, b1, w2, b2 = (np.asarray(a, dtype=np.float64) for a in p)
    z = x @ w1.T + b1
    h = np.tanh(z)
    out = h @ w2.T + b2
    n = x.shape[0]
    dout = 2.0 * (out - y) / n
    gw2 = dout.T @ h
    gb2 = dout.sum(axis=0)
    dz = (dout @ w2) * (1.0 - h * h)
    gw1 = dz.T @ x
    gb1 = dz.sum(axis=0)
    return gw1, gb1, gw2, gb2


def _mlp(rng: np.random.Generator, steps: int) -> Problem:
    n_in, n_hidden, batch = 8, 16, 32
    params = (
        rng.standard_normal((n_hidden, n_in)) / np.sqrt(n_in),
        np.zeros(n_hidden),
        rng.standard_normal((1, n_hidden)) / np.sqrt(n_hidden),
        np.zeros(1),
    )
    x = rng.standard_normal((batch, n_in))
    y = np.sin(x[:, :1]) + 0.1 * rng.standard_normal((batch, 1))

    def grad_fn(t: int, p: Arrays) -> Arrays:
        return mlp_grad(p, x, y)

    return Problem(params, steps, grad_fn=grad_fn)


# ----------------------------------------------------------------------------- scale families
# Big layers put every chunk, block and vector-width boundary of a fast kernel inside one layer
# (sizes one off a power of two and primes); many tensors go past a launcher's bounded tensor
# list. The budgets are the tolerance model's as for every scenario: its reduction lengths are
# the layer sizes, so nothing here is tuned.

#: 2^17 + 1 (a chunk of 2^16 leaves a tail of one) and 2^17 - 1 (a Mersenne prime: no power of
#: two divides it, so every block and vector width leaves a ragged tail)
BIG_LAYER_SIZES: tuple[int, ...] = (2**17 + 1, 2**17 - 1)
#: the heavy case, run only when named: 2^22 + 1 coordinates in one layer
HUGE_LAYER_SIZE = 2**22 + 1
#: tensors in the many-tensors group: past 256 (a launcher's usual bound) and 2^8 + 45
MANY_TENSORS = 301


def _big_layers(rng: np.random.Generator, steps: int) -> Problem:
    return _open([(n,) for n in BIG_LAYER_SIZES], _gauss())(rng, steps)


def _huge_layer(rng: np.random.Generator, steps: int) -> Problem:
    return _open([(HUGE_LAYER_SIZE,), (7,)], _gauss())(rng, steps)


def many_tensor_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Sizes 0..10^5, mostly small as in a network (biases, norms), with 2-D and empty ones."""
    sizes = np.round(10.0 ** rng.uniform(0.0, 3.0, size=MANY_TENSORS)).astype(int)
    sizes[[0, 97, 200, 280]] = 0  # empty tensors among the others, also past the 256th
    sizes[[13, 290]] = (100_000, 4099)
    shapes: list[tuple[int, ...]] = []
    for i, n in enumerate(sizes):
        if i % 5 == 4 and n >= 6:
            shapes.append((int(n) // 3, 3))  # a matrix of 3 columns: n rounded down
        else:
            shapes.append((int(n),))
    return shapes


def _many_tensors(rng: np.random.Generator, steps: int) -> Problem:
    return _open(many_tensor_shapes(rng), _gauss())(rng, steps)


# ----------------------------------------------------------------------------- the catalogue

_SMALL = [(8, 6), (6,), (20,)]
#: the layouts family's arrays: a conv stack's weights (channels_last), linear weights made as
#: transposes (as tied or transposed-init weights are), zero-size arrays among them
_LAID_OUT: list[tuple[tuple[int, ...], str]] = [
    ((24, 16), "transposed"), ((16,), "contiguous"), ((6, 3, 3, 3), "channels_last"),
    ((0,), "contiguous"), ((5, 7), "transposed"), ((4, 6, 1, 1), "channels_last"),
    ((3, 0), "transposed"), ((2, 4, 2, 3), "channels_last"), ((9,), "contiguous"),
]  # fmt: skip

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("normal", "Gaussian gradients, arrays of different scales", _open([(24, 16), (16,), (40,)], _gauss()),
             steps=15, quick_steps=8, seed=1, hyper={"lr": 1e-2}, quick=True, tags=("open",)),
    Scenario("heavy_tailed", "Student-t(1.5) gradients (outliers of 1e2..1e4)", _open(_SMALL, _heavy),
             steps=15, quick_steps=6, seed=2, hyper={"lr": 1e-2}, tags=("open",)),
    Scenario("tiny_gradients", "|g| log-uniform in [1e-12, 1e-4]: eps dominates", _open(_SMALL, _log_uniform(1e-12, 1e-4)),
             steps=15, quick_steps=6, seed=3, quick=True, dtypes=("float64", "float32", "bfloat16"), tags=("open", "range")),
    Scenario("huge_gradients", "|g| log-uniform in [1e2, 1e8]", _open(_SMALL, _log_uniform(1e2, 1e8)),
             steps=15, quick_steps=6, seed=4, dtypes=("float64", "float32", "bfloat16"), tags=("open", "range")),
    Scenario("zero_layers", "all-zero layers, a layer zero for 3 steps, a one-hot layer", _open([(10,), (7,), (9,), (3, 3), (12,)], _zero_layers),
             steps=10, quick_steps=6, seed=5, hyper={"lr": 1e-2}, quick=True, tags=("open", "edge")),
    Scenario("single_element", "layers of one coordinate (shapes (1,), (), (1, 1))", _open([(1,), (), (1, 1), (1,)], _gauss()),
             steps=10, quick_steps=5, seed=6, hyper={"lr": 1e-2}, quick=True, tags=("open", "edge")),
    Scenario("mixed_sizes", "layers of 1 to 2048 coordinates", _open([(1,), (3,), (17,), (64, 32), (1500,), (5, 7, 3)], _gauss()),
             steps=10, quick_steps=4, seed=7, tags=("open",)),
    Scenario("long_run", "300 steps, gradient scale drifting over 3 decades", _open([(8, 4), (4,), (16,)], _drifting),
             steps=300, quick_steps=40, seed=8, hyper={"lr": 1e-2}, tags=("open", "long")),
    Scenario("weight_decay_l2", "coupled (L2) weight decay 0.1", _open(_SMALL, _gauss()),
             steps=15, quick_steps=6, seed=9, hyper={"lr": 1e-2, "weight_decay": 0.1, "weight_decay_mode": "l2"}, quick=True, tags=("open", "wd")),
    Scenario("weight_decay_decoupled", "decoupled weight decay 0.1 (AdamW)", _open(_SMALL, _gauss()),
             steps=15, quick_steps=6, seed=10, hyper={"lr": 1e-2, "weight_decay": 0.1, "weight_decay_mode": "decoupled"}, quick=True, tags=("open", "wd")),
    Scenario("beta2_near_one", "betas (0.9, 0.99999)", _open(_SMALL, _gauss()),
             steps=15, quick_steps=6, seed=11, hyper={"betas": (0.9, 0.99999)}, tags=("open", "corner")),
    Scenario("tau_zero", "tau = 0 (no down-translating)", _open(_SMALL, _gauss()),
             steps=15, quick_steps=5, seed=12, hyper={"tau": 0.0}, algorithms=("setadam",), tags=("open", "corner")),
    Scenario("tau_0.9", "tau = 0.9 (strong down-translating: w - 0.9 min w)", _open(_SMALL, _gauss()),
             steps=15, quick_steps=5, seed=13, hyper={"tau": 0.9}, algorithms=("setadam",), quick=True, tags=("open", "corner")),
    Scenario("large_eps", "eps = 1e-2 with gradients of 0.1", _open(_SMALL, _gauss(0.1)),
             steps=15, quick_steps=5, seed=14, hyper={"eps": 1e-2}, tags=("open", "corner")),
    Scenario("amsgrad", "amsgrad (torch convention), large then small gradients", _open(_SMALL, _decaying),
             steps=15, quick_steps=6, seed=15, hyper={"amsgrad": True, "amsgrad_mode": "torch"}, algorithms=("adam",), tags=("open", "corner")),
    Scenario("maximize", "maximize = True", _open(_SMALL, _gauss()),
             steps=10, quick_steps=4, seed=16, hyper={"maximize": True}, tags=("open", "corner")),
    # the statistical verdict's probe (conformance.systematic): betas 1/2 and 3/4 are exact in every
    # scalar format and b_k = 1 - beta_k^t is well conditioned from step 1, so the floor of
    # legitimately rounded scalars is a few unit roundoffs; 16 steps (15 used) even in --quick;
    # float64 and float32, the dtypes of the sensitivity goals (the verdict runs on every
    # re-synced scenario in the half-precision dtypes too)
    Scenario("exact_betas", "betas (0.5, 0.75): exact, well-conditioned bias corrections", _open([(16, 16), (16, 8), (64,), (32,), (32,), (50,), (25,), (20,)], _gauss()),
             steps=16, quick_steps=16, seed=20, hyper={"betas": (0.5, 0.75), "lr": 1e-2}, quick=True,
             dtypes=("float64", "float32"), tags=("open", "corner")),
    Scenario("quadratic", "closed loop: diagonal quadratic, curvatures 0.1..10", _quadratic,
             steps=40, quick_steps=15, seed=17, hyper={"lr": 5e-2}, quick=True, tags=("closed",)),
    Scenario("rosenbrock", "closed loop: Rosenbrock (scipy.optimize.rosen_der) in 6 and 3 dimensions", _rosenbrock,
             steps=60, quick_steps=20, seed=18, hyper={"lr": 1e-2}, tags=("closed",)),
    Scenario("mlp", "closed loop: tanh MLP 8-16-1 on fixed data, NumPy gradient", _mlp,
             steps=25, quick_steps=10, seed=19, hyper={"lr": 1e-2}, tags=("closed",)),
    # scale families (docs/src/guide/harness.md, "Scale families")
    Scenario("big_layers", "layers of 2^17+1 and 2^17-1 (prime) coordinates: chunk and tail boundaries inside a layer", _big_layers,
             steps=2, quick_steps=1, seed=20, hyper={"lr": 1e-2}, quick=True, dtypes=("float64", "float32"), tags=("open", "scale", "big_layer")),
    Scenario("huge_layer", "one layer of 2^22+1 coordinates (opt-in: --scenario huge_layer)", _huge_layer,
             steps=2, quick_steps=1, seed=21, hyper={"lr": 1e-2}, dtypes=("float64", "float32"), opt_in=True, tags=("open", "scale", "big_layer", "heavy")),
    Scenario("resume", "checkpoint after step 3 (state_dict / state pytree to bytes), fresh optimizer, continue", _open(_SMALL, _gauss()),
             steps=10, quick_steps=6, seed=23, hyper={"lr": 1e-2}, resume_after=3, tags=("open", "resume")),
    Scenario("layouts", "transposed leaves, channels_last conv weights and zero-size arrays among contiguous ones", _open([s for s, _ in _LAID_OUT], _gauss()),
             steps=8, quick_steps=4, seed=24, hyper={"lr": 1e-2}, layouts=tuple(lay for _, lay in _LAID_OUT), tags=("open", "layout")),
    Scenario("compiled", "the open-loop stream through torch.compile(opt.step) (opt-in: --scenario compiled)", _open(_SMALL, _gauss()),
             steps=8, quick_steps=4, seed=25, hyper={"lr": 1e-2}, dtypes=("float64", "float32"), opt_in=True, compiled=True, tags=("open", "compiled", "heavy")),
    Scenario("many_tensors", "301 tensors in one group, sizes 0..10^5 (four empty, some past the 256th)", _many_tensors,
             steps=2, quick_steps=1, seed=22, hyper={"lr": 1e-2}, quick=True, dtypes=("float64", "float32"), tags=("open", "scale", "many_tensors")),
)  # fmt: skip


# ----------------------------------------------------------------------------- contract families
# Param groups, an lr schedule and sparse participation (conformance.contract; issue 12).

_GROUP_SHAPES = [(8, 6), (6,), (20,), (5, 4), (7,)]


def _with(build: Callable[[np.random.Generator, int], Problem], **contract: Any) -> Callable[
    [np.random.Generator, int], Problem
]:  # fmt: skip
    """``build`` with contract fields computed from the horizon: name -> f(steps)."""

    def wrapped(rng: np.random.Generator, steps: int) -> Problem:
        return dataclasses.replace(build(rng, steps), **{k: f(steps) for k, f in contract.items()})

    return wrapped


def _groups(steps: int) -> tuple[GroupSpec, ...]:
    """Three groups with their own lr, eps, tau and weight decay; the third never gets a gradient."""
    return (
        GroupSpec((0, 1), (("lr", 1e-2), ("weight_decay", 0.1))),
        GroupSpec(
            (2,),
            (
                ("lr", 3e-3),
                ("eps", 1e-6),
                ("tau", 0.9),
                ("betas", (0.8, 0.99)),
                ("weight_decay", 0.0),
            ),
        ),
        GroupSpec((3, 4), (("lr", 5e-2), ("eps", 1e-4), ("tau", 0.2), ("weight_decay", 0.3))),
    )


def _group_active(steps: int) -> tuple[tuple[bool, ...], ...]:
    return tuple((True, True, True, False, False) for _ in range(steps))


def warmup_cosine(steps: int, warmup: int = 4, floor: float = 0.1) -> tuple[float, ...]:
    """lr factors f_t: linear warm-up t / W for t <= W, then cosine from 1 down to ``floor``."""
    out = []
    for t in range(1, steps + 1):
        if t <= warmup:
            out.append(t / warmup)
        else:
            x = (t - warmup) / max(steps - warmup, 1)
            out.append(floor + (1.0 - floor) * 0.5 * (1.0 + float(np.cos(np.pi * x))))
    return tuple(out)


def _sparse_active(steps: int) -> tuple[tuple[bool, ...], ...]:
    """Array 1 without gradient on even steps, array 3 never; the others always."""
    return tuple((True, t % 2 == 1, True, False, True) for t in range(1, steps + 1))


_SPARSE_SHAPES = [(8, 6), (6,), (20,), (5,), (4, 3)]


def _layer_groups(steps: int) -> tuple[GroupSpec, ...]:
    return (GroupSpec((0, 1)), GroupSpec((2, 3)))


def _frozen_in_layer(steps: int) -> tuple[tuple[bool, ...], ...]:
    """Array 1 never gets a gradient; it shares its layer with array 0."""
    return tuple((True, False, True, True) for _ in range(steps))


def _stopped_in_layer(steps: int) -> tuple[tuple[bool, ...], ...]:
    """Array 1 with a gradient at steps 1 and 2 only: from step 3 it sits out with a v of its
    own (not 0), next to array 0 in its layer, whose statistics leave it out."""
    return tuple((True, t <= 2, True, True) for t in range(1, steps + 1))


#: the layers, shapes and draws of both ``sparse_layers`` scenarios (one seed: they differ in
#: who has a gradient only)
_LAYERED = [(6, 4), (5,), (8,), (3,)]


def _with_layers(build: Callable[[np.random.Generator, int], Problem]) -> Callable[
    [np.random.Generator, int], Problem
]:  # fmt: skip
    def wrapped(rng: np.random.Generator, steps: int) -> Problem:
        return dataclasses.replace(build(rng, steps), layers=((0, 1), (2, 3)))

    return wrapped


CONTRACT: tuple[Scenario, ...] = (
    Scenario("groups", "three param groups (own lr, eps, tau, betas, weight decay); one never gets a gradient",
             _with(_open(_GROUP_SHAPES, _gauss()), groups=_groups, active=_group_active),
             steps=10, quick_steps=5, seed=201, hyper={"lr": 1e-2}, quick=True,
             dtypes=("float64", "float32"), tags=("open", "contract", "groups")),
    Scenario("groups_decoupled", "as groups, weight decay decoupled (AdamW)",
             _with(_open(_GROUP_SHAPES, _gauss()), groups=_groups, active=_group_active),
             steps=10, quick_steps=5, seed=202, hyper={"lr": 1e-2, "weight_decay": 0.05, "weight_decay_mode": "decoupled"},
             dtypes=("float64", "float32"), tags=("open", "contract", "groups")),
    Scenario("schedules", "lr changed before every step: linear warm-up (4 steps) then cosine to 0.1 lr",
             _with(_open(_SMALL, _gauss()), lr_factors=warmup_cosine),
             steps=14, quick_steps=6, seed=203, hyper={"lr": 2e-2},
             dtypes=("float64", "float32"), tags=("open", "contract", "schedules")),
    Scenario("schedules_tensor_lr", "as schedules, group['lr'] a 0-d float64 tensor (torch; capturable and compiled runs)",
             _with(_open(_SMALL, _gauss()), lr_factors=warmup_cosine, lr_tensor=lambda steps: True),
             steps=8, quick_steps=6, seed=206, hyper={"lr": 2e-2},
             dtypes=("float64", "float32"), tags=("open", "contract", "schedules")),
    Scenario("sparse", "array 1 without gradient on even steps, array 3 never",
             _with(_open(_SPARSE_SHAPES, _gauss()), active=_sparse_active),
             steps=10, quick_steps=6, seed=204, hyper={"lr": 1e-2},
             dtypes=("float64", "float32"), tags=("open", "contract", "sparse")),
    Scenario("sparse_layers", "SET-Adam layers of two tensors (one param group each); array 1 never gets a gradient",
             _with(_with_layers(_open(_LAYERED, _gauss())), groups=_layer_groups,
                   active=_frozen_in_layer),
             steps=8, quick_steps=4, seed=205, hyper={"lr": 1e-2}, algorithms=("setadam",),
             dtypes=("float64", "float32"), tags=("open", "contract", "sparse")),
    Scenario("sparse_layers_stopped", "as sparse_layers (same draws), array 1 with a gradient at steps 1-2 only: skipped from step 3 with a v of its own",
             _with(_with_layers(_open(_LAYERED, _gauss())), groups=_layer_groups,
                   active=_stopped_in_layer),
             steps=8, quick_steps=4, seed=205, hyper={"lr": 1e-2}, algorithms=("setadam",),
             dtypes=("float64", "float32"), tags=("open", "contract", "sparse")),
)  # fmt: skip


# ----------------------------------------------------------------------------- sharding


def _row_scaled(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    # arrays and rows of different scales, so that the shards' statistics differ
    g = rng.standard_normal(s) * (0.3 + 0.4 * (i % 3))
    if len(s) >= 1 and s[0] > 1:
        g = g * np.geomspace(1.0, 8.0, s[0]).reshape((-1,) + (1,) * (len(s) - 1))
    return np.asarray(g, dtype=np.float64)


def _zero_rows(rng: np.random.Generator, s: tuple[int, ...], i: int, t: int) -> np.ndarray:
    # the second half of array 0's rows zero at steps 2 and 3: whole shards are zero on some ranks
    g = _row_scaled(rng, s, i, t)
    if i == 0 and 2 <= t <= 3:
        g[s[0] // 2 :] = 0.0
    return g


def _sharding(
    name: str, description: str, shapes: Sequence[tuple[int, ...]], seed: int,
    draw: Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray] = _row_scaled,
) -> Scenario:  # fmt: skip
    return Scenario(
        name, description, _open(shapes, draw), steps=8, quick_steps=4, seed=seed,
        hyper={"lr": 1e-2}, dtypes=("float64", "float32"), tags=("open", "sharding"),
    )  # fmt: skip


#: Shapes chosen for how ``Shard(0)`` splits them over 2, 4 and 8 ranks (DTensor gives each rank
#: ``ceil(n / N)`` rows, the last ones fewer or none). Checked by the sharded ports; not part of
#: the default selection of the others (the reference does not know about ranks).
SHARDING: tuple[Scenario, ...] = (
    _sharding("shard_even", "dim 0 divisible by 8", [(8, 6), (16,), (24, 3)], 101),
    _sharding("shard_uneven", "dim 0 of 5, 7, 9, 13: the last rank holds fewer rows",
              [(9, 5), (7,), (13, 2), (5, 3)], 102),
    _sharding("shard_fewer_rows", "1 to 3 rows and a 0-d array: some ranks hold nothing",
              [(1, 7), (3, 4), (2,), (1,), ()], 103),
    _sharding("shard_zero_size", "zero-size arrays among others", [(0, 4), (6,), (0,), (5, 2)], 104),
    _sharding("shard_big", "a layer of 64k entries", [(1024, 64), (64,)], 105),
    _sharding("shard_zero_rows", "half of a layer's rows zero at steps 2 and 3",
              [(8, 3), (6,)], 106, _zero_rows),
    _sharding("shard_groups", "seven arrays (the sharded ports deal them into two param groups)",
              [(4, 3), (3,), (6, 2), (5,), (2, 2), (7,), (3, 3)], 107),
)  # fmt: skip

_BY_NAME = {s.name: s for s in SCENARIOS + CONTRACT + SHARDING}


def list_scenarios() -> tuple[Scenario, ...]:
    return SCENARIOS + CONTRACT


def get(name: str) -> Scenario:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(_BY_NAME)}") from None


def select(names: Sequence[str] | None = None, quick: bool = False) -> list[Scenario]:
    """Scenarios matching ``names`` (glob patterns, the sharding scenarios included); all but
    the sharding ones (or the quick subset) when None."""
    if not names:
        return [s for s in SCENARIOS + CONTRACT if (s.quick or not quick) and not s.opt_in]
    out: list[Scenario] = []
    for pat in names:
        hits = [s for s in SCENARIOS + CONTRACT + SHARDING if fnmatch.fnmatchcase(s.name, pat)]
        if not hits:
            raise KeyError(f"no scenario matches {pat!r}; known: {', '.join(_BY_NAME)}")
        out.extend(h for h in hits if h not in out)
    return out


def opt_in_note() -> str:
    """The note ``run`` prints when no scenario is named: the opt-in scenarios it leaves out."""
    names = ", ".join(s.name for s in SCENARIOS if s.opt_in)
    return (
        f"opt-in scenarios not run (too heavy for the default run; name them with --scenario): "
        f"{names}; compiled compiles every port's step per dtype (10-120 s each, cold, 2 cores)"
    )


def table() -> str:
    """A plain-text table of every scenario (for ``setadam-conformance scenarios``)."""
    rows = [("name", "steps", "quick", "algorithms", "dtypes", "hyperparameters", "description")]
    for s in SCENARIOS + CONTRACT + SHARDING:
        hyper = ", ".join(f"{k}={v}" for k, v in s.hyper.items()) or "-"
        dts = "all" if s.dtypes == ALL_DTYPES else ",".join(s.dtypes)
        rows.append(
            (
                s.name,
                str(s.steps),
                "opt-in" if s.opt_in else "yes" if s.quick else "",
                ",".join(s.algorithms),
                dts,
                hyper,
                s.description,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        )
    return "\n".join(lines)
