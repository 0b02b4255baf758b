"""Shared fixtures: the real ASGI app over HTTP on a real SQLite file in ``tmp_path``.

``httpx.ASGITransport`` skips the lifespan, so the ``app`` fixture runs the app's own
startup and shutdown (``app.state.startup``/``shutdown``, what the lifespan runs). Builders for
request bodies are in ``tests/api/helpers.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from cityos.app import build_app
from cityos.config import Settings
from cityos.storage.sqlite.store import SQLiteStore

BASE_URL = "http://cityos.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # durable=False only drops the fsync per commit; the SQLite file and WAL are real.
    return Settings(data_dir=tmp_path, durable=False)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    store = SQLiteStore(settings.sqlite_path, durable=settings.durable)
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
