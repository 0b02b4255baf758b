"""One measured phase of the notification benchmark, and the figures it adds.

A phase runs updates for ``--warmup`` seconds (discarded), then ``--duration`` seconds
(the window), stops sending, and waits until the receiver has every notification owed
(the drain) or nothing arrived for ``--drain-timeout`` seconds. Then each acknowledged
update, warm-up ones too, must have been notified exactly once per Subscription.

Throughput is what the *receiver* saw: notifications that arrived inside the window,
divided by its length. CPU is measured over the window, per process (``/proc``).
"""

from __future__ import annotations

import asyncio
import math
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.engine import Tally, percentile_ms
from bench.notify_checks import compare, rate_in_window
from bench.notify_load import UpdateLoad
from bench.notify_options import NotifyOptions
from bench.notify_receiver import Inbox, Receiver
from bench.procfs import CpuProbe, CpuShare, cpu_seconds
from bench.report import Report

__all__ = ["CpuWatch", "Phase", "PhaseResult", "broker_pid", "drain", "measure"]

DRIVER_CPU_WARNING_PCT = 85
OTHERS_CPU_WARNING_PCT = 20
# After the drain, wait this long for late duplicates.
_GRACE_S = 0.5
_POLL_S = 0.02
_MIN_DRAIN_S = 0.5


@dataclass
class Phase:
    name: str
    receiver: Receiver
    subscriptions: list[str]
    """The Subscriptions whose every notification the receiver must get."""
    load: UpdateLoad
    server_pid: int | None
    broker_pid: int | None = None


@dataclass
class PhaseResult:
    notifications_per_s: float
    inbox: Inbox
    start: float
    """When the measured window began (``time.monotonic()``)."""


class CpuWatch:
    """CPU of the server, this driver, the receiver (and broker) over a window."""

    def __init__(self, phase: Phase) -> None:
        self._phase = phase
        self._server = CpuProbe(phase.server_pid)
        self._start = (0.0, 0.0, 0.0)
        self._used = (0.0, 0.0, 0.0)
        self._share = CpuShare(math.nan, math.nan)
        self._elapsed = 0.0

    def start(self) -> None:
        self._server.start()
        self._start = self._readings()
        self._elapsed = time.monotonic()

    def stop(self) -> None:
        self._elapsed = time.monotonic() - self._elapsed
        now = self._readings()
        self._used = (now[0] - self._start[0], now[1] - self._start[1], now[2] - self._start[2])
        self._share = self._server.share(self._elapsed, sum(self._used))

    def add_figures(self, report: Report) -> None:
        name, elapsed, share = self._phase.name, self._elapsed, self._share
        driver, receiver, broker = self._used
        figures = {"driver": driver, "receiver": receiver}
        if self._phase.broker_pid is not None:
            figures["broker"] = broker
        for label, seconds in figures.items():
            report.add(f"{name}_{label}_cpu_pct", 100 * seconds / elapsed)
        report.add(f"{name}_server_cpu_pct", share.server)
        report.add(f"{name}_others_cpu_pct", share.others)
        _warn(report, name, 100 * driver / elapsed, 100 * receiver / elapsed, share.others)

    def _readings(self) -> tuple[float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        broker = self._phase.broker_pid
        return (
            usage.ru_utime + usage.ru_stime,
            self._phase.receiver.cpu_seconds(),
            cpu_seconds(broker) if broker is not None else 0.0,
        )


def _warn(report: Report, name: str, driver: float, receiver: float, others: float) -> None:
    for who, pct in (("driver", driver), ("receiver", receiver)):
        if pct > DRIVER_CPU_WARNING_PCT:
            report.note(f"{name}: the {who} used {pct:.0f}% of a core; it may be the bottleneck")
    if others > OTHERS_CPU_WARNING_PCT:
        report.note(
            f"{name}: other processes used {others:.0f}% of a core; its figures are unreliable"
        )


async def measure(
    report: Report, phase: Phase, run: Callable[[float], Awaitable[Tally]], options: NotifyOptions
) -> PhaseResult:
    """Warm up, measure, drain and check; ``run(until)`` sends updates until ``until``."""
    await run(time.monotonic() + options.warmup)
    cpu = CpuWatch(phase)
    cpu.start()
    start = time.monotonic()
    tally = await run(start + options.duration)
    end = time.monotonic()
    cpu.stop()
    owed = phase.load.owed()
    drain_s = await drain(phase.load, options.drain_timeout)
    inbox = await phase.receiver.take()
    rate = rate_in_window(inbox.records, start, end)
    report.add(f"{phase.name}_notifications_per_s", rate)
    report.add(f"{phase.name}_updates_per_s", tally.ok / (end - start))
    _add_updates(report, phase.name, tally)
    report.add(f"{phase.name}_owed_at_end", owed)
    report.add(f"{phase.name}_drain_s", drain_s)
    report.add(f"{phase.name}_drain_notifications_per_s", _drain_rate(owed, drain_s))
    _add_delivery(report, phase, inbox)
    cpu.add_figures(report)
    return PhaseResult(rate, inbox, start)


def _drain_rate(owed: int, drain_s: float) -> float:
    """With no updates to serve, the server only delivers: its delivery-only rate. A drain
    shorter than :data:`_MIN_DRAIN_S` is too short to time with a poll every 20 ms."""
    return owed / drain_s if drain_s >= _MIN_DRAIN_S else math.nan


def _add_updates(report: Report, name: str, tally: Tally) -> None:
    latencies = sorted(tally.latencies)
    report.add(f"{name}_update_p50_ms", percentile_ms(latencies, 0.50))
    report.add(f"{name}_update_p99_ms", percentile_ms(latencies, 0.99))
    report.add(f"{name}_errors", tally.errors)
    report.add_samples(name, tally.samples)


def _add_delivery(report: Report, phase: Phase, inbox: Inbox) -> None:
    load = phase.load
    delivered = compare(inbox, phase.subscriptions, load.acked, load.updates.entity_of)
    report.add(f"{phase.name}_expected", delivered.expected)
    report.add(f"{phase.name}_missing", delivered.missing)
    report.add(f"{phase.name}_duplicates", delivered.duplicates)
    report.add(f"{phase.name}_wrong_results", delivered.wrong)
    report.add_samples(f"{phase.name}_delivery", delivered.samples)
    if delivered.missing:
        report.note(
            f"{phase.name}: {delivered.missing} notifications never arrived; its rates are void"
        )


async def drain(load: UpdateLoad, timeout: float) -> float:
    """Seconds until no notification is owed; gives up when none came for ``timeout`` s."""
    started = last_change = time.monotonic()
    last = load.owed()
    while (owed := load.owed()) > 0:
        now = time.monotonic()
        if owed != last:
            last, last_change = owed, now
        elif now - last_change > timeout:
            break
        await asyncio.sleep(_POLL_S)
    drained = time.monotonic() - started
    await asyncio.sleep(_GRACE_S)
    return drained if owed <= 0 else math.nan


def broker_pid(name: str = "mosquitto") -> int | None:
    """The pid of the local MQTT broker, to report its CPU; None when not found."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                return int(comm.parent.name)
        except OSError:
            continue
    return None
