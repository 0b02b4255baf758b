"""cityos/core/query stays free of HTTP and SQL (STYLE.md, section 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cityos.core.query

FORBIDDEN = ("sqlite3", "starlette", "psycopg", "cityos.storage", "cityos.api")
MODULES = sorted(Path(cityos.core.query.__file__).parent.glob("*.py"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_core_query_imports_no_storage_or_http(path: Path) -> None:
    bad = {name for name in _imports(path) if name.startswith(FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_package_exports_what_it_names() -> None:
    for name in cityos.core.query.__all__:
        assert hasattr(cityos.core.query, name), name
