"""The retention job (cityos/retention.py) against a real store: it deletes the temporal
instances older than the most specific rule allows, by their observedAt (else when they were
recorded), and leaves rollups that aggregate exactly like the instances that remain.

Every job here has a fixed clock; the app's own job (``app.state.retention``) is checked
with data far in the past and far in the future, so the real clock cannot change the result.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from cityos.app import build_app
from cityos.config import Settings
from cityos.core.retention import parse_retention
from cityos.core.temporal import HOUR_US, format_time, now_us, parse_time
from cityos.retention import RetentionJob
from cityos.storage.sqlite.store import SQLiteStore

TEMPORAL = "/ngsi-ld/v1/temporal/entities"
BASE_URL = "http://cityos.test"
DAY_US = 24 * HOUR_US
NOW = parse_time("2026-06-01T00:00:00Z")
AGES = [365.5, 364.5, 90.5, 89.5, 30.5, 29.5, 7.5, 6.5, 2, 0.5]  # days before NOW, oldest first


def job(app: Starlette, rules: str, now: int = NOW) -> RetentionJob:
    store: SQLiteStore = app.state.services.store
    return RetentionJob(store, parse_retention(rules), 3600.0, lambda: now)


def ago(days: float) -> str:
    return format_time(NOW - round(days * DAY_US))


async def load(
    client: httpx.AsyncClient,
    entity_id: str,
    points: list[tuple[Any, str]],
    tenant: str = "",
    entity_type: str = "Vehicle",
) -> None:
    body = {
        "id": entity_id,
        "type": entity_type,
        "speed": [{"type": "Property", "value": v, "observedAt": t} for v, t in points],
    }
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    response = await client.post(TEMPORAL, json=body, headers=headers)
    assert response.status_code in (201, 204), response.text


async def times(client: httpx.AsyncClient, entity_id: str, tenant: str = "") -> list[str]:
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    response = await client.get(
        f"{TEMPORAL}/{entity_id}", params={"options": "temporalValues"}, headers=headers
    )
    assert response.status_code == 200, response.text
    return [pair[1] for pair in response.json().get("speed", {"values": []})["values"]]


async def test_instances_older_than_the_duration_are_deleted(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await load(client, "urn:ngsi-ld:Vehicle:1", [(n, ago(a)) for n, a in enumerate(AGES)])
    assert await job(app, "").run_once() == 0  # no rule keeps everything
    removed = await job(app, "P30D").run_once()
    kept = [ago(a) for a in AGES if a < 30]
    assert removed == len(AGES) - len(kept)
    assert await times(client, "urn:ngsi-ld:Vehicle:1") == kept
    assert await job(app, "P30D").run_once() == 0


async def test_an_instance_exactly_at_the_cutoff_is_kept(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    cutoff = ago(1)
    await load(client, "urn:ngsi-ld:Vehicle:1", [(1, format_time(NOW - DAY_US - 1)), (2, cutoff)])
    assert await job(app, "P1D").run_once() == 1
    assert await times(client, "urn:ngsi-ld:Vehicle:1") == [cutoff]


RULES = "P90D, @city=P365D, Vehicle=P30D, Vehicle@city=P7D"


@pytest.mark.parametrize(
    ("tenant", "entity_type", "days"),
    [
        ("", "Vehicle", 30),  # Vehicle=P30D
        ("", "Room", 90),  # P90D
        ("city", "Vehicle", 7),  # Vehicle@city=P7D
        ("city", "Room", 365),  # @city=P365D
        ("town", "Vehicle", 30),  # Vehicle=P30D
        ("town", "Room", 90),  # P90D
    ],
)
async def test_the_most_specific_rule_wins(
    app: Starlette, client: httpx.AsyncClient, tenant: str, entity_type: str, days: int
) -> None:
    ids = {}
    for t in ("", "city", "town"):
        for kind in ("Vehicle", "Room"):
            ids[t, kind] = f"urn:ngsi-ld:{kind}:1"
            await load(client, ids[t, kind], [(a, ago(a)) for a in AGES], t, kind)
    await job(app, RULES).run_once()
    expected = [ago(a) for a in AGES if a < days]
    assert await times(client, ids[tenant, entity_type], tenant) == expected


async def test_a_type_rule_applies_to_entities_having_that_type_among_others(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    body = {
        "id": "urn:ngsi-ld:Vehicle:1",
        "type": ["Vehicle", "Asset"],
        "speed": [{"type": "Property", "value": a, "observedAt": ago(a)} for a in AGES],
    }
    assert (await client.post(TEMPORAL, json=body)).status_code == 201
    await job(app, "P365D, Vehicle=P7D").run_once()
    assert await times(client, "urn:ngsi-ld:Vehicle:1") == [ago(a) for a in AGES if a < 7]


async def test_a_month_rule_counts_calendar_months(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    now = parse_time("2026-03-31T12:00:00Z")  # one month before: 2026-02-28T12:00:00Z
    points = [(1, "2026-02-28T11:59:59Z"), (2, "2026-02-28T12:00:00Z"), (3, "2026-03-30T00:00:00Z")]
    await load(client, "urn:ngsi-ld:Vehicle:1", points)
    await job(app, "P1M", now).run_once()
    assert await times(client, "urn:ngsi-ld:Vehicle:1") == [points[1][1], points[2][1]]


async def test_instances_without_observed_at_expire_by_when_they_were_recorded(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    before = now_us()
    body = {
        "id": "urn:ngsi-ld:Vehicle:1",
        "type": "Vehicle",
        "speed": {"type": "Property", "value": 1},
    }
    assert (await client.post("/ngsi-ld/v1/entities", json=body)).status_code == 201
    # Recorded at or after ``before``: a day later it is not a day old yet...
    assert await job(app, "P1D", before + DAY_US - HOUR_US).run_once() == 0
    # ...two days later it is.
    assert await job(app, "P1D", before + 2 * DAY_US).run_once() == 1
    response = await client.get(f"{TEMPORAL}/urn:ngsi-ld:Vehicle:1")
    assert response.json() == {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}


async def test_retention_keeps_current_entities_and_empty_temporal_entities(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    await load(client, "urn:ngsi-ld:Vehicle:1", [(1, ago(400)), (2, ago(300))])
    await job(app, "P1D").run_once()
    assert await times(client, "urn:ngsi-ld:Vehicle:1") == []
    current = await client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1")
    assert current.json()["speed"]["value"] == 2


def _aggregate(values: list[float], method: str) -> Any:
    if method == "totalCount":
        return len(values)
    if method == "sum":
        return float(sum(values))
    if method in ("min", "max"):
        return float((min if method == "min" else max)(values))
    mean = sum(values) / len(values)
    if method == "avg":
        return mean
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


@pytest.mark.parametrize("with_distinct", [False, True], ids=["rollups", "instances"])
async def test_aggregation_after_retention_is_over_the_remaining_instances(
    app: Starlette, client: httpx.AsyncClient, with_distinct: bool
) -> None:
    # Readings every 10 minutes for 6 hours; the cutoff falls inside an hour (02:25).
    start = parse_time("2026-05-31T00:00:00Z")
    points = [(n % 7, format_time(start + n * 600_000_000)) for n in range(36)]
    await load(client, "urn:ngsi-ld:Vehicle:1", points)
    now = start + 2 * HOUR_US + 25 * 60_000_000 + DAY_US
    await job(app, "P1D", now).run_once()
    methods = ["totalCount", "sum", "min", "max", "avg", "stddev"]
    response = await client.get(
        f"{TEMPORAL}/urn:ngsi-ld:Vehicle:1",
        params={
            "options": "aggregatedValues",
            "aggrMethods": ",".join(methods + (["distinctCount"] if with_distinct else [])),
            "aggrPeriodDuration": "PT1H",
            "timerel": "between",
            "timeAt": format_time(start),
            "endTimeAt": format_time(start + 6 * HOUR_US),
        },
    )
    assert response.status_code == 200, response.text
    got = response.json()["speed"]
    remaining = [(v, parse_time(t)) for v, t in points if parse_time(t) >= now - DAY_US]
    for method in methods:
        expected = []
        for hour in range(6):
            lo = start + hour * HOUR_US
            inside = [v for v, t in remaining if lo <= t < lo + HOUR_US]
            if inside:
                expected.append(
                    [
                        pytest.approx(_aggregate(inside, method)),
                        format_time(lo),
                        format_time(lo + HOUR_US),
                    ]
                )
        assert got[method] == expected, method


async def test_the_running_app_has_a_retention_job_with_its_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, durable=False, retention="P30D, Room=P1D", retention_interval=1234.0
    )
    app = build_app(settings)
    await app.state.startup()
    try:
        retention = app.state.retention
        assert isinstance(retention, RetentionJob)
        assert retention.rules == parse_retention(settings.retention)
        assert retention.interval == 1234.0
        assert retention.store is app.state.services.store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            old, future = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
            await load(client, "urn:ngsi-ld:Vehicle:1", [(1, old), (2, future)])
            assert await retention.run_once() == 1
            assert await times(client, "urn:ngsi-ld:Vehicle:1") == [future]
    finally:
        await app.state.shutdown()
