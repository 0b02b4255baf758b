"""The benchmark sequence, in the order of :data:`bench.options.WORKLOADS`:

1. ``batch_upsert``: load the data set with 1,000-Entity upserts; the load *is* the
   measurement (its first batch, sent alone, is the warm-up). Counts are checked after.
2. ``rss``: server memory with the data set loaded.
3. ``retrieve``, ``query_q``, ``geo_near``: timed reads of the loaded data set, each
   preceded by a correctness check whose answer the driver computes itself.
4. ``create``: timed single-Entity creates, last, because it adds Entities the reads
   must not see.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from bench.checks import check_counts, check_geo_near, check_round_trip
from bench.clients import Clients, InProcessClients, ProcessClients
from bench.dataset import DEVICE_GROUP_SIZE, TYPES, Dataset, area_m2
from bench.engine import SourceFactory, Tally, TimedRun, open_session, percentile_ms, run_phase
from bench.options import Options
from bench.procfs import CpuProbe, CpuShare, memory_kb
from bench.report import Report, progress
from bench.workloads import (
    BatchSource,
    CreateFactory,
    GeoNearFactory,
    QueryQFactory,
    RetrieveFactory,
    batch_requests,
)

__all__ = ["Suite", "run_suite"]

# Mean Entities within maxDistance of a point inside the area: high enough to be a real
# query, low enough that almost no query reaches the page limit of 100.
GEO_MEAN_RESULTS = 75
# Above this share of one core, the driver may be what limits the figures.
DRIVER_CPU_WARNING_PCT = 85
# Above this share of one core taken by other processes, the machine was not quiet.
OTHERS_CPU_WARNING_PCT = 20


@dataclass
class Suite:
    options: Options
    api: str
    server_pid: int | None
    session: aiohttp.ClientSession
    clients: Clients
    report: Report

    @property
    def dataset(self) -> Dataset:
        return Dataset(self.options.entities, self.options.seed)


async def run_suite(
    options: Options, api: str, server_pid: int | None, headers: Mapping[str, str]
) -> Report:
    """Run the selected workloads; every request carries ``headers``."""
    report = Report()
    concurrency = max(options.concurrency, options.batch_concurrency)
    async with open_session(concurrency, headers) as session:
        clients: Clients = (
            ProcessClients(options.clients, headers)
            if options.clients > 1
            else InProcessClients(session)
        )
        suite = Suite(options, api, server_pid, session, clients, report)
        try:
            await _run_workloads(suite)
        finally:
            clients.close()
    return report


async def _run_workloads(suite: Suite) -> None:
    options = suite.options
    if options.needs_data_set():
        await load_data_set(suite)
    if options.selected("rss"):
        record_memory(suite, "rss_mb", "VmRSS")
    if options.selected("retrieve"):
        await retrieve(suite)
    if options.selected("query_q"):
        await query_q(suite)
    if options.selected("geo_near"):
        await geo_near(suite)
    if options.selected("rss"):
        record_memory(suite, "rss_after_reads_mb", "VmRSS")
    if options.selected("create"):
        await create(suite)
    record_memory(suite, "rss_peak_mb", "VmHWM")


async def load_data_set(suite: Suite) -> None:
    options, dataset = suite.options, suite.dataset
    started = time.monotonic()
    requests = batch_requests(suite.api, dataset, range(1, dataset.size + 1), options.batch_size)
    progress(
        f"# batch_upsert: {dataset.size} Entities generated in {time.monotonic() - started:.1f} s; "
        f"{len(requests)} upserts of {options.batch_size}, {options.batch_concurrency} in flight"
    )
    warmup = await run_phase(suite.session, BatchSource(requests[:1]), 1, math.inf)
    cpu = CpuProbe(suite.server_pid)
    cpu.start()
    tally = await run_phase(
        suite.session, BatchSource(requests[1:]), options.batch_concurrency, math.inf
    )
    # The warm-up batch is part of the data set: its failures count.
    tally.errors += warmup.errors
    tally.samples[:0] = warmup.samples
    suite.report.add("batch_upsert_entities_per_s", _rate(tally.items, tally.elapsed))
    _add_measurement(suite, "batch_upsert", tally, cpu)
    problems = await check_counts(suite.session, suite.api, dataset)
    _add_check(suite, "batch_upsert_count", problems)


def record_memory(suite: Suite, name: str, field: str) -> None:
    if suite.server_pid is None:
        suite.report.add(name, None)
        return
    suite.report.add(name, memory_kb(suite.server_pid, field) / 1024)


async def retrieve(suite: Suite) -> None:
    problems = await check_round_trip(suite.session, suite.api, suite.dataset)
    _add_check(suite, "retrieve_round_trip", problems)
    await _timed(suite, "retrieve", RetrieveFactory(suite.api, suite.dataset))


async def query_q(suite: Suite) -> None:
    dataset = suite.dataset
    devices = dataset.device_count(TYPES[0])
    if devices == 0:
        suite.report.note(f"query_q skipped: fewer than {DEVICE_GROUP_SIZE} {TYPES[0]} Entities")
        return
    progress(f"# query_q: {devices} Devices of {DEVICE_GROUP_SIZE} {TYPES[0]} Entities each")
    await _timed(suite, "query_q", QueryQFactory(suite.api, dataset))


async def geo_near(suite: Suite) -> None:
    dataset = suite.dataset
    density = dataset.type_size(TYPES[0]) / area_m2()
    radius_m = max(1, round(math.sqrt(GEO_MEAN_RESULTS / (math.pi * density))))
    suite.report.add("geo_near_max_distance_m", radius_m)
    sample = await check_geo_near(suite.session, suite.api, dataset, radius_m)
    suite.report.add("geo_near_expected_mean_results", sample.expected_mean)
    _add_check(suite, "geo_near_exact", sample.problems)
    tally = await _timed(suite, "geo_near", GeoNearFactory(suite.api, dataset, radius_m))
    suite.report.add("geo_near_mean_results", tally.results / max(1, tally.ok))


async def create(suite: Suite) -> None:
    series = f"create{int(time.time()):x}"
    await _timed(suite, "create", CreateFactory(suite.api, suite.dataset, series))


async def _timed(suite: Suite, name: str, factory: SourceFactory) -> Tally:
    options = suite.options
    progress(
        f"# {name}: {options.concurrency} in flight, {options.warmup:g} s warm-up, "
        f"{options.duration:g} s measured"
    )
    run = TimedRun(factory, options.concurrency, options.warmup, options.duration)
    cpu = CpuProbe(suite.server_pid)
    tally = await suite.clients.run(run, cpu.start)
    suite.report.add(f"{name}_req_per_s", _rate(tally.ok, tally.elapsed))
    _add_measurement(suite, name, tally, cpu)
    return tally


def _add_measurement(suite: Suite, name: str, tally: Tally, cpu: CpuProbe) -> None:
    add = suite.report.add
    latencies = sorted(tally.latencies)
    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        add(f"{name}_{label}_ms", percentile_ms(latencies, fraction))
    add(f"{name}_requests", tally.ok)
    add(f"{name}_errors", tally.errors)
    add(f"{name}_wrong_results", tally.wrong)
    suite.report.add_samples(name, tally.samples)
    _add_cpu(suite, name, tally, cpu.share(tally.elapsed, tally.client_cpu))


def _add_cpu(suite: Suite, name: str, tally: Tally, share: CpuShare) -> None:
    driver_pct = 100 * tally.client_cpu / tally.elapsed / suite.options.clients
    suite.report.add(f"{name}_driver_cpu_pct", driver_pct)
    suite.report.add(f"{name}_server_cpu_pct", share.server)
    suite.report.add(f"{name}_others_cpu_pct", share.others)
    if driver_pct > DRIVER_CPU_WARNING_PCT:
        suite.report.note(
            f"{name}: the driver used {driver_pct:.0f}% of a core; it may be the bottleneck"
        )
    if share.others > OTHERS_CPU_WARNING_PCT:
        suite.report.note(
            f"{name}: other processes used {share.others:.0f}% of a core; its figures are unreliable"
        )


def _add_check(suite: Suite, name: str, problems: list[str]) -> None:
    suite.report.add(f"{name}_wrong_results", len(problems))
    suite.report.add_samples(name, problems[:5])


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.nan
