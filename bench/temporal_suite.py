"""Temporal workloads (issue #4), each against a real ``cityos serve`` process:

1. ``ingest``: attribute updates (PATCH /entities/{id}/attrs with a new observedAt) per
   second with history on, then on a fresh server with ``temporal_history = false``; the
   ratio is the cost of keeping history.
2. ``lastn``: ``lastN=100`` on one Entity with 1,000,000 stored instances.
3. ``aggr_1``: avg and max per hour over 30 days of one Entity with 100,000 instances.
4. ``aggr_100``: the same for 100 such Entities in one query.

The histories of 2-4 are written before the server starts, through the store's own
temporal write path (``SQLiteStore.temporal_add``, what POST /temporal/entities runs),
in chunks of 10,000 instances: loading 11 million instances over HTTP would take longer
than the measurements themselves and measure nothing the ingest workload does not.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from yarl import URL

from bench.engine import (
    Request,
    Tally,
    TimedRun,
    open_session,
    percentile_ms,
    run_timed,
    run_with_loop,
)
from bench.report import Report, progress
from bench.server import ServerProcess, start_server, stop_server, wait_ready

__all__ = ["main"]

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    big_instances: int
    gauges: int
    gauge_instances: int
    keep_data: bool
    json_path: str | None
    quick: bool


def _options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small data, short runs")
    parser.add_argument("--duration", type=float, help="seconds measured per workload")
    parser.add_argument("--big-instances", type=int, help="instances of the lastN Entity")
    parser.add_argument("--gauges", type=int, help="Entities of the aggregation workloads")
    parser.add_argument("--gauge-instances", type=int, help="instances per gauge")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
        duration=args.duration or (2.0 if quick else 10.0),
        warmup=0.5 if quick else 2.0,
        big_instances=args.big_instances or (50_000 if quick else 1_000_000),
        gauges=args.gauges or (10 if quick else 100),
        gauge_instances=args.gauge_instances or (10_000 if quick else 100_000),
        keep_data=args.keep_data,
        json_path=args.json_path,
        quick=quick,
    )


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    _pin_driver()
    report = Report()
    run_with_loop(_ingest(options, report))
    data_dir = _preload(options)
    server = _serve(data_dir, {})
    try:
        run_with_loop(_reads(options, report, server.api))
    finally:
        stop_server(server, keep_workdir=options.keep_data)
    print(report.summary(), flush=True)
    document = report.as_json({"cpus": os.cpu_count()}, options.__dict__)
    print(orjson.dumps(document).decode(), flush=True)
    if options.json_path:
        Path(options.json_path).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 1 if report.failed() else 0


def _pin_driver() -> None:
    """Server on the first CPU (see _serve), this driver on the others."""
    cpus = os.sched_getaffinity(0)
    if len(cpus) > 1:
        os.sched_setaffinity(0, cpus - {min(cpus)})


def _serve(data_dir: Path | None, env: dict[str, str]) -> ServerProcess:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        where = str(data_dir) if data_dir else "{data_dir}"
        command = "{cityos} serve --host {host} --port {port} --data-dir " + where
        server = start_server(command, {0} if len(os.sched_getaffinity(0)) else None)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    wait_ready(server.api, server)
    return server


# -- 1. ingest --------------------------------------------------------------------------


class _Updates:
    """PATCH /entities/{id}/attrs round-robin over the Entities, each with a later time."""

    def __init__(self, api: str, entities: int) -> None:
        self.api = api
        self.entities = entities
        self.counter = itertools.count()

    def next_request(self) -> Request:
        n = next(self.counter)
        entity = n % self.entities
        at = _iso(T0 + n * 1_000_000)
        body = orjson.dumps(
            {"level": {"type": "Property", "value": n % 1000 / 10, "observedAt": at}}
        )
        url = URL(f"{self.api}/entities/urn:ngsi-ld:Gauge:{entity}/attrs", encoded=False)
        return Request("PATCH", url, frozenset({204}), body)

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        return None


async def _ingest(options: Options, report: Report) -> None:
    rates = {}
    for label, env in (("on", {}), ("off", {"CITYOS_TEMPORAL_HISTORY": "false"})):
        server = _serve(None, env)
        try:
            await _create_gauges(server.api, 1000)
            async with open_session(32) as session:
                source = _Updates(server.api, 1000)
                run = TimedRun(None, 32, options.warmup, options.duration, time.monotonic())  # type: ignore[arg-type]
                tally = await run_timed(session, run, source)
            rates[label] = tally.ok / tally.elapsed
            report.add(f"updates_history_{label}_per_s", rates[label])
            report.add(f"updates_history_{label}_errors", tally.errors)
            report.add_samples(f"ingest_{label}", tally.samples)
        finally:
            stop_server(server, keep_workdir=options.keep_data)
    report.add("history_update_ratio", rates["on"] / rates["off"])


async def _create_gauges(api: str, count: int) -> None:
    async with open_session(4) as session:
        for start in range(0, count, 500):
            batch = [
                {
                    "id": f"urn:ngsi-ld:Gauge:{i}",
                    "type": "Gauge",
                    "level": {"type": "Property", "value": 0, "observedAt": _iso(T0)},
                }
                for i in range(start, min(count, start + 500))
            ]
            async with session.post(
                f"{api}/entityOperations/create",
                data=orjson.dumps(batch),
                headers={"Content-Type": "application/json"},
            ) as response:
                if response.status not in (201, 207):
                    raise RuntimeError(f"batch create answered {response.status}")


# -- preload ---------------------------------------------------------------------------


def _preload(options: Options) -> Path:
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="cityos-bench-temporal-"))
    started = time.monotonic()
    asyncio.run(_write_histories(data_dir, options))
    total = options.big_instances + options.gauges * options.gauge_instances
    progress(f"# preloaded {total:,} instances in {time.monotonic() - started:.0f} s")
    return data_dir


async def _write_histories(data_dir: Path, options: Options) -> None:
    from cityos.core import changes
    from cityos.storage.sqlite.store import SQLiteStore

    store = SQLiteStore(data_dir / "cityos.db", durable=False)
    await store.open()
    try:
        span = 30 * DAY_US
        jobs = [("urn:ngsi-ld:Sensor:big", "Sensor", options.big_instances)]
        jobs += [
            (f"urn:ngsi-ld:Gauge:{g}", "Gauge", options.gauge_instances)
            for g in range(options.gauges)
        ]
        for entity_id, entity_type, count in jobs:
            step = span // count
            for chunk in range(0, count, 10_000):
                now = _iso(T0 + span + DAY_US).replace("Z", ".000000Z")
                instances = [
                    {
                        "type": "Property",
                        "value": float((i * 7919) % 1000) / 10,
                        "observedAt": _iso(T0 + i * step),
                        "createdAt": now,
                        "modifiedAt": now,
                    }
                    for i in range(chunk, min(count, chunk + 10_000))
                ]
                entity = {
                    "id": entity_id,
                    "type": [VOCAB + entity_type],
                    "createdAt": now,
                    "modifiedAt": now,
                    "attrs": {VOCAB + "level": instances},
                }
                await store.temporal_add("", entity, changes.absorb_history(entity), False)
    finally:
        await store.close()


# -- 2-4. reads ------------------------------------------------------------------------


class _Repeat:
    def __init__(self, url: str, check: Any) -> None:
        self.request = Request("GET", URL(url, encoded=True), frozenset({200}))
        self.check = check

    def next_request(self) -> Request:
        return self.request

    def verify(self, request: Request, body: bytes, tally: Tally) -> str | None:
        result: str | None = self.check(orjson.loads(body))
        return result


def _aggr_url(api: str, path: str, extra: str = "") -> str:
    start, end = _iso(T0), _iso(T0 + 30 * DAY_US)
    return (
        f"{api}/temporal/{path}?options=aggregatedValues&aggrMethods=avg,max"
        f"&aggrPeriodDuration=PT1H&timerel=between&timeAt={start}&endTimeAt={end}{extra}"
    )


def _check_lastn(body: Any) -> str | None:
    n = len(body.get("level", []))
    return None if n == 100 else f"{n} instances instead of 100"


def _check_aggr(entity: Any) -> str | None:
    buckets = entity.get("level", {}).get("avg", [])
    return None if len(buckets) == 720 else f"{len(buckets)} hourly buckets instead of 720"


def _check_aggr_many(expected: int) -> Any:
    def check(body: Any) -> str | None:
        if len(body) != expected:
            return f"{len(body)} Entities instead of {expected}"
        return next((p for p in map(_check_aggr, body) if p), None)

    return check


async def _reads(options: Options, report: Report, api: str) -> None:
    workloads = [
        (
            "lastn100",
            8,
            _Repeat(f"{api}/temporal/entities/urn:ngsi-ld:Sensor:big?lastN=100", _check_lastn),
        ),
        ("aggr_1_entity", 1, _Repeat(_aggr_url(api, "entities/urn:ngsi-ld:Gauge:0"), _check_aggr)),
        (
            "aggr_100_entities" if options.gauges == 100 else f"aggr_{options.gauges}_entities",
            1,
            _Repeat(
                _aggr_url(api, "entities", f"&type=Gauge&limit={min(options.gauges, 1000)}"),
                _check_aggr_many(options.gauges),
            ),
        ),
    ]
    for name, concurrency, source in workloads:
        async with open_session(concurrency) as session:
            run = TimedRun(None, concurrency, options.warmup, options.duration, time.monotonic())  # type: ignore[arg-type]
            tally = await run_timed(session, run, source)
        latencies = sorted(tally.latencies)
        if name == "lastn100":
            report.add("lastn100_req_per_s", tally.ok / tally.elapsed)
        for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            report.add(f"{name}_{label}_ms", percentile_ms(latencies, fraction))
        report.add(f"{name}_errors", tally.errors)
        report.add(f"{name}_wrong_results", tally.wrong)
        report.add_samples(name, tally.samples)


def _iso(us: int) -> str:
    from cityos.core.temporal import format_time

    return format_time(us)
