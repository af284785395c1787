r"""The likely cause of a failing contract scenario: the contract with one thing changed, ranked.

The catalogue (:mod:`conformance.catalogue`) replays one group, a constant lr and every
gradient: it cannot say why a port fails ``groups``, ``schedules`` or ``sparse``, where real
ports get the contract around the formula wrong. An entry here is the contract
(:class:`~conformance.contract.Contract`) with one change, replayed by the reference itself
(:func:`conformance.contract_reference.contract_step`: ``setadam_ref.step`` per group and per
participating arrays), so there is no second implementation of the algorithm:

- ``group0_hyperparameters``: every group stepped with group 0's config $c_1$ (the group loop's
  constants hoisted out of it);
- ``lr_schedule_ignored``: group $k$ at its base $\mathrm{lr}_k$ at every step, $f_t = 1$ (the
  lr read once, at construction);
- ``count_advanced_without_gradient``: an array that has state advances its step count $t_i$ at
  every step, with or without gradient (one count per group or per optimizer step), so its
  bias corrections $1 - \beta^{t_i}$ run ahead after a skipped step;
- ``skipped_counted_in_layer`` (SET-Adam): every layer's statistics over all its arrays, an
  array without gradient adding its carried $v$ (zeros before its first gradient) to $S_1$,
  $S_2$, $d_l$ and $\min w$ while its $\theta$, m, v and count stay (a port reducing over a
  param group's every tensor). Replayed by :func:`counted_skipped_step`: the reference's calls
  (:func:`~conformance.contract_reference.reference_calls`) through
  ``setadam_ref.setadam.setadam_step`` with its own (S) and (T) stage functions given the
  skipped arrays too. It applies where a layer holds, at some step, a non-empty array without
  gradient next to one with. Where the skipped $v$ is 0 from the start it is also what counting
  zeros, or stepping the array with a zero gradient (no weight decay), computes: a carried $v$
  (``sparse_layers_stopped``, an array stopped after two steps) tells them apart.

Ranking is :mod:`conformance.catalogue.ranking`'s, on the parameters, in the reference run's
budgets: in scenario $\sigma$, $E_\sigma(D) = \max(1, \max_{s,i} |\theta^{port}_{s,i} -
\theta^{D}_{s,i}| / b_{s,i})$ over its re-synced steps (from the same inputs, budgets
``bounds``) and its free-running steps (chained from $\theta_0$, budgets ``free_bounds``); the
distance is $E_\sigma(D) / E_\sigma(\text{reference})$, the largest over the scenarios; an entry is
a cause below ``CLEARLY_BETTER`` = 1/2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from setadam_ref import SETAdamConfig, State, setadam
from setadam_ref import stage_names as N
from setadam_ref.context import Context
from setadam_ref.stages import LayerMoments

from .catalogue.ranking import CLEARLY_BETTER, Cause, budget_error, distance
from .contract import Contract
from .contract_reference import ArrayStates, Grads, amsgrad_of, contract_step, reference_calls
from .layout import Flat
from .reference_run import ReferenceRun, ResyncStep
from .results import Evidence, PortResult
from .tolerance import InputErrors

#: a failing contract scenario's free run: its reference run and the port's flat parameters
Run = tuple[ReferenceRun, Sequence[np.ndarray]]


def _same(c: Contract) -> Contract:
    return c


def _hoisted(c: Contract) -> Contract:
    first = c.groups[0][1]
    return dataclasses.replace(c, groups=tuple((a, first) for a, _ in c.groups))


def _constant_lr(c: Contract) -> Contract:
    return dataclasses.replace(c, lr_factors=None)


def _mixed_layer(rr: ReferenceRun) -> bool:
    """Whether a SET-Adam layer of ``rr`` holds, at some step, a non-empty array without
    gradient and one with (an empty array changes no sum, no $d_l$ and no minimum)."""
    c, active = rr.contract, rr.problem.active
    if c is None or c.layers is None or active is None:
        return False
    if not isinstance(c.groups[0][1], SETAdamConfig):
        return False  # Adam has no layer statistics
    sized = [int(np.prod(s)) > 0 for s in rr.flat.shapes]
    return any(
        {bool(a[i]) for i in layer if sized[i]} == {True, False}
        for a in active
        for layer in c.layers
    )


@dataclass(frozen=True)
class ContractDeviation:
    """One entry: the contract changed (``contract``), the counts advanced without gradient, or
    the arrays without gradient counted in their layers' statistics (``whole_layers``)."""

    name: str
    stage: str  # first stage where it shows in a port exposing its intermediates
    description: str
    contract: Callable[[Contract], Contract] = _same
    eager_count: bool = False
    whole_layers: bool = False

    def applies(self, rr: ReferenceRun) -> bool:
        """Whether the entry changes anything in the contract scenario of ``rr``."""
        c = rr.contract
        if c is None:
            return False
        if self.eager_count:
            return c.partial
        if self.whole_layers:
            return _mixed_layer(rr)
        return self.contract(c) != c


