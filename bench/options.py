"""Command-line options of ``bench/run.py``."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from bench.server import DEFAULT_COMMAND

__all__ = ["WORKLOADS", "Options", "parse_options"]

# In run order: reads run on the loaded data set before ``create`` adds to it.
WORKLOADS = ("batch_upsert", "rss", "retrieve", "query_q", "geo_near", "create")
NEEDS_DATA_SET = frozenset(WORKLOADS) - {"create"}


@dataclass(frozen=True)
class Options:
    entities: int
    duration: float
    warmup: float
    only: tuple[str, ...]
    concurrency: int
    batch_size: int
    batch_concurrency: int
    clients: int
    seed: int
    server_cmd: str
    url: str | None
    server_pid: int | None
    pin: bool
    keep_data: bool
    json_path: str | None
    quick: bool
    auth: bool

    def selected(self, workload: str) -> bool:
        return workload in self.only

    def needs_data_set(self) -> bool:
        return any(self.selected(name) for name in NEEDS_DATA_SET)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_options(argv: list[str] | None = None) -> Options:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.auth and args.url:
        parser.error("--auth sets up the server it starts; it cannot be used with --url")
    only = tuple(name for name in WORKLOADS if name in _names(args.only))
    return Options(
        entities=args.entities or (2_000 if args.quick else 100_000),
        duration=args.duration or (2.0 if args.quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0),
        only=only,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        batch_concurrency=args.batch_concurrency,
        clients=args.clients,
        seed=args.seed,
        server_cmd=args.server_cmd,
        url=_api_url(args.url),
        server_pid=args.server_pid,
        pin=not args.no_pin,
        keep_data=args.keep_data,
        json_path=args.json,
        quick=args.quick,
        auth=args.auth,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark a City OS NGSI-LD server; see bench/README.md.",
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke check: 2,000 Entities, 2 s workloads")
    add("--entities", type=int, help="size of the loaded data set (default 100000)")
    add("--duration", type=float, help="seconds each timed workload is measured (default 10)")
    add("--warmup", type=float, help="seconds of discarded warm-up per workload (default 1)")
    add("--only", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    add("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    add("--batch-size", type=int, default=1000, help="Entities per upsert (default 1000)")
    add("--batch-concurrency", type=int, default=3, help="upserts in flight (default 3)")
    add("--clients", type=int, default=1, help="load-generating processes (default 1)")
    add("--seed", type=int, default=20240401, help="data set seed")
    add("--server-cmd", default=DEFAULT_COMMAND, help="server command template")
    add("--url", help="benchmark a running server (http://host:port) instead of starting one")
    add("--server-pid", type=int, help="with --url: pid whose RSS and CPU to report")
    add("--auth", action="store_true", help="server with --auth, requests with a service key")
    add("--no-pin", action="store_true", help="do not pin the server to CPU 0, driver to the rest")
    add("--keep-data", action="store_true", help="keep the server's temporary data directory")
    add("--json", help="also write the final JSON object to this file")
    return parser


def _names(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"bench/run.py: unknown workload(s) {sorted(unknown)}; know {WORKLOADS}")
    return names


def _api_url(url: str | None) -> str | None:
    if url is None:
        return None
    url = url.rstrip("/")
    return url if url.endswith("/ngsi-ld/v1") else f"{url}/ngsi-ld/v1"
