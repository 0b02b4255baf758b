"""The aggregated temporal representation: options=aggregatedValues with aggrMethods and
aggrPeriodDuration (GS CIM 009 V1.8.1 clauses 4.5.19, 5.7.3, 5.7.4).

Expected values are computed here from the instances written. Two code paths compute them
in cityos: hourly rollups (periods of whole hours starting on an hour, no distinctCount) and
grouping the instances in SQL; both must give the same answer for the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from .helpers import API, ERRORS, prop, rel

TEMPORAL = f"{API}/temporal/entities"
SENSOR = "urn:ngsi-ld:Sensor:1"
GPS = "urn:ngsi-ld:Dataset:gps"
METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev", "sumsq")
ORIGIN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# (minutes after ORIGIN, value): never on the hour, with a gap from 03:00 to 05:00, repeats
# (for distinctCount) and halves (exact in binary, so both paths add up the same floats).
READINGS: list[tuple[int, Any]] = [
    (10, 4),
    (25, 4),
    (50, 7.5),
    (70, -2),
    (95, 3),
    (110, 3),
    (130, 12),
    (175, 0.5),
    (310, 6),
    (345, 6),
]


def iso(minutes: int, micros: int = 0) -> str:
    moment = ORIGIN + dt.timedelta(minutes=minutes, microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


def expected(method: str, values: Sequence[Any]) -> Any:
    """What one period of ``values`` aggregates to (stddev: population)."""
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if method == "totalCount":
        return len(values)
    if method == "distinctCount":
        return len({json.dumps(v) for v in values})
    if method == "sum":
        return float(sum(numbers))
    if method == "sumsq":
        return float(sum(x * x for x in numbers))
    if method in ("min", "max"):
        return (min if method == "min" else max)(numbers) if numbers else None
    if not numbers:
        return None
    mean = sum(numbers) / len(numbers)
    if method == "avg":
        return mean
    return math.sqrt(sum((x - mean) ** 2 for x in numbers) / len(numbers))


def by_period(
    readings: Sequence[tuple[int, Any]],
    method: str,
    start: int,
    end: int,
    length: int,
    open_end: bool = False,
) -> list[list[Any]]:
    """Non-empty periods of ``length`` minutes over [start, end), as [value, start, end]; the
    last one is cut at ``end``, unless the window has no end (then ``end`` is just after the
    newest instance and the last period is whole)."""
    out = []
    for lo in range(start, end, length):
        hi = lo + length if open_end else min(lo + length, end)
        inside = [v for m, v in readings if lo <= m < min(hi, end)]
        if inside:
            out.append([expected(method, inside), iso(lo), iso(hi)])
    return out


def approx(triples: list[list[Any]]) -> list[list[Any]]:
    return [[pytest.approx(v) if isinstance(v, float) else v, s, e] for v, s, e in triples]


async def write(
    client: httpx.AsyncClient,
    readings: Sequence[tuple[int, Any]] = READINGS,
    attr: str = "speed",
    **meta: Any,
) -> None:
    body = {
        "id": SENSOR,
        "type": "Sensor",
        attr: [prop(v, observedAt=iso(m), **meta) for m, v in readings],
    }
    response = await client.post(TEMPORAL, json=body)
    assert response.status_code in (201, 204), response.text


async def aggregate(
    client: httpx.AsyncClient, methods: Sequence[str], period: str, **params: str
) -> dict[str, Any]:
    response = await client.get(
        f"{TEMPORAL}/{SENSOR}",
        params={
            "options": "aggregatedValues",
            "aggrMethods": ",".join(methods),
            "aggrPeriodDuration": period,
            **params,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(("period", "minutes"), [("PT1H", 60), ("PT2H", 120), ("PT30M", 30)])
async def test_each_method_over_hourly_and_sub_hourly_periods(
    client: httpx.AsyncClient, period: str, minutes: int
) -> None:
    await write(client)
    for method in METHODS:  # one at a time: each takes the fastest path it can
        body = await aggregate(
            client, [method], period, timerel="between", timeAt=iso(0), endTimeAt=iso(360)
        )
        assert body["speed"]["type"] == "Property"
        assert body["speed"][method] == approx(by_period(READINGS, method, 0, 360, minutes)), method


@pytest.mark.parametrize("period", ["PT1H", "PT2H", "PT3H", "PT0S"])
async def test_rollups_and_instance_grouping_give_identical_values(
    client: httpx.AsyncClient, period: str
) -> None:
    await write(client)
    methods = [m for m in METHODS if m != "distinctCount"]
    window = {"timerel": "between", "timeAt": iso(0), "endTimeAt": iso(360)}
    # On the hour: read from the hourly rollups.
    on_hour = (await aggregate(client, methods, period, **window))["speed"]
    # Adding distinctCount: grouped from the instances, same periods.
    grouped = (await aggregate(client, [*methods, "distinctCount"], period, **window))["speed"]
    # One microsecond off the hour: grouped from the instances, periods shifted by 1 µs.
    shifted = {"timerel": "between", "timeAt": iso(0, -1), "endTimeAt": iso(360, -1)}
    off_hour = (await aggregate(client, methods, period, **shifted))["speed"]
    for method in methods:
        assert on_hour[method] == grouped[method], method
        assert [p[0] for p in on_hour[method]] == [p[0] for p in off_hour[method]], method
        assert on_hour[method], method


async def test_zero_period_is_one_period_over_the_whole_window(client: httpx.AsyncClient) -> None:
    await write(client)
    body = await aggregate(
        client, ["totalCount", "sum"], "PT0S", timerel="between", timeAt=iso(60), endTimeAt=iso(240)
    )
    inside = [v for m, v in READINGS if 60 <= m < 240]
    assert body["speed"]["totalCount"] == [[len(inside), iso(60), iso(240)]]
    assert body["speed"]["sum"] == [[pytest.approx(float(sum(inside))), iso(60), iso(240)]]


@pytest.mark.parametrize(
    ("params", "first"),
    [({"timerel": "after", "timeAt": iso(30)}, 30), ({}, READINGS[0][0])],
    ids=["after-starts-at-timeAt", "no-timerel-starts-at-earliest"],
)
async def test_open_ended_windows_end_with_a_whole_period(
    client: httpx.AsyncClient, params: dict[str, str], first: int
) -> None:
    await write(client)
    body = await aggregate(client, ["totalCount", "max"], "PT1H", **params)
    last = READINGS[-1][0]
    for method in ("totalCount", "max"):
        expected = by_period(READINGS, method, first, last + 1, 60, open_end=True)
        assert body["speed"][method] == approx(expected)
    assert body["speed"]["max"][0][1] == iso(first)


async def test_only_non_empty_periods_are_returned(client: httpx.AsyncClient) -> None:
    await write(client)
    body = await aggregate(
        client, ["totalCount"], "PT1H", timerel="between", timeAt=iso(0), endTimeAt=iso(360)
    )
    starts = [p[1] for p in body["speed"]["totalCount"]]
    assert starts == [iso(0), iso(60), iso(120), iso(300)]  # 03:00-05:00 holds nothing


@pytest.mark.parametrize("period", ["PT1H", "PT0S"])
async def test_empty_window_has_no_aggregates(client: httpx.AsyncClient, period: str) -> None:
    await write(client)
    body = await aggregate(
        client, list(METHODS), period, timerel="between", timeAt=iso(180), endTimeAt=iso(300)
    )
    assert body == {"id": SENSOR, "type": "Sensor"}


@pytest.mark.parametrize(("period", "minutes"), [("PT2H", 120), ("PT0S", 300)])
async def test_between_cuts_the_last_period_at_end_time_at(
    client: httpx.AsyncClient, period: str, minutes: int
) -> None:
    await write(client)
    # 5 hours in periods of 2 hours: the last period, 04:00-06:00, is cut at 05:00, and the
    # instances at 05:10 and 05:45 are outside the window.
    body = await aggregate(
        client, ["totalCount", "max"], period, timerel="between", timeAt=iso(0), endTimeAt=iso(300)
    )
    for method in ("totalCount", "max"):
        assert body["speed"][method] == approx(by_period(READINGS, method, 0, 300, minutes))


async def test_before_cuts_the_last_period_at_time_at(client: httpx.AsyncClient) -> None:
    await write(client)
    # From the earliest instance (00:10) in hours: the last period, 01:10-02:10, is cut at
    # 01:40, and the instance at 01:50 is outside the window.
    body = await aggregate(client, ["totalCount"], "PT1H", timerel="before", timeAt=iso(100))
    first = READINGS[0][0]
    assert body["speed"]["totalCount"] == by_period(READINGS, "totalCount", first, 100, 60)


async def test_non_numeric_values_are_counted_but_not_summed(client: httpx.AsyncClient) -> None:
    words = [(10, "open"), (20, "closed"), (30, "open"), (40, True)]
    await write(client, words, attr="state")
    body = await aggregate(
        client, list(METHODS), "PT1H", timerel="between", timeAt=iso(0), endTimeAt=iso(60)
    )
    window = [iso(0), iso(60)]
    assert {m: body["state"][m] for m in METHODS} == {
        m: [[expected(m, [v for _, v in words]), *window]] for m in METHODS
    }
    assert body["state"]["distinctCount"][0][0] == 3
    assert body["state"]["avg"][0][0] is None and body["state"]["sum"][0][0] == 0.0


async def test_relationship_counts_distinct_objects(client: httpx.AsyncClient) -> None:
    objects = ["urn:ngsi-ld:Person:1", "urn:ngsi-ld:Person:2", "urn:ngsi-ld:Person:1"]
    body = {
        "id": SENSOR,
        "type": "Sensor",
        "owner": [rel(o, observedAt=iso(10 * n)) for n, o in enumerate(objects)],
    }
    assert (await client.post(TEMPORAL, json=body)).status_code == 201
    got = await aggregate(
        client,
        ["totalCount", "distinctCount"],
        "PT0S",
        timerel="between",
        timeAt=iso(0),
        endTimeAt=iso(60),
    )
    assert got["owner"] == {
        "type": "Relationship",
        "totalCount": [[3, iso(0), iso(60)]],
        "distinctCount": [[len(set(objects)), iso(0), iso(60)]],
    }


async def test_each_dataset_is_aggregated_on_its_own(client: httpx.AsyncClient) -> None:
    gps = [(15, 100), (75, 200)]
    await write(client)
    await write(client, gps, datasetId=GPS)
    window = {"timerel": "between", "timeAt": iso(0), "endTimeAt": iso(120)}
    body = await aggregate(client, ["sum"], "PT1H", **window)
    assert body["speed"] == [
        {"type": "Property", "sum": approx(by_period(READINGS, "sum", 0, 120, 60))},
        {"type": "Property", "datasetId": GPS, "sum": approx(by_period(gps, "sum", 0, 120, 60))},
    ]
    only_gps = await aggregate(client, ["sum"], "PT1H", datasetId=GPS, **window)
    assert only_gps["speed"] == body["speed"][1]


async def test_calendar_month_periods(client: httpx.AsyncClient) -> None:
    days = [
        (0, 1),
        (30 * 24 * 60, 2),
        (31 * 24 * 60, 3),
        (59 * 24 * 60, 4),
    ]  # Jan 1, 31, Feb 1, Mar 1
    await write(client, days)
    body = await aggregate(
        client,
        ["totalCount", "sum"],
        "P1M",
        timerel="between",
        timeAt="2026-01-01T00:00:00Z",
        endTimeAt="2026-04-01T00:00:00Z",
    )
    months = [
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
        "2026-04-01T00:00:00Z",
    ]
    assert body["speed"]["totalCount"] == [
        [2, months[0], months[1]],
        [1, months[1], months[2]],
        [1, months[2], months[3]],
    ]
    assert [p[0] for p in body["speed"]["sum"]] == [3.0, 3.0, 4.0]


async def test_aggregation_follows_modified_and_deleted_instances(
    client: httpx.AsyncClient,
) -> None:
    await write(client)
    instances = (await client.get(f"{TEMPORAL}/{SENSOR}")).json()["speed"]
    first, second = instances[0]["instanceId"], instances[1]["instanceId"]
    patched = await client.patch(
        f"{TEMPORAL}/{SENSOR}/attrs/speed/{first}",
        json={"type": "Property", "value": 40, "observedAt": iso(320)},
    )
    assert patched.status_code == 204
    assert (await client.delete(f"{TEMPORAL}/{SENSOR}/attrs/speed/{second}")).status_code == 204
    now = [(320, 40), *READINGS[2:]]
    window = {"timerel": "between", "timeAt": iso(0), "endTimeAt": iso(360)}
    body = await aggregate(client, ["sum", "totalCount", "max"], "PT1H", **window)
    for method in ("sum", "totalCount", "max"):
        assert body["speed"][method] == approx(by_period(now, method, 0, 360, 60)), method


async def test_query_endpoint_aggregates_every_entity(client: httpx.AsyncClient) -> None:
    other = "urn:ngsi-ld:Sensor:2"
    await write(client)
    body = {"id": other, "type": "Sensor", "speed": [prop(50, observedAt=iso(20))]}
    assert (await client.post(TEMPORAL, json=body)).status_code == 201
    response = await client.get(
        TEMPORAL,
        params={
            "type": "Sensor",
            "options": "aggregatedValues",
            "aggrMethods": "max",
            "aggrPeriodDuration": "PT0S",
            "timerel": "between",
            "timeAt": iso(0),
            "endTimeAt": iso(60),
        },
    )
    assert response.status_code == 200, response.text
    got = {e["id"]: e["speed"]["max"] for e in response.json()}
    assert got == {
        SENSOR: [[max(v for m, v in READINGS if m < 60), iso(0), iso(60)]],
        other: [[50.0, iso(0), iso(60)]],
    }


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({}, "BadRequestData"),
        ({"aggrMethods": "sum,median"}, "BadRequestData"),
        ({"aggrMethods": "sum", "aggrPeriodDuration": "1 hour"}, "BadRequestData"),
        ({"aggrMethods": "sum", "aggrPeriodDuration": "P0.5M"}, "BadRequestData"),
        ({"aggrMethods": "sum", "aggrPeriodDuration": "PT1S"}, "BadRequestData"),
        ({"aggrMethods": "sum", "options": "aggregatedValues,temporalValues"}, "InvalidRequest"),
    ],
    ids=[
        "no-methods",
        "unknown-method",
        "bad-duration",
        "half-month",
        "too-many-periods",
        "two-representations",
    ],
)
async def test_bad_aggregation_requests_are_rejected(
    client: httpx.AsyncClient, params: dict[str, str], problem: str
) -> None:
    await write(client)
    query = {"options": "aggregatedValues", "timerel": "after", "timeAt": "2000-01-01T00:00:00Z"}
    response = await client.get(f"{TEMPORAL}/{SENSOR}", params=query | params)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERRORS + problem
