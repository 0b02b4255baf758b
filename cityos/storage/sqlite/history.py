"""Temporal history in SQLite: recording attribute instances and reading them back.

Writes run in the writer thread, inside the transaction of the change they record
(:func:`record` is called by ``bulk.apply_changes``), so the history never disagrees with
the current state. Reads run on the reader connection.

Tables (migration 004): ``temporal_entities``, ``temporal_types``, ``temporal_series``
(one per attribute and datasetId), ``temporal_instances`` and ``temporal_rollups`` (hourly
count/sum/sumsq/min/max of observed instances, kept with every write). A window on one
series is a range scan of ``(series, ts)``; aggregation over whole hours reads rollups.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cityos.core.entities import NULL_URI
from cityos.core.model import StoredAttribute, StoredEntity, now_iso
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import (
    HOUR_US,
    Aggregated,
    Found,
    Stats,
    TemporalEntity,
    TemporalQuery,
    aggregated_values,
    aggregation_plan,
    fit_to_range,
    format_time,
    parse_time,
    periods,
    whole_hours,
)
from cityos.errors import ResourceNotFound
from cityos.storage.base import WriteOutcome
from cityos.storage.history_common import (
    DELETED,
    OBSERVED,
    Series,
    kind_sql,
    page_rows,
    selected_series,
    window_sql,
)

__all__ = [
    "ENTITY_COLUMNS",
    "AttrRef",
    "INSTANCE_PREFIX",
    "add_instances",
    "delete_attribute",
    "delete_entity",
    "delete_instance",
    "expire",
    "has_instances",
    "latest_state",
    "instance_key",
    "modify_instance",
    "read_entities",
    "read_entity",
    "record",
]

_loads = orjson.loads
_dumps = orjson.dumps
INSTANCE_PREFIX = "urn:ngsi-ld:attribute-instance:"
_SYS = ("createdAt", "modifiedAt")
_TIME_COLUMN = {
    "observedAt": "ts",
    "createdAt": "created_at",
    "modifiedAt": "modified_at",
    "deletedAt": "ts",
}
# temporal_instances.observed: 0 no observedAt (ts is createdAt), 1 observedAt, 2 deletion
# (OBSERVED, DELETED in cityos.storage.history_common)


def _us(text: str) -> int:
    return parse_time(text, "observedAt")


def instance_key(instance_id: str) -> int:
    if not instance_id.startswith(INSTANCE_PREFIX):
        raise ResourceNotFound(f"Attribute instance {instance_id} does not exist")
    try:
        return int(instance_id[len(INSTANCE_PREFIX) :])
    except ValueError:
        raise ResourceNotFound(f"Attribute instance {instance_id} does not exist") from None


# -- writing ------------------------------------------------------------------------------


@dataclass
class _Row:
    series: int
    ts: int
    observed: int
    created: int
    modified: int
    num: float | None
    doc: bytes


def _row(series: int, inst: StoredAttribute, recorded: int) -> _Row:
    observed_at = inst.get("observedAt")
    observed = isinstance(observed_at, str)
    ts = _us(observed_at) if isinstance(observed_at, str) else recorded
    value = inst.get("value")
    num = (
        float(value)
        if inst["type"] == "Property" and (value.__class__ is int or value.__class__ is float)
        else None
    )
    doc = {k: v for k, v in inst.items() if k != "createdAt" and k != "modifiedAt"}
    return _Row(series, ts, OBSERVED if observed else 0, recorded, recorded, num, _dumps(doc))


def _deletion(series: int, inst: StoredAttribute, when: str) -> _Row:
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
    return _Row(series, at, DELETED, at, at, None, _dumps(doc))


def _scope_deletion(series: int, when: str) -> _Row:
    """A deleted scope (clause 4.18) as a deletion instance of the series ``scope``: the
    only series not named by an IRI, so no attribute can share it."""
    at = _us(when)
    doc = {"type": "Property", "value": [], "deletedAt": when}
    return _Row(series, at, DELETED, at, at, None, _dumps(doc))


def _insert_rows(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    if not rows:
        return
    conn.executemany(
        "INSERT INTO temporal_instances (series, ts, observed, created_at, modified_at, num, doc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(r.series, r.ts, r.observed, r.created, r.modified, r.num, r.doc) for r in rows],
    )
    rollups: dict[tuple[int, int], Stats] = {}
    for r in rows:
        if r.observed != OBSERVED:
            continue
        stats = rollups.setdefault((r.series, r.ts // HOUR_US), Stats())
        if r.num is None:
            stats.add(1, 0, 0.0, 0.0, None, None)
        else:
            stats.add(1, 1, r.num, r.num * r.num, r.num, r.num)
    if rollups:
        conn.executemany(
            "INSERT INTO temporal_rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (series, hour) DO UPDATE SET n = n + excluded.n, "
            "nn = nn + excluded.nn, sum = sum + excluded.sum, sumsq = sumsq + excluded.sumsq, "
            "min = CASE WHEN excluded.min IS NULL THEN min WHEN min IS NULL THEN excluded.min "
            "ELSE min(min, excluded.min) END, "
            "max = CASE WHEN excluded.max IS NULL THEN max WHEN max IS NULL THEN excluded.max "
            "ELSE max(max, excluded.max) END",
            [
                (s, h, st.n, st.nn, st.sum, st.sumsq, st.min, st.max)
                for (s, h), st in rollups.items()
            ],
        )


# What one period of instances adds up to (the columns of temporal_rollups after its keys).
_STATS_SQL = "count(*), count(num), total(num), total(num * num), min(num), max(num)"
_DISTINCT_SQL = "count(DISTINCT json_extract(doc, '$.value'))"


def _recompute_rollup(conn: sqlite3.Connection, series: int, hour: int) -> None:
    """After an instance was changed or removed: its hour's rollup from the instances."""
    conn.execute("DELETE FROM temporal_rollups WHERE series = ? AND hour = ?", (series, hour))
    conn.execute(
        f"INSERT INTO temporal_rollups SELECT series, ?, {_STATS_SQL} FROM temporal_instances "
        f"WHERE series = ? AND ts >= ? AND ts < ? AND observed = {OBSERVED} GROUP BY series",
        (hour, series, hour * HOUR_US, (hour + 1) * HOUR_US),
    )


