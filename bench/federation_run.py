"""Benchmark a federated query: ``python bench/federation_run.py [--entities N] [--requests N]``.

Three City OS instances on loopback -- a prefecture and two towns, each with its own river
gauges -- the prefecture registering both towns. The same query (gauges above a level,
at most 100) is timed one request at a time directly at each instance and through the
prefecture, which fans out to the towns and merges. Then a town that is down and one
that hangs (its registration has ``management.timeout`` 500 ms) are added. Each figure is
printed on its own line and as JSON at the end. See the "Federation" section of
``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402

from bench.engine import percentile_ms  # noqa: E402
from bench.server import (  # noqa: E402
    DEFAULT_COMMAND,
    ServerProcess,
    start_server,
    stop_server,
    wait_ready,
)

API = "/ngsi-ld/v1"
QUERY = {"type": "WaterObserved", "q": "waterLevel>=4.8", "limit": "100"}


def _gauge(town: str, n: int, rng: random.Random) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:WaterObserved:{town}-{n:06}",
        "type": "WaterObserved",
        "waterLevel": {"type": "Property", "value": round(rng.uniform(0, 5), 2), "unitCode": "MTR"},
        "town": {"type": "Property", "value": town},
        "location": {
            "type": "GeoProperty",
            "value": {"type": "Point", "coordinates": [rng.uniform(133, 135), rng.uniform(34, 35)]},
        },
    }


async def _load(session: aiohttp.ClientSession, api: str, town: str, count: int) -> None:
    rng = random.Random(town)
    for start in range(0, count, 1000):
        batch = [_gauge(town, n, rng) for n in range(start, min(start + 1000, count))]
        async with session.post(f"{api}/entityOperations/upsert", json=batch) as response:
            if response.status not in (201, 204):
                raise RuntimeError(f"loading {town}: HTTP {response.status}")


async def _register(
    session: aiohttp.ClientSession, api: str, endpoint: str, **members: Any
) -> None:
    body = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "WaterObserved"}]}],
        "endpoint": endpoint,
        **members,
    }
    async with session.post(f"{api}/csourceRegistrations", json=body) as response:
        if response.status != 201:
            raise RuntimeError(f"registering {endpoint}: HTTP {response.status}")


async def _time(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], requests: int
) -> dict[str, Any]:
    latencies: list[float] = []
    found = 0
    warnings = 0
    for _ in range(requests):
        started = time.perf_counter()
        async with session.get(url, params=params) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status} {body}")
            warnings += "NGSILD-Warning" in response.headers
        latencies.append(time.perf_counter() - started)
        found = len(body)
    latencies.sort()
    return {
        "p50_ms": percentile_ms(latencies, 0.50),
        "p95_ms": percentile_ms(latencies, 0.95),
        "entities": found,
        "warned": warnings,
    }


def _origin(server: ServerProcess) -> str:
    return server.api.removesuffix(API)


async def _measure(
    servers: dict[str, ServerProcess], entities: int, requests: int
) -> dict[str, Any]:
    apis = {name: s.api for name, s in servers.items()}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, api in apis.items():
            await _load(session, api, name, entities)
        for town in ("east", "west"):
            await _register(session, apis["pref"], _origin(servers[town]))
        local = {**QUERY, "local": "true"}
        out: dict[str, Any] = {}
        for name in ("east", "west", "pref"):
            out[f"direct_{name}"] = await _time(session, f"{apis[name]}/entities", local, requests)
        out["fanout"] = await _time(session, f"{apis['pref']}/entities", QUERY, requests)
        slowest = max(out[f"direct_{n}"]["p50_ms"] for n in ("east", "west", "pref"))
        out["fanout_overhead_p50_ms"] = out["fanout"]["p50_ms"] - slowest
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        hanging = socket.socket()
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(64)  # accepts, never answers
        try:
            await _register(
                session,
                apis["pref"],
                f"http://127.0.0.1:{dead.getsockname()[1]}",
                management={"timeout": 500},
            )
            out["fanout_one_down"] = await _time(
                session, f"{apis['pref']}/entities", QUERY, requests
            )
            await _register(
                session,
                apis["pref"],
                f"http://127.0.0.1:{hanging.getsockname()[1]}",
                management={"timeout": 500},
            )
            out["fanout_one_hanging"] = await _time(
                session, f"{apis['pref']}/entities", QUERY, max(requests // 10, 5)
            )
        finally:
            dead.close()
            hanging.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=10000, help="gauges per instance")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per figure")
    options = parser.parse_args(argv)
    servers: dict[str, ServerProcess] = {}
    try:
        for name in ("pref", "east", "west"):
            servers[name] = start_server(DEFAULT_COMMAND, None)
            wait_ready(servers[name].api, servers[name])
        figures = asyncio.run(_measure(servers, options.entities, options.requests))
    finally:
        for server in servers.values():
            stop_server(server)
    for name, value in figures.items():
        print(f"{name}: {json.dumps(value)}")
    print(json.dumps({"federation": figures, "entities_per_instance": options.entities}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
