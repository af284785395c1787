"""The Python API: :func:`check_target` checks ``MODULE:ATTR`` and returns a :class:`CheckResult`.

The command line's ``check`` and the pytest plugin (:mod:`conformance.pytest_plugin`) build their
port checks with :func:`target_specs` and run them through :mod:`conformance.batch`, as this does:
the target runs in a worker process of its own, never in the caller's process, and the reports
(``report.json``, ``report.md``, ``report.html``) are written as ``check`` writes them.

>>> r = check_target("torch.optim:Adam", framework="torch", algorithm="adam",
...                  scenarios=["normal"], quick=True)  # doctest: +SKIP
>>> r.verdict, r.exit_code, r.report_html  # doctest: +SKIP
('conformant', 0, PosixPath('/tmp/setadam-conformance-.../report.html'))
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import Failure, PortResult, PortSpec


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check_target`: the overall verdict (``"conformant"``, ``"not
    conformant"`` or ``"error"``) and exit code as the CLI gives them, one :class:`PortResult`
    per dtype, and where the reports are."""

    verdict: str
    exit_code: int
    ports: tuple[PortResult, ...]
    notes: tuple[str, ...]
    report_dir: Path
    report_json: Path
    report_md: Path
    report_html: Path

    @property
    def conformant(self) -> bool:
        return self.exit_code == 0

    @property
    def failures(self) -> list[Failure]:
        """Every listed failure of every port, in order."""
        return [f for p in self.ports for f in p.failures]

    def diagnosis(self) -> str:
        """What the terminal shows for every port that failed, errored or was not judged."""
        from .report_text import failure_listing

        bad = [p for p in self.ports if p.verdict in ("fail", "error", "not_judged")]
        return "\n\n".join("\n".join(failure_listing(p)) for p in bad)


def target_specs(
    target: str,
    *,
    framework: str,
    algorithm: str,
    dtypes: str | Sequence[str | None] | None = None,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str | None = None,
    state_map: str | Mapping[str, str] | None = None,
    device: str = "cpu",
    timeout_s: float | None = None,
    nprocs: int | None = None,
    devices: int | None = None,
) -> list[PortSpec]:
    """One port check of ``target`` per dtype (each once, in order; None: the framework's
    default dtype). Raises ValueError for a malformed target or a value the reference rejects."""
    from .adapters import third_party
    from .adapters.state_discovery import parse_state_map

    smap = parse_state_map(state_map) if isinstance(state_map, str) else state_map
    want: list[str | None] = [dtypes] if isinstance(dtypes, str) else list(dtypes or [None])
    return [
        third_party.remote_spec(
            target,
            framework,
            algorithm,
            hyper=dict(hyper or {}),
            target_hyper=dict(target_hyper or {}),
            reference_hyper=dict(reference_hyper or {}),
            weight_decay_mode=weight_decay_mode,
            dtype=dtype,
            device=device,
            timeout_s=timeout_s or 60.0,
            state_map=smap,
            nprocs=nprocs,
            devices=devices,
        )
        for dtype in dict.fromkeys(want)
    ]


def host_devices(devices: int | None) -> None:
    """Ask JAX (imported later, in the worker) for ``devices`` host devices unless XLA_FLAGS
    already names a count (on a GPU machine the devices are what they are)."""
    if devices and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        flag = f"--xla_force_host_platform_device_count={devices}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


def check_target(
    target: str,
    *,
    framework: str,
    algorithm: str,
    dtypes: str | Sequence[str] | None = None,
    scenarios: Sequence[str] | None = None,
    quick: bool = False,
    hyper: Mapping[str, Any] | None = None,
    target_hyper: Mapping[str, Any] | None = None,
    reference_hyper: Mapping[str, Any] | None = None,
    weight_decay_mode: str | None = None,
    state_map: str | Mapping[str, str] | None = None,
    device: str = "cpu",
    report_dir: str | Path | None = None,
    timeout_s: float | None = None,
    deadline_s: float | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    nprocs: int | None = None,
    devices: int | None = None,
) -> CheckResult:
    """Check the optimizer ``target`` (``"MODULE:ATTR"``, imported in a worker process only)
    against the float64 reference, as ``setadam-conformance check`` does.

    ``dtypes``: one dtype or several (default: float64 for torch, float32 for jax);
    ``scenarios``: name globs (default: all, or the quick subset with ``quick``); ``hyper``: the
    target's constructor arguments, also set in the reference config where it has the field (a
    name it lacks is a note); ``target_hyper``: the target's only; ``reference_hyper``: the
    reference config's only (e.g. ``{"eps_mode": "tf"}``); ``report_dir``: where the reports go (default: a new
    temporary directory, named in the result); ``nprocs``: torch, sharded on that many gloo ranks;
    ``devices``: jax, on a mesh of that many devices. Raises ValueError for a bad argument; a target
    that cannot be imported, raises or hangs is a verdict (``"error"`` or ``"not conformant"``)."""
    from . import report as rep
    from .adapters.third_party import hyper_notes
    from .batch import Limits, check_and_report
    from .scenarios import select

    if scenarios:
        try:
            select(scenarios)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    specs = target_specs(
        target, framework=framework, algorithm=algorithm, dtypes=dtypes, hyper=hyper,
        target_hyper=target_hyper, reference_hyper=reference_hyper,
        weight_decay_mode=weight_decay_mode, state_map=state_map, device=device,
        timeout_s=timeout_s, nprocs=nprocs, devices=devices,
    )  # fmt: skip
    host_devices(devices)
    outdir = (
        Path(report_dir) if report_dir else Path(tempfile.mkdtemp(prefix="setadam-conformance-"))
    )
    options = {
        "command": "check_target", "target": target, "framework": framework,
        "algorithm": algorithm, "hyper": {k: repr(v) for k, v in (hyper or {}).items()},
        "target_hyper": {k: repr(v) for k, v in (target_hyper or {}).items()},
        "reference_hyper": {k: repr(v) for k, v in (reference_hyper or {}).items()},
        "weight_decay_mode": weight_decay_mode, "dtypes": [s.dtype for s in specs],
        "device": device, "quick": quick, "scenarios": list(scenarios or []) or None,
        "timeout_s": timeout_s, "deadline_s": deadline_s, "max_memory": max_memory,
        "nprocs": nprocs, "devices": devices,
    }  # fmt: skip
    c = check_and_report(
        specs, scenarios=scenarios, quick=quick, outdir=outdir, options=options,
        notes=hyper_notes(algorithm, hyper or {}),
        progress=progress, limits=Limits(timeout_s, deadline_s, max_memory),
    )  # fmt: skip
    verdict, code = rep.overall(c.results) if c.results else ("error", 2)
    return CheckResult(verdict, code, tuple(c.results), tuple(c.notes), outdir, c.json_path,
                       c.md_path, c.html_path)  # fmt: skip


__all__ = ["CheckResult", "check_target", "target_specs"]
