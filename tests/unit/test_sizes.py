"""Size limits of the source: no module over 400 lines, no function or method over 50.

They hold for contracts/, domain/, projections/, services/ and turnlog/ (not for tests,
benchmarks or examples). A module that outgrows its limit is split by what it holds,
each part named after it; a function, into the steps it takes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("contracts", "domain", "projections", "services", "turnlog")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50

# Functions that are argument-parser tables (add_parser and add_argument calls, one
# after another) may be longer: cutting a table in pieces only scatters it. Nothing else
# belongs here. Entries are "path::qualified name".
PARSER_TABLES: frozenset[str] = frozenset()

# Split when their current change lands: these are being changed elsewhere and will be
# split afterwards. Remove each entry once it is within the limit (the last test says so).
PENDING_MODULES: frozenset[str] = frozenset()
PENDING_FUNCTIONS: frozenset[str] = frozenset()


def _modules() -> Iterator[tuple[str, str]]:
    """(path from the repository root, source) of every module under FOLDERS."""
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function and
    method in ``tree``, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            assert node.end_lineno is not None
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def _module_lines() -> dict[str, int]:
    return {path: len(source.splitlines()) for path, source in _modules()}


def _function_lines() -> dict[str, int]:
    return {
        f"{path}::{name}": lines
        for path, source in _modules()
        for name, lines in _functions(ast.parse(source, path))
    }


def test_the_limits_see_the_source() -> None:
    modules = _module_lines()
    assert "services/adapters/postgres/eventstore.py" in modules
    assert "turnlog/__init__.py" in modules
    assert "services/cli/main.py::main" in _function_lines()


def test_no_module_is_over_400_lines() -> None:
    over = [
        f"{path}: {lines} lines"
        for path, lines in _module_lines().items()
        if lines > MAX_MODULE_LINES and path not in PENDING_MODULES
    ]
    assert not over, (
        f"modules over {MAX_MODULE_LINES} lines; split each by what it holds:\n  "
        + "\n  ".join(over)
    )


def test_no_function_is_over_50_lines() -> None:
    allowed = PARSER_TABLES | PENDING_FUNCTIONS
    over = [
        f"{name}: {lines} lines"
        for name, lines in _function_lines().items()
        if lines > MAX_FUNCTION_LINES and name not in allowed
    ]
    assert not over, (
        f"functions over {MAX_FUNCTION_LINES} lines; split each into its steps:\n  "
        + "\n  ".join(over)
    )


def test_the_allow_lists_name_only_what_is_still_too_long() -> None:
    modules, functions = _module_lines(), _function_lines()
    stale = [
        path for path in sorted(PENDING_MODULES) if modules.get(path, 0) <= MAX_MODULE_LINES
    ] + [
        name
        for name in sorted(PARSER_TABLES | PENDING_FUNCTIONS)
        if functions.get(name, 0) <= MAX_FUNCTION_LINES
    ]
    assert not stale, (
        "gone, or within the limit now; remove from the allow-lists of test_sizes.py:\n  "
        + "\n  ".join(stale)
    )
