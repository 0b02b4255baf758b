"""Data subject rights (Japan's APPI): a resident (here a guardian for a child) exports
all data about the child, reads who accessed it, and has it erased; erasure leaves no
personal value anywhere in the store, which the test checks by scanning the SQLite files
byte for byte and every PostgreSQL table row as text."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import psycopg

from .conftest import API, ENTITIES, LD, PERSON, TENANT, City

T1, T2 = ENTITIES[3]["id"], ENTITIES[4]["id"]
# each value the child's tag ever held: the note as created, then two later notes
ERASED = ("SECRET-child1-note", "SECRET-child1-diary-1", "SECRET-child1-diary-2")
KEPT = "SECRET-child2-note"  # the other child's data stays: the scan can see it
SUBJECT = f"/cityos/v1/subjects/{quote(PERSON, safe='')}"


async def test_export_access_log_and_erasure_leave_nothing(city: City) -> None:
    c, guardian = city.client, {**city.who("guardian"), **LD}
    admin = {**city.who("admin"), **LD}
    for note in ERASED[1:]:  # history: earlier values live on in the temporal store
        r = await c.patch(
            f"{API}/entities/{T1}/attrs",
            json={"note": {"type": "Property", "value": note}},
            headers=admin,
        )
        assert r.status_code == 204, r.text
    # a service holding the guardian's consent reads the tag: that read is logged
    consent = {
        "subject": PERSON,
        "recipient": "mimamori",
        "purpose": "見守り",
        "categories": ["ChildTag"],
    }
    assert (await c.post("/cityos/v1/consents", json=consent, headers=guardian)).status_code == 201
    r = await c.get(f"{API}/entities/{T1}", headers={**city.who("watch"), **LD})
    assert r.status_code == 200 and r.json()["note"]["value"] == ERASED[-1]

    # disclosure: everything about the child, its history, consents and accesses
    r = await c.get(f"{SUBJECT}/data", headers=guardian)
    assert r.status_code == 200, r.text
    export = r.json()
    assert [e["id"] for e in export["entities"]] == [T1]
    history = str(export["history"])
    assert all(note in history for note in ERASED)
    assert [x["recipient"] for x in export["consents"]] == ["mimamori"]
    assert KEPT not in r.text

    # the record of provision: the service's read, by its token's subject
    r = await c.get(f"{SUBJECT}/access-log", headers=guardian)
    reads = [e for e in r.json() if e["action"] == "personal.read" and e["target"] == T1]
    assert reads and reads[-1]["actor"].endswith("svc")
    # nobody else may read a child's access log, export or erase its data
    for who, status in (("viewer", 403), ("watch", 403), ("anonymous", 401)):
        headers = {**city.who(who), **LD}
        assert (await c.get(f"{SUBJECT}/access-log", headers=headers)).status_code == status
        assert (await c.get(f"{SUBJECT}/data", headers=headers)).status_code == status
        assert (await c.post(f"{SUBJECT}/erase", headers=headers)).status_code == status

    # erasure
    r = await c.post(f"{SUBJECT}/erase", headers=guardian)
    assert r.status_code == 200, r.text
    assert r.json()["erased"] == [T1]
    assert (await c.get(f"{API}/entities/{T1}", headers=admin)).status_code == 404
    assert (await c.get(f"{API}/temporal/entities/{T1}", headers=admin)).status_code == 404
    # the other child's tag stays (no one here may read it: asked of the store itself)
    assert (await city.app.state.services.store.get_entity(TENANT, T2))["id"] == T2
    r = await c.get(f"{SUBJECT}/access-log", headers=guardian)
    assert any(e["action"] == "subject.erase" for e in r.json())

    # scanned while City OS runs (a copy taken now, the write-ahead log included) and
    # after it stopped
    store = city.app.state.services.store
    for _ in ("running", "stopped"):
        found = _scan_sqlite(store.path) if hasattr(store, "path") else _scan_postgres(store.url)
        assert KEPT in found, "the scan must see values that were not erased"
        for value in ERASED:
            assert value not in found, f"{value} survives erasure in the store"
        await city.app.state.shutdown()


def _scan_sqlite(path: Path) -> str:
    """Every byte of the database and its write-ahead log, free pages included."""
    data = b""
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-journal")):
        if file.exists():
            data += file.read_bytes()
    return data.decode("utf-8", errors="replace")


def _scan_postgres(url: str) -> str:
    """Every row of every table of the database, as text."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT quote_ident(table_name) FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        rows = [str(row) for t in tables for row in conn.execute(f"SELECT t::text FROM {t} t")]  # noqa: S608
    return "\n".join(rows)
