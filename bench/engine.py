"""Closed-loop HTTP load: ``concurrency`` workers share one aiohttp session and each sends
its next request as soon as the previous one is answered.

The engine is kept lean on purpose (the client must never be the bottleneck): requests
are built before the clock starts (:class:`Request` holds a ready :class:`yarl.URL` and
body bytes), and per request the worker only reads the clock twice, appends a latency
and asks its :class:`RequestSource` to verify the answer.

A run is a warm-up phase (discarded) then a measured phase. With ``--clients N`` the same
run happens in N processes, all started at one ``time.monotonic()`` instant (a
system-wide clock on Linux), and their :class:`Tally` objects are merged.
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp
from yarl import URL

__all__ = [
    "Request",
    "RequestSource",
    "SourceFactory",
    "Tally",
    "TimedRun",
    "open_session",
    "percentile_ms",
    "run_client_process",
    "run_phase",
    "run_timed",
    "run_with_loop",
]

GET_HEADERS = {"Accept": "application/json"}
POST_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}
_MAX_SAMPLES = 5

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: URL
    expect: frozenset[int]
    body: bytes | None = None
    weight: int = 1
    tag: Any = None

    @property
    def headers(self) -> dict[str, str]:
        return GET_HEADERS if self.body is None else POST_HEADERS


class RequestSource(Protocol):
    def next_request(self) -> Request | None:
        """The next request to send, or None when the source is exhausted."""

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        """Why a successful answer carries wrong data, or None if it is right."""


class SourceFactory(Protocol):
    """Builds a client's :class:`RequestSource`; picklable, so it can cross processes."""

    def build(self, client: int, clients: int) -> RequestSource: ...


@dataclass
class Tally:
    """What one phase of one client saw. ``items`` counts Entities for batch requests."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    items: int = 0
    errors: int = 0
    wrong: int = 0
    results: int = 0
    samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def fail(self, wrong: bool, message: str) -> None:
        if wrong:
            self.wrong += 1
        else:
            self.errors += 1
        if len(self.samples) < _MAX_SAMPLES:
            self.samples.append(message)

    def merge(self, other: Tally) -> None:
        self.latencies += other.latencies
        self.ok += other.ok
        self.items += other.items
        self.errors += other.errors
        self.wrong += other.wrong
        self.results += other.results
        self.samples += other.samples[: max(0, _MAX_SAMPLES - len(self.samples))]
        self.elapsed = max(self.elapsed, other.elapsed)
        self.client_cpu += other.client_cpu


@dataclass(frozen=True)
class TimedRun:
    """A warm-up then a measured phase, starting at ``start_at`` (``time.monotonic()``)."""

    factory: SourceFactory
    concurrency: int
    warmup: float
    duration: float
    start_at: float = 0.0


def percentile_ms(sorted_latencies: list[float], fraction: float) -> float:
    """Nearest-rank percentile of latencies in seconds, in milliseconds."""
    if not sorted_latencies:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_latencies)))
    return sorted_latencies[rank - 1] * 1000.0


@asynccontextmanager
async def open_session(
    concurrency: int, headers: Mapping[str, str] | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    """One keep-alive session for the whole run, at most ``concurrency`` connections;
    ``headers`` (the API key with ``--auth``) go with every request."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        yield session


async def run_phase(
    session: aiohttp.ClientSession, source: RequestSource, concurrency: int, until: float
) -> Tally:
    """Run ``concurrency`` workers until ``until`` (monotonic) or the source runs out."""
    tally = Tally()
    cpu_before = _process_cpu()
    started = time.monotonic()
    workers = (_worker(session, source, until, tally) for _ in range(concurrency))
    await asyncio.gather(*workers)
    tally.elapsed = time.monotonic() - started
    tally.client_cpu = _process_cpu() - cpu_before
    return tally


async def run_timed(
    session: aiohttp.ClientSession,
    run: TimedRun,
    source: RequestSource,
    on_measure: Callable[[], None] = lambda: None,
) -> Tally:
    """Warm up until ``start_at + warmup``, then measure for ``duration`` seconds."""
    await _sleep_until(run.start_at)
    measure_from = max(time.monotonic(), run.start_at) + run.warmup
    if run.warmup > 0:
        await run_phase(session, source, run.concurrency, measure_from)
    on_measure()
    # A slow server makes the warm-up overrun while its last answers arrive.
    until = max(time.monotonic(), measure_from) + run.duration
    return await run_phase(session, source, run.concurrency, until)


def run_client_process(
    run: TimedRun, client: int, clients: int, headers: Mapping[str, str]
) -> Tally:
    """Entry point of a ``--clients`` worker process: one client's share of ``run``."""
    return run_with_loop(_client_main(run, client, clients, headers))


def run_with_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _client_main(
    run: TimedRun, client: int, clients: int, headers: Mapping[str, str]
) -> Tally:
    source = run.factory.build(client, clients)
    async with open_session(run.concurrency, headers) as session:
        return await run_timed(session, run, source)


async def _worker(
    session: aiohttp.ClientSession, source: RequestSource, until: float, tally: Tally
) -> None:
    clock = time.monotonic
    while (started := clock()) < until:
        request = source.next_request()
        if request is None:
            return
        try:
            async with session.request(
                request.method, request.url, data=request.body, headers=request.headers
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.fail(False, f"{request.method} {request.url}: {exc!r}")
            continue
        tally.latencies.append(clock() - started)
        _check(request, status, body, source, tally)


def _check(request: Request, status: int, body: bytes, source: RequestSource, tally: Tally) -> None:
    if status not in request.expect:
        tally.fail(False, f"{request.method} {request.url} -> {status}: {body[:300]!r}")
        return
    problem = source.verify(request, body, tally)
    if problem is not None:
        tally.fail(True, f"{request.method} {request.url}: {problem}")
        return
    tally.ok += 1
    tally.items += request.weight


async def _sleep_until(instant: float) -> None:
    delay = instant - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
