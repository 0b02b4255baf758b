"""The v2 routes are documented, and cityos/v2 keeps to the layering rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import cityos
from cityos.v2.routes import ROUTES

ROOT = Path(cityos.__file__).resolve().parent.parent
V2 = Path(cityos.__file__).parent / "v2"
FORBIDDEN = ("sqlite3", "psycopg", "cityos.storage.sqlite", "cityos.storage.postgres", "cityos.api")


@pytest.mark.parametrize(
    "endpoint", sorted({f"{m} {p}" for p, _, methods in ROUTES for m in methods})
)
def test_every_v2_endpoint_is_in_the_api_reference(endpoint: str) -> None:
    assert f"### `{endpoint}`" in (ROOT / "docs" / "reference" / "api.md").read_text()


@pytest.mark.parametrize("path", sorted(V2.glob("*.py")), ids=lambda p: p.name)
def test_v2_never_touches_storage_internals_or_the_ngsi_ld_handlers(path: Path) -> None:
    imports = re.findall(r"^\s*(?:from|import) ([\w.]+)", path.read_text(), re.M)
    assert [i for i in imports if i.startswith(FORBIDDEN)] == []
