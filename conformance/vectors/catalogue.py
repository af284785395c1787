"""The canonical golden vectors: what each one feeds the optimizer and what it targets.

Ids are written here by hand and never reused or renumbered: a vector that is withdrawn keeps
its id retired. Inputs come from a tiny self-contained generator (splitmix64), not from numpy's
random streams, so the inputs are bit-identical under every numpy and Python version. Values
are multiples of 2**-20 times a power-of-two scale where possible, which keeps their hex
encoding short.

Every flag a vector may carry is listed in :data:`FLAGS` with the bug class it targets; the
JSON Schema restricts ``flags`` to these names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from conformance.vectors.encoding import F64Array

Algorithm = str  # "adam" | "setadam"

#: flag -> the bug class a vector carrying it targets (documented in docs/src/guide/vectors.md).
FLAGS: dict[str, str] = {
    "basic": "the plain algorithm with default hyperparameters over a few steps; any gross error",
    "bias-correction-t1": "a single step from a fresh state: missing or misplaced bias "
    "correction (1 - beta^t), step counter starting at 0 instead of 1",
    "bias-correction-late": "a state resumed at t = 10000 with beta2 = 0.9999, where 1 - beta2^t "
    "is still far from 1: wrong t, a low-precision step counter, bias correction dropped "
    "after a warm-up",
    "resumed-state": "the vector starts from a given non-zero state (step, m, v): ports must "
    "load the state instead of starting fresh",
    "multi-step": "many steps (>= 32): accumulation of rounding, drift of the moments",
    "tiny-gradients": "gradients ~1e-10 so v << eps: eps placement (inside/outside the square "
    "root), guard constants in the layer statistics, underflow of v^2 in the cos^2 sums",
    "v-near-eps": "gradients ~1e-4 so v/(1-beta2^t) ~ eps: every SET stage changes the result; "
    "errors in c_l, in the embedding or in the translation all show",
    "zero-layer": "a layer whose gradients are all zero (v = 0): 0/0 in cos^2, NaN propagation",
    "sparse-gradients": "some exact zero gradients inside a layer: min v = 0, the translation "
    "is by tau*sqrt(eps)",
    "single-element": "layers of one coordinate: c_l = 1, w_min = w, the translation is "
    "(1 - tau) w; off-by-one in d_l",
    "empty-array": "a parameter array with zero elements: crashes, NaN from empty reductions, "
    "layer bookkeeping that skips an index",
    "constant-layer": "|g| constant inside a layer, so v is constant and c_l = 1 exactly",
    "one-hot-layer": "one non-zero gradient per layer, so c_l = 1/d_l exactly (the lower "
    "bound): wrong normalisation of cos^2 (d_l missing or squared)",
    "mixed-layer-sizes": "layers of very different sizes (1 to 15 coordinates): per-layer "
    "statistics taken over the wrong range, d_l of another layer",
    "grouped-layers": "several arrays forming one layer: statistics must run over the union",
    "l2-weight-decay": "coupled weight decay g <- g + lambda*theta, before the moments",
    "decoupled-weight-decay": "theta <- theta*(1 - lr*lambda) before the update (AdamW); "
    "forgetting the lr factor, applying it after the update",
    "maximize": "g <- -g; with l2 weight decay, the order of negation and decay",
    "amsgrad-torch": "AMSGrad as torch.optim: max over raw v, then bias correction",
    "amsgrad-optax": "AMSGrad as optax.amsgrad: max over bias-corrected v_hat",
    "eps-root": "eps inside the square root (optax eps_root), eps outside set to 0",
    "tau-zero": "tau = 0: no translation (SET-Adam reduces to a layerwise-scaled Adam)",
    "tau-near-one": "tau = 0.9: the translation w - tau*w_min cancels strongly, amplifying "
    "errors in w; a clamp or guard near w_min shows",
    "large-eps": "eps far above the usual 1e-8 (0.1, 2^-10): eps dominates the denominator; "
    "eps rounded or clamped in the working dtype shows",
    "beta1-zero": "beta1 = 0: m_t = g_t, bias correction 1 - 0^t = 1 (0^t evaluated as 0 for "
    "t >= 1)",
    "beta2-near-one": "beta2 = 0.99999: 1 - beta2^t ~ t*1e-5 is computed with cancellation; a "
    "naive float32 evaluation loses digits",
    "huge-values": "gradients ~1e150 (float64 only): sum v^2 overflows unless the cos^2 "
    "evaluation is scaled; overflow of g^2 in intermediate forms",
}

#: the flags of the contract vectors (manifest version 2 only: a version-1 set lists FLAGS alone)
CONTRACT_FLAGS: dict[str, str] = {
    "param-groups": "arrays in param groups with their own config (lr, betas, eps, weight decay, "
    "tau): a port applying the first group's options to every group",
    "lr-schedule": "the lr changes before every step (lr_t = lr * f_t in every group): an lr "
    "read once at construction, a schedule applied to one group only",
    "absent-gradients": "arrays without a gradient at some steps: such an array is not stepped "
    "(theta, m, v and its step count unchanged) and does not count in its layer",
}

DTYPES: tuple[str, ...] = ("float64", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class InitialState:
    step: int
    m: tuple[F64Array, ...]
    v: tuple[F64Array, ...]
    vmax: tuple[F64Array, ...] | None = None


@dataclass(frozen=True)
class VectorSpec:
    """What one vector feeds the reference. ``grads[s]`` is the gradient list of step s+1."""

    id: str
    algorithm: Algorithm
    config: dict[str, object]
    shapes: tuple[tuple[int, ...], ...]
    layers: tuple[tuple[int, ...], ...]
    params: tuple[F64Array, ...]
    grads: tuple[tuple[F64Array, ...], ...]
    flags: tuple[str, ...]
    description: str
    initial_state: InitialState | None = None
    #: dtypes for which the vector is not meaningful, with the reason (e.g. huge values).
    not_applicable: dict[str, str] = field(default_factory=dict)
    #: param groups (manifest version 2): per group its arrays and its full config (``config``
    #: is then unused); None: every array has ``config``
    groups: tuple[tuple[tuple[int, ...], dict[str, object]], ...] | None = None
    #: f_1..f_T: step k uses lr * f_k in every group (version 2); None: f_k = 1
    lr_factors: tuple[float, ...] | None = None
    #: active[k-1][i]: array i has a gradient at step k (version 2); None: every gradient.
    #: ``grads`` holds an array at every position (its values unused where inactive).
    active: tuple[tuple[bool, ...], ...] | None = None

    @property
    def contract(self) -> bool:
        """Whether the vector needs manifest version 2 (groups, lr factors or absences)."""
        return self.groups is not None or self.lr_factors is not None or self.active is not None


# --------------------------------------------------------------------------- input generation


class _SplitMix64:
    """splitmix64 (Steele, Lea, Flood 2014): a portable, version-independent integer stream."""

    def __init__(self, seed: int) -> None:
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def uniform(self) -> float:
        """A multiple of 2**-20 in [-1, 1), never exactly 0."""
        k = (self.next() >> 44) - (1 << 19)  # in [-2**19, 2**19)
        if k == 0:
            k = 1
        return k / float(1 << 19)


def _arrays(
    rng: _SplitMix64, shapes: Sequence[tuple[int, ...]], scale: float
) -> tuple[F64Array, ...]:
    out = []
    for shp in shapes:
        n = math.prod(shp)
        a = np.array([rng.uniform() * scale for _ in range(n)], dtype=np.float64)
        out.append(a.reshape(shp))
    return tuple(out)


def _grad_stream(
    seed: int,
    shapes: Sequence[tuple[int, ...]],
    steps: int,
    scale: float = 1.0,
    per_array_scale: Sequence[float] | None = None,
) -> tuple[tuple[F64Array, ...], ...]:
    rng = _SplitMix64(seed)
    out = []
    for _ in range(steps):
        gs = _arrays(rng, shapes, scale)
        if per_array_scale is not None:
            gs = tuple(g * s for g, s in zip(gs, per_array_scale, strict=True))
        out.append(gs)
    return tuple(out)


def _params(
    seed: int, shapes: Sequence[tuple[int, ...]], scale: float = 1.0
) -> tuple[F64Array, ...]:
    return _arrays(_SplitMix64(seed ^ 0x5EED), shapes, scale)


def _one_per_array(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    return tuple((i,) for i in range(len(shapes)))


def _map_grads(
    grads: tuple[tuple[F64Array, ...], ...], fn: Callable[[int, int, F64Array], F64Array]
) -> tuple[tuple[F64Array, ...], ...]:
    return tuple(tuple(fn(s, i, g) for i, g in enumerate(gs)) for s, gs in enumerate(grads))


# --------------------------------------------------------------------------------- catalogue

_S3: tuple[tuple[int, ...], ...] = ((2, 3), (4,), (1,))
_LOWP = ("float32", "bfloat16", "float16")


def _spec(
    id: str,
    algorithm: Algorithm,
    flags: Sequence[str],
    description: str,
    *,
    config: dict[str, object] | None = None,
    shapes: Sequence[tuple[int, ...]] = _S3,
    steps: int = 3,
    seed: int,
    gscale: float = 1.0,
    pscale: float = 1.0,
    layers: Sequence[tuple[int, ...]] | None = None,
    grads: tuple[tuple[F64Array, ...], ...] | None = None,
    initial_state: InitialState | None = None,
    not_applicable: dict[str, str] | None = None,
) -> VectorSpec:
    shapes = tuple(tuple(s) for s in shapes)
    for f in flags:
        if f not in FLAGS:
            raise ValueError(f"{id}: unknown flag {f!r}")
    return VectorSpec(
        id=id,
        algorithm=algorithm,
        config=dict(config or {}),
        shapes=shapes,
        layers=tuple(layers) if layers is not None else _one_per_array(shapes),
        params=_params(seed, shapes, pscale),
        grads=grads if grads is not None else _grad_stream(seed, shapes, steps, gscale),
        flags=tuple(flags),
        description=description,
        initial_state=initial_state,
        not_applicable=dict(not_applicable or {}),
    )


def _late_state(
    seed: int, shapes: Sequence[tuple[int, ...]], step: int, amsgrad: bool
) -> InitialState:
    """A plausible resumed state: m ~ 0.1*g, v ~ g^2 scale, positive."""
    rng = _SplitMix64(seed ^ 0x57A7E)
    m = _arrays(rng, shapes, 0.125)
    v = tuple(np.abs(a) * 0.25 + 2.0**-6 for a in _arrays(rng, shapes, 1.0))
    vmax = tuple(a * 1.5 for a in v) if amsgrad else None
    return InitialState(step=step, m=m, v=v, vmax=vmax)


def _build() -> tuple[VectorSpec, ...]:
    specs: list[VectorSpec] = []
    add = specs.append
    big = 2.0**500  # ~3.3e150: g^2 ~ 1e301, sum v^2 overflows float64 unless scaled
    huge_na = {d: "gradients ~1e150 are not representable in " + d for d in _LOWP}
    tiny = 2.0**-33  # ~1.2e-10
    near_eps = 2.0**-13  # ~1.2e-4: v_hat ~ 1.5e-8 ~ eps

    # ------------------------------------------------------------------ SET-Adam
    add(
        _spec(
            "setadam-0001",
            "setadam",
            ["basic"],
            "Default SET-Adam on three arrays (2x3, 4, 1), one layer each, four steps.",
            steps=4,
            seed=1,
        )
    )
    add(
        _spec(
            "setadam-0002",
            "setadam",
            ["bias-correction-t1"],
            "One step from a fresh state with gradients spread over four binades.",
            steps=1,
            seed=2,
            shapes=((3,), (5,)),
            grads=_map_grads(
                _grad_stream(2, ((3,), (5,)), 1),
                lambda s, i, g: g * np.array([1.0, 4.0, 16.0, 0.25, 2.0][: g.size]),
            ),
        )
    )
    late_shapes = ((3,), (2, 2))
    add(
        _spec(
            "setadam-0003",
            "setadam",
            ["bias-correction-late", "resumed-state"],
            "Resumed at step 10000 with betas (0.9, 0.9999); three more steps (t = 10001..10003).",
            config={"betas": (0.9, 0.9999)},
            shapes=late_shapes,
            steps=3,
            seed=3,
            initial_state=_late_state(3, late_shapes, 10000, False),
        )
    )
    add(
        _spec(
            "setadam-0004",
            "setadam",
            ["tiny-gradients"],
            "Gradients of magnitude ~1e-10 (v ~ 1e-23, far below eps = 1e-8); sum v^2 ~ 1e-46 "
            "underflows in float32 unless the cos^2 sums are scaled.",
            steps=3,
            seed=4,
            gscale=tiny,
        )
    )
    add(
        _spec(
            "setadam-0005",
            "setadam",
            ["zero-layer"],
            "Array 0 (3 entries) receives zero gradients at every step, so its layer has v = 0; "
            "array 1 is ordinary.",
            shapes=((3,), (4,)),
            steps=3,
            seed=5,
            grads=_map_grads(
                _grad_stream(5, ((3,), (4,)), 3), lambda s, i, g: g * 0.0 if i == 0 else g
            ),
        )
    )
    add(
        _spec(
            "setadam-0006",
            "setadam",
            ["single-element"],
            "Three layers of one coordinate each (shapes (1,), (), (1, 1)).",
            shapes=((1,), (), (1, 1)),
            steps=3,
            seed=6,
        )
    )
    add(
        _spec(
            "setadam-0007",
            "setadam",
            ["empty-array"],
            "Arrays of shapes (0,), (3,), (2, 0): the empty ones are their own (empty) layers.",
            shapes=((0,), (3,), (2, 0)),
            steps=3,
            seed=7,
        )
    )
    add(
        _spec(
            "setadam-0008",
            "setadam",
            ["l2-weight-decay"],
            "Coupled (l2) weight decay 0.1.",
            config={"weight_decay": 0.1, "weight_decay_mode": "l2"},
            steps=3,
            seed=8,
        )
    )
    add(
        _spec(
            "setadam-0009",
            "setadam",
            ["decoupled-weight-decay"],
            "Decoupled weight decay 0.1 with lr 0.01 (theta *= 0.999 before each update).",
            config={"lr": 0.01, "weight_decay": 0.1, "weight_decay_mode": "decoupled"},
            steps=3,
            seed=9,
        )
    )
    add(
        _spec(
            "setadam-0010",
            "setadam",
            ["maximize"],
            "maximize = True: the parameters ascend the gradient.",
            config={"maximize": True},
            steps=3,
            seed=10,
        )
    )
    add(
        _spec(
            "setadam-0011",
            "setadam",
            ["maximize", "l2-weight-decay"],
            "maximize with l2 weight decay 0.5: the gradient is negated first, then the decay "
            "term is added (g = -g + lambda*theta).",
            config={"maximize": True, "weight_decay": 0.5},
            steps=3,
            seed=11,
        )
    )
    add(
        _spec(
            "setadam-0012",
            "setadam",
            ["tau-zero", "v-near-eps"],
            "tau = 0 with gradients ~1e-4 (v_hat ~ eps): no translation.",
            config={"tau": 0.0},
            steps=3,
            seed=12,
            gscale=near_eps,
        )
    )
    add(
        _spec(
            "setadam-0013",
            "setadam",
            ["tau-near-one"],
            "tau = 0.9: w - 0.9*min(w) cancels strongly at the minimising coordinate.",
            config={"tau": 0.9},
            steps=3,
            seed=13,
        )
    )
    add(
        _spec(
            "setadam-0014",
            "setadam",
            ["large-eps"],
            "eps = 0.1, far above v.",
            config={"eps": 0.1},
            steps=3,
            seed=14,
        )
    )
    add(
        _spec(
            "setadam-0015",
            "setadam",
            ["beta2-near-one"],
            "betas (0.9, 0.99999): 1 - beta2^t ~ 1e-5 t.",
            config={"betas": (0.9, 0.99999)},
            steps=3,
            seed=15,
        )
    )
    add(
        _spec(
            "setadam-0016",
            "setadam",
            ["huge-values"],
            "Gradients ~1e150: v ~ 1e297 and sum v^2 overflows float64 unless the cos^2 "
            "evaluation is scaled (float64 only).",
            steps=2,
            seed=16,
            gscale=big,
            not_applicable=huge_na,
        )
    )
    add(
        _spec(
            "setadam-0017",
            "setadam",
            ["mixed-layer-sizes"],
            "Layers of 1, 2, 7 and 15 coordinates (shapes (1,), (2,), (7,), (3, 5)).",
            shapes=((1,), (2,), (7,), (3, 5)),
            steps=3,
            seed=17,
        )
    )
    add(
        _spec(
            "setadam-0018",
            "setadam",
            ["grouped-layers"],
            "Arrays 0 (2x3) and 1 (3) form one layer (a weight and its bias); array 2 is alone.",
            shapes=((2, 3), (3,), (4,)),
            layers=((0, 1), (2,)),
            steps=3,
            seed=18,
        )
    )
    add(
        _spec(
            "setadam-0019",
            "setadam",
            ["constant-layer"],
            "|g| is constant inside each layer at each step (signs vary), so v is constant "
            "and c_l = 1 exactly.",
            shapes=((4,), (2, 2)),
            steps=3,
            seed=19,
            grads=_map_grads(
                _grad_stream(19, ((4,), (2, 2)), 3),
                lambda s, i, g: np.sign(g) * abs(float(g.reshape(-1)[0])),
            ),
        )
    )

    def _one_hot(s: int, i: int, g: F64Array) -> F64Array:
        out = np.zeros_like(g)
        flat = out.reshape(-1)
        flat[(i + 1) % g.size] = float(g.reshape(-1)[0])
        return out

    add(
        _spec(
            "setadam-0020",
            "setadam",
            ["one-hot-layer"],
            "Exactly one non-zero gradient per layer, always at the same coordinate, so "
            "c_l = 1/d_l exactly.",
            shapes=((5,), (2, 3)),
            steps=3,
            seed=20,
            grads=_map_grads(_grad_stream(20, ((5,), (2, 3)), 3), _one_hot),
        )
    )
    add(
        _spec(
            "setadam-0021",
            "setadam",
            ["multi-step"],
            "40 steps with lr 0.01 on two small layers (3 and 2 coordinates).",
            config={"lr": 0.01},
            shapes=((3,), (2,)),
            steps=40,
            seed=21,
        )
    )
    add(
        _spec(
            "setadam-0022",
            "setadam",
            ["beta1-zero"],
            "betas (0.0, 0.999): m_t = g_t.",
            config={"betas": (0.0, 0.999)},
            steps=3,
            seed=22,
        )
    )
    add(
        _spec(
            "setadam-0023",
            "setadam",
            ["v-near-eps", "grouped-layers"],
            "Gradients ~1e-4 so v_hat ~ eps: down-scaling, embedding and translation all "
            "matter; arrays 1 and 2 share a layer.",
            layers=((0,), (1, 2)),
            steps=3,
            seed=23,
            gscale=near_eps,
        )
    )

    def _sparse(s: int, i: int, g: F64Array) -> F64Array:
        out: F64Array = g.copy().reshape(-1)
        out[(s + i) % out.size] = 0.0
        if out.size > 3:
            out[(s + i + 2) % out.size] = 0.0
        return out.reshape(g.shape)

    add(
        _spec(
            "setadam-0024",
            "setadam",
            ["sparse-gradients", "v-near-eps"],
            "Exact zero gradients inside each layer; first step leaves some v exactly 0.",
            shapes=((6,), (3,)),
            steps=3,
            seed=24,
            gscale=near_eps,
            grads=_map_grads(_grad_stream(24, ((6,), (3,)), 3), _sparse),
        )
    )

    add(
        _spec(
            "setadam-0025",
            "setadam",
            ["large-eps", "mixed-layer-sizes", "decoupled-weight-decay"],
            "eps = 2^-10 (~1e-3, a normal float16 number) with layers of 1, 3 and 8 "
            "coordinates and decoupled weight decay 0.01: a SET-Adam vector that half-precision "
            "ports can be held to.",
            config={"eps": 2.0**-10, "weight_decay": 0.01, "weight_decay_mode": "decoupled"},
            shapes=((1,), (3,), (2, 4)),
            steps=4,
            seed=25,
        )
    )

    # ---------------------------------------------------------------------- Adam
    add(
        _spec(
            "adam-0001",
            "adam",
            ["basic"],
            "Default Adam (torch.optim.Adam conventions) on three arrays, four steps.",
            steps=4,
            seed=101,
        )
    )
    add(
        _spec(
            "adam-0002",
            "adam",
            ["bias-correction-t1"],
            "One step from a fresh state.",
            steps=1,
            seed=102,
            shapes=((5,),),
        )
    )
    add(
        _spec(
            "adam-0003",
            "adam",
            ["bias-correction-late", "resumed-state"],
            "Resumed at step 10000 with betas (0.9, 0.9999); three more steps.",
            config={"betas": (0.9, 0.9999)},
            shapes=late_shapes,
            steps=3,
            seed=103,
            initial_state=_late_state(103, late_shapes, 10000, False),
        )
    )
    add(
        _spec(
            "adam-0004",
            "adam",
            ["eps-root", "sparse-gradients"],
            "eps = 0, eps_root = 1e-8 (optax style): zero gradients give v = 0 and a finite "
            "update.",
            config={"eps": 0.0, "eps_root": 1e-8},
            shapes=((6,),),
            steps=3,
            seed=104,
            grads=_map_grads(_grad_stream(104, ((6,),), 3), _sparse),
        )
    )

    def _decaying(s: int, i: int, g: F64Array) -> F64Array:
        return g * (2.0 ** (-2 * s))

    add(
        _spec(
            "adam-0005",
            "adam",
            ["amsgrad-torch"],
            "AMSGrad (torch convention, max over raw v) with gradients shrinking 4x per step, "
            "so v_max stays above v.",
            config={"amsgrad": True, "amsgrad_mode": "torch", "betas": (0.9, 0.99)},
            shapes=((4,), (2,)),
            steps=5,
            seed=105,
            grads=_map_grads(_grad_stream(105, ((4,), (2,)), 5), _decaying),
        )
    )
    add(
        _spec(
            "adam-0006",
            "adam",
            ["amsgrad-optax"],
            "AMSGrad (optax convention, max over bias-corrected v_hat), same inputs as "
            "adam-0005: the results differ.",
            config={"amsgrad": True, "amsgrad_mode": "optax", "betas": (0.9, 0.99)},
            shapes=((4,), (2,)),
            steps=5,
            seed=105,
            grads=_map_grads(_grad_stream(105, ((4,), (2,)), 5), _decaying),
        )
    )
    add(
        _spec(
            "adam-0007",
            "adam",
            ["amsgrad-torch", "resumed-state"],
            "AMSGrad (torch) resumed at step 10000 from a state with v_max above v.",
            config={"amsgrad": True, "amsgrad_mode": "torch"},
            shapes=late_shapes,
            steps=2,
            seed=107,
            initial_state=_late_state(107, late_shapes, 10000, True),
        )
    )
    add(
        _spec(
            "adam-0008",
            "adam",
            ["l2-weight-decay"],
            "Coupled weight decay 0.1 (torch.optim.Adam weight_decay).",
            config={"weight_decay": 0.1},
            steps=3,
            seed=108,
        )
    )
    add(
        _spec(
            "adam-0009",
            "adam",
            ["decoupled-weight-decay"],
            "Decoupled weight decay 0.1 with lr 0.01 (torch.optim.AdamW, optax.adamw).",
            config={"lr": 0.01, "weight_decay": 0.1, "weight_decay_mode": "decoupled"},
            steps=3,
            seed=109,
        )
    )
    add(
        _spec(
            "adam-0010",
            "adam",
            ["maximize", "l2-weight-decay"],
            "maximize with l2 weight decay 0.5 (g = -g + lambda*theta).",
            config={"maximize": True, "weight_decay": 0.5},
            steps=3,
            seed=110,
        )
    )
    add(
        _spec(
            "adam-0011",
            "adam",
            ["tiny-gradients"],
            "Gradients ~1e-10: sqrt(v_hat) ~ 1e-10 against eps = 1e-8 outside the root.",
            steps=3,
            seed=111,
            gscale=tiny,
        )
    )
    add(
        _spec(
            "adam-0012",
            "adam",
            ["empty-array", "zero-layer", "single-element"],
            "An empty array, an array with zero gradients (v = 0, update 0) and a scalar.",
            shapes=((0,), (3,), ()),
            steps=3,
            seed=112,
            grads=_map_grads(
                _grad_stream(112, ((0,), (3,), ()), 3), lambda s, i, g: g * 0.0 if i == 1 else g
            ),
        )
    )
    add(
        _spec(
            "adam-0013",
            "adam",
            ["huge-values"],
            "Gradients ~1e150 (float64 only): g^2 ~ 1e301 is still finite.",
            steps=2,
            seed=113,
            gscale=big,
            not_applicable=huge_na,
        )
    )
    add(
        _spec(
            "adam-0014",
            "adam",
            ["large-eps", "beta1-zero"],
            "eps = 0.1 and beta1 = 0.",
            config={"eps": 0.1, "betas": (0.0, 0.999)},
            steps=3,
            seed=114,
        )
    )
    add(
        _spec(
            "adam-0015",
            "adam",
            ["beta2-near-one"],
            "betas (0.9, 0.99999).",
            config={"betas": (0.9, 0.99999)},
            steps=3,
            seed=115,
        )
    )
    add(
        _spec(
            "adam-0016",
            "adam",
            ["multi-step"],
            "40 steps with lr 0.01 on two small arrays.",
            config={"lr": 0.01},
            shapes=((3,), (2,)),
            steps=40,
            seed=116,
        )
    )

    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise AssertionError("duplicate vector id")
    return tuple(specs)


CATALOGUE: tuple[VectorSpec, ...] = _build()


def catalogue() -> tuple[VectorSpec, ...]:
    """The canonical vectors, in id order of definition."""
    return CATALOGUE
