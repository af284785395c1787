"""Deliberately wrong SET-Adam ports (and deliberately equivalent ones) for the meta-tests.

Nothing here is imported by ``conformance`` itself, and this module imports no framework: the
ports live in ``torch_ports`` (torch.optim.Optimizer subclasses) and ``jax_ports`` (optax
transformations), which import their framework at import time, and in ``outside_torch`` /
``outside_jax``: ports as outside implementers write them, with their own state names and
containers (none uses torch's ``exp_avg``/``exp_avg_sq``/``step`` or optax's ``count``/``mu``/
``nu``), one for every catalogue entry in a readable style and again with the state hidden. They
are written from the mathematics and share nothing with ``setadam_ref``.

:data:`WRONG_PORTS` lists every port as data: where it lives, its bug class, the stage where the
harness should catch it (for ports that expose m/v and stage intermediates), the inputs that
expose it, the catalogue entry in :mod:`conformance.catalogue` that should be named as its most
likely cause, and whether it must instead be accepted (mathematically equivalent ports and
controls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["WRONG_PORTS", "WrongPort", "by_target"]

@dataclass(frozen=True)
class WrongPort:
    """One meta-test port.

    ``stage``: the first quantity, in the harness's computation order (m, v, cos2, down_scaling,
    epsilon_embedding, down_translating, update, params), at which a harness that reads the
    port's m/v state and stage intermediates should see it differ (``cos2`` is the layer's c,
    the first output of down-scaling), or, for a port that exposes nothing closer than its
    parameters, the stage of the catalogue entry that explains it; ``None`` for side-effect ports and for ports that must be
    accepted. ``kind``: the kind of the failure ("tolerance", "nonfinite", "side_effect").
    ``cause``: the catalogue entry that should come first (ties allowed) in ``catalogue.rank``;
    ``None`` where no catalogue entry applies. ``first_step``: first failing re-synced step.
    ``exposed_by``: what a scenario needs to show the bug: ``"any"`` (every scenario with a
    non-trivial gradient), ``"multi_array"``, ``"matrix"`` (an array of rank >= 2), ``"tiny"``
    (v << eps), ``"zero_layer"``, ``"l2"`` / ``"decoupled"`` (weight decay > 0 in that mode),
    ``"maximize"``, ``"multi_group"`` (side effects on other param groups). ``algorithm``: "setadam", or "adam" for
    the Adam ports (checked against the Adam reference and ``ADAM_CATALOGUE``). ``first_step``
    0: not asserted (hidden state: the first failure is a free-running one).
    """

    target: str
    framework: str
    bug_class: str
    stage: str | None
    cause: str | None
    exposed_by: str = "any"
    first_step: int = 1
    must_accept: bool = False
    kind: str = "tolerance"
    algorithm: str = "setadam"
    #: the state container (``outside_torch.STYLES``; "" for the torch-named ports) and whether
    #: it is out of the harness's reach (black-box diagnosis)
    style: str = ""
    hidden: bool = False
    #: base hyperparameters the exposing scenario is checked on top of (e.g. eps_root)
    base: tuple[tuple[str, Any], ...] = ()

    @property
    def attr(self) -> str:
        return self.target.split(":", 1)[1]


_T = "conformance.wrong_ports.torch_ports:"
_J = "conformance.wrong_ports.jax_ports:"
_A = "conformance.wrong_ports.torch_adam_ports:"


def _t(
    attr: str, bug: str, stage: str | None, cause: str | None, exposed: str = "any", first: int = 1
) -> WrongPort:
    return WrongPort(_T + attr, "torch", bug, stage, cause, exposed, first)


def _ok(target: str, framework: str, what: str) -> WrongPort:
    return WrongPort(target, framework, what, None, None, "any", 1, must_accept=True)


WRONG_PORTS: tuple[WrongPort, ...] = (
    # epsilon embedding
    _t("EpsOutsideSqrt", "eps outside the sqrt", "epsilon_embedding", "eps_outside_sqrt"),
    _t("EpsBiasCorrected", "eps bias-corrected", "epsilon_embedding", "eps_bias_corrected"),
    _t("EpsScaledByC", "eps before down-scaling", "epsilon_embedding", "eps_scaled_by_c"),
    # bias correction and step counter
    _t("NoBiasCorrection1", "lr not divided by 1 - beta1^t", "update", "no_bias_correction1"),
    _t("NoBiasCorrection2", "v not bias-corrected", "epsilon_embedding", "no_bias_correction2"),
    _t("StepPlusOne", "step counter t + 1", "epsilon_embedding", "step_plus_one"),
    # re-synced it reads as a stale counter (step_minus_one); its free run, t = 1 for ever,
    # contradicts that, and the free-running evidence names it: step_frozen
    _t(
        "FrozenStepCounter",
        "step counter frozen after step 1",
        "epsilon_embedding",
        "step_frozen",
        first=2,
    ),
    # moments
    # their v (m) after one step is not (1 - beta2) g^2 ((1 - beta1) g): another convention,
    # so never re-synced; diagnosed from the parameters
    WrongPort(_T + "AdaBeliefV", "torch", "AdaBelief-style v", "v", "adabelief_v", hidden=True),
    WrongPort(_T + "SwappedBetas", "torch", "betas swapped", "m", "swapped_betas", hidden=True),
    # down-scaling and layers
    _t("Cos2EpsGuard", "guard eps in the cos^2 denominator", "cos2", "cos2_guard_eps", "tiny"),
    _t(
        "Cos2TinyGuard",
        "guard 1e-16 in the cos^2 denominator",
        "cos2",
        "cos2_guard_1e-16",
        "tiny",
    ),
    _t("CosNotSquared", "cos instead of cos^2", "cos2", "cos_not_squared"),
    _t("NoDownScaling", "down-scaling omitted", "cos2", "no_down_scaling"),
    _t("GlobalCos2", "global cos^2", "cos2", "global_cos2", "multi_array"),
    _t(
        "WholeModelOneLayer",
        "whole model one layer",
        "cos2",
        "whole_model_one_layer",
        "multi_array",
    ),
    _t("PerRowLayers", "per-row layers", "cos2", "per_row_layers", "matrix"),
    WrongPort(
        _T + "NaNOnZeroLayer",
        "torch",
        "NaN where the reference is finite (0/0 on an all-zero layer)",
        "down_scaling",
        "cos2_zero_layer_nan",
        "zero_layer",
        kind="nonfinite",
    ),
    # down-translating
    _t("GlobalMin", "global minimum", "down_translating", "global_min", "multi_array"),
    _t("TranslateByMean", "translation by tau * mean", "down_translating", "translate_mean"),
    _t("TranslateByMax", "translation by tau * max", "down_translating", "translate_max"),
    _t("TranslateV", "tau applied to v", "epsilon_embedding", "translate_v"),
    _t("NoDownTranslating", "down-translating omitted", "down_translating", "no_down_translating"),
    # gradient, weight decay
    _t("IgnoresMaximize", "maximize ignored", "m", "maximize_ignored", "maximize"),
    _t("IgnoresWeightDecay", "weight decay ignored", "m", "weight_decay_ignored", "l2"),
    _t("WeightDecayModeSwapped", "weight-decay mode swapped", "m", "wd_mode_swapped", "l2"),
    _t(
        "DecoupledWithoutLr",
        "decoupled decay without lr",
        "update",
        "decoupled_without_lr",
        "decoupled",
    ),
    # a typical public port: no tau argument (0.5), guard 1e-16 in the cos^2 denominator
    _t(
        "PublicStyleSETAdam",
        "public-style port (guard 1e-16, tau fixed)",
        "cos2",
        "cos2_guard_1e-16",
        "tiny",
    ),
    # side effects
    WrongPort(
        _T + "MutatesGrads", "torch", "gradients mutated in place", None, None, kind="side_effect"
    ),
    WrongPort(
        _T + "TouchesOtherGroups",
        "torch",
        "parameters of other groups touched",
        None,
        None,
        "multi_group",
        kind="side_effect",
    ),
    # JAX / optax
    WrongPort(
        _J + "eps_outside_sqrt", "jax", "eps outside the sqrt", "epsilon_embedding", "eps_outside_sqrt"
    ),
    WrongPort(
        _J + "whole_model_one_layer",
        "jax",
        "whole model one layer",
        "down_scaling",
        "whole_model_one_layer",
        "multi_array",
    ),
    WrongPort(
        _J + "no_bias_correction1",
        "jax",
        "lr not divided by 1 - beta1^t",
        "update",
        "no_bias_correction1",
    ),
    # Adam (torch), against the Adam reference; no stages, so caught at params
    WrongPort(
        _A + "AdamEpsInsideSqrt",
        "torch",
        "Adam: eps inside the sqrt",
        "denom",
        "adam_eps_inside_sqrt",
        "tiny",
        algorithm="adam",
    ),
    WrongPort(
        _A + "AdamNoBiasCorrection2",
        "torch",
        "Adam: v not bias-corrected",
        "denom",
        "adam_no_bias_correction2",
        algorithm="adam",
    ),
    WrongPort(
        _A + "AdamDecoupledWithoutLr",
        "torch",
        "AdamW: decay without lr",
        "update",
        "adam_decoupled_without_lr",
        "decoupled",
        algorithm="adam",
    ),
    # must be accepted: controls and mathematically equivalent rewrites
    _ok(_T + "StagedSETAdam", "torch", "control (correct base of the torch wrong ports)"),
    _ok(_T + "EqSqrtOrder", "torch", "equivalent: sqrt(vs + eps*bc2) / sqrt(bc2)"),
    _ok(
        _T + "EqScaleAfterBiasCorrection", "torch", "equivalent: c after bias correction, min on v"
    ),
    _ok(
        _T + "EqFusedArithmetic",
        "torch",
        "equivalent: lerp moments, mean-form cos^2, reordered update",
    ),
    _ok(_J + "setadam_control", "jax", "control (correct base of the jax wrong ports)"),
    WrongPort(
        _A + "StagedAdam",
        "torch",
        "Adam control (correct)",
        None,
        None,
        must_accept=True,
        algorithm="adam",
    ),
)


_O = "conformance.wrong_ports.outside_torch:"
_OJ = "conformance.wrong_ports.outside_jax:"

#: the inputs that expose each outside-style mistake (``WrongPort.exposed_by``; "any" otherwise)
EXPOSED_BY: dict[str, str] = {
    **dict.fromkeys(
        ("eps_omitted", "cos2_guard_1e-16", "cos2_guard_eps", "cos2_guard_1e-20",
         "cos2_sum_sq_guard_1e-20", "cos2_sum_sq_guard_1e-16", "cos2_sum_sq_guard_eps",
         "cos2_sum_guard_1e-16", "cos2_norm_clamp_eps", "sqrt_arg_guard_1e-16", "w_guard_1e-16",
         "update_guard_1e-16", "adam_eps_inside_sqrt", "adam_eps_twice", "adam_update_guard_eps",
         "adam_eps_root_ignored"),
        "tiny",
    ),
    **dict.fromkeys(("weight_decay_ignored", "wd_mode_swapped", "l2_in_m_only",
                     "adam_weight_decay_ignored", "adam_wd_mode_swapped", "adam_l2_in_m_only"), "l2"),
    **dict.fromkeys(("decoupled_without_lr", "adam_decoupled_without_lr"), "decoupled"),
    **dict.fromkeys(("maximize_ignored", "adam_maximize_ignored"), "maximize"),
    **dict.fromkeys(("cos2_zero_layer_nan", "min_over_nonzero"), "zero_layer"),
    **dict.fromkeys(("adam_amsgrad_mode_swapped", "adam_amsgrad_ignored"), "amsgrad"),
    "tau_fixed_half": "tau",
}  # fmt: skip
#: first failing re-synced step, where it is not step 1 (None: the re-synced steps pass)
_FIRST = {"step_minus_one": 2, "adam_step_minus_one": 2, "step_frozen": 2, "adam_step_frozen": 2,
          "cos2_of_grad_sq": 2, "adam_amsgrad_mode_swapped": 2,
          "amsgrad_not_asked": None}  # fmt: skip
#: mistakes whose state is not in the reference's convention after one step from zero (a v of
#: residuals, swapped betas, a bias-corrected m), has no v at all (Lion) or no vmax under
#: amsgrad: never re-synced, so diagnosed black-box whatever the container
BLACK_BOX = ("adabelief_v", "swapped_betas", "m_bias_corrected_in_place", "adam_adabelief_v",
             "adam_swapped_betas", "adam_m_bias_corrected_in_place", "adabelief", "lion",
             "adam_corrected_moments_float32",
             # keeps no vmax under amsgrad: state discovery cannot tell it from a port whose
             # maximum is out of reach, and an amsgrad state is never re-synced without its vmax
             "adam_amsgrad_ignored")  # fmt: skip
def _readable_stage(entry_stage: str) -> str:
    """The first quantity a harness reading the state sees differ: a wrong gradient shows in m."""
    return "m" if entry_stage == "grad" else entry_stage


def outside_rows(stages: dict[str, str], setadam_bugs: list[str], adam_bugs: list[str]) -> tuple[WrongPort, ...]:
    """Rows for every outside-style planted port (``outside_torch.PORTS``): each mistake in its
    readable style (re-synced diagnosis) and hidden (black-box). ``stages``: entry -> the stage
    of its catalogue entry (``conformance.catalogue``), passed in so that this module imports
    nothing of the harness."""
    styles = ("Dict", "Attr", "Closure", "Stacked")
    out = []
    for alg, bugs in (("setadam", setadam_bugs), ("adam", adam_bugs)):
        label = "Adam" if alg == "adam" else "SETAdam"
        for i, bug in enumerate(bugs):
            exposed = EXPOSED_BY.get(bug, "any")
            base = (("eps_root", 1e-8),) if bug == "adam_eps_root_ignored" else ()
            kind = "nonfinite" if bug == "cos2_zero_layer_nan" else "tolerance"
            style = styles[i % len(styles)]
            no_v = bug in BLACK_BOX
            out.append(WrongPort(
                f"{_O}{style}{label}_{bug}", "torch", f"outside-style: {bug}",
                stages[bug] if no_v else _readable_stage(stages[bug]), bug, exposed,
                0 if no_v else _FIRST.get(bug, 1) or 0, kind=kind, algorithm=alg, style=style,
                hidden=no_v, base=base,
            ))
            out.append(WrongPort(
                f"{_O}Hidden{label}_{bug}", "torch", f"outside-style, state hidden: {bug}",
                stages[bug], bug, exposed, 0, kind=kind, algorithm=alg, style="Hidden",
                hidden=True, base=base,
            ))  # fmt: skip
    return tuple(out)


#: the JAX outside-style ports, one per stage (their state in other field names and containers)
OUTSIDE_JAX: tuple[WrongPort, ...] = (
    WrongPort(_OJ + "moments_v_eps_in_place", "jax", "eps added to the stored v", "v", "v_eps_in_place", style="jax"),
    WrongPort(_OJ + "scaling_unbiased_var", "jax", "cos^2 with torch.var's d - 1", "down_scaling", "cos2_unbiased_var", style="jax"),
    WrongPort(_OJ + "embedding_tf_style", "jax", "TF-style eps", "epsilon_embedding", "tf_style_eps", style="jax"),
    WrongPort(_OJ + "translating_min_before_scaling", "jax", "min from unscaled v", "down_translating", "min_before_scaling", style="jax"),
    WrongPort(_OJ + "update_bias_corrections_float32", "jax", "float32 bias corrections", "epsilon_embedding", "bias_corrections_float32", style="jax"),
    WrongPort(_OJ + "outside_control", "jax", "control (outside-style state)", None, None, must_accept=True, style="jax"),
)  # fmt: skip
#: the SET-Adam authors' public port as the issue describes it (state read, and hidden)
AUTHORS: tuple[WrongPort, ...] = (
    WrongPort(_O + "AuthorsStyleSETAdam", "torch", "authors' port: guard 1e-20 on sum(v^2)", "down_scaling",
              "cos2_sum_sq_guard_1e-20", "tiny", style="Dict"),
    WrongPort(_O + "AuthorsStyleSETAdamHidden", "torch", "authors' port, state hidden", "down_scaling",
              "cos2_sum_sq_guard_1e-20", "tiny", first_step=0, style="Hidden", hidden=True),
)  # fmt: skip


def by_target(target: str) -> WrongPort:
    """The entry whose ``target`` (``module:attr``) or attribute name is ``target``."""
    for w in WRONG_PORTS:
        if target in (w.target, w.attr):
            return w
    raise KeyError(target)
