"""A real HTTP receiver for notifications (an aiohttp server on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web


class Receiver:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.queries: list[str] = []
        self.arrived = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw.append(raw)
        self.headers.append(dict(request.headers))
        self.queries.append(request.query_string)
        try:
            self.received.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            self.received.append(None)
        self.arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.received


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/notify", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/notify"
    yield rec
    await runner.cleanup()
