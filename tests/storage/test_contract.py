"""The storage contract: what every backend does, checked on SQLite and PostgreSQL alike.

Each test takes the parametrized ``store`` fixture (tests/storage/conftest.py), so a
behaviour the API relies on is written once and holds on both stores. Queries are in
test_contract_query.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cityos.core import changes
from cityos.core.contexts import ContextEntry
from cityos.core.model import StoredEntity
from cityos.core.query.ast import AttrPath
from cityos.core.query.orderby import OrderKey
from cityos.core.query.typeexpr import parse_types
from cityos.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityos.storage.base import AttributeSummaryRow, EntityQuery, WriteOutcome

VOCAB = "https://ex.org/"
NOW = "2026-01-01T00:00:00.000000Z"


def entity(entity_id: str, kind: str = "Thing", **values: Any) -> StoredEntity:
    """A stored Entity: names expanded under VOCAB, each value one Property instance."""
    return {
        "id": entity_id,
        "type": [VOCAB + kind],
        "createdAt": NOW,
        "modifiedAt": NOW,
        "attrs": {VOCAB + k: [{"type": "Property", "value": v}] for k, v in values.items()},
    }


def value(doc: StoredEntity, name: str) -> Any:
    return doc["attrs"][VOCAB + name][0]["value"]


def set_value(name: str, new: Any) -> Any:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        if current is None:
            raise ResourceNotFound("Entity does not exist")
        current["attrs"][VOCAB + name] = [{"type": "Property", "value": new}]
        return current, "set"

    return change


def increment(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
    assert current is not None
    current["attrs"][VOCAB + "n"][0]["value"] += 1
    return current, None


async def ids(store: Any, **query: Any) -> list[str]:
    page = await store.query_entities(EntityQuery("city", limit=1000, **query))
    return [e["id"] for e in page.entities]


# -- create, read, update, delete --------------------------------------------------


async def test_create_then_read(store: Any) -> None:
    outcome = await store.write("city", "urn:a", changes.create(entity("urn:a", n=1)))
    assert outcome == WriteOutcome(None, entity("urn:a", n=1), "created")
    assert await store.get_entity("city", "urn:a") == entity("urn:a", n=1)


async def test_reading_a_missing_entity_raises(store: Any) -> None:
    with pytest.raises(ResourceNotFound, match="Entity urn:nope does not exist"):
        await store.get_entity("city", "urn:nope")


async def test_a_refused_change_leaves_the_entity_untouched(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a", n=1)))
    with pytest.raises(AlreadyExists):
        await store.write("city", "urn:a", changes.create(entity("urn:a", n=2)))
    assert value(await store.get_entity("city", "urn:a"), "n") == 1


async def test_update_sees_the_stored_entity_and_reports_before_and_after(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a", n=1)))
    outcome = await store.write("city", "urn:a", set_value("n", 2))
    assert value(outcome.before, "n") == 1 and value(outcome.after, "n") == 2
    assert outcome.result == "set"
    assert value(await store.get_entity("city", "urn:a"), "n") == 2


async def test_delete(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a")))
    outcome = await store.write("city", "urn:a", changes.delete("urn:a"))
    assert outcome.after is None and outcome.before is not None
    with pytest.raises(ResourceNotFound):
        await store.get_entity("city", "urn:a")
    with pytest.raises(ResourceNotFound):
        await store.write("city", "urn:a", changes.delete("urn:a"))
    assert await ids(store) == []


async def test_values_round_trip_unchanged(store: Any) -> None:
    odd = {
        "text": "日本語 'quoted' \"double\" %s %% \\ back",
        "big": 2**53,
        "float": 0.1,
        "neg": -2.5e-7,
        "huge": 4.243184763541981e16,  # jsonb's numeric would print it as an integer
        "tiny": 1e-300,
        "list": [1, "a", None, True, {"k": []}],
        "nested": {"a": {"b": [1.5, {"c": "d"}]}},
        "nothing": None,
    }
    doc = entity("urn:odd", **odd)
    doc["scope"] = ["/a/b"]
    await store.write("city", "urn:odd", changes.create(doc))
    stored = await store.get_entity("city", "urn:odd")
    assert stored == doc
    assert type(value(stored, "huge")) is float and type(value(stored, "big")) is int


async def test_data_survives_reopening(make_store: Any) -> None:
    first = make_store()
    await first.open()
    await first.write("city", "urn:a", changes.create(entity("urn:a", n=1)))
    await first.close()
    second = make_store()
    await second.open()
    try:
        assert value(await second.get_entity("city", "urn:a"), "n") == 1
        assert await second.tenant_exists("city")
    finally:
        await second.close()


# -- write_many: one transaction, each Entity atomic on its own ----------------------


async def test_write_many_applies_each_change_on_its_own(store: Any) -> None:
    await store.write("city", "urn:b", changes.create(entity("urn:b", n=1)))
    outcomes = await store.write_many(
        "city",
        [
            ("urn:a", changes.create(entity("urn:a", n=1))),
            ("urn:b", changes.create(entity("urn:b", n=99))),  # refused: exists
            ("urn:c", changes.upsert(entity("urn:c", n=3), replace_all=True)),
            ("urn:missing", set_value("n", 5)),  # refused: does not exist
        ],
    )
    assert isinstance(outcomes[0], WriteOutcome) and outcomes[0].result == "created"
    assert isinstance(outcomes[1], AlreadyExists)
    assert isinstance(outcomes[2], WriteOutcome) and outcomes[2].result == "created"
    assert isinstance(outcomes[3], ResourceNotFound)
    assert value(await store.get_entity("city", "urn:b"), "n") == 1
    assert sorted(await ids(store)) == ["urn:a", "urn:b", "urn:c"]


async def test_write_many_naming_an_entity_twice_sees_its_first_change(store: Any) -> None:
    outcomes = await store.write_many(
        "city",
        [
            ("urn:a", changes.create(entity("urn:a", n=1))),
            ("urn:a", set_value("n", 2)),
            ("urn:a", changes.create(entity("urn:a", n=3))),  # refused: created above
            ("urn:b", changes.create(entity("urn:b"))),
            ("urn:b", changes.delete("urn:b")),
        ],
    )
    assert [type(o).__name__ for o in outcomes] == [
        "WriteOutcome",
        "WriteOutcome",
        "AlreadyExists",
        "WriteOutcome",
        "WriteOutcome",
    ]
    assert value(await store.get_entity("city", "urn:a"), "n") == 2
    assert await ids(store) == ["urn:a"]


async def test_a_deleted_then_recreated_entity_is_stored_anew(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a", "Old", n=1)))
    await store.write_many(
        "city",
        [
            ("urn:a", changes.delete("urn:a")),
            ("urn:a", changes.create(entity("urn:a", "New", m=2))),
        ],
    )
    stored = await store.get_entity("city", "urn:a")
    assert stored == entity("urn:a", "New", m=2)
    assert await store.type_counts("city") == {VOCAB + "New": 1}


# -- concurrency: two writers on one Entity never lose an update ---------------------


async def test_concurrent_writers_on_one_entity_all_land(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a", n=0)))
    await asyncio.gather(*(store.write("city", "urn:a", increment) for _ in range(40)))
    assert value(await store.get_entity("city", "urn:a"), "n") == 40


async def test_two_stores_on_one_database_never_lose_an_update(make_store: Any) -> None:
    # Two stores stand for two worker processes sharing the database.
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    try:
        await first.write("city", "urn:a", changes.create(entity("urn:a", n=0)))
        writes = [s.write("city", "urn:a", increment) for s in (first, second) * 15]
        await asyncio.gather(*writes)
        assert value(await second.get_entity("city", "urn:a"), "n") == 30
    finally:
        await first.close()
        await second.close()


def count_up(entity_id: str) -> Any:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        if current is None:
            return entity(entity_id, n=1), "created"
        current["attrs"][VOCAB + "n"][0]["value"] += 1
        return current, "updated"

    return change


async def test_creating_and_updating_new_entities_from_two_stores_loses_nothing(
    make_store: Any,
) -> None:
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    try:
        names = [f"urn:new:{i}" for i in range(10)]
        batches = [
            s.write_many("city", [(n, count_up(n)) for n in (names if k % 2 else names[::-1])])
            for k, s in enumerate((first, second) * 6)
        ]
        singles = [s.write("city", n, count_up(n)) for s in (first, second) for n in names]
        await asyncio.wait_for(asyncio.gather(*batches, *singles), timeout=60)
        page = await first.query_entities(EntityQuery("city", limit=100))
        assert {e["id"]: value(e, "n") for e in page.entities} == {n: 14 for n in names}
    finally:
        await first.close()
        await second.close()


async def test_concurrent_creates_of_one_entity_create_it_once(store: Any) -> None:
    results = await asyncio.gather(
        *(store.write("city", "urn:a", changes.create(entity("urn:a", n=i))) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, WriteOutcome) for r in results) == 1
    assert sum(isinstance(r, AlreadyExists) for r in results) == 7


async def test_concurrent_batches_over_the_same_entities_do_not_deadlock(store: Any) -> None:
    names = [f"urn:e{i}" for i in range(20)]
    await store.write_many("city", [(n, changes.create(entity(n, n=0))) for n in names])
    batches = [
        store.write_many("city", [(n, increment) for n in (names if k % 2 else names[::-1])])
        for k in range(10)
    ]
    await asyncio.wait_for(asyncio.gather(*batches), timeout=60)
    page = await store.query_entities(EntityQuery("city", limit=100))
    assert {value(e, "n") for e in page.entities} == {10}


# -- tenants -------------------------------------------------------------------------


async def test_tenants_are_isolated(store: Any) -> None:
    await store.write("city", "urn:a", changes.create(entity("urn:a", "Car")))
    await store.write("town", "urn:a", changes.create(entity("urn:a", "Bus")))
    await store.write("town", "urn:b", changes.create(entity("urn:b", "Bus")))
    assert await ids(store) == ["urn:a"]
    assert (await store.get_entity("town", "urn:a"))["type"] == [VOCAB + "Bus"]
    assert await store.type_counts("city") == {VOCAB + "Car": 1}
    assert await store.type_counts("town") == {VOCAB + "Bus": 2}
    assert await store.tenants() == ["city", "town"]
    assert await store.tenant_exists("town")
    assert not await store.tenant_exists("village")
    await store.write("town", "urn:a", changes.delete("urn:a"))
    assert await ids(store) == ["urn:a"]


async def test_a_refused_write_creates_no_tenant(store: Any) -> None:
    with pytest.raises(ResourceNotFound):
        await store.write("ghost", "urn:a", set_value("n", 1))
    assert not await store.tenant_exists("ghost")
    assert "ghost" not in await store.tenants()


# -- discovery ---------------------------------------------------------------------


async def test_type_counts_and_attribute_summary(store: Any) -> None:
    both = entity("urn:c", "Car", speed=1)
    both["type"].append(VOCAB + "Vehicle")
    await store.write_many(
        "city",
        [
            ("urn:a", changes.create(entity("urn:a", "Car", speed=1, name="a"))),
            ("urn:b", changes.create(entity("urn:b", "Car", speed=2))),
            ("urn:c", changes.create(both)),
        ],
    )
    assert await store.type_counts("city") == {VOCAB + "Car": 3, VOCAB + "Vehicle": 1}
    summary = sorted(await store.attribute_summary("city"), key=lambda r: (r.type, r.attribute))
    assert summary == [
        AttributeSummaryRow(VOCAB + "Car", VOCAB + "name", "Property", 1),
        AttributeSummaryRow(VOCAB + "Car", VOCAB + "speed", "Property", 3),
        AttributeSummaryRow(VOCAB + "Vehicle", VOCAB + "speed", "Property", 1),
    ]


# -- ordering, paging, counting ----------------------------------------------------


async def test_pages_follow_insertion_order_and_count_everything(store: Any) -> None:
    names = [f"urn:{chr(ord('z') - i)}" for i in range(25)]  # inserted in reverse id order
    await store.write_many("city", [(n, changes.create(entity(n))) for n in names])
    seen = []
    for offset in range(0, 25, 10):
        page = await store.query_entities(EntityQuery("city", limit=10, offset=offset, count=True))
        assert page.count == 25
        seen += [e["id"] for e in page.entities]
    assert seen == names
    page = await store.query_entities(EntityQuery("city", limit=5, count=False))
    assert page.count is None


async def test_order_by_values_members_and_direction(store: Any) -> None:
    # Numbers, then strings in code point order, then Entities without the key (in both
    # directions). Booleans are left out: SQLite's json_extract sorts them as 0 and 1.
    values = {"urn:a": 3, "urn:b": 1.5, "urn:c": "text", "urn:d": None, "urn:e": 10, "urn:f": "Tx"}
    docs = [entity(i) if v is None else entity(i, v=v) for i, v in values.items()]
    await store.write_many("city", [(d["id"], changes.create(d)) for d in docs])
    by_value = [OrderKey(path=AttrPath(VOCAB + "v"))]
    assert await ids(store, order_by=by_value) == [
        "urn:b",
        "urn:a",
        "urn:e",
        "urn:f",
        "urn:c",
        "urn:d",
    ]
    down = [OrderKey(path=AttrPath(VOCAB + "v"), descending=True)]
    assert await ids(store, order_by=down) == ["urn:c", "urn:f", "urn:e", "urn:a", "urn:b", "urn:d"]
    assert await ids(store, order_by=[OrderKey(member="id", descending=True)]) == sorted(
        values, reverse=True
    )
    page = await store.query_entities(EntityQuery("city", order_by=by_value, limit=2, offset=1))
    assert [e["id"] for e in page.entities] == ["urn:a", "urn:e"]


async def test_order_by_type_then_id(store: Any) -> None:
    await store.write_many(
        "city",
        [
            ("urn:2", changes.create(entity("urn:2", "B"))),
            ("urn:1", changes.create(entity("urn:1", "B"))),
            ("urn:3", changes.create(entity("urn:3", "A"))),
        ],
    )
    keys = [OrderKey(member="type"), OrderKey(member="id")]
    assert await ids(store, order_by=keys) == ["urn:3", "urn:1", "urn:2"]
    types = parse_types(VOCAB + "B")
    assert await ids(store, types=types, order_by=keys) == ["urn:1", "urn:2"]


# -- the notification outbox ---------------------------------------------------------


def _listener(tenant: str, outcomes: list[WriteOutcome]) -> list[tuple[str, str, str, str]]:
    return [
        (tenant, "urn:sub:1", (o.after or o.before or {})["id"], json.dumps({"n": str(o.result)}))
        for o in outcomes
    ]


async def test_outbox_rows_are_written_with_the_changes_they_report(store: Any) -> None:
    commits: list[int] = []
    store.listener = _listener
    store.on_commit = lambda: commits.append(1)
    await store.write_many(
        "city",
        [
            ("urn:a", changes.create(entity("urn:a"))),
            ("urn:b", set_value("n", 1)),  # refused: reported to nobody
        ],
    )
    await store.write("city", "urn:a", changes.delete("urn:a"))
    rows = await store.pending_notifications(0, 10)
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("city", "urn:sub:1", "urn:a", {"n": "created"}),
        ("city", "urn:sub:1", "urn:a", {"n": "None"}),
    ]
    assert rows[0][0] < rows[1][0] and commits == [1, 1]
    assert await store.pending_notifications(rows[0][0], 10) == rows[1:]
    await store.finish_notifications([rows[0][0]])
    assert await store.pending_notifications(0, 10) == rows[1:]


async def test_outbox_keys_follow_commit_order_under_concurrency(store: Any) -> None:
    store.listener = _listener
    names = [f"urn:e{i}" for i in range(30)]
    await asyncio.gather(*(store.write("city", n, changes.create(entity(n))) for n in names))
    rows = await store.pending_notifications(0, 100)
    assert sorted(r[3] for r in rows) == sorted(names)
    keys = [r[0] for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == 30


async def test_deleting_a_subscription_deletes_it_and_its_outbox_rows(store: Any) -> None:
    await store.save_subscription("city", "urn:sub:1", {"id": "urn:sub:1", "q": "a"})
    await store.save_subscription("city", "urn:sub:1", {"id": "urn:sub:1", "q": "b"})
    await store.save_subscription("town", "urn:sub:2", {"id": "urn:sub:2"})
    assert sorted(await store.load_subscriptions()) == [
        ("city", "urn:sub:1", {"id": "urn:sub:1", "q": "b"}),
        ("town", "urn:sub:2", {"id": "urn:sub:2"}),
    ]
    store.listener = _listener
    await store.write("city", "urn:a", changes.create(entity("urn:a")))
    await store.delete_subscription("city", "urn:sub:1")
    assert await store.load_subscriptions() == [("town", "urn:sub:2", {"id": "urn:sub:2"})]
    assert await store.pending_notifications(0, 10) == []


async def test_csource_subscriptions_and_their_outbox(store: Any) -> None:
    await store.save_csource_subscription("city", "urn:cs:1", {"id": "urn:cs:1"})
    assert await store.load_csource_subscriptions() == [("city", "urn:cs:1", {"id": "urn:cs:1"})]
    await store.add_csource_notifications(
        [("city", "urn:cs:1", "urn:reg:1", '{"a": 1}'), ("city", "urn:cs:1", "urn:reg:2", "[]")]
    )
    rows = await store.pending_csource_notifications(0, 10)
    assert [r[1:] for r in rows] == [
        ("city", "urn:cs:1", "urn:reg:1", {"a": 1}),
        ("city", "urn:cs:1", "urn:reg:2", []),
    ]
    await store.finish_csource_notifications([rows[0][0]])
    assert len(await store.pending_csource_notifications(0, 10)) == 1
    await store.delete_csource_subscription("city", "urn:cs:1")
    assert await store.load_csource_subscriptions() == []
    assert await store.pending_csource_notifications(0, 10) == []


# -- @contexts and context source registrations --------------------------------------


async def test_contexts_are_saved_replaced_and_deleted(store: Any) -> None:
    entry = ContextEntry("https://ex.org/ctx", "id1", "Cached", {"b": "x:b", "a": "x:a"}, NOW)
    await store.save_context(entry)
    await store.save_context(ContextEntry(entry.url, "id2", "Hosted", ["x"], NOW))
    assert await store.load_contexts() == [ContextEntry(entry.url, "id2", "Hosted", ["x"], NOW)]
    await store.delete_context(entry.url)
    assert await store.load_contexts() == []


async def test_registrations(store: Any) -> None:
    await store.create_registration("city", "urn:reg:b", {"id": "urn:reg:b", "n": 1})
    await store.create_registration("city", "urn:reg:a", {"id": "urn:reg:a"})
    await store.create_registration("town", "urn:reg:c", {"id": "urn:reg:c"})
    with pytest.raises(AlreadyExists):
        await store.create_registration("city", "urn:reg:a", {"id": "urn:reg:a"})
    assert [d["id"] for d in await store.registrations("city")] == ["urn:reg:a", "urn:reg:b"]

    def bump(doc: Any) -> Any:
        return {**doc, "n": doc["n"] + 1}

    await asyncio.gather(*(store.update_registration("city", "urn:reg:b", bump) for _ in range(5)))
    assert (await store.get_registration("city", "urn:reg:b"))["n"] == 6
    await store.delete_registration("city", "urn:reg:b")
    for call in (
        store.get_registration("city", "urn:reg:b"),
        store.delete_registration("city", "urn:reg:b"),
        store.update_registration("city", "urn:reg:b", bump),
    ):
        with pytest.raises(ResourceNotFound, match="urn:reg:b does not exist"):
            await call


async def test_registration_writes_add_their_notifications_in_the_same_transaction(
    store: Any,
) -> None:
    seen: list[tuple[Any, Any]] = []

    def outbox(before: Any, after: Any) -> list[tuple[str, str, str, str]]:
        seen.append((before, after))
        return [("city", "urn:cs:1", "urn:reg:1", json.dumps({"n": len(seen)}))]

    await store.save_csource_subscription("city", "urn:cs:1", {"id": "urn:cs:1"})
    await store.create_registration("city", "urn:reg:1", {"v": 1}, outbox)
    await store.update_registration("city", "urn:reg:1", lambda doc: {"v": doc["v"] + 1}, outbox)
    await store.delete_registration("city", "urn:reg:1", outbox)
    assert seen == [(None, {"v": 1}), ({"v": 1}, {"v": 2}), ({"v": 2}, None)]
    rows = await store.pending_csource_notifications(0, 10)
    assert [r[4] for r in rows] == [{"n": 1}, {"n": 2}, {"n": 3}]

    def failing(before: Any, after: Any) -> list[tuple[str, str, str, str]]:
        raise BadRequestData("the outbox failed")

    with pytest.raises(BadRequestData):
        await store.create_registration("city", "urn:reg:2", {"v": 1}, failing)
    with pytest.raises(ResourceNotFound):  # the registration rolled back with its outbox
        await store.get_registration("city", "urn:reg:2")
    assert len(await store.pending_csource_notifications(0, 10)) == 3
