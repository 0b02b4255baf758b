"""Applying changes in one PostgreSQL transaction, safe beside other writers.

PostgreSQL has many writers at once (API workers, processes, machines), so a job first
locks the Entities it touches, then reads them, runs each change on the stored form in
memory, in order (a batch naming an Entity twice sees its own first change), and writes
the net effect of each row with one statement per kind (insert, update, delete, geo
rows). A change that refuses (``CityOSError``) writes nothing of its Entity, before any
SQL of it runs, as on SQLite (docs/architecture.md); an SQL error fails the whole job.

Locking (``lock_entities``): the Entities that exist are locked with ``SELECT ... FOR
UPDATE``, in key order. That cannot lock an Entity that does not exist yet, so for the
ids not found a transaction-level advisory lock per (tenant, id) is taken, in ascending
order, and those ids are read again: a writer that created one meanwhile has committed
by then (read committed gives the new statement a new snapshot), and its row is locked
too. So two writers on one Entity never lose an update, and two creating it create it
once; advisory locks, which fill PostgreSQL's shared lock table, are only taken for new
Entities. A rare lock cycle between two jobs is broken by PostgreSQL (deadlock
detected) and the store runs the job again (``store.PostgresStore.transaction``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from psycopg import AsyncCursor
from psycopg.types.json import Jsonb

from cityos.core.geo import iter_geoproperties
from cityos.core.model import StoredEntity
from cityos.errors import BadRequestData, CityOSError
from cityos.storage.base import Change, WriteOutcome

__all__ = ["Cursor", "apply_changes", "lock_entities", "lock_key"]

_loads = orjson.loads
_dumps = orjson.dumps
Cursor = AsyncCursor[Any]
# jsonb cannot hold U+0000 (JSON's \u0000, not preceded by another backslash); refusing
# the change up front keeps the rest of its batch, where the INSERT would fail them all.
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_NUL_REASON = "holds the character U+0000, which the PostgreSQL store cannot keep"


@dataclass
class _Row:
    key: int | None  # None until inserted
    stored: StoredEntity | None  # as in the database before this job; None if new
    current: StoredEntity | None  # after the changes so far; None if deleted


@dataclass
class _Job:
    tenant: str
    rows: dict[str, _Row] = field(default_factory=dict)


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for a name (a collision only makes two writers
    wait for each other, never changes a result)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def apply_changes(
    cur: Cursor, tenant: str, changes: Sequence[tuple[str, Change]]
) -> list[WriteOutcome | Exception]:
    """Runs ``changes`` in the caller's transaction; an outcome or the refusal of each."""
    job = _Job(tenant)
    ids = list(dict.fromkeys(entity_id for entity_id, _ in changes))
    await _prefetch(cur, job, ids)
    outcomes: list[WriteOutcome | Exception] = []
    for entity_id, change in changes:
        row = job.rows.get(entity_id)
        before = row.current if row is not None else None
        try:
            after, result = change(_copy(before))
        except CityOSError as exc:  # refused: nothing of this Entity changes
            outcomes.append(exc)
            continue
        if after is not None and _NUL.search(_dumps(after)):
            outcomes.append(BadRequestData(f"Entity {entity_id} {_NUL_REASON}"))
            continue
        if row is None and after is not None:
            row = job.rows[entity_id] = _Row(None, None, None)
        if row is not None:
            row.current = after
        outcomes.append(WriteOutcome(before, after, result))
    await _write(cur, job)
    return outcomes


def _copy(entity: StoredEntity | None) -> StoredEntity | None:
    # Changes edit in place; the outcome keeps the untouched "before".
    return None if entity is None else _loads(_dumps(entity))


_SELECT_FOR_UPDATE = (
    "SELECT key, id, doc FROM entities WHERE tenant = %s AND id = ANY(%s::text[]) "
    "ORDER BY key FOR UPDATE"
)


