"""The retention job: deletes expired temporal instances in the background.

Every ``retention_interval`` seconds it walks the tenants and the rules of
:mod:`cityos.core.retention`, and deletes in steps of at most ``BATCH`` instances, each
step one short job of the single writer, so API writes queued meanwhile go between two
steps: the job never holds the store for long, and never blocks a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from cityos.core.retention import RetentionRule, plan
from cityos.core.temporal import Duration
from cityos.storage.base import Store

__all__ = ["RetentionJob"]

log = logging.getLogger(__name__)
BATCH = 5000


class RetentionJob:
    def __init__(
        self,
        store: Store,
        rules: list[RetentionRule],
        interval: float,
        clock: Callable[[], int],
    ) -> None:
        self.store = store
        self.rules = rules
        self.interval = interval
        self.clock = clock  # microseconds since the epoch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.rules and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="cityos-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # logged; the next pass tries again
                log.exception("Retention pass failed")
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """One pass over every tenant; returns how many instances were deleted."""
        now = self.clock()
        total = 0
        for tenant in await self.store.tenants():
            for target in plan(self.rules, tenant):
                cutoff = _before(now, target.duration)
                while True:
                    removed = await self.store.expire_history(tenant, target, cutoff, BATCH)
                    total += removed
                    if removed < BATCH:
                        break
                    await asyncio.sleep(0)
        if total:
            log.info("Retention removed %d temporal instances", total)
        return total


def _before(now: int, duration: Duration) -> int:
    return Duration(-duration.months, -duration.micros).add_to(now)
