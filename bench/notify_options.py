"""Command-line options of ``bench/notify_run.py``."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from bench.options import _api_url
from bench.server import DEFAULT_COMMAND

__all__ = ["FANOUTS", "WORKLOADS", "NotifyOptions", "parse_options"]

FANOUTS = (1, 10, 100)
WORKLOADS = (*(f"http_fanout_{n}" for n in FANOUTS), "mqtt_qos1", "latency", "dead_endpoint")


@dataclass(frozen=True)
class NotifyOptions:
    duration: float
    warmup: float
    only: tuple[str, ...]
    entities: int
    concurrency: int
    receiver_ports: int
    max_backlog: int
    latency_rate: float
    drain_timeout: float
    mqtt_url: str
    server_cmd: str
    url: str | None
    server_pid: int | None
    pin: bool
    fresh_server: bool
    keep_data: bool
    json_path: str | None
    quick: bool

    def selected(self, workload: str) -> bool:
        return workload in self.only

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_options(argv: list[str] | None = None) -> NotifyOptions:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.fresh_server and args.url:
        parser.error("--fresh-server starts servers; it cannot be used with --url")
    only = _names(args.only)
    return NotifyOptions(
        duration=args.duration or (2.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0),
        only=tuple(name for name in WORKLOADS if name in only),
        entities=args.entities or (200 if args.quick else 1000),
        concurrency=args.concurrency,
        receiver_ports=args.receiver_ports,
        max_backlog=args.max_backlog,
        latency_rate=args.latency_rate,
        drain_timeout=args.drain_timeout or (3.0 if args.quick else 30.0),
        mqtt_url=args.mqtt_url.rstrip("/"),
        server_cmd=args.server_cmd,
        url=_api_url(args.url),
        server_pid=args.server_pid,
        pin=not args.no_pin,
        fresh_server=args.fresh_server,
        keep_data=args.keep_data,
        json_path=args.json,
        quick=args.quick,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/notify_run.py",
        description="Benchmark City OS notifications (HTTP, MQTT); see bench/README.md.",
    )
    _add_load_options(parser)
    _add_server_options(parser)
    return parser


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke check: 200 Entities, 2 s workloads")
    add("--duration", type=float, help="measured seconds per workload (default 10)")
    add("--warmup", type=float, help="discarded warm-up seconds per workload (default 2)")
    add("--only", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    add("--entities", type=int, help="Entities the updates cycle through (default 1000)")
    add("--concurrency", type=int, default=16, help="updates in flight (default 16)")
    add(
        "--receiver-ports",
        type=int,
        default=10,
        help="HTTP receiver ports, one per Subscription up to this many (default 10)",
    )
    add(
        "--max-backlog",
        type=int,
        default=10_000,
        help="hold updates back while more notifications are owed (default 10000)",
    )
    add("--latency-rate", type=float, default=1000, help="updates/s for latency (default 1000)")
    add(
        "--drain-timeout",
        type=float,
        help="stop waiting when no notification came for this long (default 30 s, quick 3 s)",
    )
    add("--mqtt-url", default="mqtt://127.0.0.1:1883", help="MQTT broker for mqtt_qos1")


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--server-cmd", default=DEFAULT_COMMAND, help="server command template")
    add("--url", help="benchmark a running server (http://host:port) on this machine")
    add("--server-pid", type=int, help="with --url: pid whose RSS and CPU to report")
    add("--no-pin", action="store_true", help="do not pin the server to CPU 0, driver to the rest")
    add(
        "--fresh-server",
        action="store_true",
        help="start a new server (and Entities) for each workload, so none inherits another's state",
    )
    add("--keep-data", action="store_true", help="keep the server's temporary data directory")
    add("--json", help="also write the final JSON object to this file")


def _names(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    if "http_fanout" in names:
        names = (names - {"http_fanout"}) | {f"http_fanout_{n}" for n in FANOUTS}
    unknown = names - set(WORKLOADS)
    if unknown:
        raise SystemExit(
            f"bench/notify_run.py: unknown workload(s) {sorted(unknown)}; know {WORKLOADS}"
        )
    return names