ENTRIES: tuple[ContractDeviation, ...] = (
    ContractDeviation(
        "group0_hyperparameters", N.M,
        "every param group stepped with the first group's lr, betas, eps, weight decay (and tau)",
        contract=_hoisted,
    ),
    ContractDeviation(
        "lr_schedule_ignored", N.UPDATE,
        "the lr of each group read once (at construction): a scheduler's group['lr'] never seen",
        contract=_constant_lr,
    ),
    ContractDeviation(
        "count_advanced_without_gradient", N.UPDATE,
        "the step count of a parameter advanced at a step where it has no gradient (one count "
        "per group or per optimizer step): its bias corrections run ahead",
        eager_count=True,
    ),
    ContractDeviation(
        "skipped_counted_in_layer", N.DOWN_SCALING,
        "a parameter without gradient counted in its layer's statistics (its stored v, or zeros "
        "before its first gradient, in the sums, in d_l and in min w): c_l and min w are "
        "wrong for the layer's other parameters",
        whole_layers=True,
    ),
)  # fmt: skip


def _counting_skipped(skipped: dict[int, tuple[np.ndarray, ...]]) -> setadam.SETAdamStages:
    """The definition's stages with (S) and (T) of layer $j$ of a call taken over its arrays
    and ``skipped[j]`` (the carried $v$ of its arrays without gradient): $c_l$ and
    $\\min w$ over them, their own $\\theta$ and moments untouched (they are not in the call)."""

    def layer_of(
        arrays: tuple[np.ndarray, ...], every: tuple[np.ndarray, ...], ctx: Context
    ) -> int:
        # a stage sees the layer's arrays only: found by identity in ctx.v / ctx.w (every array's)
        return next(
            j for j, lay in enumerate(ctx.layers)
            if all(every[i] is a for i, a in zip(lay, arrays, strict=True))
        )  # fmt: skip

    def statistics(v: tuple[np.ndarray, ...], ctx: Context) -> LayerMoments:
        return setadam.layer_statistics((*v, *skipped.get(layer_of(v, ctx.v, ctx), ())), ctx)

    def translate(w: tuple[np.ndarray, ...], ctx: Context) -> tuple[np.ndarray, ...]:
        j = layer_of(w, ctx.w, ctx)
        extra = skipped.get(j, ())
        if not extra:
            return setadam.translate(w, ctx)
        # the skipped arrays' w need this layer's c_l, which (S) does not hand on to (T)
        c = statistics(tuple(ctx.v[i] for i in ctx.layers[j]), ctx).cos2
        w_extra = setadam.embed(setadam.down_scale(extra, c, ctx), extra, c, ctx)
        return setadam.translate((*w, *w_extra), ctx)[: len(w)]

    return setadam.DEFINITION._replace(layer_statistics=statistics, translate=translate)


def counted_skipped_step(
    c: Contract, flat: Flat, t: int, params: Any, states: ArrayStates, grads: Grads
) -> tuple[tuple[np.ndarray, ...], ArrayStates]:
    """Step ``t`` of the contract's reference (``contract_step``'s calls) with every layer's
    statistics over all its arrays: an array without gradient adds its carried $v$ (zeros
    before its first gradient) to $S_1, S_2$, $d_l$ and $\\min w$, and keeps $\\theta$, m, v
    and its count. Bitwise ``contract_step``'s parameters when no layer mixes the two."""
    new_p = list(params)
    new = ArrayStates(list(states.m), list(states.v), None, list(states.steps))
    for k, s, idx, sub_layers, lids in reference_calls(c, flat, states, grads):
        group = c.groups[k][0]
        skipped = {
            j: tuple(
                np.ravel(np.asarray(states.v[i], dtype=np.float64)) for i in group
                if grads[i] is None and flat.layer_of_array[i] == lid
            )
            for j, lid in enumerate(lids)
        }  # fmt: skip
        st = State(s, tuple(_f64(states.m[i]) for i in idx), tuple(_f64(states.v[i]) for i in idx))
        cfg = c.config_at(k, t)
        assert isinstance(cfg, SETAdamConfig)
        p1, st1, _ = setadam.setadam_step(
            [_f64(params[i]) for i in idx], [_f64(grads[i]) for i in idx], st, cfg, sub_layers,
            _counting_skipped(skipped),
        )  # fmt: skip
        for j, i in enumerate(idx):
            new_p[i] = p1[j]
            new.m[i], new.v[i], new.steps[i] = st1.m[j], st1.v[j], s + 1
    return tuple(new_p), new