class _Keys:
    """Keys of temporal Entities and series within one job: looked up with one query for
    all the job's Entities, new ones numbered here (this thread is the only writer) and
    written with ``executemany`` by :meth:`flush`, so a 1,000-Entity batch costs a handful
    of statements, not a few per Entity."""

    def __init__(self, conn: sqlite3.Connection, tenant: str) -> None:
        self.conn = conn
        self.tenant = tenant
        self.entities: dict[str, tuple[int, list[str]] | None] = {}
        self.series: dict[tuple[int, str, str], int] = {}
        self._next: dict[str, int] = {}
        self._new_entities: list[tuple[Any, ...]] = []
        self._touched: dict[int, tuple[Any, ...]] = {}
        self._retyped: dict[int, list[str]] = {}
        self._new_series: list[tuple[int, int, str, str]] = []

    def prefetch(self, entity_ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(entity_ids) if i not in self.entities]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for entity_id in chunk:
                self.entities[entity_id] = None
            rows = self.conn.execute(
                "SELECT e.key, e.id, e.types, s.key, s.attr, s.dataset FROM temporal_entities e "
                "LEFT JOIN temporal_series s ON s.entity = e.key "
                f"WHERE e.tenant = ? AND e.id IN ({', '.join('?' * len(chunk))})",
                [self.tenant, *chunk],
            )
            for key, entity_id, types, series, attr, dataset in rows:
                if self.entities[entity_id] is None:
                    self.entities[entity_id] = (key, _loads(types))
                if series is not None:
                    self.series[(key, attr, dataset)] = series

    def entity(self, entity_id: str) -> tuple[int, list[str]] | None:
        """The temporal Entity's key and types (None if it has none yet)."""
        if entity_id not in self.entities:
            self.prefetch([entity_id])
        return self.entities[entity_id]

    def _key(self, table: str) -> int:
        if table not in self._next:
            self._next[table] = self.conn.execute(
                f"SELECT IFNULL(max(key), 0) + 1 FROM {table}"
            ).fetchone()[0]
        key = self._next[table]
        self._next[table] = key + 1
        return key

    def create_entity(
        self, entity_id: str, types: list[str], scope: Any, created: str, modified: str
    ) -> int:
        key = self._key("temporal_entities")
        scope_json = _dumps(scope) if scope else None
        self._new_entities.append(
            (key, self.tenant, entity_id, _dumps(types), scope_json, created, modified)
        )
        self._retyped[key] = types
        self.entities[entity_id] = (key, types)
        return key

    def touch_entity(
        self, key: int, old_types: list[str], types: list[str], scope: Any, modified: str
    ) -> None:
        scope_json = _dumps(scope) if scope else None
        self._touched[key] = (_dumps(types), scope_json, modified, key)
        if types != old_types:
            self._retyped[key] = types

    def series_key(self, entity: int, attr: str, dataset: str | None) -> int:
        wanted = (entity, attr, dataset or "")
        key = self.series.get(wanted)
        if key is None:
            key = self._key("temporal_series")
            self._new_series.append((key, *wanted))
            self.series[wanted] = key
        return key

    def flush(self) -> None:
        conn = self.conn
        if self._new_entities:
            conn.executemany(
                "INSERT INTO temporal_entities (key, tenant, id, types, scope, created_at, "
                "modified_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                self._new_entities,
            )
        if self._touched:
            conn.executemany(
                "UPDATE temporal_entities SET types = ?, scope = ?, modified_at = ?, "
                "deleted_at = NULL WHERE key = ?",
                list(self._touched.values()),
            )
        if self._retyped:
            conn.executemany(
                "DELETE FROM temporal_types WHERE entity = ?", [(k,) for k in self._retyped]
            )
            conn.executemany(
                "INSERT OR IGNORE INTO temporal_types VALUES (?, ?, ?)",
                [(self.tenant, t, k) for k, types in self._retyped.items() for t in types],
            )
        if self._new_series:
            conn.executemany(
                "INSERT INTO temporal_series (key, entity, attr, dataset) VALUES (?, ?, ?, ?)",
                self._new_series,
            )
        self._new_entities, self._touched, self._retyped, self._new_series = [], {}, {}, []


