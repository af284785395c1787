"""The pytest plugin: ``pytest --setadam-target MODULE:ATTR`` checks a port, one item per scenario.

Registered through the ``pytest11`` entry point, so any environment with setadam-ref installed
has it; it only adds its options until ``--setadam-target`` is given, and then collects one item
``setadam-conformance::<scenario>[<dtype>]`` per scenario and dtype (selectable with ``-k``,
spread over processes by pytest-xdist); with ``--setadam-fuzz SECONDS`` also one item
``setadam-conformance::fuzz[<dtype>]`` per dtype that fuzzes the target for that long
(:func:`conformance.fuzz.command.fuzz_target`) and fails with the shrunk case. Each item runs :func:`conformance.check_target` on its
scenario, so the target runs in a worker process of its own; a failing item's message is the
diagnosis the command line prints, a scenario that does not apply or judges nothing is skipped
with its reason, and each item's reports are under ``--setadam-report`` (default: pytest's
temporary directory), named in the item's ``report_dir`` property.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_NAME = "setadam-conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("setadam-conformance", "conformance of an Adam / SET-Adam port")
    g.addoption("--setadam-target", metavar="MODULE:ATTR", default=None,
                help="check this optimizer (the plugin does nothing without it; "
                "e.g. mypkg.optim:MySETAdam)")  # fmt: skip
    g.addoption(
        "--setadam-framework",
        choices=("torch", "jax"),
        default="torch",
        help="the target's framework (default: torch)",
    )
    g.addoption(
        "--setadam-algorithm",
        choices=("adam", "setadam"),
        default="setadam",
        help="the algorithm the target claims (default: setadam)",
    )
    g.addoption(
        "--setadam-dtype",
        action="append",
        metavar="DTYPE",
        default=None,
        help="dtype to check, repeatable (default: float64 for torch, float32 for jax)",
    )
    g.addoption(
        "--setadam-scenario",
        action="append",
        metavar="GLOB",
        default=None,
        help="scenario name glob, repeatable (default: all, or the quick subset)",
    )
    g.addoption(
        "--setadam-quick",
        action="store_true",
        default=False,
        help="the quick subset of scenarios (default: all)",
    )
    g.addoption(
        "--setadam-hyper",
        action="append",
        metavar="NAME=VALUE",
        default=None,
        help="a constructor argument of the target, repeatable (e.g. lr=1e-3)",
    )
    g.addoption(
        "--setadam-target-hyper",
        action="append",
        metavar="NAME=VALUE",
        default=None,
        help="a constructor argument of the target only, repeatable (e.g. foreach=True)",
    )
    g.addoption(
        "--setadam-reference-hyper",
        action="append",
        metavar="NAME=VALUE",
        default=None,
        help="a field of the reference config only, repeatable (e.g. eps_mode=tf)",
    )
    g.addoption(
        "--setadam-weight-decay-mode",
        choices=("l2", "decoupled"),
        default=None,
        help="the target's weight-decay convention (default: l2 torch, decoupled jax)",
    )
    g.addoption(
        "--setadam-state-map",
        metavar="MAP",
        default=None,
        help="m=KEY,v=KEY,vmax=KEY,step=KEY or none (default: found from the values)",
    )
    g.addoption(
        "--setadam-fuzz",
        type=float,
        metavar="SECONDS",
        default=None,
        help="also fuzz the target for this long, one item per dtype (default: no fuzz item; "
        "e.g. 60)",
    )
    g.addoption(
        "--setadam-fuzz-seed",
        type=int,
        metavar="SEED",
        default=None,
        help="seed of the fuzz search, for a repeatable item (default: random; e.g. 1)",
    )
    g.addoption(
        "--setadam-report",
        metavar="DIR",
        default=None,
        help="directory for each item's reports (default: pytest's tmp directory)",
    )


class ConformanceFailure(Exception):
    """A scenario the target failed; its text is the diagnosis."""


class _Item(pytest.Item):
    """An item of the target: its failure's text is the diagnosis, its location the plugin."""

    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return _NAME, None, f"{_NAME}::{self.name}"


