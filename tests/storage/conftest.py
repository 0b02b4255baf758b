"""The ``store`` fixture: every contract test runs on SQLite and on PostgreSQL.

The PostgreSQL server comes from tests/postgres_server.py (``CITYOS_TEST_POSTGRES_URL``,
the local server, or a throwaway cluster); when none can be had the PostgreSQL half
fails with the reason, it is never skipped. The session gets a database of its own
(PostGIS enabled, migrations applied by the first store), emptied between tests and
dropped at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import postgres_server
import pytest

from cityos.storage.postgres import PostgresStore
from cityos.storage.sqlite.store import SQLiteStore


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server.server() as url, postgres_server.database(url) as database:
        yield database


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Builds a store of the test's backend; every store built shares one database.
    Temporal history is off unless asked for (``make_store(history=True)``)."""
    if backend == "sqlite":
        return lambda history=False: SQLiteStore(
            tmp_path / "cityos.db", durable=False, history=history
        )
    url: str = request.getfixturevalue("postgres_url")
    postgres_server.empty(url)
    return lambda history=False: PostgresStore(url, durable=False, history=history)


@pytest.fixture
async def store(make_store: Any) -> AsyncIterator[Any]:
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
