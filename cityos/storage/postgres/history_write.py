"""Temporal history on PostgreSQL: recording attribute instances (migration 003).

The same tables and rules as SQLite's ``storage/sqlite/history.py``: every function runs
in the transaction of the write it belongs to, so the history never disagrees with the
current state. The Entities involved are locked by the caller (``writes.lock_entities``),
so the temporal Entity and series rows of one Entity are never created twice; keys come
from identity columns (``RETURNING``), since other writers insert beside this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from cityos.core.entities import NULL_URI
from cityos.core.model import StoredAttribute, StoredEntity, now_iso
from cityos.core.temporal import HOUR_US, Stats, parse_time
from cityos.errors import ResourceNotFound
from cityos.storage.base import WriteOutcome
from cityos.storage.history_common import DELETED, OBSERVED
from cityos.storage.postgres.writes import Cursor

__all__ = [
    "DELETED",
    "INSTANCE_PREFIX",
    "OBSERVED",
    "STATS_SQL",
    "InstanceRow",
    "Keys",
    "add_instances",
    "insert_rows",
    "instance_row",
    "record",
    "recompute_rollup",
]

INSTANCE_PREFIX = "urn:ngsi-ld:attribute-instance:"
# temporal_instances.observed: 0 no observedAt (ts is createdAt), 1 observedAt, 2 deletion
# (OBSERVED, DELETED in cityos.storage.history_common, re-exported here)
# What one period of instances adds up to (the columns of temporal_rollups after its keys).
STATS_SQL = (
    "count(*), count(num), COALESCE(sum(num), 0), COALESCE(sum(num * num), 0), min(num), max(num)"
)
SeriesRef = tuple[int, str, str]  # (temporal Entity key, attribute, datasetId or '')


def _us(text: str) -> int:
    return parse_time(text, "observedAt")


@dataclass
class InstanceRow:
    series: int | SeriesRef  # a key, or the series to look up or create
    ts: int
    observed: int
    created: int
    modified: int
    num: float | None
    doc: StoredAttribute


def instance_row(series: int | SeriesRef, inst: StoredAttribute, recorded: int) -> InstanceRow:
    observed_at = inst.get("observedAt")
    ts = _us(observed_at) if isinstance(observed_at, str) else recorded
    value: Any = inst.get("value")
    # bool is an int subclass, so test the exact class: true is not the number 1 here
    num = float(value) if inst["type"] == "Property" and type(value) in (int, float) else None
    doc = {k: v for k, v in inst.items() if k not in ("createdAt", "modifiedAt")}
    flag = OBSERVED if isinstance(observed_at, str) else 0
    return InstanceRow(series, ts, flag, recorded, recorded, num, doc)


def _deletion(series: SeriesRef, inst: StoredAttribute, when: str) -> InstanceRow:
    """Clause 4.5.7 (V1.8): a deleted attribute instance is recorded with ``deletedAt`` and
    the NGSI-LD Null as value; only ``timeproperty=deletedAt`` returns these."""
    null: Any = NULL_URI
    if inst["type"] == "LanguageProperty":
        null = {"@none": NULL_URI}
    elif inst["type"] in ("ListProperty", "ListRelationship"):
        null = [NULL_URI]
    doc: StoredAttribute = {"type": inst["type"], "value": null, "deletedAt": when}
    if "datasetId" in inst:
        doc["datasetId"] = inst["datasetId"]
    at = _us(when)
    return InstanceRow(series, at, DELETED, at, at, None, doc)


def _scope_deletion(series: SeriesRef, when: str) -> InstanceRow:
    """A deleted scope (clause 4.18): a deletion instance of the series ``scope``."""
    at = _us(when)
    return InstanceRow(
        series, at, DELETED, at, at, None, {"type": "Property", "value": [], "deletedAt": when}
    )


@dataclass
class Keys:
    """Temporal Entity and series keys of one job, looked up in one query and created in
    batches: a 1,000-Entity batch costs a handful of statements."""

    cur: Cursor
    tenant: str
    entities: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    series: dict[SeriesRef, int] = field(default_factory=dict)

    async def prefetch(self, entity_ids: Iterable[str]) -> None:
        await self.cur.execute(
            "SELECT e.key, e.id, e.types, s.key, s.attr, s.dataset FROM temporal_entities e "
            "LEFT JOIN temporal_series s ON s.entity = e.key "
            "WHERE e.tenant = %s AND e.id = ANY(%s::text[])",
            (self.tenant, list(dict.fromkeys(entity_ids))),
        )
        for key, entity_id, types, series, attr, dataset in await self.cur.fetchall():
            self.entities.setdefault(entity_id, (key, types))
            if series is not None:
                self.series[(key, attr, dataset)] = series

    async def create_entities(self, new: list[StoredEntity]) -> None:
        """Inserts temporal Entities (id, type, scope, createdAt, modifiedAt of each)."""
        if not new:
            return
        await self.cur.execute(
            "INSERT INTO temporal_entities (tenant, id, types, scope, created_at, modified_at) "
            "SELECT %s, d ->> 'id', d -> 'type', d -> 'scope', d ->> 'createdAt', "
            "d ->> 'modifiedAt' FROM unnest(%s::jsonb[]) d RETURNING key, id, types",
            (self.tenant, [Jsonb(_header(e)) for e in new]),
        )
        created = await self.cur.fetchall()
        for key, entity_id, types in created:
            self.entities[entity_id] = (key, types)
        await self._set_types({key: types for key, _, types in created})

    async def touch(self, changed: dict[int, tuple[list[str], Any, str]]) -> None:
        """Sets types, scope and modifiedAt (and undoes a deletion) of existing Entities."""
        if not changed:
            return
        keys = list(changed)
        await self.cur.execute(
            "UPDATE temporal_entities t SET types = u.types, scope = u.scope, "
            "modified_at = u.modified, deleted_at = NULL FROM unnest(%s::bigint[], "
            "%s::jsonb[], %s::jsonb[], %s::text[]) AS u(key, types, scope, modified) "
            "WHERE t.key = u.key",
            (
                keys,
                [Jsonb(changed[k][0]) for k in keys],
                [Jsonb(changed[k][1]) if changed[k][1] else None for k in keys],
                [changed[k][2] for k in keys],
            ),
        )
        await self._set_types({k: changed[k][0] for k in keys})

    async def _set_types(self, types: dict[int, list[str]]) -> None:
        await self.cur.execute(
            "DELETE FROM temporal_types WHERE entity = ANY(%s::bigint[])", (list(types),)
        )
        pairs = [(k, t) for k, names in types.items() for t in dict.fromkeys(names)]
        await self.cur.execute(
            "INSERT INTO temporal_types SELECT %s, t, k FROM unnest(%s::bigint[], %s::text[]) "
            "AS u(k, t) ON CONFLICT DO NOTHING",
            (self.tenant, [p[0] for p in pairs], [p[1] for p in pairs]),
        )

    async def resolve(self, rows: list[InstanceRow]) -> None:
        """Gives every row its series key, creating the series that do not exist yet."""
        wanted = dict.fromkeys(r.series for r in rows if isinstance(r.series, tuple))
        missing = [m for m in wanted if isinstance(m, tuple) and m not in self.series]
        if missing:
            await self.cur.execute(
                "INSERT INTO temporal_series (entity, attr, dataset) SELECT * FROM "
                "unnest(%s::bigint[], %s::text[], %s::text[]) RETURNING key, entity, attr, dataset",
                ([m[0] for m in missing], [m[1] for m in missing], [m[2] for m in missing]),
            )
            for key, entity, attr, dataset in await self.cur.fetchall():
                self.series[(entity, attr, dataset)] = key
        for r in rows:
            if isinstance(r.series, tuple):
                r.series = self.series[r.series]


def _header(entity: StoredEntity) -> dict[str, Any]:
    return {k: entity.get(k) for k in ("id", "type", "scope", "createdAt", "modifiedAt")}


def _series_ref(key: int, attr: str, inst: StoredAttribute) -> SeriesRef:
    return (key, attr, inst.get("datasetId") or "")


async def record(cur: Cursor, tenant: str, outcomes: list[WriteOutcome]) -> None:
    """Records what each change did to the current state (clause 4.5.7): every attribute
    instance that was created or changed becomes a temporal instance; a deleted Entity
    keeps its history, marked with ``deletedAt``."""
    keys = Keys(cur, tenant)
    await keys.prefetch((o.after or o.before or {})["id"] for o in outcomes)
    firsts: dict[str, StoredEntity] = {}
    for o in outcomes:
        if o.after is not None and o.after["id"] not in keys.entities:
            firsts.setdefault(o.after["id"], o.after)
    await keys.create_entities(list(firsts.values()))
    rows: list[InstanceRow] = []
    final: dict[str, StoredEntity | None] = {}
    for outcome in outcomes:
        after, before = outcome.after, outcome.before
        entity_id = (after or before or {})["id"]
        final[entity_id] = after
        if after is None or entity_id not in keys.entities:
            continue
        rows += _changed_instances(keys.entities[entity_id][0], before, after)
    touched = {
        keys.entities[i][0]: (doc["type"], doc.get("scope"), doc["modifiedAt"])
        for i, doc in final.items()
        if doc is not None and firsts.get(i) is not doc
    }
    await keys.touch(touched)
    gone = [i for i, doc in final.items() if doc is None]
    if gone:
        await cur.execute(
            "UPDATE temporal_entities SET deleted_at = %s WHERE tenant = %s AND id = ANY(%s)",
            (now_iso(), tenant, gone),
        )
    await keys.resolve(rows)
    await insert_rows(cur, rows)


def _changed_instances(
    key: int, before: StoredEntity | None, after: StoredEntity
) -> list[InstanceRow]:
    rows: list[InstanceRow] = []
    old_attrs = (before or {}).get("attrs", {})
    new_attrs = after.get("attrs", {})
    if before is not None and "scope" in before and "scope" not in after:
        rows.append(_scope_deletion((key, "scope", ""), after["modifiedAt"]))
    for attr, instances in old_attrs.items():
        kept = {i.get("datasetId") for i in new_attrs.get(attr, ())}
        for inst in instances:
            if inst.get("datasetId") not in kept:
                rows.append(_deletion(_series_ref(key, attr, inst), inst, after["modifiedAt"]))
    for attr, instances in new_attrs.items():
        previous = {i.get("datasetId"): i for i in old_attrs.get(attr, ())}
        for inst in instances:
            if previous.get(inst.get("datasetId")) == inst:
                continue
            recorded = _us(inst.get("modifiedAt") or after["modifiedAt"])
            rows.append(instance_row(_series_ref(key, attr, inst), inst, recorded))
    return rows


async def insert_rows(cur: Cursor, rows: list[InstanceRow]) -> None:
    """Inserts instances (series resolved) and adds the observed ones to their rollups."""
    if not rows:
        return
    columns = list(
        zip(
            *[
                (r.series, r.ts, r.observed, r.created, r.modified, r.num, Jsonb(r.doc))
                for r in rows
            ],
            strict=True,
        )
    )
    await cur.execute(
        "INSERT INTO temporal_instances (series, ts, observed, created_at, modified_at, num, doc) "
        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::smallint[], %s::bigint[], "
        "%s::bigint[], %s::float8[], %s::jsonb[])",
        [list(c) for c in columns],
    )
    rollups: dict[tuple[int, int], Stats] = {}
    for r in rows:
        if r.observed == OBSERVED:
            assert isinstance(r.series, int)
            stats = rollups.setdefault((r.series, r.ts // HOUR_US), Stats())
            if r.num is None:
                stats.add(1, 0, 0.0, 0.0, None, None)
            else:
                stats.add(1, 1, r.num, r.num * r.num, r.num, r.num)
    if rollups:
        await cur.executemany(
            "INSERT INTO temporal_rollups AS r VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (series, hour) DO UPDATE SET n = r.n + excluded.n, "
            "nn = r.nn + excluded.nn, sum = r.sum + excluded.sum, "
            "sumsq = r.sumsq + excluded.sumsq, min = least(r.min, excluded.min), "
            "max = greatest(r.max, excluded.max)",
            [
                (s, h, st.n, st.nn, st.sum, st.sumsq, st.min, st.max)
                for (s, h), st in rollups.items()
            ],
        )


async def recompute_rollup(cur: Cursor, series: int, hour: int) -> None:
    """After an instance was changed or removed: its hour's rollup from the instances."""
    await cur.execute(
        "DELETE FROM temporal_rollups WHERE series = %s AND hour = %s", (series, hour)
    )
    await cur.execute(
        f"INSERT INTO temporal_rollups SELECT series, %s, {STATS_SQL} FROM temporal_instances "
        f"WHERE series = %s AND ts >= %s AND ts < %s AND observed = {OBSERVED} GROUP BY series",
        (hour, series, hour * HOUR_US, (hour + 1) * HOUR_US),
    )