def _f64(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _step(
    d: ContractDeviation, c: Contract, rr: ReferenceRun, t: int, params: Any, st: ArrayStates,
    grads: Any,
) -> tuple[Any, ArrayStates]:  # fmt: skip
    if d.whole_layers:
        return counted_skipped_step(c, rr.flat, t, params, st, grads)
    z = InputErrors.zeros(rr.flat.size, st.vmax is not None)
    cs = contract_step(c, rr.flat, t, params, st, grads, rr.dtype, rr.state_dtype, z, z)
    out = cs.states
    if d.eager_count:
        out.steps = [s + 1 if g is None and s > 0 else s for g, s in zip(grads, out.steps)]
    return cs.params, out


def _resync_error(d: ContractDeviation, rr: ReferenceRun, rs: ResyncStep, port: Any) -> float:
    assert rr.contract is not None
    s = rs.state
    n = len(rs.params)
    vmax = None if s.vmax is None else list(s.vmax)
    st = ArrayStates(list(s.m), list(s.v), vmax, [int(s.step)] * n)
    p, _ = _step(d, d.contract(rr.contract), rr, rs.t, rs.params, st, rs.grads)
    return budget_error(rr.flat.cat(port), rr.flat.cat(p), np.asarray(rs.bounds[N.PARAMS]))


def _free_error(d: ContractDeviation, rr: ReferenceRun, port: Sequence[np.ndarray]) -> float:
    assert rr.contract is not None
    c = d.contract(rr.contract)
    p: Any = rr.params[0]
    st = ArrayStates.zeros(p, amsgrad_of(c))
    worst = 1.0
    for t, got in enumerate(port, start=1):
        p, st = _step(d, c, rr, t, p, st, rr.grads[t - 1])
        b = np.asarray(rr.free_bounds[t - 1][N.PARAMS])
        worst = max(worst, budget_error(np.asarray(got), rr.flat.cat(p), b))
    return worst


def _reference_errors(evidence: Sequence[Evidence], runs: Sequence[Run]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ev in evidence:
        for e in [*ev.history, ev]:
            rs, flat = e.resync, ev.reference.flat
            err = budget_error(flat.cat(e.port_params), rs.ref.theta1, rs.bounds[N.PARAMS])
            out[ev.scenario.name] = max(out.get(ev.scenario.name, 1.0), err)
    for rr, port in runs:
        for t, got in enumerate(port, start=1):
            ref = rr.flat.cat(rr.params[t])
            err = budget_error(np.asarray(got), ref, np.asarray(rr.free_bounds[t - 1][N.PARAMS]))
            out[rr.name] = max(out.get(rr.name, 1.0), err)
    return out


def rank_contract(evidence: Sequence[Evidence], runs: Sequence[Run]) -> list[Cause]:
    """The entries that explain the failing contract scenarios (re-synced ``evidence``, each
    with its history, and free ``runs``), best first; empty when none does (module doc)."""
    ref = {k: e for k, e in _reference_errors(evidence, runs).items() if e > 1.0}
    if not ref:
        return []
    runs_of = {ev.scenario.name: ev.reference for ev in evidence}
    runs_of.update({rr.name: rr for rr, _ in runs})
    causes = []
    for d in ENTRIES:
        if not all(d.applies(rr) for k, rr in runs_of.items() if k in ref):
            continue  # one entry must explain every failing scenario
        err = dict.fromkeys(ref, 1.0)
        try:
            for ev in evidence:
                for e in [*ev.history, ev]:
                    x = _resync_error(d, ev.reference, e.resync, e.port_params)
                    err[ev.scenario.name] = max(err.get(ev.scenario.name, 1.0), x)
            for rr, port in runs:
                err[rr.name] = max(err.get(rr.name, 1.0), _free_error(d, rr, port))
        except ValueError:  # e.g. a layer whose arrays' counts part: not expressible
            continue
        dist = max(distance(err[k], ref[k]) for k in ref)
        if dist < CLEARLY_BETTER:
            causes.append(Cause(d.name, d.description, dist, "contract", d.stage))
    causes.sort(key=lambda c: (c.distance, c.name))
    return causes


def diagnose_contract(
    result: PortResult, evidence: Sequence[Evidence], runs: Sequence[Run]
) -> None:
    """Name the stage and the likely cause of the failing contract scenarios in ``result``
    (after :func:`conformance.diagnose.diagnose`, which judged the other scenarios: what it
    found first is kept)."""
    from .diagnose import first_stage

    if not evidence and not runs:
        return
    diag = dict(result.diagnosis or {})
    if evidence and "stage_scenario" not in diag:  # no other scenario named the stage
        ev = evidence[0]
        result.stage = first_stage(ev.measures) or result.stage
        diag.update(stage=result.stage, stage_step=ev.resync.t, stage_scenario=ev.scenario.name)
        diag["stage_basis"] = "compared " + " and ".join(
            x
            for x, on in (("m/v state", ev.port_state), ("stage intermediates", ev.port_stages))
            if on is not None
        ) if (ev.port_state or ev.port_stages) else "only the parameters can be compared"  # fmt: skip
    if not result.likely_causes:
        causes = rank_contract(evidence, runs)
        if causes:
            result.likely_causes = [(c.name, c.distance, c.description) for c in causes]
            diag["cause_basis"] = "the contract's catalogue (conformance.contract_causes)"
            diag.pop("no_known_deviation", None)
            best = causes[0]
            if result.stage in (None, N.PARAMS):
                result.stage = diag["stage"] = best.stage
                diag["stage_basis"] = (
                    f"inferred from the best-explaining contract entry ({best.name}): the port "
                    "exposes no quantity closer to it than its parameters"
                )
    result.diagnosis = diag