class ScenarioItem(_Item):
    """One scenario in one dtype of the target."""

    def __init__(self, *, scenario: str, dtype: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.scenario = scenario
        self.dtype = dtype

    def runtest(self) -> None:
        from .adapters.third_party import parse_hyper
        from .api import check_target

        opt = self.config.option
        outdir = _report_base(self.config) / f"{self.scenario}-{self.dtype}"
        r = check_target(
            opt.setadam_target, framework=opt.setadam_framework,
            algorithm=opt.setadam_algorithm, dtypes=[self.dtype], scenarios=[self.scenario],
            quick=opt.setadam_quick, hyper=parse_hyper(opt.setadam_hyper),
            target_hyper=parse_hyper(opt.setadam_target_hyper, "--setadam-target-hyper"),
            reference_hyper=parse_hyper(opt.setadam_reference_hyper, "--setadam-reference-hyper"),
            weight_decay_mode=opt.setadam_weight_decay_mode, state_map=opt.setadam_state_map,
            report_dir=outdir,
        )  # fmt: skip
        self.user_properties.append(("report_dir", str(r.report_dir)))
        (port,) = r.ports
        ran = [s for s in port.scenarios if s.scenario == self.scenario]
        status = ran[0].status if ran else port.verdict
        if port.verdict in ("fail", "error"):
            raise ConformanceFailure(f"{r.diagnosis()}\n[report: {r.report_html}]")
        if status in ("skip", "not_judged"):
            why = (ran[0].reason if ran else "") or port.message
            pytest.skip(f"{status.replace('_', ' ')}: {why}")


def _report_base(config: pytest.Config) -> Path:
    if config.option.setadam_report:
        return Path(config.option.setadam_report)
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    return factory.getbasetemp() / _NAME


class FuzzItem(_Item):
    """A fuzz session of the target in one dtype: fails with the shrunk case and its files."""

    def __init__(self, *, dtype: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.dtype = dtype

    def runtest(self) -> None:
        from .adapters.state_discovery import parse_state_map
        from .adapters.third_party import parse_hyper
        from .fuzz import artifacts
        from .fuzz.command import fuzz_target
        from .fuzz.engine import FuzzOptions

        opt = self.config.option
        outdir = _report_base(self.config) / f"fuzz-{self.dtype}"
        options = FuzzOptions(time_budget_s=opt.setadam_fuzz, seed=opt.setadam_fuzz_seed,
                              database=outdir / "examples")  # fmt: skip
        out = fuzz_target(
            opt.setadam_target, opt.setadam_framework, opt.setadam_algorithm, report=outdir,
            options=options, hyper=parse_hyper(opt.setadam_hyper),
            weight_decay_mode=opt.setadam_weight_decay_mode, dtype=self.dtype,
            state_map=parse_state_map(opt.setadam_state_map),
        )  # fmt: skip
        self.user_properties.append(("report_dir", str(outdir)))
        if out.verdict != "pass":
            lines = artifacts.terminal(out)
            if out.verdict == "error":
                lines.append(f"error: {out.message}")
            raise ConformanceFailure("\n".join(lines))


class TargetCollector(pytest.Collector):
    """The target's items: every selected scenario that applies to its algorithm, per dtype."""

    def collect(self) -> Iterator[pytest.Item]:
        from .adapters.third_party import _defaults
        from .scenarios import select

        opt = self.config.option
        dtypes = opt.setadam_dtype or [_defaults(opt.setadam_framework, None, None)[1]]
        try:
            scenarios = select(opt.setadam_scenario, quick=opt.setadam_quick)
        except KeyError as exc:
            raise pytest.UsageError(str(exc.args[0])) from None
        for dtype in dict.fromkeys(dtypes):
            for s in scenarios:
                if s.applies_to(opt.setadam_algorithm, dtype):
                    yield ScenarioItem.from_parent(
                        self, name=f"{s.name}[{dtype}]", scenario=s.name, dtype=dtype
                    )
            if opt.setadam_fuzz is not None:
                yield FuzzItem.from_parent(self, name=f"fuzz[{dtype}]", dtype=dtype)


@pytest.hookimpl(tryfirst=True)  # before -k and -m deselect
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.getoption("setadam_target", None):
        return
    collector = TargetCollector.from_parent(session, name=_NAME, nodeid=_NAME)
    items.extend(collector.collect())
