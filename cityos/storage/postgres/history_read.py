"""Temporal history on PostgreSQL: reading instances back (clauses 5.7.3, 5.7.4, 6.3.10).

The same rules as SQLite's ``storage/sqlite/history.py``: a window on one series is a
range scan of ``(series, ts)``; one response holds at most ``instance_limit`` instances
per attribute and is cut at one time that every attribute fills (``Content-Range``).
Aggregation is in ``history_aggregate.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cityos.core.model import StoredAttribute, StoredEntity
from cityos.core.temporal import Found, TemporalEntity, TemporalQuery, fit_to_range, format_time
from cityos.storage.history_common import (
    DELETED,
    Series,
    kind_sql,
    page_rows,
    selected_series,
    window_sql,
)
from cityos.storage.postgres.history_write import INSTANCE_PREFIX
from cityos.storage.postgres.writes import Cursor

__all__ = [
    "ENTITY_COLUMNS",
    "TIME_COLUMN",
    "Series",
    "entity_row",
    "has_instances",
    "kind_sql",
    "latest_state",
    "read_entities",
    "series_of",
]

ENTITY_COLUMNS = "key, id, types, scope, created_at, modified_at, deleted_at"
TIME_COLUMN = {
    "observedAt": "ts",
    "createdAt": "created_at",
    "modifiedAt": "modified_at",
    "deletedAt": "ts",
}


async def series_of(cur: Cursor, entity: int, tq: TemporalQuery | None) -> list[Series]:
    """The Entity's series, only those of the query's ``attrs`` and ``datasetId`` if given."""
    await cur.execute(
        "SELECT key, attr, dataset FROM temporal_series WHERE entity = %s ORDER BY key", (entity,)
    )
    return selected_series([Series(r[0], r[1], r[2] or None) for r in await cur.fetchall()], tq)


def _window_sql(tq: TemporalQuery, column: str) -> tuple[str, list[Any]]:
    return window_sql(tq, column, "%s")


async def _instances(
    cur: Cursor, series: Series, tq: TemporalQuery
) -> tuple[list[tuple[int, StoredAttribute]], int | None]:
    """The series' instances in the window with their time, oldest first (lastN: the newest
    N), and, when more were left out by the query's instance limit, where they were cut."""
    column = TIME_COLUMN[tq.timeproperty]
    where, params = _window_sql(tq, column)
    newest = tq.last_n is not None
    order = "DESC" if newest else "ASC"
    limit = min(tq.instance_limit, tq.last_n or tq.instance_limit)
    await cur.execute(
        f"SELECT key, {column}, created_at, modified_at, doc FROM temporal_instances "
        f"WHERE series = %s{where} ORDER BY {column} {order}, key {order} LIMIT %s",
        [series.key, *params, limit + 1],
    )
    rows = await cur.fetchall()
    rows, cut = page_rows(rows, limit, tq, newest)
    out = []
    for key, at, created, modified, inst in rows:
        inst["instanceId"] = f"{INSTANCE_PREFIX}{key}"
        inst["createdAt"] = format_time(created)
        inst["modifiedAt"] = format_time(modified)
        out.append((at, inst))
    return out, cut


def entity_row(row: Sequence[Any]) -> TemporalEntity:
    return TemporalEntity(
        id=row[1],
        types=row[2],
        scope=row[3] or None,
        created_at=row[4],
        modified_at=row[5],
        deleted_at=row[6],
    )


async def read_entities(
    cur: Cursor, rows: Sequence[Sequence[Any]], tq: TemporalQuery
) -> list[TemporalEntity]:
    """Temporal Entities with the instances the query asks for.

    Clause 6.3.10: when an attribute has more instances than the instance limit, the
    response covers one time range that every attribute of every Entity fills completely:
    it ends where the first cut attribute was cut (going back in time for lastN).
    Aggregated queries go to ``history_aggregate.aggregate_entities`` instead."""
    entities = [entity_row(row) for row in rows]
    found: list[Found] = []
    cuts: list[int] = []
    for row in rows:
        per_entity: Found = []
        for s in await series_of(cur, row[0], tq):
            instances, cut = await _instances(cur, s, tq)
            if cut is not None:
                cuts.append(cut)
            per_entity.append((s.attr, instances))
        found.append(per_entity)
    return fit_to_range(entities, found, cuts, tq)


async def has_instances(cur: Cursor, entity: int, tq: TemporalQuery) -> bool:
    """Whether the query's window holds any instance of the Entity's wanted attributes."""
    where, params = _window_sql(tq, TIME_COLUMN[tq.timeproperty])
    for s in await series_of(cur, entity, tq):
        await cur.execute(
            f"SELECT 1 FROM temporal_instances WHERE series = %s{where} LIMIT 1", [s.key, *params]
        )
        if await cur.fetchone():
            return True
    return False


async def latest_state(cur: Cursor, row: Sequence[Any]) -> StoredEntity:
    """The temporal Entity as of its newest instances: what ``q``, ``scopeQ`` and ``geoQ``
    of a temporal query are evaluated against."""
    entity: StoredEntity = {
        "id": row[1],
        "type": row[2],
        "createdAt": row[4],
        "modifiedAt": row[5],
        "attrs": {},
    }
    if row[3]:
        entity["scope"] = row[3]
    await cur.execute(
        "SELECT DISTINCT ON (s.key) s.attr, i.doc, i.created_at, i.modified_at "
        "FROM temporal_series s JOIN temporal_instances i ON i.series = s.key "
        f"WHERE s.entity = %s AND i.observed < {DELETED} "
        "ORDER BY s.key, i.ts DESC, i.key DESC",
        (row[0],),
    )
    for attr, inst, created, modified in await cur.fetchall():
        inst["createdAt"] = format_time(created)
        inst["modifiedAt"] = format_time(modified)
        entity["attrs"].setdefault(attr, []).append(inst)
    for instances in entity["attrs"].values():
        instances.sort(key=lambda i: "datasetId" in i)
    return entity
