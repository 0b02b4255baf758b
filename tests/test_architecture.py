"""Imports flow one way (STYLE.md section 1, docs/architecture.md): ``core`` is the domain,
with no HTTP, no SQL and no server; ``api`` is HTTP only and never touches SQLite itself.
Imports are read with ``ast``, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cityos

PACKAGE = Path(cityos.__file__).parent

_OUTER = {
    "cityos.api",
    "cityos.app",
    "cityos.cli",
    "cityos.storage.sqlite",
    "cityos.storage.postgres",
}
RULES = [
    ("core", {"starlette", "sqlite3", "psycopg", "httpx", "uvicorn"} | _OUTER),
    ("api", {"sqlite3", "psycopg", "cityos.storage.sqlite", "cityos.storage.postgres"}),
]


def imported_modules(path: Path) -> set[str]:
    """Dotted names of every module that ``path`` imports absolutely, anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def _is_dynamic_import(node: ast.Call) -> bool:
    func = node.func
    name = (
        func.attr
        if isinstance(func, ast.Attribute)
        else func.id
        if isinstance(func, ast.Name)
        else ""
    )
    return name in ("import_module", "__import__") and bool(node.args)


def forbidden_imports(path: Path, forbidden: set[str]) -> list[str]:
    return sorted(
        m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden)
    )


def _files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize(("layer", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_layer_does_not_import_forbidden_modules(layer: str, forbidden: set[str]) -> None:
    files = _files(layer)
    assert files, f"cityos/{layer} has no Python files"
    offenders = {
        str(path.relative_to(PACKAGE.parent)): forbidden_imports(path, forbidden) for path in files
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sqlite3", ["sqlite3"]),
        ("import starlette.requests as r", ["starlette.requests"]),
        ("from httpx import AsyncClient", ["httpx"]),
        ("def f():\n    import uvicorn\n", ["uvicorn"]),
        ("import importlib\nimportlib.import_module('psycopg.rows')", ["psycopg.rows"]),
        ("from cityos.storage.sqlite.store import SQLiteStore", ["cityos.storage.sqlite.store"]),
        ("from cityos.storage.base import Store\nimport sqlite3x", []),
        ("from . import sibling\nfrom .x import y", []),
    ],
)
def test_forbidden_imports_finds_every_kind_of_import(
    tmp_path: Path, source: str, expected: list[str]
) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert forbidden_imports(path, RULES[0][1] | {"psycopg"}) == expected
