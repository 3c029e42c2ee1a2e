"""The package's architecture, read from its source: imports run one way, no cycles, small
modules, few modules at the top (``cds_service/__init__.py`` states the rules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cds_service

PACKAGE = Path(cds_service.__file__).resolve().parent
MAX_LINES = 700
MAX_TOP_MODULES = 12


def module_names(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in it (inside functions too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    root = next(iter(modules)).split(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # "from pkg import mod" imports the module; "from mod import name", the module
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.split(".")[0] == root and target != name:
                found.add(target)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def part(module: str) -> str:
    """The sub-package or top-level module a module belongs to ('' for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def wrong_way(edges: dict[str, set[str]], allowed: dict[str, frozenset[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(edges.items()):
        mine = part(source)
        if mine and mine not in allowed:
            problems.append(f"{source}: {mine} is not in ALLOWED_IMPORTS")
            continue
        for target in sorted(targets):
            theirs = part(target)
            if theirs and theirs != mine and mine and theirs not in allowed[mine]:
                problems.append(f"{source} imports {target}: {mine} may not import {theirs}")
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_imports_go_the_stated_way() -> None:
    assert wrong_way(graph(PACKAGE), cds_service.ALLOWED_IMPORTS) == []


def test_no_import_cycle() -> None:
    assert cycles(graph(PACKAGE)) == []


def test_every_part_of_the_package_is_in_the_rules() -> None:
    parts = {part(m) for m in module_names(PACKAGE)} - {""}
    assert parts == set(cds_service.ALLOWED_IMPORTS)


def test_no_module_over_700_lines() -> None:
    long = {
        name: n
        for name, path in module_names(PACKAGE).items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_few_modules_at_the_top() -> None:
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_MODULES, top


def test_the_rules_allow_no_cycle_between_parts() -> None:
    """The table itself runs one way: no part may reach itself through the others."""
    edges = {k: set(v) for k, v in cds_service.ALLOWED_IMPORTS.items()}
    assert cycles(edges) == []


# -- the checks themselves find what they look for ------------------------------------------


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    for folder in (root, root / "low", root / "high"):
        (folder / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("from . import b\n")
    (root / "low" / "b.py").write_text("def f():\n    from .a import x\n")  # a cycle, lazily
    (root / "high" / "c.py").write_text("from ..low.a import x\n")
    (root / "low" / "d.py").write_text("import toy.high.c\n")  # against the rules
    return root


def test_the_checks_find_a_cycle_and_a_wrong_way_import(toy: Path) -> None:
    edges = graph(toy)
    assert edges["toy.high.c"] == {"toy.low.a"}
    assert cycles(edges) == [["toy.low.a", "toy.low.b"]]
    allowed = {"low": frozenset(), "high": frozenset({"low"})}
    assert wrong_way(edges, allowed) == ["toy.low.d imports toy.high.c: low may not import high"]