async def lock_entities(cur: Cursor, tenant: str, ids: list[str]) -> list[tuple[int, str, Any]]:
    """Locks the Entities ``ids`` of ``tenant`` until commit, whether they exist or not
    (see the module docstring); returns (key, id, document) of those that exist."""
    await cur.execute(_SELECT_FOR_UPDATE, (tenant, ids))
    rows: list[tuple[int, str, Any]] = list(await cur.fetchall())
    found = {row[1] for row in rows}
    missing = [entity_id for entity_id in ids if entity_id not in found]
    if missing:
        keys = sorted({lock_key(tenant, entity_id) for entity_id in missing})
        await cur.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) k", (keys,))
        await cur.execute(_SELECT_FOR_UPDATE, (tenant, missing))
        rows += await cur.fetchall()
    return rows


async def _prefetch(cur: Cursor, job: _Job, ids: list[str]) -> None:
    for key, entity_id, doc in await lock_entities(cur, job.tenant, ids):
        job.rows[entity_id] = _Row(key, doc, _loads(_dumps(doc)))


async def _write(cur: Cursor, job: _Job) -> None:
    inserts, updates, deletes = [], [], []
    for row in job.rows.values():
        if row.stored is None and row.current is not None:
            inserts.append(row)
        elif row.stored is not None and row.current is None and row.key is not None:
            deletes.append(row.key)
        elif row.stored is not None and row.current is not None and row.current != row.stored:
            updates.append(row)
    if deletes:  # entity_geo rows go with them (ON DELETE CASCADE)
        await cur.execute("DELETE FROM entities WHERE key = ANY(%s::bigint[])", (deletes,))
    if updates:
        await _update(cur, job.tenant, updates)
    if inserts:
        await _insert(cur, job.tenant, inserts)


_TYPES = "ARRAY(SELECT jsonb_array_elements_text(d -> 'type'))"


async def _insert(cur: Cursor, tenant: str, rows: list[_Row]) -> None:
    docs = [Jsonb(r.current) for r in rows]
    await cur.execute(
        f"INSERT INTO entities (tenant, id, types, doc) SELECT %s, d ->> 'id', {_TYPES}, d "
        "FROM unnest(%s::jsonb[]) WITH ORDINALITY AS u(d, n) ORDER BY n RETURNING key, id",
        (tenant, docs),
    )
    keys = {entity_id: key for key, entity_id in await cur.fetchall()}
    for row in rows:
        assert row.current is not None
        row.key = keys[row.current["id"]]
    await _index_geo(cur, tenant, rows)


async def _update(cur: Cursor, tenant: str, rows: list[_Row]) -> None:
    await cur.execute(
        f"UPDATE entities e SET doc = u.d, types = {_TYPES} "
        "FROM unnest(%s::bigint[], %s::jsonb[]) AS u(k, d) WHERE e.key = u.k",
        ([r.key for r in rows], [Jsonb(r.current) for r in rows]),
    )
    moved = [r for r in rows if _geometries(r.stored) != _geometries(r.current)]
    if moved:
        await cur.execute(
            "DELETE FROM entity_geo WHERE entity = ANY(%s::bigint[])", ([r.key for r in moved],)
        )
        await _index_geo(cur, tenant, moved)


def _geometries(doc: StoredEntity | None) -> list[tuple[str, Any]]:
    return list(iter_geoproperties(doc)) if doc else []


async def _index_geo(cur: Cursor, tenant: str, rows: list[_Row]) -> None:
    entries = [
        (row.key, attr, _dumps(geometry).decode())
        for row in rows
        for attr, geometry in _geometries(row.current)
    ]
    if not entries:
        return
    keys, attrs, geometries = (list(column) for column in zip(*entries, strict=True))
    await cur.execute(
        "INSERT INTO entity_geo (entity, tenant, attr, geom) "
        "SELECT k, %s, a, ST_SetSRID(ST_GeomFromGeoJSON(g), 4326) "
        "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(k, a, g)",
        (tenant, keys, attrs, geometries),
    )