def record(conn: sqlite3.Connection, tenant: str, outcomes: Iterable[WriteOutcome]) -> None:
    """Records what each change did to the current state (clause 4.5.7): every attribute
    instance that was created or changed becomes a temporal instance; a deleted Entity keeps
    its history, marked with ``deletedAt``."""
    keys = _Keys(conn, tenant)
    outcomes = list(outcomes)
    keys.prefetch(o.after["id"] for o in outcomes if o.after is not None)
    rows: list[_Row] = []
    for outcome in outcomes:
        after, before = outcome.after, outcome.before
        if after is None:
            if before is not None:
                conn.execute(
                    "UPDATE temporal_entities SET deleted_at = ? WHERE tenant = ? AND id = ?",
                    (now_iso(), tenant, before["id"]),
                )
            continue
        found = keys.entity(after["id"])
        if found is None:
            key = keys.create_entity(
                after["id"],
                after["type"],
                after.get("scope"),
                after["createdAt"],
                after["modifiedAt"],
            )
        else:
            key = found[0]
            keys.touch_entity(key, found[1], after["type"], after.get("scope"), after["modifiedAt"])
        old_attrs = (before or {}).get("attrs", {})
        new_attrs = after.get("attrs", {})
        if before is not None and "scope" in before and "scope" not in after:
            rows.append(_scope_deletion(keys.series_key(key, "scope", None), after["modifiedAt"]))
        for attr, instances in old_attrs.items():
            kept = {i.get("datasetId") for i in new_attrs.get(attr, ())}
            for inst in instances:
                if inst.get("datasetId") not in kept:
                    series = keys.series_key(key, attr, inst.get("datasetId"))
                    rows.append(_deletion(series, inst, after["modifiedAt"]))
        for attr, instances in new_attrs.items():
            previous = {i.get("datasetId"): i for i in old_attrs.get(attr, ())}
            for inst in instances:
                if previous.get(inst.get("datasetId")) == inst:
                    continue
                recorded = _us(inst.get("modifiedAt") or after["modifiedAt"])
                rows.append(_row(keys.series_key(key, attr, inst.get("datasetId")), inst, recorded))
    keys.flush()
    _insert_rows(conn, rows)


