"""CLI help explains itself: every option has help with its default and an example; repeatable
options accumulate; ``check --help`` is grouped and fits a terminal."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from conformance import cli


def _parsers(
    p: argparse.ArgumentParser, name: str = "setadam-conformance"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sub in a.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _options() -> Iterator[tuple[str, argparse.Action]]:
    for name, p in _parsers(cli.build_parser()):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            yield name, a


def test_every_option_of_every_subcommand_has_help_with_default_and_example() -> None:
    seen = 0
    for name, a in _options():
        label = f"{name} {a.option_strings or a.dest}"
        assert a.help, f"{label} has no help"
        assert "e.g." in a.help, f"{label}: help gives no example: {a.help!r}"
        if a.option_strings:
            assert "default" in a.help or a.required, f"{label}: help names no default"
        seen += 1
    assert seen >= 25  # run, check, vectors export/check all walked


_CHECK = ["check", "m:A", "--framework", "torch", "--algorithm", "adam"]


def test_repeated_options_accumulate() -> None:
    p = cli.build_parser()
    a = p.parse_args([*_CHECK, "--dtype", "float32", "--dtype", "float64",
                      "--scenario", "normal", "--scenario", "rosen*",
                      "--hyper", "lr=0.01", "--hyper", "eps=1e-6"])  # fmt: skip
    assert a.dtype == ["float32", "float64"]
    assert a.scenario == ["normal", "rosen*"]
    assert a.hyper == ["lr=0.01", "eps=1e-6"]
    r = p.parse_args(["run", "--port", "ours.torch.*", "--port", "ours.jax.*",
                      "--dtype", "float32", "--dtype", "bfloat16"])  # fmt: skip
    assert r.port == ["ours.torch.*", "ours.jax.*"] and r.dtype == ["float32", "bfloat16"]


def test_check_makes_one_port_check_per_repeated_dtype() -> None:
    p = cli.build_parser()
    args = p.parse_args([*_CHECK, "--dtype", "float32", "--dtype", "float64", "--dtype", "float32"])
    specs, _ = cli.check_specs_of(args)
    assert [s.dtype for s in specs] == ["float32", "float64"]
    (default,) = cli.check_specs_of(p.parse_args(_CHECK))[0]
    assert default.dtype == "float64"  # torch's default


def test_check_help_is_grouped_and_fits_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as e:
        cli.main(["check", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for group in ("the target:", "what to check", "reports and output:", "limits"):
        assert group in out
    assert max(len(line) for line in out.splitlines()) <= 80
