"""Shared fixtures: the real ASGI app over HTTP on a real SQLite file in ``tmp_path``.

``httpx.ASGITransport`` skips the lifespan, so the ``app`` fixture runs the app's own
startup and shutdown (``app.state.startup``/``shutdown``, what the lifespan runs). Builders for
request bodies are in ``tests/api/helpers.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from postgres_server import STORE, database, empty, open_test_store, server, session_database
from starlette.applications import Starlette

from cityos.app import build_app
from cityos.config import Settings

BASE_URL = "http://cityos.test"


@pytest.fixture(scope="session", autouse=STORE == "postgres")
def _postgres_database() -> Iterator[None]:
    """With CITYOS_TEST_STORE=postgres, one database for the session's API tests."""
    with server() as url, database(url) as name:
        session_database.append(name)
        yield
        session_database.clear()


@pytest.fixture(autouse=STORE == "postgres")
def _empty_postgres_database() -> None:
    if session_database:
        empty(session_database[0])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # durable=False only drops the fsync per commit; the SQLite file and WAL are real.
    return Settings(data_dir=tmp_path, durable=False)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    store = open_test_store(settings)
    application = build_app(settings, store)
    await application.state.startup()
    try:
        yield application
    finally:
        await application.state.shutdown()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c
