"""The rules of the house (docs/src/architecture.md), checked on the import graph of the source.

Every ``import`` statement of ``setadam_ref`` and ``conformance`` (tests excluded) is read with
``ast``, at module level, inside functions (a lazy import is still a dependency) and under
``if TYPE_CHECKING:`` (a type is a dependency too). The graph must have no cycle; ``setadam_ref`` imports nothing of the
harness; a framework is imported only by an adapter, a port, a benchmark or the GPU tooling; a
port imports nothing of the reference but its table of stage names.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("setadam_ref", "conformance")
FRAMEWORKS = ("torch", "jax", "jaxlib", "optax", "cupy")
#: where a framework may be imported
FRAMEWORK_HOMES = ("conformance.adapters", "conformance.ports", "conformance.bench", "conformance.gpu")


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if "tests" in parts or "wrong_ports" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path, known: Collection[str]) -> set[str]:
    """Absolute names of the modules ``module`` imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import submodule`` depends on the submodule; ``from mod import name`` on mod
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in known else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    g: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for imp in _imports(name, path, mods):
            if imp in mods and imp != name:
                deps.add(imp)
            elif not imp.startswith(PACKAGES):
                deps.add(imp)  # external: kept for the framework rules
        g[name] = deps
    return g


def _internal(g: dict[str, set[str]], name: str) -> set[str]:
    return {d for d in g[name] if d in g}


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    # A module importing its own package's __init__ is how Python loads packages: not a cycle.
    def deps(n: str) -> set[str]:
        return {d for d in _internal(graph, n) if not n.startswith(d + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(deps(n)):
            if state.get(d) == 1:
                cycle = stack[stack.index(d) :] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                dfs(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            dfs(n)


def test_the_reference_knows_nothing_of_the_harness(graph: dict[str, set[str]]) -> None:
    bad = {n: sorted(d for d in graph[n] if d.startswith("conformance")) for n in graph}
    bad = {n: d for n, d in bad.items() if n.startswith("setadam_ref") and d}
    assert not bad, bad
    ext = {n: sorted(d for d in graph[n] if d.split(".")[0] in FRAMEWORKS) for n in graph}
    assert not {n: d for n, d in ext.items() if n.startswith("setadam_ref") and d}


def test_frameworks_only_in_adapters_and_ports(graph: dict[str, set[str]]) -> None:
    bad = {}
    for n, deps in graph.items():
        fw = sorted(d for d in deps if d.split(".")[0] in FRAMEWORKS)
        if fw and not n.startswith(FRAMEWORK_HOMES):
            bad[n] = fw
    assert not bad, f"framework imported outside an adapter or port: {bad}"


def test_ports_borrow_nothing_of_the_reference(graph: dict[str, set[str]]) -> None:
    bad = {}
    for n, deps in graph.items():
        if not n.startswith("conformance.ports"):
            continue
        ref = sorted(d for d in deps if d.startswith("setadam_ref") and d != "setadam_ref.stage_names")
        harness = sorted(
            d for d in deps if d.startswith("conformance") and not d.startswith("conformance.ports")
        )
        if ref or harness:
            bad[n] = ref + harness
    assert not bad, f"a port imports the reference or the harness: {bad}"


def test_every_module_imports_alone() -> None:
    """Each module of the harness imports in a fresh interpreter on its own (no hidden order)."""
    names = [
        n
        for n in _modules()
        if not n.endswith("__main__")
        and (not n.startswith(FRAMEWORK_HOMES) or n.endswith(("registry", "third_party")))
    ]
    code = (
        "import importlib, subprocess, sys\n"
        "bad = []\n"
        "for n in sys.argv[1:]:\n"
        "    p = subprocess.run([sys.executable, '-c', f'import {n}'], capture_output=True, text=True)\n"
        "    if p.returncode: bad.append((n, p.stderr.strip().splitlines()[-1:]))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_module_docstrings_state_one_job_and_modules_stay_small() -> None:
    """Every module opens with a one-line statement of its job; none exceeds ~600 lines except
    data tables (the vector catalogue, the deviation catalogue's entries)."""
    long_ok = ("conformance.vectors.catalogue", "conformance.catalogue.setadam_entries", "conformance.catalogue.adam_entries")
    problems = []
    for name, path in _modules().items():
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text))
        if not doc or not doc.strip().splitlines()[0].strip():
            problems.append(f"{name}: no docstring stating its job")
        lines = text.count("\n")
        if lines > 650 and name not in long_ok:
            problems.append(f"{name}: {lines} lines")
    assert not problems, problems
