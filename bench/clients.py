"""Where a timed workload's load comes from: this process (the default, one shared
session) or ``--clients N`` worker processes whose results are merged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from typing import Protocol

import aiohttp

from bench.engine import Tally, TimedRun, run_client_process, run_timed

__all__ = ["Clients", "InProcessClients", "ProcessClients"]

# Time for spawned workers to import aiohttp and build their requests before the start.
_SPAWN_MARGIN_S = 3.0


class Clients(Protocol):
    async def run(self, run: TimedRun, on_measure: Callable[[], None]) -> Tally:
        """Run ``run`` and call ``on_measure`` when its measured phase starts."""

    def close(self) -> None: ...


class InProcessClients:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def run(self, run: TimedRun, on_measure: Callable[[], None]) -> Tally:
        return await run_timed(self._session, run, run.factory.build(0, 1), on_measure)

    def close(self) -> None:
        pass


class ProcessClients:
    """``count`` spawned processes, each with ``concurrency // count`` workers and its own
    session sending ``headers``."""

    def __init__(self, count: int, headers: Mapping[str, str]) -> None:
        self._count = count
        self._headers = dict(headers)
        self._pool = ProcessPoolExecutor(count, mp_context=get_context("spawn"))

    async def run(self, run: TimedRun, on_measure: Callable[[], None]) -> Tally:
        share = replace(
            run,
            concurrency=max(1, run.concurrency // self._count),
            start_at=time.monotonic() + _SPAWN_MARGIN_S,
        )
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(
                self._pool, run_client_process, share, client, self._count, self._headers
            )
            for client in range(self._count)
        ]
        await asyncio.sleep(share.start_at + share.warmup - time.monotonic())
        on_measure()
        merged = Tally()
        for tally in await asyncio.gather(*futures):
            merged.merge(tally)
        return merged

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
