"""Tests of cityos/storage/sqlite/history.py on a real SQLite file: the history is written
in the transaction of the change it records, the hourly rollups always equal what the raw
instances add up to, and retention (``expire``) deletes exactly what is older than its cutoff.

Writes go through the real app over HTTP; the checks read the database file directly.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from cityos.config import Settings
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import Duration, parse_time
from cityos.storage.base import WriteOutcome
from cityos.storage.sqlite.store import SQLiteStore

API = "/ngsi-ld/v1"
TEMPORAL = f"{API}/temporal/entities"
VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
SENSOR = "urn:ngsi-ld:Sensor:1"
EVERYTHING = RetentionTarget(None, (), Duration(0, 1))

# The rollups as they should be: recomputed from the observed instances.
ROLLUPS_FROM_INSTANCES = (
    "SELECT series, ts / 3600000000 AS hour, count(*), count(num), total(num), "
    "total(num * num), min(num), max(num) FROM temporal_instances WHERE observed = 1 "
    "GROUP BY series, hour ORDER BY 1, 2"
)
ROLLUPS = "SELECT * FROM temporal_rollups WHERE n > 0 ORDER BY 1, 2"


@pytest.fixture
def db(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A connection of its own on the app's database file: it sees only what is committed."""
    conn = sqlite3.connect(settings.sqlite_path, isolation_level=None, check_same_thread=False)
    try:
        yield conn
    finally:
        conn.close()


def store_of(app: Starlette) -> SQLiteStore:
    store: SQLiteStore = app.state.services.store
    return store


def at(hour: int, minute: int = 0) -> str:
    return f"2026-01-01T{hour:02d}:{minute:02d}:00Z"


def prop(value: Any, observed_at: str, **meta: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value, "observedAt": observed_at, **meta}


async def load(
    client: httpx.AsyncClient, points: list[tuple[Any, str]], entity_id: str = SENSOR, **kw: Any
) -> None:
    entity_type = kw.pop("entity_type", "Sensor")
    body = {"id": entity_id, "type": entity_type, "speed": [prop(v, t) for v, t in points]}
    response = await client.post(TEMPORAL, json=body, **kw)
    assert response.status_code in (201, 204), response.text


def count(db: sqlite3.Connection, sql: str, *params: Any) -> int:
    value: int = db.execute(sql, params).fetchone()[0]
    return value


def assert_rollups_match(db: sqlite3.Connection) -> None:
    assert db.execute(ROLLUPS).fetchall() == db.execute(ROLLUPS_FROM_INSTANCES).fetchall()


# -- one transaction ---------------------------------------------------------------------


