"""The notification workloads, in the order of :data:`bench.notify_options.WORKLOADS`:

1. ``http_fanout_{1,10,100}``: N Subscriptions match every update; their Endpoints are
   spread over ``--receiver-ports`` ports of one HTTP receiver process.
2. ``mqtt_qos1``: 10 Subscriptions with MQTT QoS 1 Endpoints, one topic each, read by a
   paho subscriber process.
3. ``latency``: 1 Subscription, updates paced at ``--latency-rate``; from each update's
   204 to its notification's arrival.
4. ``dead_endpoint``: the ``http_fanout_1`` load alone, then again with a second
   Subscription whose Endpoint accepts connections and never answers. Last, because
   the server keeps retrying the dead Endpoint's backlog after the workload.

Each workload starts its own receiver and Subscriptions and deletes them after.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.engine import open_session, percentile_ms, run_phase
from bench.notify_checks import latencies
from bench.notify_load import Backlog, UpdateLoad, Updates, entity_upserts
from bench.notify_measure import Phase, PhaseResult, broker_pid, measure
from bench.notify_options import FANOUTS, NotifyOptions
from bench.notify_receiver import HttpSpec, MqttSpec, Receiver, ReceiverFailed
from bench.notify_report import NotifyReport
from bench.notify_subscriptions import SetupFailed, delivery_status, subscribed
from bench.procfs import memory_kb
from bench.report import progress
from bench.workloads import BatchSource

__all__ = ["run_notify_suite"]

MQTT_SUBSCRIPTIONS = 10
# Connections for paced updates: a slow answer must not delay the next update's start.
_SESSION_CONNECTIONS = 64


@dataclass
class NotifySuite:
    options: NotifyOptions
    api: str
    server_pid: int | None
    session: aiohttp.ClientSession
    report: NotifyReport
    updates: Updates
    run_id: str

    def load(self, receiver: Receiver, fanout: int) -> UpdateLoad:
        """A load that owes ``fanout`` notifications per update to ``receiver``."""
        base = receiver.count
        backlog = Backlog(fanout, lambda: receiver.count - base, self.options.max_backlog)
        return UpdateLoad(self.session, self.updates, backlog)

    def phase(self, name: str, receiver: Receiver, subscriptions: list[str]) -> Phase:
        load = self.load(receiver, len(subscriptions))
        return Phase(name, receiver, subscriptions, load, self.server_pid)

    async def throughput(self, phase: Phase) -> PhaseResult:
        concurrency = self.options.concurrency
        count = len(phase.subscriptions)
        plural = "s" if count != 1 else ""
        progress(f"# {phase.name}: {count} Subscription{plural}, {concurrency} updates in flight")
        return await measure(
            self.report,
            phase,
            lambda until: phase.load.closed_loop(concurrency, until),
            self.options,
        )

    def subscribed(
        self, name: str, endpoints: list[dict[str, Any]]
    ) -> AbstractAsyncContextManager[list[str]]:
        return subscribed(self.session, self.api, f"{self.run_id}-{name}", endpoints)

    async def add_status(self, name: str, subscriptions: list[str]) -> None:
        status = await delivery_status(self.session, self.api, subscriptions)
        self.report.add(f"{name}_server_attempts", status.sent)
        self.report.add(f"{name}_server_failed_attempts", status.failed)

    def add_memory(self, name: str) -> None:
        if self.server_pid is not None:
            self.report.add(f"{name}_server_rss_mb", memory_kb(self.server_pid) / 1024)


Workload = Callable[[NotifySuite], Awaitable[None]]


async def run_notify_suite(
    options: NotifyOptions, api: str, server_pid: int | None, report: NotifyReport
) -> None:
    """Create the Entities, then run the workloads of ``options.only`` in order."""
    async with open_session(max(options.concurrency, _SESSION_CONNECTIONS)) as session:
        updates = Updates(api, options.entities)
        run_id = f"bench{time.time_ns() // 1_000_000:x}"
        suite = NotifySuite(options, api, server_pid, session, report, updates, run_id)
        await create_entities(suite)
        for name, workload in _workloads():
            if options.selected(name):
                await _run(suite, name, workload)


def _workloads() -> list[tuple[str, Workload]]:
    fanouts = [(f"http_fanout_{n}", _fanout_workload(n)) for n in FANOUTS]
    return [
        *fanouts,
        ("mqtt_qos1", mqtt_qos1),
        ("latency", latency),
        ("dead_endpoint", dead_endpoint),
    ]


def _fanout_workload(fanout: int) -> Workload:
    async def workload(suite: NotifySuite) -> None:
        await http_fanout(suite, fanout)

    return workload


async def _run(suite: NotifySuite, name: str, workload: Workload) -> None:
    try:
        await workload(suite)
    except (SetupFailed, ReceiverFailed) as exc:
        suite.report.note(f"{name} did not run: {exc}")
        suite.report.verdicts[f"{name}_ran"] = False


async def create_entities(suite: NotifySuite) -> None:
    requests = entity_upserts(suite.api, suite.options.entities)
    tally = await run_phase(suite.session, BatchSource(requests), 2, math.inf)
    progress(f"# {tally.items} WaterObserved Entities upserted in {tally.elapsed:.1f} s")
    suite.report.add("entities_errors", tally.errors)
    suite.report.add_samples("entities", tally.samples)
    if tally.errors:
        raise SetupFailed("the Entities to update could not be created")


async def http_fanout(suite: NotifySuite, fanout: int) -> None:
    name = f"http_fanout_{fanout}"
    with Receiver(HttpSpec(ports=min(fanout, suite.options.receiver_ports))) as receiver:
        endpoints = [{"uri": receiver.http_uri(index)} for index in range(fanout)]
        async with suite.subscribed(name, endpoints) as subscriptions:
            await suite.throughput(suite.phase(name, receiver, subscriptions))
            await suite.add_status(name, subscriptions)
    suite.add_memory(name)


async def mqtt_qos1(suite: NotifySuite) -> None:
    broker, topics = suite.options.mqtt_url, f"cityos-bench/{suite.run_id}"
    with Receiver(MqttSpec(broker, f"{topics}/#")) as receiver:
        endpoints = [
            {
                "uri": f"{broker}/{topics}/{index}",
                "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
            }
            for index in range(MQTT_SUBSCRIPTIONS)
        ]
        async with suite.subscribed("mqtt_qos1", endpoints) as subscriptions:
            phase = suite.phase("mqtt_qos1", receiver, subscriptions)
            phase.broker_pid = broker_pid()
            await suite.throughput(phase)
            await suite.add_status("mqtt_qos1", subscriptions)
    suite.add_memory("mqtt_qos1")


async def latency(suite: NotifySuite) -> None:
    options, report = suite.options, suite.report
    progress(f"# latency: 1 Subscription, {options.latency_rate:g} updates/s paced")
    with Receiver(HttpSpec()) as receiver:
        async with suite.subscribed("latency", [{"uri": receiver.http_uri(0)}]) as subscriptions:
            phase = suite.phase("latency", receiver, subscriptions)
            load = phase.load
            result = await measure(
                report, phase, lambda until: load.paced(options.latency_rate, until), options
            )
    measured = latencies(result.inbox.records, load.acked, result.start)
    for label, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        report.add(f"latency_{label}_ms", percentile_ms(measured, fraction))
    report.add("latency_samples", len(measured))


async def dead_endpoint(suite: NotifySuite) -> None:
    report = suite.report
    with Receiver(HttpSpec(silent_ports=1)) as receiver:
        healthy_endpoint = [{"uri": receiver.http_uri(0)}]
        async with suite.subscribed("dead_healthy", healthy_endpoint) as healthy:
            alone = await suite.throughput(suite.phase("dead_endpoint_alone", receiver, healthy))
            dead_endpoint = [{"uri": receiver.silent_uri(0)}]
            async with suite.subscribed("dead_silent", dead_endpoint) as dead:
                phase = suite.phase("dead_endpoint_with_dead", receiver, healthy)
                with_dead = await suite.throughput(phase)
                await suite.add_status("dead_endpoint_dead", dead)
            await suite.add_status("dead_endpoint_healthy", healthy)
    ratio = (
        with_dead.notifications_per_s / alone.notifications_per_s
        if alone.notifications_per_s
        else math.nan
    )
    report.add("dead_endpoint_ratio", ratio)
    report.add("dead_endpoint_dead_connections", with_dead.inbox.silent_connections)
    report.add("dead_endpoint_dead_requests", with_dead.inbox.silent_requests)
    suite.add_memory("dead_endpoint")
