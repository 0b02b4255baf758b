"""Targets of the notification benchmark, on top of :mod:`bench.report`.

:class:`bench.report.Report` finds a figure's target by name in ``bench.report.TARGETS``,
so :func:`register_targets` adds ours there (the names do not clash with
``bench/run.py``'s), and :class:`NotifyReport` lists only ours in its JSON.
"""

from __future__ import annotations

from typing import Any

from bench.report import TARGETS, Report, Target

__all__ = ["NOTIFY_TARGETS", "NotifyReport", "register_targets"]

_ZERO = Target("==", 0)

# City OS goals on a 2-core machine, server pinned to one core.
NOTIFY_TARGETS = {
    "http_fanout_10_notifications_per_s": Target(">=", 5000),
    "mqtt_qos1_notifications_per_s": Target(">=", 5000),
    "latency_p99_ms": Target("<=", 50),
    # The healthy endpoint keeps at least 90% of its throughput next to a dead one.
    "dead_endpoint_ratio": Target(">=", 0.9),
    **{
        f"{workload}_{check}": _ZERO
        for workload in (
            "http_fanout_1",
            "http_fanout_10",
            "http_fanout_100",
            "mqtt_qos1",
            "latency",
            "dead_endpoint_alone",
            "dead_endpoint_with_dead",
        )
        for check in ("missing", "duplicates")
    },
}


def register_targets() -> None:
    TARGETS.update(NOTIFY_TARGETS)


class NotifyReport(Report):
    def as_json(self, machine: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        document = super().as_json(machine, config)
        document["targets"] = {name: NOTIFY_TARGETS[name].describe() for name in NOTIFY_TARGETS}
        return document
