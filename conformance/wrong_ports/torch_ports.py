"""Deliberately wrong (and deliberately equivalent) PyTorch SET-Adam ports for the meta-tests.

Each class overrides exactly one stage of :class:`StagedSETAdam` (a correct SET-Adam written
from the mathematics, never from ``setadam_ref``). The docstring of each names its bug class,
the catalogue entry in ``conformance.catalogue`` that should explain it (if any), and where the
harness should catch it. ``conformance.wrong_ports.CATALOGUE`` holds the same facts as data.

Every class is constructed like a torch.optim optimizer,
``cls(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, tau=0.5,
decoupled_weight_decay=False, maximize=False)``, so it can also be checked through the
third-party path ``setadam-conformance check conformance.wrong_ports.torch_ports:NAME``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from conformance.wrong_ports._torch_base import Segment, StagedSETAdam

__all__ = [
    "AdaBeliefV",
    "Cos2EpsGuard",
    "Cos2TinyGuard",
    "CosNotSquared",
    "DecoupledWithoutLr",
    "EpsBiasCorrected",
    "EpsOutsideSqrt",
    "EpsScaledByC",
    "EqFusedArithmetic",
    "EqScaleAfterBiasCorrection",
    "EqSqrtOrder",
    "FrozenStepCounter",
    "GlobalCos2",
    "GlobalMin",
    "IgnoresMaximize",
    "IgnoresWeightDecay",
    "MutatesGrads",
    "NaNOnZeroLayer",
    "NoBiasCorrection1",
    "NoBiasCorrection2",
    "NoDownScaling",
    "NoDownTranslating",
    "PerRowLayers",
    "PublicStyleSETAdam",
    "StagedSETAdam",
    "StepPlusOne",
    "SwappedBetas",
    "TouchesOtherGroups",
    "TranslateByMax",
    "TranslateByMean",
    "TranslateV",
    "WeightDecayModeSwapped",
    "WholeModelOneLayer",
]


# --------------------------------------------------------------------------- epsilon embedding
class EpsOutsideSqrt(StagedSETAdam):
    """Bug class: eps outside the square root, Adam style: w = sqrt(vs / bc2) + eps.

    Stage: epsilon_embedding, from step 1, every scenario (largest where v << eps, i.e. tiny
    gradients). Catalogue: ``eps_outside_sqrt``.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(vs / bc2) + eps


class EpsBiasCorrected(StagedSETAdam):
    """Bug class: eps bias-corrected together with v: w = sqrt((vs + eps) / bc2).

    Stage: epsilon_embedding, from step 1 (the effect shrinks as bc2 -> 1, so it is largest in
    early steps and with beta2 near 1). Catalogue: ``eps_bias_corrected``.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt((vs + eps) / bc2)


class EpsScaledByC(StagedSETAdam):
    """Bug class: eps embedded before down-scaling: w = sqrt(c * (v / bc2 + eps)).

    Stage: epsilon_embedding (v_scaled itself is right), from step 1, wherever c < 1.
    Catalogue: ``eps_scaled_by_c``.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(c * (v / bc2 + eps))


# --------------------------------------------------------------------------- bias correction
class NoBiasCorrection1(StagedSETAdam):
    """Bug class: lr not divided by the first bias correction (1 - beta1^t).

    Stage: update (m, v, w and translated w are right), from step 1; the effect decays like
    beta1^t. Catalogue: ``no_bias_correction1``.
    """

    def _apply(self, p: Tensor, m: Tensor, wt: Tensor, lr: float, bc1: float) -> None:
        p.addcdiv_(m, wt, value=-lr)