async def test_history_is_committed_in_the_transaction_of_the_change(
    app: Starlette, client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    seen: list[tuple[int, int]] = []

    def listener(tenant: str, outcomes: list[WriteOutcome]) -> list[Any]:
        # Runs inside the write transaction, after the history was recorded: another
        # connection sees neither the Entity nor its history yet.
        seen.append(
            (
                count(db, "SELECT count(*) FROM entities"),
                count(db, "SELECT count(*) FROM temporal_instances"),
            )
        )
        return []

    store_of(app).listener = listener
    body = {"id": SENSOR, "type": "Sensor", "speed": prop(1, at(0))}
    assert (await client.post(f"{API}/entities", json=body)).status_code == 201
    assert seen == [(0, 0)]
    assert count(db, "SELECT count(*) FROM entities") == 1
    assert count(db, "SELECT count(*) FROM temporal_instances") == 1


async def test_a_rolled_back_write_leaves_no_history(
    app: Starlette, client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    await load(client, [(1, at(0))])
    before = db.execute("SELECT * FROM temporal_instances").fetchall()

    def failing(tenant: str, outcomes: list[WriteOutcome]) -> list[Any]:
        raise RuntimeError("the outbox cannot be written")

    store_of(app).listener = failing
    patch = {"speed": prop(2, at(1))}
    response = await client.patch(f"{API}/entities/{SENSOR}/attrs", json=patch)
    assert response.status_code == 500
    assert db.execute("SELECT * FROM temporal_instances").fetchall() == before
    assert (
        count(
            db, "SELECT json_extract(doc, '$.attrs.\"" + VOCAB + "speed\"[0].value') FROM entities"
        )
        == 1
    )
    assert db.execute(ROLLUPS).fetchall() == db.execute(ROLLUPS_FROM_INSTANCES).fetchall()


# -- rollups ---------------------------------------------------------------------------------


def _random_time(rnd: random.Random) -> str:
    return at(rnd.randrange(6), rnd.randrange(60))


async def _random_step(client: httpx.AsyncClient, rnd: random.Random) -> None:
    value = rnd.choice([rnd.randint(-9, 9), "text", True, 2.5])
    instance = prop(value, _random_time(rnd))
    if rnd.random() < 0.3:
        instance["datasetId"] = "urn:ngsi-ld:Dataset:gps"
    op = rnd.randrange(5)
    if op == 0:  # temporal write; may replace an instance observed at the same time
        await load(client, [(value, instance["observedAt"]), (1, _random_time(rnd))])
    elif op == 1:
        await client.patch(f"{API}/entities/{SENSOR}/attrs", json={"speed": instance})
    else:
        got = (await client.get(f"{TEMPORAL}/{SENSOR}", params={"attrs": "speed"})).json()
        instances = got.get("speed", [])
        if not instances:
            return
        target = f"{TEMPORAL}/{SENSOR}/attrs/speed/{rnd.choice(instances)['instanceId']}"
        if op == 2:
            response = await client.patch(target, json={"speed": instance})
        elif op == 3:
            response = await client.delete(target)
        else:
            response = await client.patch(
                target, json={"speed": {"type": "Property", "value": value}}
            )
        assert response.status_code == 204, response.text


async def test_rollups_equal_the_instances_after_mixed_writes(
    client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    rnd = random.Random(20260101)
    await load(client, [(1, at(0))])
    for step in range(80):
        await _random_step(client, rnd)
        if step % 10 == 9:
            assert_rollups_match(db)
    assert count(db, "SELECT count(*) FROM temporal_rollups") > 1
    assert_rollups_match(db)


async def test_rollups_follow_an_instance_moved_to_another_hour(
    client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    await load(client, [(5, at(0, 10)), (7, at(0, 20)), (9, at(3, 0))])
    first = (await client.get(f"{TEMPORAL}/{SENSOR}")).json()["speed"][0]["instanceId"]
    moved = {"speed": prop(100, at(3, 30))}
    assert (
        await client.patch(f"{TEMPORAL}/{SENSOR}/attrs/speed/{first}", json=moved)
    ).status_code == 204
    rows = db.execute(
        "SELECT hour - min(hour) OVER (), n, sum, min, max FROM temporal_rollups ORDER BY hour"
    )
    assert rows.fetchall() == [(0, 1, 7.0, 7.0, 7.0), (3, 2, 109.0, 9.0, 100.0)]
    assert_rollups_match(db)


async def test_delete_temporal_entity_leaves_no_row_behind(
    client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    await load(client, [(1, at(0)), (2, at(1))])
    await load(client, [(3, at(0))], entity_id="urn:ngsi-ld:Sensor:other")
    assert (await client.delete(f"{TEMPORAL}/{SENSOR}")).status_code == 204
    assert count(db, "SELECT count(*) FROM temporal_entities") == 1
    assert count(db, "SELECT count(*) FROM temporal_types") == 1
    assert count(db, "SELECT count(*) FROM temporal_series") == 1
    assert count(db, "SELECT count(*) FROM temporal_instances") == 1
    assert_rollups_match(db)


# -- retention: expire -------------------------------------------------------------------------

TEN_MINUTES = [(n, at(n // 6, n % 6 * 10)) for n in range(36)]  # 00:00 to 05:50


def _cutoff(text: str) -> int:
    return parse_time(text)


@pytest.mark.parametrize("cutoff", [at(2), at(2, 25), at(0), at(23)])
async def test_expire_deletes_exactly_the_instances_before_the_cutoff(
    app: Starlette, client: httpx.AsyncClient, db: sqlite3.Connection, cutoff: str
) -> None:
    await load(client, TEN_MINUTES)
    removed = await store_of(app).expire_history("", EVERYTHING, _cutoff(cutoff), 1000)
    older = [v for v, t in TEN_MINUTES if t < cutoff]
    assert removed == len(older)
    left = [r[0] for r in db.execute("SELECT ts FROM temporal_instances ORDER BY ts")]
    assert left == [parse_time(t) for _, t in TEN_MINUTES if t >= cutoff]
    assert_rollups_match(db)


async def test_expire_touches_only_its_tenant(
    app: Starlette, client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    await load(client, TEN_MINUTES)
    await load(client, TEN_MINUTES, headers={"NGSILD-Tenant": "city"})
    removed = await store_of(app).expire_history("city", EVERYTHING, _cutoff(at(9)), 1000)
    assert removed == len(TEN_MINUTES)
    assert count(db, "SELECT count(*) FROM temporal_instances") == len(TEN_MINUTES)
    assert count(
        db,
        "SELECT count(*) FROM temporal_instances i JOIN temporal_series s ON s.key = i.series "
        "JOIN temporal_entities e ON e.key = s.entity WHERE e.tenant = ''",
    ) == len(TEN_MINUTES)


@pytest.mark.parametrize(
    ("target", "expired"),
    [
        (RetentionTarget((VOCAB + "Vehicle",), (), Duration(0, 1)), {"Vehicle"}),
        (RetentionTarget(None, (VOCAB + "Vehicle",), Duration(0, 1)), {"Room", "Lamp"}),
        (
            RetentionTarget((VOCAB + "Room", VOCAB + "Lamp"), (VOCAB + "Lamp",), Duration(0, 1)),
            {"Room"},
        ),
    ],
    ids=["one-type", "all-but-one", "types-less-exclusions"],
)
async def test_expire_selects_entities_by_type(
    app: Starlette,
    client: httpx.AsyncClient,
    db: sqlite3.Connection,
    target: RetentionTarget,
    expired: set[str],
) -> None:
    kinds = ["Vehicle", "Room", "Lamp"]
    for kind in kinds:
        await load(client, TEN_MINUTES[:3], entity_id=f"urn:ngsi-ld:{kind}:1", entity_type=kind)
    await store_of(app).expire_history("", target, _cutoff(at(9)), 1000)
    rows = db.execute(
        "SELECT e.id FROM temporal_instances i JOIN temporal_series s ON s.key = i.series "
        "JOIN temporal_entities e ON e.key = s.entity GROUP BY e.id"
    )
    assert {r[0].split(":")[2] for r in rows} == set(kinds) - expired


async def test_expire_in_steps_keeps_rollups_consistent_after_every_step(
    app: Starlette, client: httpx.AsyncClient, db: sqlite3.Connection
) -> None:
    await load(client, TEN_MINUTES)
    cutoff = _cutoff(at(4, 15))
    batch = 4
    total = 0
    while True:
        removed = await store_of(app).expire_history("", EVERYTHING, cutoff, batch)
        total += removed
        # API reads run between two steps: what they aggregate must be right at each one.
        assert_rollups_match(db)
        if removed < batch:
            break
    assert total == len([t for _, t in TEN_MINUTES if parse_time(t) < cutoff])
    assert count(db, "SELECT min(ts) FROM temporal_instances") == cutoff + 5 * 60 * 1_000_000
