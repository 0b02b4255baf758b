"""Temporal Entity queries on PostgreSQL (clause 5.7.4), as on SQLite: ids and plain type
names select temporal Entities by index; type expressions, idPattern, the time window,
and ``q``, ``scopeQ`` and ``geoQ`` on each candidate's newest state are then tested in
Python with ``cityos.core`` (the newest state is rebuilt from the history)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cityos.core import geo
from cityos.core.model import StoredEntity
from cityos.core.query.evaluate import match_q, match_scope, match_types, sort_entities
from cityos.core.query.typeexpr import type_names
from cityos.core.temporal import TemporalEntity, TemporalQuery
from cityos.errors import ResourceNotFound
from cityos.storage.base import EntityQuery
from cityos.storage.postgres.history_aggregate import aggregate_entities
from cityos.storage.postgres.history_read import (
    ENTITY_COLUMNS,
    has_instances,
    latest_state,
    read_entities,
)
from cityos.storage.postgres.writes import Cursor

__all__ = ["query_temporal", "temporal_entity"]


async def _read(cur: Cursor, rows: Sequence[Any], tq: TemporalQuery) -> list[TemporalEntity]:
    if tq.aggregated:
        return await aggregate_entities(cur, rows, tq)
    return await read_entities(cur, rows, tq)


async def temporal_entity(
    cur: Cursor, tenant: str, entity_id: str, tq: TemporalQuery
) -> TemporalEntity:
    await cur.execute(
        f"SELECT {ENTITY_COLUMNS} FROM temporal_entities WHERE tenant = %s AND id = %s",
        (tenant, entity_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise ResourceNotFound(f"Temporal Entity {entity_id} does not exist")
    return (await _read(cur, [row], tq))[0]


async def query_temporal(
    cur: Cursor, query: EntityQuery, tq: TemporalQuery, alternatives: Sequence[EntityQuery]
) -> tuple[list[TemporalEntity], int | None]:
    """Temporal Entities matching the query, or any of ``alternatives`` (the
    EntitySelectors of a POST query): a page of them, and their number when asked."""
    found: dict[int, Any] = {}
    latest: dict[int, StoredEntity] = {}  # newest states read by the filters, reused
    for selection in (query, *alternatives):
        for row in await _candidates(cur, selection, tq, latest):
            found.setdefault(row[0], row)
    matched = [found[key] for key in sorted(found)]
    if query.order_by:
        states = {row[1]: row for row in matched}
        for row in matched:
            if row[0] not in latest:
                latest[row[0]] = await latest_state(cur, row)
        ordered = sort_entities([latest[row[0]] for row in matched], query.order_by)
        matched = [states[e["id"]] for e in ordered]
    page = matched[query.offset : query.offset + query.limit]
    return await _read(cur, page, tq), len(matched) if query.count else None


async def _candidates(
    cur: Cursor, query: EntityQuery, tq: TemporalQuery, latest: dict[int, StoredEntity]
) -> list[Any]:
    sql = f"SELECT {ENTITY_COLUMNS} FROM temporal_entities WHERE tenant = %s"
    params: list[Any] = [query.tenant]
    if query.ids:
        sql += " AND id = ANY(%s::text[])"
        params.append(list(query.ids))
    names = type_names(query.types) if query.types is not None else None
    if names:
        sql += (
            " AND key IN (SELECT entity FROM temporal_types WHERE tenant = %s "
            "AND type = ANY(%s::text[]))"
        )
        params += [query.tenant, list(names)]
    await cur.execute(sql + " ORDER BY key", params)
    rows = await cur.fetchall()
    test = _Filter(query, tq, names, latest)
    return [row for row in rows if await test(cur, row)]


class _Filter:
    """What the indexes could not select: type expressions, idPattern, instances in the
    window, and q, scopeQ and geoQ on the Entity's newest state."""

    def __init__(
        self,
        query: EntityQuery,
        tq: TemporalQuery,
        names: tuple[str, ...] | None,
        latest: dict[int, StoredEntity],
    ) -> None:
        self.query, self.tq, self.latest = query, tq, latest
        self.by_expression = query.types is not None and not names
        self.pattern = re.compile(query.id_pattern) if query.id_pattern else None
        self.geo = (
            query.geo.with_property_iri(query.geoproperty)
            if query.geo is not None and query.geoproperty
            else query.geo
        )
        self.narrowed = bool(tq.timerel or tq.attrs or tq.dataset_ids is not None)

    async def __call__(self, cur: Cursor, row: Sequence[Any]) -> bool:
        query = self.query
        if self.pattern is not None and not self.pattern.search(row[1]):
            return False
        if self.by_expression and query.types is not None:
            if not match_types({"type": row[2]}, query.types):
                return False
        if self.narrowed and not await has_instances(cur, row[0], self.tq):
            return False
        if query.q is None and query.scope_q is None and self.geo is None:
            return True
        state = self.latest.get(row[0])
        if state is None:
            state = self.latest[row[0]] = await latest_state(cur, row)
        return (
            (query.q is None or match_q(state, query.q))
            and (query.scope_q is None or match_scope(state, query.scope_q))
            and (self.geo is None or geo.matches_entity(self.geo, state))
        )
