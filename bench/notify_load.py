"""The updates that cause notifications, and the load that sends them.

Every update is ``PATCH /entities/{id}/attrs`` setting ``temperature`` to a sequence
number, unique in the run, so each notification names the update that caused it.
The Entities start at -1, as an update that leaves a value as it was
need not notify. Update ``seq`` goes to Entity ``seq % entities``: consecutive updates hit different
Entities. Bodies are prebuilt templates with the number spliced in.

Two ways to send them, both recording when each 204 arrived (``time.monotonic()``):

- :meth:`UpdateLoad.closed_loop`: ``concurrency`` workers, each sending its next update as
  soon as the last one is answered, but holding back while more than ``limit``
  notifications are owed by the receiver (:class:`Backlog`). Without that, a server that
  accepts updates faster than it delivers would queue without bound, and the run would
  measure its queue, not its delivery.
- :meth:`UpdateLoad.paced`: updates at a fixed rate (open loop), for latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
from yarl import URL

from bench.dataset import Dataset
from bench.engine import POST_HEADERS, Request, Tally
from bench.workloads import UPSERTED

__all__ = ["ATTRIBUTE", "Backlog", "UpdateLoad", "Updates", "entity_upserts"]

ATTRIBUTE = "temperature"
ENTITY_TYPE = "WaterObserved"
_SERIES = "notify"
_OBSERVED_AT = "2024-04-01T00:00:00Z"
_SEQ_PLACEHOLDER = 987654321987
_HOLD_S = 0.002
_ACCEPTED = 204


def _entity_index(ordinal: int) -> int:
    """Odd dataset indexes are WaterObserved."""
    return 2 * ordinal + 1


def entity_upserts(api: str, entities: int, batch_size: int = 500) -> list[Request]:
    """``entityOperations/upsert`` bodies creating the Entities the updates change."""
    dataset = Dataset(2 * entities)
    url = URL(f"{api}/entityOperations/upsert", encoded=True)
    requests = []
    for start in range(0, entities, batch_size):
        chunk = range(start, min(start + batch_size, entities))
        bodies = [
            dataset.entity(_entity_index(ordinal), series=_SERIES) | {ATTRIBUTE: _temperature(-1)}
            for ordinal in chunk
        ]
        requests.append(Request("POST", url, UPSERTED, orjson.dumps(bodies), weight=len(chunk)))
    return requests


def _temperature(value: int) -> dict[str, object]:
    return {"type": "Property", "value": value, "unitCode": "CEL", "observedAt": _OBSERVED_AT}


class Updates:
    """The PATCH of update ``seq``: a prebuilt URL and a body template."""

    def __init__(self, api: str, entities: int) -> None:
        dataset = Dataset(2 * entities)
        self.entity_ids = [
            dataset.entity_id(_entity_index(ordinal), series=_SERIES) for ordinal in range(entities)
        ]
        self._urls = [URL(f"{api}/entities/{id_}/attrs", encoded=True) for id_ in self.entity_ids]
        body = orjson.dumps({ATTRIBUTE: _temperature(_SEQ_PLACEHOLDER)})
        self._prefix, self._suffix = body.split(str(_SEQ_PLACEHOLDER).encode())
        self._next_seq = 0

    def next_seq(self) -> int:
        """A sequence number no other update of the run has."""
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    def entity_of(self, seq: int) -> str:
        return self.entity_ids[seq % len(self.entity_ids)]

    def request(self, seq: int) -> tuple[URL, bytes]:
        return self._urls[seq % len(self._urls)], self._prefix + str(seq).encode() + self._suffix


@dataclass
class Backlog:
    """Notifications owed: acknowledged updates x ``fanout`` minus what ``received()`` says."""

    fanout: int
    received: Callable[[], int]
    limit: int


@dataclass
class UpdateLoad:
    """Sends updates; ``acked`` maps each update answered 204 to when the answer came."""

    session: aiohttp.ClientSession
    updates: Updates
    backlog: Backlog
    acked: dict[int, float] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    _in_flight: int = 0

    def owed(self) -> int:
        """Notifications the receiver still has to get (updates in flight count too)."""
        sent = len(self.acked) + self._in_flight
        return sent * self.backlog.fanout - self.backlog.received()

    async def closed_loop(self, concurrency: int, until: float) -> Tally:
        tally = Tally()
        started = time.monotonic()
        await asyncio.gather(*(self._worker(until, tally) for _ in range(concurrency)))
        tally.elapsed = time.monotonic() - started
        return tally

    async def paced(self, rate: float, until: float) -> Tally:
        """One update every ``1 / rate`` s; late ones go at once, so the mean rate holds."""
        tally = Tally()
        started = next_at = time.monotonic()
        sends: set[asyncio.Task[None]] = set()
        while next_at < until:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            send = asyncio.create_task(self._send(tally))
            sends.add(send)
            send.add_done_callback(sends.discard)
            next_at += 1 / rate
        await asyncio.gather(*sends)
        tally.elapsed = time.monotonic() - started
        return tally

    async def _worker(self, until: float, tally: Tally) -> None:
        limit = self.backlog.limit
        while time.monotonic() < until:
            if self.owed() > limit:
                await asyncio.sleep(_HOLD_S)
                continue
            await self._send(tally)

    async def _send(self, tally: Tally) -> None:
        seq = self.updates.next_seq()
        url, body = self.updates.request(seq)
        self._in_flight += 1
        started = time.monotonic()
        try:
            async with self.session.patch(url, data=body, headers=POST_HEADERS) as response:
                answer = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.failed.add(seq)
            tally.fail(False, f"PATCH {url}: {exc!r}")
            return
        finally:
            self._in_flight -= 1
        done = time.monotonic()
        if status != _ACCEPTED:
            self.failed.add(seq)
            tally.fail(False, f"PATCH {url} -> {status}: {answer[:300]!r}")
            return
        self.acked[seq] = done
        tally.latencies.append(done - started)
        tally.ok += 1