async def add_instances(cur: Cursor, tenant: str, entity: StoredEntity, must_exist: bool) -> bool:
    """Create/update a temporal Entity (clause 5.6.11) or append attributes (5.6.12): each
    instance of ``entity["attrs"]`` is added to the history. Returns True if created."""
    keys = Keys(cur, tenant)
    await keys.prefetch([entity["id"]])
    found = keys.entities.get(entity["id"])
    now = entity["modifiedAt"]
    if found is None:
        if must_exist:
            raise ResourceNotFound(f"Temporal Entity {entity['id']} does not exist")
        await keys.create_entities([entity])
        key = keys.entities[entity["id"]][0]
    else:
        key = found[0]
        types = list(dict.fromkeys([*found[1], *entity.get("type", [])]))
        scope = entity.get("scope")
        if scope is None:
            await cur.execute("SELECT scope FROM temporal_entities WHERE key = %s", (key,))
            scope = (await cur.fetchall())[0][0]
        await keys.touch({key: (types, scope, now)})
    recorded = _us(now)
    rows = [
        instance_row(_series_ref(key, attr, inst), inst, recorded)
        for attr, instances in entity.get("attrs", {}).items()
        for inst in instances
    ]
    await keys.resolve(rows)
    # An instance observed at the same time as one already kept replaces it (clause 5.6.11).
    replaced = set()
    for r in rows:
        if r.observed == OBSERVED:
            await cur.execute(
                "DELETE FROM temporal_instances WHERE series = %s AND ts = %s AND observed = %s",
                (r.series, r.ts, OBSERVED),
            )
            if cur.rowcount:
                assert isinstance(r.series, int)
                replaced.add((r.series, r.ts // HOUR_US))
    await insert_rows(cur, rows)
    for series, hour in replaced:
        await recompute_rollup(cur, series, hour)
    return found is None