class NoBiasCorrection2(StagedSETAdam):
    """Bug class: second moment not bias-corrected: w = sqrt(vs + eps).

    Stage: epsilon_embedding, from step 1; decays like beta2^t (slowly). Catalogue:
    ``no_bias_correction2``.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(vs + eps)


# --------------------------------------------------------------------------- step counter
class StepPlusOne(StagedSETAdam):
    """Bug class: step counter one ahead (counter starts at 1, incremented before use): t + 1.

    Stage: epsilon_embedding (bc2 is wrong), from step 1. Catalogue: ``step_plus_one``.
    """

    def _count(self, state: dict[str, Any]) -> int:
        state["step"] += 1
        return round(float(state["step"])) + 1


class FrozenStepCounter(StagedSETAdam):
    """Bug class: step counter incremented only on the first step (a misplaced ``if``).

    Right on step 1; from step 2 on the bias corrections use a stale t. Run free, t stays 1;
    re-synced from the reference state at step k it uses t = k - 1. Stage: epsilon_embedding,
    first failing step 2. Catalogue: ``step_minus_one`` (stale counter, t - 1 from step 2).
    """

    def _count(self, state: dict[str, Any]) -> int:
        if float(state["step"]) == 0.0:
            state["step"] += 1
        return round(float(state["step"]))


# --------------------------------------------------------------------------- moments
class AdaBeliefV(StagedSETAdam):
    """Bug class: AdaBelief-style second moment, v = EMA of (g - m)^2 instead of g^2.

    Stage: v (the state differs), from step 1. Catalogue: ``adabelief_v``.
    """

    def _moments(self, m: Tensor, v: Tensor, g: Tensor, beta1: float, beta2: float) -> None:
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        d = g - m
        v.mul_(beta2).addcmul_(d, d, value=1.0 - beta2)


class SwappedBetas(StagedSETAdam):
    """Bug class: beta1 and beta2 swapped between the moments (m with beta2, v with beta1).

    Stage: m, from step 1. Catalogue: ``swapped_betas``.
    """

    def _moments(self, m: Tensor, v: Tensor, g: Tensor, beta1: float, beta2: float) -> None:
        m.mul_(beta2).add_(g, alpha=1.0 - beta2)
        v.mul_(beta1).addcmul_(g, g, value=1.0 - beta1)


# --------------------------------------------------------------------------- down-scaling
class Cos2EpsGuard(StagedSETAdam):
    """Bug class: guard constant in the cos^2 denominator, c = S1^2 / (d * S2 + eps).

    Computed on raw sums (as public ports do). Stage: down_scaling, from step 1; huge where
    v is small (tiny gradients: S2 << eps so c collapses to ~0), negligible where d * S2 >>
    eps. Catalogue: ``cos2_guard_eps``.
    """

    def _cos2(self, v: Tensor) -> Tensor:
        s1 = v.sum()
        eps = float(self.param_groups[0]["eps"])
        return s1 * s1 / (v.numel() * (v * v).sum() + eps)


class Cos2TinyGuard(StagedSETAdam):
    """Bug class: guard constant 1e-16 in the cos^2 denominator, c = S1^2 / (d * S2 + 1e-16).

    Stage: down_scaling, from step 1, only where d * S2 is not >> 1e-16 (tiny gradients).
    Catalogue: ``cos2_guard_1e-16``.
    """

    def _cos2(self, v: Tensor) -> Tensor:
        s1 = v.sum()
        return s1 * s1 / (v.numel() * (v * v).sum() + 1e-16)


class CosNotSquared(StagedSETAdam):
    """Bug class: cos instead of cos^2: c = S1 / sqrt(d * S2).

    Stage: down_scaling, from step 1, every layer with non-constant v. Catalogue:
    ``cos_not_squared``.
    """

    def _cos2(self, v: Tensor) -> Tensor:
        c2 = super()._cos2(v)
        return torch.sqrt(c2)


class NoDownScaling(StagedSETAdam):
    """Bug class: down-scaling omitted (c = 1).

    Stage: down_scaling, from step 1, every layer with non-constant v. Catalogue:
    ``no_down_scaling``.
    """

    def _cos2(self, v: Tensor) -> Tensor:
        return torch.ones((), dtype=v.dtype, device=v.device)


class GlobalCos2(StagedSETAdam):
    """Bug class: global instead of layerwise statistics for cos^2 (one c for all tensors).

    Stage: down_scaling, from step 1, scenarios with more than one tensor. Catalogue:
    ``global_cos2``.
    """

    def _scale_segments(self, shapes: list[torch.Size]) -> list[Segment]:
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        return [(0, n)]


class NaNOnZeroLayer(StagedSETAdam):
    """Bug class: NaN where the reference is finite: cos^2 computed as S1^2 / (d * S2) with no
    case for an all-zero layer, so 0/0 = NaN propagates into the parameters.

    Caught as non-finite output (stage down_scaling) in the all-zero-layer scenario only, from
    step 1; exact elsewhere. Catalogue: none (nonfinite check).
    """

    def _cos2(self, v: Tensor) -> Tensor:
        s1 = v.sum()
        return s1 * s1 / (v.numel() * (v * v).sum())


# --------------------------------------------------------------------------- layer split
class WholeModelOneLayer(StagedSETAdam):
    """Bug class: wrong layer split, the whole parameter group is one layer (c and min global).

    Stage: down_scaling, from step 1, scenarios with more than one tensor. Catalogue:
    ``whole_model_one_layer``.
    """

    def _segments(self, shapes: list[torch.Size]) -> list[Segment]:
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        return [(0, n)]


class PerRowLayers(StagedSETAdam):
    """Bug class: wrong layer split, every row of a matrix is its own layer.

    Stage: down_scaling, from step 1, scenarios with a tensor of rank >= 2. Catalogue:
    ``per_row_layers``.
    """

    def _segments(self, shapes: list[torch.Size]) -> list[Segment]:
        out: list[Segment] = []
        start = 0
        for s in shapes:
            n = int(torch.Size(s).numel())
            if len(s) >= 2 and s[0] > 0:
                r = n // s[0]
                out.extend((start + i * r, start + (i + 1) * r) for i in range(s[0]))
            else:
                out.append((start, start + n))
            start += n
        return out


# --------------------------------------------------------------------------- down-translating
class GlobalMin(StagedSETAdam):
    """Bug class: global instead of layerwise minimum in down-translating.

    Stage: down_translating, from step 1, scenarios with more than one tensor. Catalogue:
    ``global_min``.
    """

    def _translate_segments(self, shapes: list[torch.Size]) -> list[Segment]:
        n = sum(int(torch.Size(s).numel()) for s in shapes)
        return [(0, n)]


class TranslateByMean(StagedSETAdam):
    """Bug class: translation by tau * mean(w) instead of tau * min(w).

    Stage: down_translating, from step 1. Catalogue: ``translate_mean``.
    """

    def _translate(self, w: Tensor, tau: float) -> Tensor:
        return w - tau * w.mean()


class TranslateByMax(StagedSETAdam):
    """Bug class: translation by tau * max(w) instead of tau * min(w).

    Stage: down_translating, from step 1 (can make w_translated tiny or negative: huge or
    sign-flipped steps). Catalogue: ``translate_max``.
    """

    def _translate(self, w: Tensor, tau: float) -> Tensor:
        return w - tau * w.max()


class TranslateV(StagedSETAdam):
    """Bug class: tau applied to v instead of w: w = sqrt((vs - tau * min vs) / bc2 + eps).

    Reported as: v_scaled right, w (epsilon_embedding) already translated, no further
    translation. Stage: epsilon_embedding, from step 1. Catalogue: ``translate_v``.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        tau = float(self.param_groups[0]["tau"])
        return torch.sqrt((vs - tau * vs.min()) / bc2 + eps)

    def _translate(self, w: Tensor, tau: float) -> Tensor:
        return w.clone()


