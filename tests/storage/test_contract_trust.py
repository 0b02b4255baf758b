"""The storage contract of the trust layer: its documents and the hash-chained audit log,
on SQLite and PostgreSQL alike (the parametrized ``store`` fixture, tests/storage/conftest.py).
The chain is checked with ``cityos.core.audit.verify``, as ``cityos audit verify`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cityos.core.audit import GENESIS, verify
from cityos.storage.base import AuditEntry, AuditRecord

NOW = "2026-01-01T00:00:00.000000Z"


def event(n: int = 0, **fields: Any) -> AuditEntry:
    base: dict[str, Any] = {
        "at": NOW,
        "action": "personal.read",
        "actor": "apikey:k1",
        "tenant": "takamatsu",
        "target": f"urn:ngsi-ld:ChildTag:{n}",
        "person": "urn:ngsi-ld:Person:child1",
        "detail": {"n": n, "attrs": ["location"]},
    }
    base.update(fields)
    return AuditEntry(**base)


async def whole_log(store: Any, page: int = 1000) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    while batch := await store.audit_read(after=records[-1].seq if records else 0, limit=page):
        records += batch
    return records


# -- documents ---------------------------------------------------------------------------


async def test_put_then_get(store: Any) -> None:
    doc = {"grants": [{"roles": ["viewer"]}], "text": '日本語 "q" %s', "f": 0.1, "n": None}
    await store.trust_put("policy", "takamatsu", "policy", doc)
    assert await store.trust_get("policy", "takamatsu", "policy") == doc


async def test_get_of_a_missing_document_is_none(store: Any) -> None:
    assert await store.trust_get("policy", "takamatsu", "policy") is None
    await store.trust_put("policy", "takamatsu", "policy", {"a": 1})
    assert await store.trust_get("policy", "kagawa", "policy") is None
    assert await store.trust_get("consent", "takamatsu", "policy") is None


async def test_put_replaces_the_document_and_its_key(store: Any) -> None:
    await store.trust_put("consent", "t", "c1", {"v": 1}, key="urn:app:a")
    await store.trust_put("consent", "t", "c1", {"v": 2}, key="urn:app:b")
    assert await store.trust_get("consent", "t", "c1") == {"v": 2}
    assert await store.trust_list("consent", "t", key="urn:app:a") == []
    assert await store.trust_list("consent", "t", key="urn:app:b") == [("t", "c1", {"v": 2})]


async def test_list_by_kind_tenant_and_key_in_tenant_then_id_order(store: Any) -> None:
    rows = [
        ("consent", "t2", "b", "r1"),
        ("consent", "t1", "z", "r2"),
        ("consent", "t1", "a", "r1"),
        ("consent", "t2", "a", ""),
        ("apikey", "t1", "k", "r1"),
    ]
    for kind, tenant, doc_id, key in rows:
        await store.trust_put(kind, tenant, doc_id, {"id": doc_id, "t": tenant}, key=key)
    listed = await store.trust_list("consent")
    assert [(t, i) for t, i, _ in listed] == [("t1", "a"), ("t1", "z"), ("t2", "a"), ("t2", "b")]
    assert listed[0][2] == {"id": "a", "t": "t1"}
    assert [(t, i) for t, i, _ in await store.trust_list("consent", "t1")] == [
        ("t1", "a"),
        ("t1", "z"),
    ]
    by_key = await store.trust_list("consent", None, key="r1")
    assert [(t, i) for t, i, _ in by_key] == [("t1", "a"), ("t2", "b")]
    assert [(t, i) for t, i, _ in await store.trust_list("consent", "t2", key="")] == [("t2", "a")]
    assert [(t, i) for t, i, _ in await store.trust_list("apikey", None, key="r1")] == [("t1", "k")]
    assert await store.trust_list("policy") == []


async def test_delete(store: Any) -> None:
    await store.trust_put("apikey", "t", "k1", {"hash": "x"})
    await store.trust_put("apikey", "t", "k2", {"hash": "y"})
    assert await store.trust_delete("apikey", "t", "k1") is True
    assert await store.trust_get("apikey", "t", "k1") is None
    assert await store.trust_delete("apikey", "t", "k1") is False
    assert [i for _, i, _ in await store.trust_list("apikey")] == ["k2"]


# -- audit entries written with their document -----------------------------------------------


async def test_put_and_delete_append_their_audit_entries(store: Any) -> None:
    await store.trust_put("consent", "t", "c1", {"v": 1}, audit=[event(1, action="consent.grant")])
    await store.trust_put("consent", "t", "c2", {"v": 1})  # no entry
    await store.trust_delete("consent", "t", "c1", audit=[event(2, action="consent.delete")])
    await store.trust_delete("consent", "t", "gone", audit=[event(3, action="consent.delete")])
    records = await whole_log(store)
    assert [(r.seq, r.entry.action) for r in records] == [
        (1, "consent.grant"),
        (2, "consent.delete"),
        (3, "consent.delete"),
    ]
    assert records[0].entry == event(1, action="consent.grant")
    assert verify(records).ok


async def test_a_failing_audit_entry_leaves_no_document(store: Any) -> None:
    """The document and its entries commit together or not at all."""
    await store.audit_append([event(1)])
    unserializable = event(2, detail={"x": object()})
    with pytest.raises(TypeError):
        await store.trust_put("consent", "t", "c1", {"v": 1}, audit=[event(3), unserializable])
    assert await store.trust_get("consent", "t", "c1") is None
    await store.trust_put("consent", "t", "c1", {"v": 1})
    with pytest.raises(TypeError):
        await store.trust_delete("consent", "t", "c1", audit=[unserializable])
    assert await store.trust_get("consent", "t", "c1") == {"v": 1}
    records = await whole_log(store)
    assert [r.seq for r in records] == [1]
    await store.audit_append([event(4)])
    assert verify(await whole_log(store)).ok


# -- the audit log -----------------------------------------------------------------------------


async def test_append_chains_from_genesis_and_round_trips_the_entries(store: Any) -> None:
    assert await store.audit_read() == []
    entries = [
        event(1),
        event(2, detail={"nested": {"b": [1.5, None, True]}, "text": "高松 %s \\"}),
        event(3, tenant="", target="", person="", detail={}),
    ]
    await store.audit_append(entries)
    await store.audit_append([])
    records = await whole_log(store)
    assert [r.entry for r in records] == entries
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev == GENESIS
    report = verify(records)
    assert report.ok and report.checked == 3 and report.head == records[-1].hash


async def test_concurrent_appends_make_one_unbroken_chain(store: Any) -> None:
    await asyncio.gather(
        *(
            store.audit_append([event(n, detail={"n": n, "k": k}) for k in range(2)])
            for n in range(50)
        )
    )
    records = await whole_log(store, page=7)
    assert [r.seq for r in records] == list(range(1, 101))
    assert verify(records).ok
    # Each call's entries are appended together, in their order.
    for first, second in zip(records[::2], records[1::2], strict=True):
        assert first.entry.detail["n"] == second.entry.detail["n"]
        assert (first.entry.detail["k"], second.entry.detail["k"]) == (0, 1)


async def test_two_stores_on_one_database_never_fork_the_chain(make_store: Any) -> None:
    """Two processes (two SQLite writers, two PostgreSQL pools) appending at once."""
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    try:
        await asyncio.gather(
            *(s.audit_append([event(n)]) for n in range(30) for s in (first, second)),
            *(
                s.trust_put("consent", "t", f"c{n}", {}, audit=[event(n)])
                for n in range(10)
                for s in (first, second)
            ),
        )
        records = await whole_log(first)
        assert [r.seq for r in records] == list(range(1, 81))
        assert verify(records).ok
    finally:
        await first.close()
        await second.close()


async def test_read_filters_by_person_and_tenant_and_pages_by_after(store: Any) -> None:
    await store.audit_append(
        [
            event(n, person=f"urn:p:{n % 2}", tenant="takamatsu" if n < 6 else "kagawa")
            for n in range(1, 11)
        ]
    )
    about_1 = await store.audit_read(person="urn:p:1")
    assert [r.seq for r in about_1] == [1, 3, 5, 7, 9]
    assert [r.seq for r in await store.audit_read(tenant="kagawa")] == [6, 7, 8, 9, 10]
    both = await store.audit_read(person="urn:p:0", tenant="takamatsu")
    assert [r.seq for r in both] == [2, 4]
    assert [r.seq for r in await store.audit_read(after=3, limit=2)] == [4, 5]
    assert [r.seq for r in await store.audit_read(after=3, limit=2, person="urn:p:1")] == [5, 7]
    assert await store.audit_read(after=10) == []
    assert await store.audit_read(person="urn:p:none") == []
    # Filtered records keep the hashes of the whole chain.
    whole = {r.seq: r for r in await whole_log(store)}
    assert all(whole[r.seq] == r for r in about_1)


async def test_the_chain_survives_reopening(make_store: Any) -> None:
    first = make_store()
    await first.open()
    await first.audit_append([event(1), event(2)])
    await first.trust_put("apikey", "t", "k1", {"h": "x"}, key="k1", audit=[event(3)])
    await first.close()
    second = make_store()
    await second.open()
    try:
        assert await second.trust_get("apikey", "t", "k1") == {"h": "x"}
        await second.audit_append([event(4)])
        records = await whole_log(second)
        assert [r.seq for r in records] == [1, 2, 3, 4]
        assert verify(records).ok
    finally:
        await second.close()
