"""Third-party implementations by import path (``MODULE:ATTR``), torch or JAX.

torch target: an optimizer class called as
``cls(params, lr=..., betas=(b1, b2), eps=..., weight_decay=..., **hyper)`` and stepped by setting
``.grad`` and calling ``.step()``. JAX target: a callable returning an optax
GradientTransformation, called as ``f(learning_rate=..., b1=..., b2=..., eps=..., **hyper)`` plus
``weight_decay=...`` when a scenario uses weight decay.

``hyper`` values go to the target's constructor and, where the reference config has a field of
that name, to the reference config too (so ``--hyper tau=0.3`` checks against tau = 0.3); a name
the reference lacks is a note (:func:`hyper_notes`). ``target_hyper`` goes to the target only, as
given; ``reference_hyper`` to the reference config only (``eps_mode="tf"``, optax's
``amsgrad_mode``). A scenario that changes a hyperparameter runs when the target takes it: by
``hyper``, or by a parameter of that name in its signature (torch.optim.Adam's ``amsgrad``,
``maximize``), which then receives the scenario's value; otherwise (tau, maximize, amsgrad, the
other weight-decay mode, ...) it is skipped for that target, with the reason in the report. A JAX
target whose signature names ``weight_decay`` always receives it, 0.0 included (optax.adamw's
default is 1e-4), and is checked in the declared ``weight_decay_mode`` only.

Loading checks the calling convention before anything is judged: a target whose signature
cannot take the harness's arguments (or whose constructor says so with a ``TypeError`` about an
unexpected or missing argument), ``--device cuda`` without a CUDA device, and torch's
``capturable=True`` on the CPU raise :class:`~conformance.session.PortSetupError` naming the
argument or device (exit 2: the target was not judged).

Python API for scripts and meta-tests: ``torch_factory(cls, ...)`` / ``jax_factory(fn, ...)``
return ``(factory, supports, base_config)`` for ``conformance.runner.check_port``;
``spec(target, framework, algorithm, ...)`` returns a ``PortSpec`` (the target imported here);
``remote_spec(...)`` returns one whose target is imported only by a worker process.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from setadam_ref import AdamConfig, Config, SETAdamConfig

from ..results import PortLocator, PortSpec
from ..session import PortSetupError

#: hyperparameters every target takes by the calling convention
_TORCH_BASE = frozenset({"lr", "betas", "eps", "weight_decay"})
_JAX_BASE = frozenset({"lr", "betas", "eps"})


def parse_value(text: str) -> Any:
    """A ``--hyper`` value: a Python literal where possible (``true``/``false`` accepted)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_hyper(items: list[str] | None, option: str = "--hyper") -> dict[str, Any]:
    """``NAME=VALUE`` items of ``option`` as a dict (ValueError naming the option)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{option} expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        if not k.strip().isidentifier():
            raise ValueError(f"{option} name {k!r} is not an identifier")
        out[k.strip()] = parse_value(v)
    return out


def load_target(target: str) -> Any:
    """Import ``MODULE:ATTR`` (ATTR may be dotted); ImportError/AttributeError with a clear text."""
    if ":" not in target:
        raise ValueError(f"target must be MODULE:ATTR, got {target!r}")
    mod_name, attr = target.split(":", 1)
    mod = importlib.import_module(mod_name)
    obj: Any = mod
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _config_class(algorithm: str) -> type[AdamConfig] | type[SETAdamConfig]:
    return AdamConfig if algorithm == "adam" else SETAdamConfig


def _field_names(algorithm: str) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(_config_class(algorithm)))


def base_config(
    algorithm: str,
    hyper: Mapping[str, Any],
    weight_decay_mode: str = "l2",
    reference_hyper: Mapping[str, Any] | None = None,
) -> Config:
    """The reference config a target's defaults plus ``hyper`` (the names the reference has)
    and ``reference_hyper`` (every name must be a field: ValueError otherwise) correspond to."""
    cls = _config_class(algorithm)
    names = _field_names(algorithm)
    bad = sorted(set(reference_hyper or {}) - names)
    if bad:
        raise ValueError(
            f"--reference-hyper {bad[0]}: the reference {cls.__name__} has no field {bad[0]!r} "
            f"(its fields: {', '.join(sorted(names))})"
        )
    kw = {k: v for k, v in hyper.items() if k in names}
    kw.update(reference_hyper or {})
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    kw["weight_decay_mode"] = weight_decay_mode
    cfg: Config = cls(**kw)
    return cfg


# --- issue 11: hyperparameters by side, scenarios by signature --------------------------------

#: reference fields the calling convention itself passes (never taken from a signature)
_CONVENTION = frozenset({"lr", "betas", "eps", "weight_decay", "weight_decay_mode"})


def hyper_notes(algorithm: str, hyper: Mapping[str, Any]) -> list[str]:
    """A note for every ``--hyper`` name the reference config lacks (it reaches the target
    only, so the check is against the reference's own value of nothing: say so, once)."""
    cls = _config_class(algorithm).__name__
    names = _field_names(algorithm)
    return [
        f"--hyper {k}: the reference {cls} has no field {k!r}, so it goes to the target only "
        f"(say so with --target-hyper {k}=...)"
        for k in hyper
        if k not in names
    ]


def _named(fn: Any, name: str) -> bool:
    """Whether ``fn``'s signature names keyword argument ``name`` itself (not via ``**kw``)."""
    try:
        p = inspect.signature(fn).parameters.get(name)
    except (TypeError, ValueError):
        return False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return p is not None and p.kind in kinds


@dataclasses.dataclass(frozen=True)
class _Extra:
    """The target's arguments beyond the convention: ``hyper`` (a reference field's value follows
    the scenario), ``target`` (target only, as given), ``auto`` (reference fields the signature
    names: passed with the scenario's value when it differs from the base config's)."""

    hyper: Mapping[str, Any]
    target: Mapping[str, Any]
    auto: frozenset[str]
    base: Config

    @staticmethod
    def of(fn: Any, algorithm: str, hyper: Mapping[str, Any], target: Mapping[str, Any],
           base: Config) -> _Extra:  # fmt: skip
        names = _field_names(algorithm) - _CONVENTION - set(hyper) - set(target)
        return _Extra(hyper, target, frozenset(n for n in names if _named(fn, n)), base)

    @property
    def accepted(self) -> frozenset[str]:
        """Reference fields a scenario may change: the target receives the scenario's value."""
        return frozenset(self.hyper) | self.auto

    def kwargs(self, cfg: Config) -> dict[str, Any]:
        kw = {k: getattr(cfg, k) if hasattr(cfg, k) else v for k, v in self.hyper.items()}
        kw.update(
            {n: getattr(cfg, n) for n in sorted(self.auto)
             if getattr(cfg, n) != getattr(self.base, n)}
        )  # fmt: skip
        kw.update(self.target)
        return kw

    def form(self) -> str:
        return "".join(f", {k}=..." for k in {**self.hyper, **self.target})


# --- end issue 11 ---------------------------------------------------------------------------


def _accepts(fn: Any, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (True when it cannot be told)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    return name in sig.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    )


def _supports(
    base: Config, accepted: frozenset[str], weight_decay_mode: str
) -> Callable[[Config], str | None]:
    def check(cfg: Config) -> str | None:
        if type(cfg) is not type(base):
            return f"target implements {type(base).__name__}, scenario needs {type(cfg).__name__}"
        if cfg.weight_decay > 0 and cfg.weight_decay_mode != weight_decay_mode:
            return (
                f"target uses {weight_decay_mode} weight decay (--weight-decay-mode); "
                f"scenario needs {cfg.weight_decay_mode}"
            )
        for f in dataclasses.fields(cfg):
            if f.name in accepted or f.name == "weight_decay_mode":
                continue
            if getattr(cfg, f.name) != getattr(base, f.name):
                return (
                    f"scenario sets {f.name}={getattr(cfg, f.name)!r}; the target takes no "
                    f"{f.name} (pass --hyper {f.name}=... if it does)"
                )
        return None

    return check


#: how a constructor says it does not take the harness's arguments
_CONVENTION_TYPEERROR = re.compile(
    r"unexpected keyword argument|missing \d+ required|required positional argument|"
    r"takes \d+ positional argument|got multiple values for|takes no keyword"
)


def _calling_convention(label: str, form: str, fn: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
    """Raise PortSetupError when ``fn(*args, **kw)`` cannot bind (the argument named)."""
    if not callable(fn):
        raise PortSetupError(f"{label} is a {type(fn).__name__}, not callable as {form}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or an object without a signature: the call itself will tell
    try:
        sig.bind(*args, **kw)
    except TypeError as exc:
        raise PortSetupError(_convention_text(label, form, exc)) from None


def _convention_text(label: str, form: str, exc: TypeError) -> str:
    return (
        f"{label} rejects the harness's calling convention: {exc} (it is called as {form}; "
        "pass --hyper NAME=VALUE only for arguments it takes)"
    )


def _construct(label: str, form: str, fn: Any, *args: Any, **kw: Any) -> Any:
    """``fn(*args, **kw)``; a TypeError about the arguments themselves is a PortSetupError."""
    try:
        return fn(*args, **kw)
    except TypeError as exc:
        if _CONVENTION_TYPEERROR.search(str(exc)):
            raise PortSetupError(_convention_text(label, form, exc)) from None
        raise


def _torch_form(extra: _Extra) -> str:
    return f"cls(params, lr=..., betas=(b1, b2), eps=..., weight_decay=...{extra.form()})"


def _jax_form(extra: _Extra, wd: bool) -> str:
    tail = ", weight_decay=..." if wd else ""
    return f"fn(learning_rate=..., b1=..., b2=..., eps=...{tail}{extra.form()})"


def _as_extra(cfg: Config, extra: _Extra | Mapping[str, Any]) -> _Extra:
    """A plain ``hyper`` mapping (the fuzzer's reproducer) as an ``_Extra`` of it alone."""
    return extra if isinstance(extra, _Extra) else _Extra(extra, {}, frozenset(), cfg)


def _torch_kwargs(cfg: Config, extra: _Extra | Mapping[str, Any]) -> dict[str, Any]:
    kw = _as_extra(cfg, extra).kwargs(cfg)
    kw.update(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    return kw


def _jax_kwargs(
    cfg: Config, extra: _Extra | Mapping[str, Any], wd_named: bool = False
) -> dict[str, Any]:
    """``wd_named``: the signature names ``weight_decay``, which then always gets the scenario's
    value, 0.0 included (left out, optax.adamw would decay by its default 1e-4)."""
    b1, b2 = cfg.betas
    kw = _as_extra(cfg, extra).kwargs(cfg)
    kw.update(learning_rate=cfg.lr, b1=b1, b2=b2, eps=cfg.eps)
    if cfg.weight_decay > 0 or wd_named:
        kw["weight_decay"] = cfg.weight_decay
    return kw


def _check_device(framework: str, device: str, hyper: Mapping[str, Any]) -> None:
    """Raise PortSetupError when the device the target is to run on is not here."""
    if framework == "torch":
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise PortSetupError("--device cuda, but torch.cuda.is_available() is False here")
        if hyper.get("capturable") is True and device == "cpu":
            raise PortSetupError(
                "capturable=True needs a CUDA device (torch's capturable path refuses CPU "
                "tensors) but --device is cpu: check it with --device cuda on a GPU machine"
            )
    elif framework == "jax" and device == "cuda":
        from ._jax import setup_jax

        try:
            setup_jax().devices("gpu")
        except RuntimeError as exc:
            raise PortSetupError(f"--device cuda, but JAX has no GPU here ({exc})") from None


def torch_factory(
    cls: Any,
    algorithm: str = "setadam",
    *,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str = "l2",
    dtype: str = "float64",
    device: str = "cpu",
    name: str | None = None,
    state_map: Mapping[str, str] | None = None,
) -> tuple[Callable[[Config], Any], Callable[[Config], str | None], Config]:
    """(factory, supports, base config) for a torch optimizer class; ``state_map``: the roles
    of its state entries (``--state-map``, ``state_discovery.parse_state_map``)."""
    from ._torch import TorchOptimizerPort

    hyper = dict(hyper or {})
    base = base_config(algorithm, hyper, weight_decay_mode, reference_hyper)
    extra = _Extra.of(cls, algorithm, hyper, dict(target_hyper or {}), base)
    accepted = _TORCH_BASE | extra.accepted
    label = name or f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', cls)}"
    form = _torch_form(extra)
    _calling_convention(label, form, cls, ([{"params": []}],), _torch_kwargs(base, extra))

    def make_port(cfg: Config) -> Any:
        kw = _torch_kwargs(cfg, extra)
        return TorchOptimizerPort(
            label, lambda groups: _construct(label, form, cls, groups, **kw), dtype, device,
            record_stages=True, state_map=_roles(state_map), betas=cfg.betas,
            group_kwargs=lambda c: _torch_kwargs(c, extra),  # a contract's param groups
            kwargs=kw,  # reported to the harness (fuzz reproducers): the signature's fields too
        )  # fmt: skip

    return make_port, _supports(base, accepted, weight_decay_mode), base


def sharded_torch_factory(
    target: str,
    nprocs: int,
    algorithm: str = "setadam",
    *,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str = "l2",
    dtype: str = "float64",
    timeout_s: float = 60.0,
    state_map: Mapping[str, str] | None = None,
    device: str = "cpu",
) -> tuple[Callable[[Config], Any], Callable[[Config], str | None], Config]:
    """(factory, supports, base config) for a torch optimizer class ``MODULE:ATTR`` checked on
    ``nprocs`` gloo ranks (``check --nprocs``): its parameters are DTensors ``Shard(0)`` over a
    1-D mesh, built in every rank (:mod:`.rank_pool`, :mod:`.sharded_torch`), and the full arrays
    are assembled here. The ranks start now (under the worker's start-up allowance) and are
    shared by the scenarios; a rank that dies or hangs stops every rank and the check
    (:class:`~.rank_pool.RankLost`, :class:`~.rank_pool.RanksHung`), within ``timeout_s``."""
    from . import rank_pool

    cls = load_target(target)  # imported here too: the convention is checked before any rank
    hyper = dict(hyper or {})
    base = base_config(algorithm, hyper, weight_decay_mode, reference_hyper)
    extra = _Extra.of(cls, algorithm, hyper, dict(target_hyper or {}), base)
    accepted = _TORCH_BASE | extra.accepted
    form = _torch_form(extra)
    _calling_convention(target, form, cls, ([{"params": []}],), _torch_kwargs(base, extra))
    # the ranks answer a hang before the worker's own per-call timeout would kill them unnamed
    pool = rank_pool.shared(nprocs, timeout_s=0.8 * timeout_s, device=device)
    name = f"{target}@{nprocs}ranks"

    def make_port(cfg: Config) -> Any:
        opts = {"kwargs": _torch_kwargs(cfg, extra), "exact": True, "state_map": _roles(state_map)}
        return rank_pool.PooledPort(
            pool, target, cfg, dtype, name=name, options=opts,
            group_kwargs=lambda c: _torch_kwargs(c, extra),  # a contract's param groups
        )  # fmt: skip

    return make_port, _supports(base, accepted, weight_decay_mode), base


def jax_factory(
    fn: Any,
    algorithm: str = "setadam",
    *,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str = "decoupled",
    dtype: str = "float32",
    device: str = "cpu",
    name: str | None = None,
    state_map: Mapping[str, str] | None = None,
    devices: int | None = None,
) -> tuple[Callable[[Config], Any], Callable[[Config], str | None], Config]:
    """(factory, supports, base config) for a function returning an optax transformation;
    ``state_map`` as for ``torch_factory``; ``devices``: its parameters, gradients and state
    placed with ``NamedSharding`` over a 1-D mesh of that many devices and its update jitted
    (:class:`~.sharded_jax.MeshOptaxPort`; too few devices is a PortSetupError)."""
    from ._jax import OptaxPort

    hyper = dict(hyper or {})
    base = base_config(algorithm, hyper, weight_decay_mode, reference_hyper)
    extra = _Extra.of(fn, algorithm, hyper, dict(target_hyper or {}), base)
    accepted = _JAX_BASE | extra.accepted
    if _accepts(fn, "weight_decay"):
        accepted |= {"weight_decay"}
    wd_named = _named(fn, "weight_decay") and "weight_decay" not in {**hyper, **extra.target}
    label = name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}"
    form = _jax_form(extra, wd_named)
    _calling_convention(label, form, fn, (), _jax_kwargs(base, extra, wd_named))

    def make_for(c: Config, lr: Any) -> Any:
        """A contract's groups and schedules, in the same convention (weight_decay always passed
        where the signature names it: optax.adamw's default is 1e-4)."""
        return _construct(
            label, form, fn, **{**_jax_kwargs(c, extra, wd_named), "learning_rate": lr}
        )

    def group_kwargs(c: Config) -> dict[str, Any]:  # reported
        return _jax_kwargs(c, extra, wd_named)

    if devices is not None:
        from . import sharded_jax

        try:
            sharded_jax.mesh(devices, "gpu" if device == "cuda" else "cpu")
        except RuntimeError as exc:
            raise PortSetupError(str(exc)) from None

        def make_mesh_port(cfg: Config) -> Any:
            kw = _jax_kwargs(cfg, extra, wd_named)
            return sharded_jax.MeshOptaxPort(
                f"{label}@{devices}dev", lambda: _construct(label, form, fn, **kw), dtype,
                device, devices=devices, state_map=_roles(state_map), betas=cfg.betas,
                make_for=make_for, kwargs=kw, group_kwargs=group_kwargs,
            )  # fmt: skip

        return make_mesh_port, _supports(base, accepted, weight_decay_mode), base

    def make_port(cfg: Config) -> Any:
        kw = _jax_kwargs(cfg, extra, wd_named)
        return OptaxPort(
            label, lambda: _construct(label, form, fn, **kw), dtype, device,
            state_map=_roles(state_map), betas=cfg.betas,
            make_for=make_for, kwargs=kw, group_kwargs=group_kwargs,
        )  # fmt: skip

    return make_port, _supports(base, accepted, weight_decay_mode), base


def spec(
    target: str | Any,
    framework: str,
    algorithm: str,
    *,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    timeout_s: float = 60.0,
    state_map: Mapping[str, str] | None = None,
    nprocs: int | None = None,
    devices: int | None = None,
) -> PortSpec:
    """A PortSpec for a third-party target (``MODULE:ATTR`` or the object itself), imported here;
    ``devices``: a JAX target on a mesh of that many devices (:func:`jax_factory`);
    ``nprocs``: a torch target checked sharded on that many gloo ranks (:func:`sharded_torch_factory`).

    Raises ImportError/AttributeError when the target cannot be loaded, PortSetupError when it
    rejects the calling convention or its device is not here (module docstring)."""
    wdm, dt = _defaults(framework, weight_decay_mode, dtype)
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"target must be MODULE:ATTR, got {target!r}")
    _check_device(framework, device, {**(hyper or {}), **(target_hyper or {})})
    if nprocs is not None:
        if framework != "torch" or not isinstance(target, str):
            raise ValueError("--nprocs checks a torch target MODULE:ATTR (gloo; NCCL on cuda)")
        if device == "cuda":
            import torch

            if torch.cuda.device_count() < nprocs:
                raise PortSetupError(
                    f"--nprocs {nprocs} --device cuda needs {nprocs} CUDA devices (one per "
                    f"NCCL rank), torch sees {torch.cuda.device_count()}"
                )
        sfac, ssup, sbase = sharded_torch_factory(
            target, nprocs, algorithm, hyper=hyper, target_hyper=target_hyper,
            reference_hyper=reference_hyper, weight_decay_mode=wdm, dtype=dt, timeout_s=timeout_s,
            state_map=state_map, device=device,
        )  # fmt: skip
        return PortSpec(f"{target}@{nprocs}ranks", algorithm, dt, device, sfac, ssup, sbase,
                        judge_state=False, timeout_s=timeout_s)  # fmt: skip
    obj = load_target(target) if isinstance(target, str) else target
    name = target if isinstance(target, str) else None
    if devices is not None and framework != "jax":
        raise ValueError("--devices places a JAX target on a device mesh (torch: --nprocs)")
    extra: dict[str, Any] = {} if devices is None else {"devices": devices}
    make: Any = torch_factory if framework == "torch" else jax_factory
    fac, sup, base = make(
        obj, algorithm, hyper=hyper, target_hyper=target_hyper, reference_hyper=reference_hyper,
        weight_decay_mode=wdm, dtype=dt, device=device, name=name, state_map=state_map, **extra,
    )  # fmt: skip
    label = name or str(getattr(obj, "__qualname__", "target"))
    if devices is not None:
        label = f"{label}@{devices}dev"
    return PortSpec(label, algorithm, dt, device, fac, sup, base, judge_state=False,
                    timeout_s=timeout_s, scenarios=_default_scenarios(framework))  # fmt: skip


def _default_scenarios(framework: str) -> tuple[str, ...] | None:
    """A jitted JAX target compiles many_tensors' 301 leaves past the per-call timeout: the
    registry's JAX ports' default scenarios (``check`` prints the same note); None otherwise."""
    if framework != "jax":
        return None
    from ..scenarios import select
    from .registry import JAX_SLOW_SCENARIOS

    return tuple(sc.name for sc in select(None) if sc.name not in JAX_SLOW_SCENARIOS)


def _roles(state_map: Mapping[str, str] | None) -> dict[str, str] | None:
    return dict(state_map) if state_map else None


def _defaults(
    framework: str, weight_decay_mode: str | None, dtype: str | None
) -> tuple[str, str]:
    """(weight-decay mode, dtype) of a target: the given ones, else the framework's defaults."""
    if framework == "torch":
        return weight_decay_mode or "l2", dtype or "float64"
    if framework == "jax":
        return weight_decay_mode or "decoupled", dtype or "float32"
    raise ValueError(f"framework must be 'torch' or 'jax', got {framework!r}")


def remote_spec(
    target: str,
    framework: str,
    algorithm: str,
    *,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str | None = None,
    dtype: str | None = None,
    device: str = "cpu",
    timeout_s: float = 60.0,
    state_map: Mapping[str, str] | None = None,
    nprocs: int | None = None,
    devices: int | None = None,
) -> PortSpec:
    """A PortSpec for ``MODULE:ATTR`` checked in a worker process: nothing of the target (nor
    its framework) is imported here; the worker calls :func:`spec` with the same arguments.
    Raises ValueError for a malformed target or hyperparameters the reference rejects."""
    wdm, dt = _defaults(framework, weight_decay_mode, dtype)
    if ":" not in target or not all(target.split(":", 1)):
        raise ValueError(f"target must be MODULE:ATTR, got {target!r}")
    hyper = dict(hyper or {})
    base = base_config(algorithm, hyper, wdm, reference_hyper)
    options: dict[str, Any] = {"framework": framework, "algorithm": algorithm, "hyper": hyper,
                               "target_hyper": dict(target_hyper or {}),
                               "reference_hyper": dict(reference_hyper or {}),
                               "weight_decay_mode": wdm, "state_map": dict(state_map or {})}  # fmt: skip
    label = target
    if nprocs is not None:
        if framework != "torch":
            raise ValueError("--nprocs checks a torch target (gloo ranks; NCCL on cuda)")
        options.update(nprocs=nprocs, timeout_s=timeout_s)
        label = f"{target}@{nprocs}ranks"
    if devices is not None:
        if framework != "jax":
            raise ValueError("--devices places a JAX target on a device mesh (torch: --nprocs)")
        options.update(devices=devices)
        label = f"{target}@{devices}dev"
    loc = PortLocator("third_party", target, dt, device, framework, options)
    return PortSpec(label, algorithm, dt, device, None, None, base, judge_state=False,
                    timeout_s=timeout_s, locator=loc,
                    scenarios=_default_scenarios(framework))  # fmt: skip