class NoDownTranslating(StagedSETAdam):
    """Bug class: down-translating omitted (wt = w).

    Stage: down_translating, from step 1, whenever tau > 0. Catalogue: ``no_down_translating``.
    """

    def _translate(self, w: Tensor, tau: float) -> Tensor:
        return w.clone()


# --------------------------------------------------------------------------- gradient, decay
class IgnoresMaximize(StagedSETAdam):
    """Bug class: ``maximize=True`` accepted but ignored (descends instead of ascending).

    Stage: grad (m then differs in sign), from step 1, only with maximize. Catalogue:
    ``maximize_ignored``.
    """

    def _grad(self, p: Tensor, g: Tensor, group: dict[str, Any]) -> Tensor:
        return super()._grad(p, g, {**group, "maximize": False})


class IgnoresWeightDecay(StagedSETAdam):
    """Bug class: weight decay accepted but ignored: wrong only in weight-decay scenarios.

    Stage: grad (l2) or update (decoupled), from step 1, only where weight_decay > 0.
    Catalogue: ``weight_decay_ignored``.
    """

    def _grad(self, p: Tensor, g: Tensor, group: dict[str, Any]) -> Tensor:
        return super()._grad(p, g, {**group, "weight_decay": 0.0})

    def _decay(self, p: Tensor, group: dict[str, Any]) -> None:
        return None


class WeightDecayModeSwapped(StagedSETAdam):
    """Bug class: wrong weight-decay mode: l2 requested gives decoupled and vice versa.

    Stage: grad (the l2 term is missing or spurious), from step 1, only where weight_decay > 0.
    Catalogue: ``wd_mode_swapped``.
    """

    def _grad(self, p: Tensor, g: Tensor, group: dict[str, Any]) -> Tensor:
        flip = {**group, "decoupled_weight_decay": not group["decoupled_weight_decay"]}
        return super()._grad(p, g, flip)

    def _decay(self, p: Tensor, group: dict[str, Any]) -> None:
        flip = {**group, "decoupled_weight_decay": not group["decoupled_weight_decay"]}
        super()._decay(p, flip)


class DecoupledWithoutLr(StagedSETAdam):
    """Bug class: decoupled weight decay without the lr factor: theta *= (1 - wd).

    Stage: update, from step 1, only with decoupled weight decay. Catalogue:
    ``decoupled_without_lr``.
    """

    def _decay(self, p: Tensor, group: dict[str, Any]) -> None:
        wd = group["weight_decay"]
        if wd != 0 and group["decoupled_weight_decay"]:
            p.mul_(1.0 - wd)