def add_instances(
    conn: sqlite3.Connection,
    tenant: str,
    entity: StoredEntity,
    must_exist: bool,
) -> bool:
    """Create/update a temporal Entity (clause 5.6.11) or append attributes (5.6.12): each
    instance of ``entity["attrs"]`` is added to the history. Returns True if created."""
    keys = _Keys(conn, tenant)
    found = keys.entity(entity["id"])
    now = entity["modifiedAt"]
    if found is None:
        if must_exist:
            raise ResourceNotFound(f"Temporal Entity {entity['id']} does not exist")
        key = keys.create_entity(
            entity["id"], entity["type"], entity.get("scope"), entity["createdAt"], now
        )
    else:
        key = found[0]
        types = list(dict.fromkeys([*found[1], *entity.get("type", [])]))
        scope = entity.get("scope")
        if scope is None:
            row = conn.execute(
                "SELECT scope FROM temporal_entities WHERE key = ?", (key,)
            ).fetchone()
            scope = _loads(row[0]) if row[0] else None
        keys.touch_entity(key, found[1], types, scope, now)
    recorded = _us(now)
    rows = [
        _row(keys.series_key(key, attr, inst.get("datasetId")), inst, recorded)
        for attr, instances in entity.get("attrs", {}).items()
        for inst in instances
    ]
    keys.flush()
    # An instance observed at the same time as one already kept replaces it (clause 5.6.11).
    replaced = set()
    for r in rows:
        if r.observed == OBSERVED:
            cur = conn.execute(
                "DELETE FROM temporal_instances WHERE series = ? AND ts = ? AND observed = ?",
                (r.series, r.ts, OBSERVED),
            )
            if cur.rowcount:
                replaced.add((r.series, r.ts // HOUR_US))
    _insert_rows(conn, rows)
    for series, hour in replaced:
        _recompute_rollup(conn, series, hour)
    return found is None


def _find_entity_key(conn: sqlite3.Connection, tenant: str, entity_id: str) -> int | None:
    row = conn.execute(
        "SELECT key FROM temporal_entities WHERE tenant = ? AND id = ?", (tenant, entity_id)
    ).fetchone()
    return None if row is None else int(row[0])


def _entity_key(conn: sqlite3.Connection, tenant: str, entity_id: str) -> int:
    key = _find_entity_key(conn, tenant, entity_id)
    if key is None:
        raise ResourceNotFound(f"Temporal Entity {entity_id} does not exist")
    return key


def _drop_series(conn: sqlite3.Connection, series: Sequence[int]) -> None:
    params = [(s,) for s in series]
    conn.executemany("DELETE FROM temporal_instances WHERE series = ?", params)
    conn.executemany("DELETE FROM temporal_rollups WHERE series = ?", params)
    conn.executemany("DELETE FROM temporal_series WHERE key = ?", params)


def delete_entity(
    conn: sqlite3.Connection, tenant: str, entity_id: str, must_exist: bool = True
) -> None:
    """Clause 5.6.16: the temporal representation goes, with all its instances."""
    if not must_exist and _find_entity_key(conn, tenant, entity_id) is None:
        return
    key = _entity_key(conn, tenant, entity_id)
    series = [
        r[0] for r in conn.execute("SELECT key FROM temporal_series WHERE entity = ?", (key,))
    ]
    _drop_series(conn, series)
    conn.execute("DELETE FROM temporal_types WHERE entity = ?", (key,))
    conn.execute("DELETE FROM temporal_entities WHERE key = ?", (key,))


@dataclass(frozen=True, slots=True)
class AttrRef:
    """One attribute of one temporal Entity, as a request names it."""

    tenant: str
    entity_id: str
    attr: str


def delete_attribute(
    conn: sqlite3.Connection, ref: AttrRef, dataset_id: str | None, delete_all: bool, now: str
) -> None:
    """Clause 5.6.13: every instance of the attribute (of one datasetId, or all)."""
    entity_id, attr = ref.entity_id, ref.attr
    key = _entity_key(conn, ref.tenant, entity_id)
    sql = "SELECT key FROM temporal_series WHERE entity = ? AND attr = ?"
    params: list[Any] = [key, attr]
    if not delete_all:
        sql += " AND dataset = ?"
        params.append(dataset_id or "")
    series = [r[0] for r in conn.execute(sql, params)]
    if not series:
        which = f" with datasetId {dataset_id}" if dataset_id else ""
        raise ResourceNotFound(f"Temporal Entity {entity_id} has no attribute {attr}{which}")
    _drop_series(conn, series)
    conn.execute("UPDATE temporal_entities SET modified_at = ? WHERE key = ?", (now, key))


def _instance(
    conn: sqlite3.Connection, ref: AttrRef, instance_id: str
) -> tuple[int, int, int, int, int, bytes]:
    """(key, series, ts, observed, created_at, doc) of one instance of the attribute."""
    entity_id, attr = ref.entity_id, ref.attr
    entity = _entity_key(conn, ref.tenant, entity_id)
    if (
        conn.execute(
            "SELECT 1 FROM temporal_series WHERE entity = ? AND attr = ?", (entity, attr)
        ).fetchone()
        is None
    ):
        raise ResourceNotFound(f"Temporal Entity {entity_id} has no attribute {attr}")
    row = conn.execute(
        "SELECT i.key, i.series, i.ts, i.observed, i.created_at, i.doc FROM temporal_instances i "
        "JOIN temporal_series s ON s.key = i.series "
        "WHERE i.key = ? AND s.entity = ? AND s.attr = ?",
        (instance_key(instance_id), entity, attr),
    ).fetchone()
    if row is None:
        raise ResourceNotFound(f"Attribute instance {instance_id} does not exist")
    return row[0], row[1], row[2], row[3], row[4], row[5]


def delete_instance(conn: sqlite3.Connection, ref: AttrRef, instance_id: str) -> None:
    """Clause 5.6.15."""
    key, series, ts, observed, _, _ = _instance(conn, ref, instance_id)
    conn.execute("DELETE FROM temporal_instances WHERE key = ?", (key,))
    if observed == OBSERVED:
        _recompute_rollup(conn, series, ts // HOUR_US)


def modify_instance(
    conn: sqlite3.Connection, ref: AttrRef, instance_id: str, fragment: StoredAttribute, now: str
) -> None:
    """Clause 5.6.14: the members given replace those of the instance; its datasetId stays."""
    key, series, ts, observed, created, doc = _instance(conn, ref, instance_id)
    inst = _loads(doc)
    dataset = inst.get("datasetId")
    inst.update({k: v for k, v in fragment.items() if k not in _SYS})
    if dataset is None:
        inst.pop("datasetId", None)
    else:
        inst["datasetId"] = dataset
    new = _row(series, inst, created)
    conn.execute(
        "UPDATE temporal_instances SET ts = ?, observed = ?, modified_at = ?, num = ?, doc = ? "
        "WHERE key = ?",
        (new.ts, new.observed, _us(now), new.num, new.doc, key),
    )
    if observed == OBSERVED:
        _recompute_rollup(conn, series, ts // HOUR_US)
    if new.observed == OBSERVED and (observed != OBSERVED or new.ts // HOUR_US != ts // HOUR_US):
        _recompute_rollup(conn, series, new.ts // HOUR_US)


# -- reading ------------------------------------------------------------------------------


def _series(conn: sqlite3.Connection, entity: int, tq: TemporalQuery | None) -> list[Series]:
    """The Entity's series, only those of the query's ``attrs`` and ``datasetId`` if given."""
    rows = conn.execute(
        "SELECT key, attr, dataset FROM temporal_series WHERE entity = ? ORDER BY key", (entity,)
    )
    return selected_series([Series(r[0], r[1], r[2] or None) for r in rows], tq)


def _window_sql(tq: TemporalQuery, column: str) -> tuple[str, list[Any]]:
    return window_sql(tq, column, "?")


def _instances(
    conn: sqlite3.Connection, series: Series, tq: TemporalQuery
) -> tuple[list[tuple[int, StoredAttribute]], int | None]:
    """The series' instances in the window with their time, oldest first (lastN: the newest
    N), and, when more were left out by the query's instance limit, where they were cut."""
    column = _TIME_COLUMN[tq.timeproperty]
    where, params = _window_sql(tq, column)
    newest = tq.last_n is not None
    order = "DESC" if newest else "ASC"
    limit = min(tq.instance_limit, tq.last_n or tq.instance_limit)
    sql = (
        f"SELECT key, {column}, created_at, modified_at, doc FROM temporal_instances "
        # key breaks ties in the same direction, so the (series, time) index gives the order
        f"WHERE series = ?{where} ORDER BY {column} {order}, key {order} LIMIT ?"
    )
    rows = conn.execute(sql, [series.key, *params, limit + 1]).fetchall()
    rows, cut = page_rows(rows, limit, tq, newest)
    out = []
    for key, at, created, modified, doc in rows:
        inst: StoredAttribute = _loads(doc)
        inst["instanceId"] = f"{INSTANCE_PREFIX}{key}"
        inst["createdAt"] = format_time(created)
        inst["modifiedAt"] = format_time(modified)
        out.append((at, inst))
    return out, cut


def _entity_row(row: Sequence[Any]) -> TemporalEntity:
    return TemporalEntity(
        id=row[1],
        types=_loads(row[2]),
        scope=_loads(row[3]) if row[3] else None,
        created_at=row[4],
        modified_at=row[5],
        deleted_at=row[6],
    )


ENTITY_COLUMNS = "key, id, types, scope, created_at, modified_at, deleted_at"


def read_entity(conn: sqlite3.Connection, row: Sequence[Any], tq: TemporalQuery) -> TemporalEntity:
    """One temporal Entity (a ``temporal_entities`` row) with what the query asks for."""
    return read_entities(conn, [row], tq)[0]


def read_entities(
    conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], tq: TemporalQuery
) -> list[TemporalEntity]:
    """Temporal Entities with the instances or aggregates the query asks for.

    Clause 6.3.10: when an attribute has more instances than the instance limit, the
    response covers one time range that every attribute of every Entity fills completely:
    it ends where the first cut attribute was cut (going back in time for lastN), and
    instances beyond it are left for the next request (the Content-Range says which)."""
    entities = [_entity_row(row) for row in rows]
    if tq.aggregated:
        for row, entity in zip(rows, entities, strict=True):
            _aggregate_entity(conn, entity, _series(conn, row[0], tq), tq)
        return entities
    found: list[Found] = []
    cuts: list[int] = []
    for row in rows:
        per_entity: Found = []
        for s in _series(conn, row[0], tq):
            instances, cut = _instances(conn, s, tq)
            if cut is not None:
                cuts.append(cut)
            per_entity.append((s.attr, instances))
        found.append(per_entity)
    return fit_to_range(entities, found, cuts, tq)


def has_instances(conn: sqlite3.Connection, entity: int, tq: TemporalQuery) -> bool:
    """Whether the query's window holds any instance of the Entity's wanted attributes."""
    column = _TIME_COLUMN[tq.timeproperty]
    where, params = _window_sql(tq, column)
    for s in _series(conn, entity, tq):
        if conn.execute(
            f"SELECT 1 FROM temporal_instances WHERE series = ?{where} LIMIT 1", [s.key, *params]
        ).fetchone():
            return True
    return False


def latest_state(conn: sqlite3.Connection, row: Sequence[Any]) -> StoredEntity:
    """The temporal Entity as of its newest instances: what ``q``, ``scopeQ`` and ``geoQ`` of a
    temporal query are evaluated against."""
    entity: StoredEntity = {
        "id": row[1],
        "type": _loads(row[2]),
        "createdAt": row[4],
        "modifiedAt": row[5],
        "attrs": {},
    }
    if row[3]:
        entity["scope"] = _loads(row[3])
    for s in _series(conn, row[0], None):
        found = conn.execute(
            "SELECT doc, created_at, modified_at FROM temporal_instances "
            "WHERE series = ? AND observed < 2 ORDER BY ts DESC, key DESC LIMIT 1",
            (s.key,),
        ).fetchone()
        if found is not None:
            inst = _loads(found[0])
            inst["createdAt"] = format_time(found[1])
            inst["modifiedAt"] = format_time(found[2])
            entity["attrs"].setdefault(s.attr, []).append(inst)
    for instances in entity["attrs"].values():
        instances.sort(key=lambda i: "datasetId" in i)
    return entity


# -- aggregation ----------------------------------------------------------------------------


def _aggregate_entity(
    conn: sqlite3.Connection, entity: TemporalEntity, series: list[Series], tq: TemporalQuery
) -> None:
    start, end = tq.window()
    column = _TIME_COLUMN[tq.timeproperty]
    observed_only = kind_sql(tq, True)
    if start is None or end is None:
        bounds = [
            conn.execute(
                f"SELECT min({column}), max({column}) FROM temporal_instances "
                f"WHERE series = ?{observed_only}",
                (s.key,),
            ).fetchone()
            for s in series
        ]
        lows = [b[0] for b in bounds if b[0] is not None]
        highs = [b[1] for b in bounds if b[1] is not None]
        if not lows:
            return
        if start is None:
            start = min(lows)
        open_end = end is None
        if end is None:
            end = max(highs) + 1
    else:
        open_end = False
    assert tq.aggr_period is not None
    spans = periods(start, end, tq.aggr_period)
    if open_end and not tq.aggr_period.is_zero and spans:
        last = spans[-1]
        spans[-1] = (last[0], tq.aggr_period.add_to(last[0]))
    for s in series:
        values = _hourly(conn, s.key, spans, tq)
        if values is None:
            buckets = _aggregate_series(conn, s.key, spans, tq, column)
            if buckets:
                values = aggregated_values(buckets, tq.aggr_methods)
        if not values or not next(iter(values.values())):
            continue
        attr_type = conn.execute(
            "SELECT json_extract(doc, '$.type') FROM temporal_instances WHERE series = ? "
            "ORDER BY ts DESC LIMIT 1",
            (s.key,),
        ).fetchone()[0]
        entity.aggregates.setdefault(s.attr, []).append(Aggregated(attr_type, s.dataset, values))


# What each method is over one hourly rollup row, in SQL (the hourly fast path).
_HOURLY_SQL = {
    "totalCount": "n",
    "sum": "sum",
    "sumsq": "sumsq",
    "min": "min",
    "max": "max",
    "avg": "sum / nn",  # NULL when no value of the hour is a number
}


def _hourly(
    conn: sqlite3.Connection, series: int, spans: list[tuple[int, int]], tq: TemporalQuery
) -> dict[str, list[list[Any]]] | None:
    """Hourly periods starting on an hour and ending on one: each period is one rollup row,
    so SQL computes the requested values and nothing is folded here. None when the query
    is not of that shape (the general path then runs)."""
    if not whole_hours(tq, spans, _HOURLY_SQL):
        return None
    start, end = spans[0][0], spans[-1][1]
    columns = ", ".join(_HOURLY_SQL[m] for m in tq.aggr_methods)
    rows = conn.execute(
        f"SELECT hour, {columns} FROM temporal_rollups WHERE series = ? AND hour >= ? "
        "AND hour < ? AND n > 0",
        (series, start // HOUR_US, end // HOUR_US),
    ).fetchall()
    bounds = [(format_time(r[0] * HOUR_US), format_time((r[0] + 1) * HOUR_US)) for r in rows]
    out: dict[str, list[list[Any]]] = {}
    for n, method in enumerate(tq.aggr_methods, start=1):
        out[method] = [[row[n], *bound] for row, bound in zip(rows, bounds, strict=True)]
    return out


def _aggregate_series(
    conn: sqlite3.Connection,
    series: int,
    spans: list[tuple[int, int]],
    tq: TemporalQuery,
    column: str,
) -> list[tuple[int, int, Stats]]:
    """Stats per period, computed in SQL: from the hourly rollups where the periods are
    whole hours on the observedAt axis, else by grouping the instances themselves."""
    plan = aggregation_plan(tq, spans)
    start, end, length, fixed = plan.start, plan.end, plan.length, plan.fixed
    out: dict[int, Stats] = {}
    if plan.rollups:
        _from_rollups(conn, series, start, end, length, out)
    elif fixed:
        _from_instances(conn, series, column, (start, end, length), tq, out)
    else:
        for n, (lo, hi) in enumerate(spans):
            part: dict[int, Stats] = {}
            _from_instances(conn, series, column, (lo, hi, hi - lo), tq, part)
            if 0 in part:
                out[n] = part[0]
    return [(spans[n][0], spans[n][1], stats) for n, stats in sorted(out.items()) if stats.n]


def _from_rollups(
    conn: sqlite3.Connection, series: int, start: int, end: int, length: int, out: dict[int, Stats]
) -> None:
    """Folds the hourly rollups of the range into periods of ``length``. The rows come in
    hour order straight from the primary key, so folding them here costs one pass, where
    a GROUP BY on the period expression would sort them first."""
    h0, hours = start // HOUR_US, length // HOUR_US
    full_end = end // HOUR_US  # hours wholly inside the range end before this one
    rows = conn.execute(
        "SELECT hour, n, nn, sum, sumsq, min, max FROM temporal_rollups "
        "WHERE series = ? AND hour >= ? AND hour < ?",
        (series, h0, full_end),
    )
    for hour, n, nn, total, squares, lo, hi in rows:
        p = (hour - h0) // hours
        stats = out.get(p)
        if stats is None:
            out[p] = Stats(n, nn, total, squares, lo, hi)
        else:
            stats.add(n, nn, total, squares, lo, hi)
    if end % HOUR_US:  # the last, partial hour from the instances themselves
        tail: dict[int, Stats] = {}
        plain = TemporalQuery(timerel="between")
        _from_instances(conn, series, "ts", (full_end * HOUR_US, end, end), plain, tail)
        if 0 in tail:
            out.setdefault((full_end * HOUR_US - start) // length, Stats()).merge(tail[0])


def _from_instances(
    conn: sqlite3.Connection,
    series: int,
    column: str,
    span: tuple[int, int, int],
    tq: TemporalQuery,
    out: dict[int, Stats],
) -> None:
    """Stats per period of ``span`` (start, end, period length), grouped in SQL."""
    start, end, length = span
    observed_only = kind_sql(tq, True)
    distinct = "distinctCount" in tq.aggr_methods
    rows = conn.execute(
        f"SELECT ({column} - ?) / ?, {_STATS_SQL}, {_DISTINCT_SQL if distinct else '0'} "
        f"FROM temporal_instances WHERE series = ? AND {column} >= ? AND {column} < ?"
        f"{observed_only} GROUP BY 1",
        (start, max(length, 1), series, start, end),
    )
    for p, n, nn, s, ss, lo, hi, d in rows:
        stats = out.setdefault(p, Stats())
        stats.add(n, nn, s, ss, lo, hi)
        if distinct:
            stats.distinct = (stats.distinct or 0) + d


# -- retention --------------------------------------------------------------------------


def expire(
    conn: sqlite3.Connection,
    tenant: str,
    rule: RetentionTarget,
    cutoff: int,
    batch: int,
) -> int:
    """Deletes up to ``batch`` instances older than ``cutoff`` (by their time: observedAt,
    else when recorded) of one tenant's temporal Entities of the rule's types (all when
    None, less those of ``rule.exclude``), and their hourly rollups before the cutoff's
    hour. Returns how many instances went; run again until it returns less than batch."""
    entity_sql = "SELECT key FROM temporal_entities WHERE tenant = ?"
    params: list[Any] = [tenant]
    if rule.types:
        marks = ", ".join("?" * len(rule.types))
        entity_sql = f"SELECT entity FROM temporal_types WHERE tenant = ? AND type IN ({marks})"
        params.extend(rule.types)
    if rule.exclude:
        marks = ", ".join("?" * len(rule.exclude))
        entity_sql += (
            f" AND {'entity' if rule.types else 'key'} NOT IN (SELECT entity FROM temporal_types "
            f"WHERE tenant = ? AND type IN ({marks}))"
        )
        params.extend([tenant, *rule.exclude])
    series = [
        r[0]
        for r in conn.execute(
            f"SELECT key FROM temporal_series WHERE entity IN ({entity_sql})", params
        )
    ]
    removed = 0
    hour = cutoff // HOUR_US
    for s in series:
        cur = conn.execute(
            "DELETE FROM temporal_instances WHERE key IN (SELECT key FROM temporal_instances "
            "WHERE series = ? AND ts < ? ORDER BY ts LIMIT ?)",
            (s, cutoff, batch - removed),
        )
        if cur.rowcount <= 0:
            continue
        removed += cur.rowcount
        # Rollups go for the hours now empty; the first hour still holding instances (the
        # step stopped there, or the cutoff is inside it) is recomputed from them.
        left = conn.execute(
            "SELECT min(ts) FROM temporal_instances WHERE series = ? AND ts < ?", (s, cutoff)
        ).fetchone()[0]
        first = hour if left is None else left // HOUR_US
        conn.execute("DELETE FROM temporal_rollups WHERE series = ? AND hour < ?", (s, first))
        if left is not None or cutoff % HOUR_US:
            _recompute_rollup(conn, s, first)
        if removed >= batch:
            break
    return removed
