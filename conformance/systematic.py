r"""The statistical verdict: are a port's signed errors, over all coordinates and steps, noise?

The per-coordinate budget (:mod:`conformance.tolerance`) is a worst case: a port whose every
step is off by a relative $\delta$ far below it passes. Rounding noise, however, has no
direction, while such a bias moves every coordinate along its step. Per re-synced step $t$ of a
scenario and per quantity $q$ (the parameters; the update when the port reports it) the
driver calls :meth:`SystematicStats.observe`, which keeps only running sums. With the port's
value $x'_i$, the reference rounded to the port's dtype $\bar x_i$ (so that the final rounding,
which a correct port and a correctly rounded reference share, does not correlate with the step),
the reference step $d_i$ ($\theta_t - \theta_{t-1}$, or the update) and the model's budget
$B_i$ as the coordinate's scale,

$$y_i = (x'_i - \bar x_i)/B_i,\qquad z_i = d_i/B_i,\qquad
\hat\delta = \frac{\sum_i z_i y_i}{\sum_i z_i^2},$$

the weighted least-squares estimate of $\delta$ in $x' - \bar x = \delta\,d + \text{noise}$. The
weights $1/B_i^2$ only set the estimator's efficiency: the spread is *estimated* from the
residuals, never assumed, so the budget's worst-case multiple cancels.

**Dependence model.** The coordinates of one step share more than their scalars: SET-Adam's
$c_l$ and $w_{\min}$ per layer, and, at Adam's first step from zero state, where
$|m_1/D_1| = |g|/(|g|+\epsilon)$ is the same at nearly every coordinate, the position of
$\theta_{t-1} - U$ on the dtype's grid, so that every coordinate of a binade rounds alike (step 1
is therefore not used). Each re-synced step of a scenario is one *cluster*; clusters (steps) are independent, and
the variance is the cluster-robust one,
$\widehat{\mathrm{Var}}\,\hat\delta = \frac{K}{K-1}\sum_c (a_c - \hat\delta b_c)^2 / (\sum_c b_c)^2$
with $a_c = \sum_{i\in c} z_iy_i$, $b_c = \sum_{i\in c} z_i^2$: the sums $\sum a_c$, $\sum b_c$,
$\sum a_c^2$, $\sum a_cb_c$, $\sum b_c^2$ suffice. Roundings shared by *every* coordinate of a step
(the step size, $b_2$, $\beta$, $\epsilon$, $\tau$, $\lambda$ as the port rounds them, and the
one-signed absorption of $\epsilon$) are not noise:
:func:`conformance.systematic_floor.legit_bias` bounds the shift $\beta_i$ they may cause, and
any per-coordinate shift $|s_i| \le \beta_i$ moves $\hat\delta$ by at most the **floor**
$\varphi = \sum_i |z_i|\beta_i/B_i \big/ \sum_i z_i^2$ (the reference's own float64 floor added).

**Test.** Per (scenario, quantity) with at least ``MIN_CLUSTERS`` clusters, Student's t with
$K-1$ degrees of freedom (``scipy.stats.t``): the two-sided $1-\alpha/M$ interval
$\hat\delta \pm t_{K-1}(1 - \alpha/2M)\,\mathrm{se}$, $M$ the number of tests run for the port
(Bonferroni). The verdict is *systematic deviation* when the interval lies entirely outside
$[-\varphi, \varphi]$; under $|\delta| \le \varphi$ this happens with probability at most
$\alpha/2M$ per test, so at most $\alpha/2 \le 10^{-6}$ per port check (``ALPHA``; asymptotic in
the number of clusters, as every t-test). A coordinate whose scaled error, step or floor is
not finite (a budget below ~1e-308: $1/B$ overflows) is left out of the sums, and a (scenario,
quantity) whose sums overflow anyway is *not tested*, with the reason: a NaN estimate would
compare false with the floor, a pass that judged nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from setadam_ref import stage_names as N

from .formats import round_to
from .layout import Flat
from .reference_run import ReferenceRun, ResyncStep
from .results import Failure, json_float
from .systematic_floor import floor

#: false-alarm probability bound per port check (all its tests together)
ALPHA = 1e-6
#: fewer independent clusters than this: the t approximation is not trusted, not tested
MIN_CLUSTERS = 8
QUANTITIES: tuple[str, ...] = (N.PARAMS, N.UPDATE)


@dataclass
class Sums:
    """Running sufficient statistics of one (scenario, quantity)."""

    n: int = 0  # coordinates
    k: int = 0  # clusters: re-synced steps
    a: float = 0.0
    b: float = 0.0
    aa: float = 0.0
    ab: float = 0.0
    bb: float = 0.0
    f: float = 0.0  # sum |z| beta / B (floor numerator)

    def add(self, y: np.ndarray, z: np.ndarray, phi: np.ndarray) -> None:
        """Add one step (one cluster): its scaled errors y, steps z and floors beta / B."""
        with np.errstate(over="ignore", invalid="ignore"):  # judged by judge(): not tested
            ac, bc = float(z @ y), float(z @ z)
        if bc <= 0:
            return
        self.n += int(z.size)
        self.k += 1
        self.a += ac
        self.b += bc
        self.aa += ac * ac
        self.ab += ac * bc
        self.bb += bc * bc
        self.f += float(np.abs(z) @ phi)


@dataclass
class SystematicTest:
    """The outcome of one (scenario, quantity) test."""

    scenario: str
    quantity: str
    coordinates: int
    clusters: int
    delta: float  # estimated relative bias of the port's step
    se: float
    low: float  # two-sided 1 - alpha/M interval
    high: float
    floor: float
    rejected: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "quantity": self.quantity,
            "coordinates": self.coordinates,
            "clusters": self.clusters,
            "delta": json_float(self.delta),
            "se": json_float(self.se),
            "low": json_float(self.low),
            "high": json_float(self.high),
            "floor": json_float(self.floor),
            "rejected": self.rejected,
        }

    def message(self, m: int) -> str:
        return (
            f"systematic deviation: the port's {self.quantity} step is (1 + delta) x the "
            f"reference's with delta = {self.delta:.3g} (interval {self.low:.3g} .. "
            f"{self.high:.3g} at confidence 1 - {ALPHA:.0e}/{m}), beyond the floor +-{self.floor:.2g} "
            f"that correctly rounded common scalars allow ({self.coordinates} coordinates in "
            f"{self.clusters} re-synced steps; false-alarm probability <= {ALPHA:.0e} per port check)"
        )


@dataclass
class SystematicVerdict:
    """Every test of a port, the Bonferroni count, and what could not be tested."""

    tests: list[SystematicTest] = field(default_factory=list)
    not_tested: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[SystematicTest]:
        return [t for t in self.tests if t.rejected]

    def failures(self) -> list[Failure]:
        m = len(self.tests)
        return [
            Failure(t.scenario, "resync", None, t.quantity, "systematic", t.message(m))
            for t in self.rejected
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": ALPHA,
            "tests_run": len(self.tests),
            "rejected": len(self.rejected),
            "tests": [t.to_dict() for t in self.tests],
            "not_tested": list(self.not_tested),
        }


class SystematicStats:
    """Running sums per (scenario, quantity) over the re-synced steps of one port check."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], Sums] = {}

    def observe(
        self,
        scenario: str,
        rr: ReferenceRun,
        rs: ResyncStep,
        dtype: str,
        state_dtype: str,
        params: np.ndarray,
        stages: dict[str, Any] | None,
    ) -> None:
        r"""Add one re-synced step: the port's flat parameters and, if reported, its update.

        Step 1 is left out: from zero state $|m_1/D_1| = |g|/(|g|+\epsilon)$ is the same at nearly
        every coordinate, every coordinate of a binade rounds alike, and the step carries
        almost no information on a bias (its estimate is attenuated by up to a third)."""
        if rs.t == 1:
            return
        flat = rr.flat
        ports = {N.PARAMS: params}
        upd = _flat_stage(stages, N.UPDATE, flat)
        if upd is not None and N.UPDATE in rs.bounds:
            ports[N.UPDATE] = upd
        r = rs.ref
        # a contract step's floor was formed per group (its own lr, betas, decay and count)
        beta = floor(rr.config, r, flat, dtype, state_dtype) if rs.floor is None else rs.floor
        for q, port in ports.items():
            ref = r.theta1 if q == N.PARAMS else r.update
            step = r.theta1 - r.theta0 if q == N.PARAMS else r.update
            bound = rs.bounds[q]
            with np.errstate(all="ignore"):
                err = port - round_to(ref, dtype)
                ok = np.isfinite(err) & np.isfinite(bound) & (bound > 0) & (step != 0)
                ok &= np.isfinite(beta)
                inv = 1.0 / bound[ok]
                y, z, phi = err[ok] * inv, step[ok] * inv, beta[ok] * inv
                # a budget below ~1e-308 makes 1/B overflow: its coordinate would weigh
                # infinitely (inf * 0 = NaN in the sums); the per-coordinate check judges it
                keep = np.isfinite(y) & np.isfinite(z) & np.isfinite(phi)
            self.sums.setdefault((scenario, q), Sums()).add(y[keep], z[keep], phi[keep])

    def judge(self, alpha: float = ALPHA) -> SystematicVerdict:
        """Test every (scenario, quantity) with enough clusters (module docstring)."""
        out = SystematicVerdict()
        ready = []
        for (sc, q), s in self.sums.items():
            sums = (s.a, s.b, s.aa, s.ab, s.bb, s.f)
            if not all(math.isfinite(x) for x in sums):
                # the products of scaled errors overflowed: no estimate, so no verdict either way
                out.not_tested.append(f"{sc} {q}: its weighted sums overflow (scaled errors "
                                      "beyond 1e154)")  # fmt: skip
            elif s.k >= MIN_CLUSTERS and s.b > 0:
                ready.append((sc, q, s))
            else:
                out.not_tested.append(
                    f"{sc} {q}: {s.k} re-synced steps (at least {MIN_CLUSTERS} needed)"
                )
        m = max(len(ready), 1)
        for sc, q, s in ready:
            delta = s.a / s.b
            ss = max(s.aa - 2 * delta * s.ab + delta * delta * s.bb, 0.0)
            se = math.sqrt(ss * s.k / (s.k - 1)) / s.b
            floor = s.f / s.b
            half = float(stats.t.isf(alpha / (2 * m), s.k - 1)) * se
            lo, hi = delta - half, delta + half
            rejected = bool(lo > floor or hi < -floor)
            out.tests.append(SystematicTest(sc, q, s.n, s.k, delta, se, lo, hi, floor, rejected))
        return out


def _flat_stage(stages: dict[str, Any] | None, name: str, flat: Flat) -> np.ndarray | None:
    """A reported stage as one flat float64 vector, or None if absent or malformed."""
    if not stages or name not in stages:
        return None
    try:
        arrays = [np.asarray(a, dtype=np.float64) for a in stages[name]]
    except (TypeError, ValueError):
        return None
    if len(arrays) != len(flat.shapes) or any(
        a.shape != s for a, s in zip(arrays, flat.shapes, strict=True)
    ):
        return None
    return flat.cat(arrays)
