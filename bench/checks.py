"""Correctness checks outside the timed runs, against answers the driver computes itself.

- :func:`check_counts`: ``count=true`` per type equals the loaded number of Entities.
- :func:`check_round_trip`: retrieved Entities carry the values that were upserted.
- :func:`check_geo_near`: ``near;maxDistance`` answers equal a brute-force haversine
  search over the generated locations (points within 2% of the radius may go either way,
  so servers using another distance formula are not blamed for rounding).

Each returns the list of problems found; an empty list means the server was right.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from bench.dataset import TYPES, Dataset, distance_m
from bench.workloads import PAGE_LIMIT, count_url, geo_near_url, random_point

__all__ = ["GeoSample", "check_counts", "check_geo_near", "check_round_trip"]

_GEO_TOLERANCE = 0.02
_GEO_EDGE_M = 1.0


async def check_counts(session: aiohttp.ClientSession, api: str, dataset: Dataset) -> list[str]:
    problems = []
    for entity_type in TYPES:
        async with session.get(URL(count_url(api, entity_type), encoded=True)) as response:
            body = await response.read()
            count = response.headers.get("NGSILD-Results-Count")
        expected = dataset.type_size(entity_type)
        if response.status != 200 or count != str(expected):
            problems.append(
                f"count of {entity_type}: status {response.status}, NGSILD-Results-Count "
                f"{count!r}, expected {expected} ({body[:200]!r})"
            )
    return problems


async def check_round_trip(
    session: aiohttp.ClientSession, api: str, dataset: Dataset, samples: int = 20
) -> list[str]:
    rng = random.Random(dataset.seed + 401)
    problems = []
    for index in (rng.randint(1, dataset.size) for _ in range(samples)):
        sent = dataset.entity(index)
        async with session.get(URL(f"{api}/entities/{sent['id']}", encoded=True)) as response:
            body = await response.read()
        if response.status != 200:
            problems.append(f"GET {sent['id']} -> {response.status}: {body[:200]!r}")
            continue
        got = orjson.loads(body)
        problems += (
            _compare(sent, got) if isinstance(got, dict) else [f"{sent['id']}: {body[:200]!r}"]
        )
    return problems


def _compare(sent: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for name, attribute in sent.items():
        if name in ("id", "type"):
            if got.get(name) != attribute:
                problems.append(f"{sent['id']}: {name} is {got.get(name)!r}, sent {attribute!r}")
            continue
        member = "object" if attribute["type"] == "Relationship" else "value"
        received = got.get(name)
        if not isinstance(received, dict) or received.get(member) != attribute[member]:
            problems.append(f"{sent['id']}: {name} is {received!r}, sent {attribute!r}")
    return problems


@dataclass(frozen=True)
class GeoSample:
    """What :func:`check_geo_near` found: its problems and the mean exact answer size."""

    problems: list[str]
    expected_mean: float


async def check_geo_near(
    session: aiohttp.ClientSession, api: str, dataset: Dataset, radius_m: int, points: int = 20
) -> GeoSample:
    entity_type = TYPES[0]
    first = TYPES.index(entity_type) + 1
    locations = [
        (dataset.entity_id(index), dataset.location(index))
        for index in range(first, dataset.size + 1, len(TYPES))
    ]
    rng = random.Random(dataset.seed + 503)
    problems, sizes = [], []
    for point in (random_point(rng) for _ in range(points)):
        sure, maybe = _within(locations, point, radius_m)
        sizes.append(len(sure))
        url = URL(geo_near_url(api, entity_type, point, radius_m), encoded=True)
        async with session.get(url) as response:
            body = await response.read()
        if response.status != 200:
            problems.append(f"GET {url} -> {response.status}: {body[:200]!r}")
            continue
        entities = orjson.loads(body)
        if not isinstance(entities, list):
            problems.append(f"GET {url}: answer is not a JSON array: {body[:200]!r}")
            continue
        got = {entity.get("id") for entity in entities if isinstance(entity, dict)}
        problems += _geo_problems(url, got, sure, maybe)
    return GeoSample(problems, sum(sizes) / max(1, len(sizes)))


def _within(
    locations: list[tuple[str, tuple[float, float]]], point: tuple[float, float], radius_m: int
) -> tuple[set[str], set[str]]:
    """Ids surely within ``radius_m`` of ``point``, and those too close to the edge to say."""
    inner = radius_m * (1 - _GEO_TOLERANCE) - _GEO_EDGE_M
    outer = radius_m * (1 + _GEO_TOLERANCE) + _GEO_EDGE_M
    # A cheap box prefilter; one degree of latitude is at least 110.5 km.
    reach = outer / 110_500 / math.cos(math.radians(abs(point[1]) + 1))
    sure, maybe = set(), set()
    for entity_id, location in locations:
        if abs(location[0] - point[0]) > reach or abs(location[1] - point[1]) > reach:
            continue
        distance = distance_m(point, location)
        if distance <= inner:
            sure.add(entity_id)
        elif distance <= outer:
            maybe.add(entity_id)
    return sure, maybe


def _geo_problems(url: URL, got: set[str | None], sure: set[str], maybe: set[str]) -> list[str]:
    problems = []
    outside = got - sure - maybe
    if outside:
        problems.append(
            f"GET {url}: {len(outside)} Entities beyond maxDistance, e.g. {sorted(map(str, outside))[0]}"
        )
    missing = sure - got
    if missing and len(got) < PAGE_LIMIT:
        problems.append(
            f"GET {url}: {len(missing)} Entities within maxDistance missing, e.g. {min(missing)}"
        )
    return problems