# --------------------------------------------------------------------------- side effects
class MutatesGrads(StagedSETAdam):
    """Bug class: side effect, the gradient is squared in place (``g.mul_(g)``) to save a
    temporary. The parameters, m and v are exactly right; only ``p.grad`` is clobbered.

    Caught by the side-effect check (gradients mutated in place), from step 1, every scenario
    with a non-trivial gradient. Catalogue: none.
    """

    def _moments(self, m: Tensor, v: Tensor, g: Tensor, beta1: float, beta2: float) -> None:
        m.mul_(beta1).add_(g, alpha=1.0 - beta1)
        g.mul_(g)
        v.mul_(beta2).add_(g, alpha=1.0 - beta2)


class TouchesOtherGroups(StagedSETAdam):
    """Bug class: side effect, the port flattens the parameters of *all* param groups into one
    list when it first steps, steps that list with the first group's hyperparameters, and treats
    a missing gradient as zero. Parameters with a gradient in the first group are updated
    exactly right; a parameter of another group without a gradient gets state (and, with
    decoupled weight decay, a changed value).

    Caught by the side-effect check (the harness's sentinel parameter in a second param group,
    with no gradient, must stay untouched and stateless), from step 1, every scenario. Catalogue:
    none.
    """

    def _group_params(self, group: dict[str, Any]) -> list[Tensor]:
        if group is not self.param_groups[0]:
            return []
        return [p for g in self.param_groups for p in g["params"]]

    def _grad(self, p: Tensor, g: Tensor | None, group: dict[str, Any]) -> Tensor:
        return super()._grad(p, torch.zeros_like(p) if g is None else g, group)


# --------------------------------------------------------------------------- a public-style port
class PublicStyleSETAdam(StagedSETAdam):
    """What public PyTorch SET-Adam ports typically look like (ALGORITHM.md): the torch.optim
    constructor ``(params, lr, betas, eps, weight_decay)`` with no ``tau`` argument (tau fixed at
    0.5), one layer per tensor, l2 weight decay, and a small guard constant in the cos^2
    denominator, c = S1^2 / (d * S2 + 1e-16).

    Exact wherever d * S2 >> 1e-16; caught at ``cos2`` on ``tiny_gradients`` (from step 1), with
    ``cos2_guard_1e-16`` named. Through the third-party path without ``--hyper tau=...`` the
    scenarios that change tau are skipped, with the reason in the report.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _cos2(self, v: Tensor) -> Tensor:
        s1 = v.sum()
        return s1 * s1 / (v.numel() * (v * v).sum() + 1e-16)


# --------------------------------------------------------------------------- equivalent ports
class EqSqrtOrder(StagedSETAdam):
    """Mathematically equivalent, arithmetically different: w = sqrt(vs + eps * bc2) / sqrt(bc2).

    Equal to sqrt(vs / bc2 + eps) in exact arithmetic. MUST be accepted (no false alarm).
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(vs + eps * bc2) / math.sqrt(bc2)


class EqScaleAfterBiasCorrection(StagedSETAdam):
    """Mathematically equivalent: c applied after the bias correction, w = sqrt(c * (v / bc2) +
    eps), and the layer minimum taken on v (min w = sqrt(c * min v / bc2 + eps), w increasing
    in v). MUST be accepted.
    """

    def _embed(self, vs: Tensor, v: Tensor, c: Tensor, bc2: float, eps: float) -> Tensor:
        return torch.sqrt(c * (v / bc2) + eps)

    def _layer_pass(
        self, v_flat: Tensor, shapes: list[torch.Size], bc2: float, eps: float, tau: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        vs, w, _, c_el = super()._layer_pass(v_flat, shapes, bc2, eps, tau)
        wt = torch.empty_like(w)
        for a, b in self._segments(shapes):
            if b > a:
                wmin = torch.sqrt(c_el[a] * v_flat[a:b].min() / bc2 + eps)
                wt[a:b] = w[a:b] - tau * wmin
        return vs, w, wt, c_el


class EqFusedArithmetic(StagedSETAdam):
    """Mathematically equivalent: different operation order everywhere a fused kernel might
    reorder: cos^2 as mean(v)^2 / mean(v^2) on v / max v, m and v via lerp, the update as
    p -= (lr * m) / (bc1 * wt). MUST be accepted.
    """

    def _moments(self, m: Tensor, v: Tensor, g: Tensor, beta1: float, beta2: float) -> None:
        m.lerp_(g, 1.0 - beta1)
        v.lerp_(g * g, 1.0 - beta2)

    def _cos2(self, v: Tensor) -> Tensor:
        top = v.max()
        if float(top) == 0.0:
            return torch.ones((), dtype=v.dtype, device=v.device)
        u = v / top
        mean = u.mean()
        c: Tensor = mean * mean / (u * u).mean()
        return c

    def _apply(self, p: Tensor, m: Tensor, wt: Tensor, lr: float, bc1: float) -> None:
        p.sub_((lr * m) / (bc1 * wt))
