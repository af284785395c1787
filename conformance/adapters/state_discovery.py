r"""Find which entries of a port's state are m, v, vmax and the step counter, from their values.

A port's state may live anywhere (torch's ``optimizer.state[p]`` under any keys, attributes of
the optimizer, closures, a pytree of any field names) and the harness knows none of the names.
It knows the mathematics: from zero state and zero parameters, one step with a gradient $g_1$
gives $m_1 = (1-\beta_1) g_1$ and $v_1 = (1-\beta_2) g_1^2$. The framework adapters list every
numeric entry of a probe port's state (a *leaf*, with a path) before the first step and after
two probe steps; this module decides from the values alone:

- **m**: one entry per parameter array (or one flat entry for all of them, or a slice of a
  stacked entry) equal to $a\,g_1$ with one scalar $a \ne 0$ for all arrays, whatever $a$ is
  (a port with the betas swapped still has an m);
- **v**: likewise equal to $b\,g_1^2$ with one $b > 0$;
- **vmax** (amsgrad): when two such families exist, the one that satisfies its defining relation
  over the probe's second step, on every coordinate, $\text{vmax}_2 = \max(\text{vmax}_1,
  c\,v_2)$ with one scalar $c > 0$ ($c = 1$ for torch's maximum of raw v, $1/(1-\beta_2^2)$ for
  a maximum of the bias-corrected $\hat v$), and $\text{vmax}_2 > c\,v_2$ (v fell below its
  maximum) on some coordinate of every array;
- **step**: a scalar entry that is an integer after each probe step and grows by $k \ge 1$ per
  step (stored value $= k t + \text{offset}$), or that becomes 1 on the first step and stays
  (a frozen counter, written as $t$).

Coupled weight decay and the probe: its parameters are zero at each of its two steps (the
adapters set them back to zero before the second), so $\lambda\theta$ adds nothing to $g_1$ or
$g_2$, v decays by $\beta_2$ exactly where $g_2 = 0$, and vmax stays there. (Left at $\theta_1
\approx -\text{lr}\,\text{sign}(g_1)$, the second gradient there was $q = \lambda\theta_1$ and
$v_2 - v_1 = (1-\beta_2)(q^2 - v_1)$; with one such coordinate per array and $|g_1| = 1$, v
stood still exactly when $(\lambda\,\text{lr})^2 = 1-\beta_2$, as for lr 0.1, $\lambda$ 0.1,
$\beta_2$ 0.9999: torch's ``max_exp_avg_sq`` was not found and a re-synced step kept it stale,
a false alarm a fuzz run found.) A port may still see a second gradient $q \ne 0$ there (one
that decays a copy of the parameters it keeps itself), so the probe does not rely on it: every
probe array has at least ``MIN_PROBE_SIZE`` = 12 coordinates (smaller ones are widened), a third
of them with $g_2 = 0$, and there $|g_1|$ is scaled in turn by ``ZERO_SCALES`` (4, 1, 2, 4: at
most 8, so an elementwise gradient clip at 10 leaves the probe linear), so no single $|q|$ makes
v stand still on all of them. The relation above then tells vmax from v unless, in some array,
v rises or stands still on *every* coordinate: $|q_k| \ge \sqrt{1-\beta_2}\,|g_{1,k}|$ on all
its $g_2 = 0$ coordinates (the largest of which has $|g_1| \ge 2$), or v's fall there, a
relative $(1-\beta_2)(1 - q^2/v_1)$, within 4 units of roundoff of the probe's dtype (float32,
$q = 0$: $\beta_2 > 1 - 2.4\cdot 10^{-7}$). Then vmax is not found, and a configuration with
amsgrad is **not re-synced** (:meth:`StateLayout.refusal`: compared free-running only, with the
reason in the report) rather than compared against a stale maximum. The probe's size also tells
a linear from a quadratic dependence on $g_1$, and it runs in float32 or float64
(``probe_dtypes``), so that v's decay by $\beta_2$ over one step (a relative $10^{-3}$, lost in
bfloat16) is resolved. A leaf found on the probe is found by its path on the real port.
``--state-map m=KEY,v=KEY,vmax=KEY,step=KEY`` names entries by the end of their path instead
(``none``: treat the state as unreadable). A port built of param groups, each with a state of
its own arrays (``optax.multi_transform``: a ``MaskedState`` per label, ``MaskedNode`` for the
other groups' arrays, a count per inner transformation, none under ``set_to_zero``; a torch port
with lists or a flat buffer per group, :mod:`.state_groups`), is found per group
(:func:`discover_groups`, the groups given by the adapter: ``LayoutCache.set_groups``).
Nothing here imports a framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .probe_fits import TOL, SameSize, fit
from .running_max import is_running_max, roundoff
from .state_groups import in_group
from .state_layout import Counter as Counter
from .state_layout import GroupLayout as GroupLayout
from .state_layout import Leaf as Leaf
from .state_layout import Part as Part
from .state_layout import Path as Path
from .state_layout import StateLayout as StateLayout
from .state_layout import View as View
from .state_layout import arrays_text, views_text
from .state_layout import path_text as path_text
from .state_spans import spanning
from .state_views import gather as gather
from .state_views import scatter as scatter
from .state_views import step_of as step_of
from .state_views import values as _values

ROLES: tuple[str, ...] = ("m", "v", "vmax", "step")
#: smallest probe array: 4 coordinates with g_2 = 0, one at each |g_1| scale of ``ZERO_SCALES``
MIN_PROBE_SIZE = 12
#: |g_1| on the g_2 = 0 coordinates cycles through these (powers of 2: exact in every dtype)
ZERO_SCALES = (4.0, 1.0, 2.0, 4.0)
#: relative tolerance of the convention check: (1 - beta) g rounded in float32 is off by ~1e-7;
#: a bias-corrected moment is off by a factor 1/(1 - beta), a swapped beta by 10 to 1000
CONVENTION_TOL = 1e-3


def probe_dtypes(dtype: str) -> tuple[str, ...]:
    """The dtypes to probe in, in order: the port's own when it resolves one step of v's decay
    (float32, float64; it then shares the port's compiled code), else float64 first."""
    return (dtype,) if dtype in ("float32", "float64") else ("float64", dtype)


def _widened(s: tuple[int, ...]) -> tuple[int, ...]:
    """``s``, or under ``MIN_PROBE_SIZE`` elements a shape of at least that many: the last axis
    widened (a 2-D array stays 2-D for a port whose state depends on it), else 1-D."""
    if math.prod(s) >= MIN_PROBE_SIZE:
        return s
    lead = math.prod(s[:-1]) if len(s) >= 2 else 0
    return (*s[:-1], -(-MIN_PROBE_SIZE // lead)) if lead > 0 else (MIN_PROBE_SIZE,)


def probe_shapes(shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The probe's array shapes: the port's, with arrays under ``MIN_PROBE_SIZE`` widened."""
    return [_widened(tuple(s)) for s in shapes]


def probe_gradients(shapes: Sequence[tuple[int, ...]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """$(g_1, g_2)$ for the probe: $|g_1| \\in [1/2, 2)$ in multiples of 1/64 with mixed signs,
    drawn so that no array (or piece of one) is proportional to another; $g_2$ zero on a third
    of the coordinates, where $|g_1|$ is further scaled by ``ZERO_SCALES`` in turn (so that v
    falls below vmax on some of them whatever coupled weight decay adds: module docstring).
    Every value is exact in every dtype (7 significant bits, below 8 in magnitude)."""
    g1, g2 = [], []
    for i, s in enumerate(shapes):
        n = math.prod(s)
        rng = np.random.default_rng(9001 + i)
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        zero = np.arange(n) % 3 == i % 3
        scale = np.ones(n)
        scale[zero] = np.resize(np.asarray(ZERO_SCALES), int(zero.sum()))
        g1.append((sign * scale * rng.integers(32, 128, n) / 64.0).reshape(s))
        mag = rng.integers(48, 112, n) / 64.0
        g2.append(np.where(zero, 0.0, -sign * mag).reshape(s))
    return g1, g2


def _views(leaf: Leaf, sizes: Sequence[int], whole: bool = True) -> list[View]:
    """The ways ``leaf`` could hold one array's values (whole, sliced, or all arrays flat;
    ``whole=False``: not whole)."""
    x = leaf.value
    out = (
        [View(leaf.path, i) for i, n in enumerate(sizes) if x.size == n and n > 0] if whole else []
    )
    if x.ndim == 1 and x.size == sum(sizes) and len(sizes) > 1:
        out.append(View(leaf.path, None))
    if x.ndim >= 2 and 2 <= x.shape[0] <= 4:
        per = x.size // x.shape[0]
        out += [
            View(leaf.path, i, k)
            for k in range(x.shape[0])
            for i, n in enumerate(sizes)
            if per == n
        ]
    return out


def _target(view: View, arrays: Sequence[np.ndarray]) -> np.ndarray:
    if view.array is None:
        return np.concatenate([np.ravel(a) for a in arrays])
    return np.ravel(arrays[view.array])


Family = list[View]


def _families(
    leaves: Mapping[Path, Leaf], sizes: Sequence[int], arrays: Sequence[np.ndarray], positive: bool
) -> list[Family]:
    """Sets of views, one per array (or one flat view), fitting ``arrays`` with one coefficient."""
    fits: list[tuple[float, View]] = []
    same = SameSize(arrays)
    for leaf in leaves.values():
        if leaf.scalar:
            continue
        found = [(a, View(leaf.path, i)) for a, i in same.fits(np.ravel(leaf.value))]
        for view in _views(leaf, sizes, whole=False):
            b = fit(_values(leaf, view), _target(view, arrays))
            if b is not None:
                found.append((b, view))
        fits += [(a, view) for a, view in found if a > 0 or not positive]
    # a whole entry per array is the usual layout; a flat buffer next; slices of a stack last
    fits.sort(key=lambda f: (f[1].sub is not None, f[1].array is None))
    out: list[Family] = []
    used: set[tuple[Path, int | None]] = set()
    for a, view in fits:
        if (view.path, view.sub) in used:
            continue
        if view.array is None:
            out.append([view])
            used.add((view.path, view.sub))
            continue
        family: dict[int, View] = {}
        for b, other in fits:
            near = abs(b - a) <= TOL * abs(a)
            if (
                near
                and other.array is not None
                and other.array not in family
                and (other.path, other.sub) not in used
            ):
                family[other.array] = other
        if len(family) == len(sizes):
            chosen = [family[i] for i in range(len(sizes))]
            out.append(chosen)
            used.update((v.path, v.sub) for v in chosen)
    return out


def _on_zero_g2(
    family: Family,
    leaves1: Mapping[Path, Leaf],
    leaves2: Mapping[Path, Leaf],
    zero: Sequence[np.ndarray],
) -> float:
    r"""The largest relative change of a family's values over the probe's second step on the
    coordinates where $g_2 = 0$: exactly 0 for a running maximum, $1-\beta$ for a moment, 1 for
    a stored gradient (inf when unreadable)."""
    worst = 0.0
    for view in family:
        if view.path not in leaves2:
            return math.inf
        x1, x2 = _values(leaves1[view.path], view), _values(leaves2[view.path], view)
        mask = _target(view, zero) if view.array is None else np.ravel(zero[view.array])
        if x2.shape != x1.shape:
            return math.inf
        d = np.abs(x2 - x1)[mask] / np.maximum(np.abs(x1)[mask], 1e-300)
        worst = max(worst, float(np.max(d, initial=0.0)))
    return worst


def _is_max(after1: Mapping[Path, Leaf], after2: Mapping[Path, Leaf], vv: View, mv: View) -> bool:
    """Whether view ``mv`` is the running maximum of view ``vv`` (:mod:`.running_max`)."""
    if vv.path not in after2 or mv.path not in after2:
        return False
    u = max(roundoff(after1[p].dtype) for p in (vv.path, mv.path))
    v1, v2 = _values(after1[vv.path], vv), _values(after2[vv.path], vv)
    return is_running_max(v1, v2, _values(after1[mv.path], mv), _values(after2[mv.path], mv), u)


def _v_and_vmax(
    square: Sequence[Family], after1: Mapping[Path, Leaf], after2: Mapping[Path, Leaf]
) -> tuple[Family, Family] | None:
    """(v, vmax) from two families that behave like v after one step: per array, the view
    that is the other's running maximum (``_is_max``) is vmax; None when no pair is told apart
    in every array."""
    for k, a in enumerate(square):
        for b in square[k + 1 :]:
            if len(a) != len(b) or any(x.array != y.array for x, y in zip(a, b, strict=True)):
                continue
            v, vmax = [], []
            for x, y in zip(a, b, strict=True):
                if _is_max(after1, after2, x, y):
                    v.append(x)
                    vmax.append(y)
                elif _is_max(after1, after2, y, x):
                    v.append(y)
                    vmax.append(x)
                else:
                    break
            else:
                return v, vmax
    return None


def _counters(
    before: Mapping[Path, Leaf], after1: Mapping[Path, Leaf], after2: Mapping[Path, Leaf]
) -> list[Counter]:
    out = []
    for path, leaf in after1.items():
        if not leaf.scalar or path not in after2 or not after2[path].scalar:
            continue
        v1, v2 = float(np.ravel(leaf.value)[0]), float(np.ravel(after2[path].value)[0])
        if not (v1.is_integer() and v2.is_integer()):
            continue
        v0 = (
            float(np.ravel(before[path].value)[0])
            if path in before and before[path].scalar
            else None
        )
        k = int(v2 - v1)
        if k >= 1 and (v0 is None or v0 == v1 - k):
            out.append(Counter(path, k, int(v1) - k))
        elif k == 0 and v1 == 1.0 and (v0 is None or v0 == 0.0):
            out.append(Counter(path, 1, 0))  # frozen after step 1: written as the step count
    return out


def _roles(
    after1: Mapping[Path, Leaf],
    after2: Mapping[Path, Leaf],
    sizes: Sequence[int],
    g1: Sequence[np.ndarray],
    zero: Sequence[np.ndarray],
    notes: list[str],
) -> tuple[Family, Family, Family]:
    """(m, v, vmax) views for arrays of ``sizes`` probed with ``g1`` (empty: not found)."""
    m: Family = []
    v: Family = []
    vmax: Family = []
    linear = _families(after1, sizes, g1, positive=False)
    square = _families(after1, sizes, [x * x for x in g1], positive=True)
    if linear:
        # a stored gradient copy is linear too, but vanishes where g2 = 0; m only decays there
        linear.sort(key=lambda f: _on_zero_g2(f, after1, after2, zero) >= 1.0)
        m = linear[0]
    if square:
        change = [_on_zero_g2(f, after1, after2, zero) for f in square]
        moving = [f for f, c in zip(square, change, strict=True) if 0.0 < c < math.inf]
        v = moving[0] if moving else square[0]
        pair = _v_and_vmax(square, after1, after2)
        if pair is not None:
            v, vmax = pair
        elif len(square) > 1:
            notes.append(
                f"{len(square)} entries behave like v after one step; none was told from v as "
                "vmax by vmax_2 = max(vmax_1, c v_2) (an amsgrad maximum is then not re-synced)"
            )
    return m, v, vmax


#: the param groups of a port built of groups, for ``discover``: per group with state its
#: arrays and its betas (None: its convention is not checked); arrays of no group keep no state
Groups = Sequence[tuple[Sequence[int], tuple[float, float] | None]]


def discover(
    shapes: Sequence[tuple[int, ...]],
    before: Mapping[Path, Leaf],
    after1: Mapping[Path, Leaf],
    after2: Mapping[Path, Leaf],
    override: Mapping[str, str] | None = None,
    root: str = "opt",
    betas: tuple[float, float] | None = None,
    groups: Groups | None = None,
    extras: Sequence[int] = (),
) -> StateLayout:
    """The layout of a port's state from snapshots of a probe port (``shapes``: the probe's,
    ``probe_shapes``; gradients ``probe_gradients(shapes)``) before any step and after each of
    its two steps. ``override``: role -> KEY from ``--state-map`` (see ``parse_state_map``).
    ``betas``: the configuration's, to check that m and v are in the reference's convention.
    ``groups``: the port's param groups (``discover_groups``; ignored with ``override``);
    ``extras``: the sizes of the probe's arrays outside the run (the sentinel's), last."""
    if override is not None and override.get("none") is not None:
        return StateLayout(hidden=True, root=root)
    sizes = [math.prod(s) for s in shapes]
    g1, g2 = probe_gradients(shapes)
    zero = [np.asarray(x == 0.0) for x in g2]
    layout = StateLayout(root=root)
    if groups is not None and not override:
        discover_groups(layout, groups, sizes, g1, zero, (before, after1, after2), extras)
    else:
        layout.m, layout.v, layout.vmax = _roles(after1, after2, sizes, g1, zero, layout.notes)
        layout.counters = _counters(before, after1, after2)
        if override:
            _apply_override(layout, override, after1, sizes, before, after2)
        if betas is not None and layout.m and layout.v:
            layout.convention = _convention(layout.m, layout.v, after1, g1, betas, root)
    if layout.m:
        layout.state_dtype = after1[layout.m[0].path].dtype
    return layout


def _prefix(a: Path, b: Path) -> int:
    """The number of leading parts two paths share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def discover_groups(
    layout: StateLayout,
    groups: Groups,
    sizes: Sequence[int],
    g1: Sequence[np.ndarray],
    zero: Sequence[np.ndarray],
    snaps: tuple[Mapping[Path, Leaf], Mapping[Path, Leaf], Mapping[Path, Leaf]],
    extras: Sequence[int] = (),
) -> None:
    r"""The roles of a port built of param groups (``optax.multi_transform``: an inner
    transformation per group, whose state holds entries for its own arrays only). Each group's
    arrays are fitted on their own, with a coefficient per group (its betas are its own:
    $m_1 = (1-\beta_{1,k}) g_1$), so an array's m, v and vmax are those of the group that owns
    it; arrays of no group keep no state (``stateless``); one flat entry of a group's arrays
    (a flat buffer per group) is read per array (``state_groups.in_group``). A counter belongs to the groups whose
    m entries share the longest path prefix with it (an inner transformation's own count; one
    outside all of them is every group's), and every group must have one. A group whose own
    entries hold no m or v: one flat buffer over every group's arrays and ``extras`` (the
    sentinel's) may (:mod:`.state_spans`). What is not found sets ``group_why``, naming the
    group (and the ambiguity of a buffer over all groups)."""
    before, after1, after2 = snaps
    root = layout.root
    found: list[tuple[Family, Family, Family]] = []
    for arrays, betas in groups:
        idx = list(arrays)
        name = f"the param group of {arrays_text(idx)}"
        local = _roles(
            after1, after2, [sizes[i] for i in idx], [g1[i] for i in idx],
            [zero[i] for i in idx], layout.notes,
        )  # fmt: skip
        if not (local[0] and local[1]):
            m, v, coefs, why = spanning(after1, after2, sizes, g1, zero,
                                        [a for a, _ in groups], extras)  # fmt: skip
            if m and v:
                found = [([x for x in m if x.array in a], [x for x in v if x.array in a], [])
                         for a, _ in groups]  # fmt: skip
                for k, (arrays_k, betas_k) in enumerate(groups):
                    want = None if betas_k is None else (1.0 - betas_k[0], 1.0 - betas_k[1])
                    got = (abs(coefs[0][k]), coefs[1][k])
                    if want and not all(math.isclose(a, b, rel_tol=CONVENTION_TOL)
                                        for a, b in zip(got, want, strict=True)):  # fmt: skip
                        layout.convention = (
                            f"the param group of {arrays_text(arrays_k)}: after one step from "
                            f"zero its m and v hold {got[0]:.6g} x g and {got[1]:.6g} x g^2, not "
                            f"(1 - beta1) g and (1 - beta2) g^2: another convention, neither "
                            "compared nor re-synced"
                        )
                        return
                break
            missing = " and ".join(r for r, f in (("m", local[0]), ("v", local[1])) if not f)
            layout.group_why = (
                f"{name}: no entry of the port's state behaves like {missing} of its arrays "
                "after two probe steps" + (f" ({why})" if why else "")
            )
            return
        mine = [g1[i] for i in idx]  # the group's convention, on its own views and arrays
        if betas is not None and (why := _convention(*local[:2], after1, mine, betas, root)):
            layout.convention = f"{name}: {why}"
            return
        m, v, vmax = (in_group(f, idx) for f in local)  # a group's flat buffer: its segments
        found.append((m, v, vmax))
    layout.m = sorted((x for f in found for x in f[0]), key=lambda x: x.array or 0)
    layout.v = sorted((x for f in found for x in f[1]), key=lambda x: x.array or 0)
    if all(f[2] for f in found):
        layout.vmax = sorted((x for f in found for x in f[2]), key=lambda x: x.array or 0)
    elif any(f[2] for f in found):
        layout.notes.append("vmax was found in some param groups only: not re-synced")
    layout.notes[:] = dict.fromkeys(layout.notes)  # a note of every group's, once
    layout.counters = _counters(before, after1, after2)
    owners: list[list[Counter]] = [[] for _ in groups]
    for c in layout.counters:
        near = [max(_prefix(c.path, x.path) for x in f[0]) for f in found]
        for k, n in enumerate(near):
            if n == max(near):
                owners[k].append(c)
    layout.groups = [GroupLayout(tuple(a), tuple(o)) for (a, _), o in zip(groups, owners)]
    owned = {i for a, _ in groups for i in a}
    layout.stateless = tuple(i for i in range(len(sizes)) if i not in owned)
    for g in layout.groups:
        if not g.counters:
            layout.group_why = (
                f"the param group of {arrays_text(g.arrays)}: no entry of the port's state "
                "counts its steps"
            )
            return


def _coefficient(
    leaves: Mapping[Path, Leaf], views: Sequence[View], arrays: Sequence[np.ndarray]
) -> float:
    x = np.concatenate([_values(leaves[v.path], v) for v in views])
    y = np.concatenate([_target(v, arrays) for v in views])
    return float(np.dot(x, y) / np.dot(y, y))


def _convention(
    m: Sequence[View],
    v: Sequence[View],
    after1: Mapping[Path, Leaf],
    g1: Sequence[np.ndarray],
    betas: tuple[float, float],
    root: str,
) -> str:
    r"""Why m or v is not in the reference's convention (empty: it is). Re-syncing writes the
    reference's m and v: only sound when the port's entries hold the same quantities. After one
    step from zero they are $\pm(1-\beta_1) g_1$ (the sign is maximize's) and
    $(1-\beta_2) g_1^2$ to the rounding of a product; anything else (a bias-corrected
    $\hat m$, a scaled or differently averaged $v$) is another convention, and a correct port
    in another convention must not fail for the harness's writing into it."""
    b1, b2 = betas
    sq = [x * x for x in g1]
    checks = (
        ("m", m, abs(_coefficient(after1, m, g1)), 1.0 - b1, "(1 - beta1) g"),
        ("v", v, _coefficient(after1, v, sq), 1.0 - b2, "(1 - beta2) g^2"),
    )
    for role, views, got, want, form in checks:
        if not math.isclose(got, want, rel_tol=CONVENTION_TOL):
            return (
                f"{role} was found at {views_text(views, root)}, but after one step from "
                f"zero it holds {got:.6g} x the gradient{'' if role == 'm' else ' squared'}, not "
                f"{form} = {want:.6g}: the port keeps its state in another convention, so it is "
                "neither compared nor re-synced"
            )
    return ""


def parse_state_map(text: str | None) -> dict[str, str] | None:
    """``m=KEY,v=KEY,vmax=KEY,step=KEY`` (any subset) or ``none`` -> role -> KEY."""
    if text is None or not text.strip():
        return None
    if text.strip().lower() == "none":
        return {"none": ""}
    out: dict[str, str] = {}
    for item in text.split(","):
        role, sep, key = item.partition("=")
        role, key = role.strip(), key.strip()
        if not sep or role not in ROLES or not key:
            raise ValueError(
                f"--state-map expects ROLE=KEY,... with ROLE in {ROLES} (or 'none'), got {item!r}"
            )
        out[role] = key
    return out


def _names(path: Path) -> list[str]:
    return [str(key) for kind, key in path if kind in ("key", "attr", "cell")]


def _matches(path: Path, key: str) -> bool:
    want = [k for k in key.split(".") if k]
    names = _names(path)
    return bool(want) and names[-len(want) :] == want


def _apply_override(
    layout: StateLayout,
    override: Mapping[str, str],
    leaves: Mapping[Path, Leaf],
    sizes: Sequence[int],
    before: Mapping[Path, Leaf],
    after2: Mapping[Path, Leaf],
) -> None:
    for role, key in override.items():
        hits = [leaf for path, leaf in leaves.items() if _matches(path, key)]
        if role == "step":
            found = {c.path: c for c in _counters(before, leaves, after2)}
            layout.counters = [
                found.get(leaf.path, Counter(leaf.path)) for leaf in hits if leaf.scalar
            ]
            if not layout.counters:
                raise ValueError(
                    f"--state-map step={key}: no scalar entry of the state ends in {key!r}"
                )
            continue
        arrays = [leaf for leaf in hits if not leaf.scalar]
        if len(arrays) == len(sizes) and all(
            a.value.size == n for a, n in zip(arrays, sizes, strict=True)
        ):
            views = [View(a.path, i) for i, a in enumerate(arrays)]
        elif len(arrays) == 1 and arrays[0].value.size == sum(sizes):
            views = [View(arrays[0].path, None)]
        else:
            raise ValueError(
                f"--state-map {role}={key}: {len(arrays)} entries of the state end in {key!r}; "
                f"expected one per parameter array ({len(sizes)}) or one for all of them"
            )
        setattr(layout, role, views)
    layout.notes.append("roles named by --state-map")


#: (probe dtype, probe shapes, g1, g2) -> leaves before the first step and after each of two
Snapshots = Callable[
    [str, list[tuple[int, ...]], list[np.ndarray], list[np.ndarray]], list[dict[Path, Leaf]]
]


class LayoutCache:
    """The discovered layout of one port, per parameter shapes: runs the probe (``snapshots``,
    written by the framework's adapter) in ``probe_dtypes`` order and keeps the result."""

    def __init__(
        self,
        snapshots: Snapshots,
        dtype: str,
        state_map: Mapping[str, str] | None = None,
        betas: tuple[float, float] | None = None,
        root: str = "opt",
    ) -> None:
        self._snapshots = snapshots
        self._dtype = dtype
        self._state_map = state_map
        self._betas = None if betas is None else (float(betas[0]), float(betas[1]))
        self._root = root
        self._found: dict[tuple[tuple[int, ...], ...], StateLayout] = {}
        self.current: StateLayout | None = None
        self._groups: list[tuple[tuple[int, ...], tuple[float, float] | None]] | None = None
        self._extras: tuple[int, ...] = ()

    def set_groups(
        self, groups: Sequence[tuple[Sequence[int], tuple[float, float]]], extras: Sequence[int] = ()
    ) -> None:
        """The port is built of these param groups (arrays with state, the group's betas; an
        array of none keeps no state): found per group from now on (``discover_groups``). The
        betas are checked only when this cache checks a convention (``betas`` given).
        ``extras``: the sizes of the arrays the probe adds after the run's (the sentinel's)."""
        check = self._betas is not None
        self._extras = tuple(int(n) for n in extras)
        self._groups = [
            (tuple(int(i) for i in a), (float(b[0]), float(b[1])) if check else None)
            for a, b in groups
        ]
        self._found.clear()
        self.current = None

    def get(self, shapes: Sequence[tuple[int, ...]]) -> StateLayout:
        """The layout for parameters of ``shapes`` (probed on first use)."""
        key = tuple(tuple(int(n) for n in s) for s in shapes)
        if key not in self._found:
            self._found[key] = self._probe(list(key))
        self.current = self._found[key]
        return self.current

    def _probe(self, shapes: list[tuple[int, ...]]) -> StateLayout:
        pshapes = probe_shapes(shapes)
        g1, g2 = probe_gradients(pshapes)
        failure = ""
        for dt in probe_dtypes(self._dtype):
            try:
                before, after1, after2 = self._snapshots(dt, pshapes, g1, g2)
            except Exception as exc:  # this dtype is refused: try the port's own
                failure = f"{type(exc).__name__}: {exc}"
                continue
            return discover(
                pshapes, before, after1, after2, self._state_map, self._root, self._betas,
                self._groups, self._extras if self._groups is not None else (),
            )  # fmt: skip
        layout = StateLayout(root=self._root)
        layout.notes.append(f"the probe port could not step ({failure})")
        return layout
