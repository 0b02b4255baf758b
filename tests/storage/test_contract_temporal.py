"""The temporal history contract (clause 4.5.7, 5.6.11-5.6.16, 5.7.3-5.7.4), on SQLite and
PostgreSQL alike: what writes record, windows, lastN, the instance limit, aggregation,
edits of the history and retention. The Temporal API tests (tests/api/test_temporal*.py)
check the HTTP side on top of this; ``CITYOS_TEST_STORE=postgres`` runs them on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cityos.core import changes
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.typeexpr import parse_types
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import HOUR_US, TemporalQuery, format_time, parse_duration, parse_time
from cityos.errors import ResourceNotFound
from cityos.storage.base import EntityQuery

VOCAB = "https://ex.org/"
T0 = parse_time("2026-01-01T00:00:00Z")
N = VOCAB + "n"


def at(minutes: int) -> str:
    return format_time(T0 + minutes * 60_000_000)


def reading(entity_id: str, value: Any, minutes: int, kind: str = "Sensor") -> dict[str, Any]:
    """The Entity with one observed Property ``n``, as a core write stores it."""
    return {
        "id": entity_id,
        "type": [VOCAB + kind],
        "createdAt": at(0),
        "modifiedAt": at(minutes),
        "attrs": {N: [{"type": "Property", "value": value, "observedAt": at(minutes)}]},
    }


@pytest.fixture
async def store(make_store: Any) -> AsyncIterator[Any]:
    opened = make_store(history=True)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def series(store: Any, entity_id: str = "urn:s:1", **query: Any) -> list[tuple[Any, str]]:
    found = await store.temporal_entity("city", entity_id, TemporalQuery(**query))
    return [(i["value"], i["observedAt"]) for i in found.attrs.get(N, [])]


async def test_every_write_records_its_instances(store: Any) -> None:
    await store.write("city", "urn:s:1", changes.create(reading("urn:s:1", 1, 0)))
    for minute, value in ((10, 2), (20, 3.5)):
        await store.write(
            "city", "urn:s:1", changes.upsert(reading("urn:s:1", value, minute), False)
        )
    assert await series(store) == [(1, at(0)), (2, at(10)), (3.5, at(20))]
    assert await series(store, last_n=2) == [(2, at(10)), (3.5, at(20))]
    window = dict(timerel="between", time_at=T0 + 5 * 60_000_000, end_time_at=T0 + 20 * 60_000_000)
    assert await series(store, **window) == [(2, at(10))]
    assert await series(store, timerel="before", time_at=T0 + 1) == [(1, at(0))]


async def test_a_refused_write_records_nothing(store: Any) -> None:
    await store.write("city", "urn:s:1", changes.create(reading("urn:s:1", 1, 0)))
    with pytest.raises(Exception, match="already exists"):
        await store.write("city", "urn:s:1", changes.create(reading("urn:s:1", 2, 10)))
    assert await series(store) == [(1, at(0))]


async def test_temporal_add_and_the_instance_limit(store: Any) -> None:
    history = reading("urn:s:1", 0, 0)
    history["attrs"][N] = [
        {"type": "Property", "value": m, "observedAt": at(m)} for m in range(0, 50, 5)
    ]
    assert await store.temporal_add("city", history, changes.absorb_history(history), False)
    assert (await store.get_entity("city", "urn:s:1"))["attrs"][N][0]["value"] == 45
    assert not await store.temporal_add("city", history, changes.absorb_history(history), True)
    assert [v for v, _ in await series(store)] == list(range(0, 50, 5))  # same times: replaced
    page = await store.temporal_entity("city", "urn:s:1", TemporalQuery(instance_limit=4))
    assert [i["value"] for i in page.attrs[N]] == [0, 5, 10, 15]
    assert page.content_range == (at(0), at(15), "*")
    with pytest.raises(ResourceNotFound):
        await store.temporal_add("city", reading("urn:s:9", 1, 0), changes.absorb_history({}), True)


async def test_aggregation_by_hour_and_by_day(store: Any) -> None:
    history = reading("urn:s:1", 0, 0)
    history["attrs"][N] = [
        {"type": "Property", "value": m % 7, "observedAt": at(m)} for m in range(0, 180, 10)
    ]
    await store.temporal_add("city", history, changes.absorb_history(history), False)
    hourly = TemporalQuery(
        timerel="between",
        time_at=T0,
        end_time_at=T0 + 3 * HOUR_US,
        aggr_methods=("totalCount", "sum", "min", "max", "avg"),
        aggr_period=parse_duration("PT1H"),
    )
    found = (await store.temporal_entity("city", "urn:s:1", hourly)).aggregates[N][0].values
    minutes = [range(0, 60, 10), range(60, 120, 10), range(120, 180, 10)]
    assert [v[0] for v in found["totalCount"]] == [6, 6, 6]
    assert [v[0] for v in found["sum"]] == [sum(m % 7 for m in r) for r in minutes]
    assert [v[0] for v in found["min"]] == [min(m % 7 for m in r) for r in minutes]
    assert [v[1:] for v in found["max"]][0] == [at(0), at(60)]
    daily = TemporalQuery(
        aggr_methods=("totalCount", "distinctCount", "stddev"), aggr_period=parse_duration("P1D")
    )
    found = (await store.temporal_entity("city", "urn:s:1", daily)).aggregates[N][0].values
    assert found["totalCount"][0][0] == 18 and found["distinctCount"][0][0] == 7


async def test_query_temporal_filters_on_the_newest_state(store: Any) -> None:
    for n, kind in enumerate(("Sensor", "Meter", "Sensor")):
        entity_id = f"urn:s:{n}"
        await store.write("city", entity_id, changes.create(reading(entity_id, n, n, kind)))
    query = EntityQuery("city", types=parse_types(VOCAB + "Sensor"), count=True)
    found, count = await store.query_temporal(query, TemporalQuery())
    assert [e.id for e in found] == ["urn:s:0", "urn:s:2"] and count == 2
    query = EntityQuery(
        "city", q=expand_q(parse_q("n>0"), lambda name: VOCAB + name), id_pattern="s:[12]"
    )
    found, _ = await store.query_temporal(query, TemporalQuery())
    assert [e.id for e in found] == ["urn:s:1", "urn:s:2"]


async def test_edits_of_the_history(store: Any) -> None:
    history = reading("urn:s:1", 0, 0)
    history["attrs"][N] = [{"type": "Property", "value": m, "observedAt": at(m)} for m in (0, 1, 2)]
    await store.temporal_add("city", history, changes.absorb_history(history), False)
    ids = [
        i["instanceId"]
        for i in (await store.temporal_entity("city", "urn:s:1", TemporalQuery())).attrs[N]
    ]
    await store.temporal_delete_instance("city", "urn:s:1", N, ids[0])
    await store.temporal_modify_instance("city", "urn:s:1", N, ids[1], {"value": 10}, at(5))
    assert await series(store) == [(10, at(1)), (2, at(2))]
    with pytest.raises(ResourceNotFound):
        await store.temporal_delete_instance("city", "urn:s:1", N, ids[0])
    await store.temporal_delete_attribute("city", "urn:s:1", N, None, False, at(6))
    assert await series(store) == []
    await store.temporal_delete_entity("city", "urn:s:1", changes.delete_if_present("urn:s:1"))
    with pytest.raises(ResourceNotFound):
        await store.temporal_entity("city", "urn:s:1", TemporalQuery())
    with pytest.raises(ResourceNotFound):
        await store.get_entity("city", "urn:s:1")


async def test_retention_removes_old_instances_in_bounded_steps(store: Any) -> None:
    history = reading("urn:s:1", 0, 0)
    history["attrs"][N] = [
        {"type": "Property", "value": m, "observedAt": at(m)} for m in range(0, 100, 10)
    ]
    await store.temporal_add("city", history, changes.absorb_history(history), False)
    rule = RetentionTarget(None, (), parse_duration("P1D"))
    cutoff = T0 + 45 * 60_000_000
    assert await store.expire_history("city", rule, cutoff, batch=3) == 3
    assert await store.expire_history("city", rule, cutoff, batch=3) == 2
    assert await store.expire_history("city", rule, cutoff, batch=3) == 0
    assert [v for v, _ in await series(store)] == [50, 60, 70, 80, 90]
    hourly = TemporalQuery(aggr_methods=("totalCount",), aggr_period=parse_duration("PT1H"))
    found = (await store.temporal_entity("city", "urn:s:1", hourly)).aggregates[N][0].values
    assert [v[0] for v in found["totalCount"]] == [5]  # periods start at the first instance
