"""Temporal history on PostgreSQL: deleting and modifying what was recorded, and
retention (clauses 5.6.13-5.6.16). Each function runs in a transaction of the caller, who
holds the lock of the Entity (``writes.lock_entities``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from cityos.core.model import StoredAttribute
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import HOUR_US, parse_time
from cityos.errors import ResourceNotFound
from cityos.storage.postgres.history_write import (
    INSTANCE_PREFIX,
    OBSERVED,
    instance_row,
    recompute_rollup,
)
from cityos.storage.postgres.writes import Cursor

__all__ = [
    "AttrRef",
    "delete_attribute",
    "delete_entity",
    "delete_instance",
    "expire",
    "modify_instance",
]


@dataclass(frozen=True, slots=True)
class AttrRef:
    """One attribute of one temporal Entity, as a request names it."""

    tenant: str
    entity_id: str
    attr: str


def _instance_key(instance_id: str) -> int:
    if instance_id.startswith(INSTANCE_PREFIX):
        digits = instance_id[len(INSTANCE_PREFIX) :]
        if digits.isdigit() and len(digits) < 19:
            return int(digits)
    raise ResourceNotFound(f"Attribute instance {instance_id} does not exist")


async def _entity_key(cur: Cursor, tenant: str, entity_id: str, must: bool = True) -> int | None:
    await cur.execute(
        "SELECT key FROM temporal_entities WHERE tenant = %s AND id = %s", (tenant, entity_id)
    )
    row = await cur.fetchone()
    if row is None and must:
        raise ResourceNotFound(f"Temporal Entity {entity_id} does not exist")
    return None if row is None else int(row[0])


async def _drop_series(cur: Cursor, series: Sequence[int]) -> None:
    keys = list(series)
    await cur.execute("DELETE FROM temporal_instances WHERE series = ANY(%s::bigint[])", (keys,))
    await cur.execute("DELETE FROM temporal_rollups WHERE series = ANY(%s::bigint[])", (keys,))
    await cur.execute("DELETE FROM temporal_series WHERE key = ANY(%s::bigint[])", (keys,))


async def delete_entity(cur: Cursor, tenant: str, entity_id: str, must_exist: bool) -> None:
    """Clause 5.6.16: the temporal representation goes, with all its instances."""
    key = await _entity_key(cur, tenant, entity_id, must_exist)
    if key is None:
        return
    await cur.execute("SELECT key FROM temporal_series WHERE entity = %s", (key,))
    await _drop_series(cur, [r[0] for r in await cur.fetchall()])
    await cur.execute("DELETE FROM temporal_types WHERE entity = %s", (key,))
    await cur.execute("DELETE FROM temporal_entities WHERE key = %s", (key,))


async def delete_attribute(
    cur: Cursor, ref: AttrRef, dataset_id: str | None, delete_all: bool, now: str
) -> None:
    """Clause 5.6.13: every instance of the attribute (of one datasetId, or all)."""
    key = await _entity_key(cur, ref.tenant, ref.entity_id)
    sql = "SELECT key FROM temporal_series WHERE entity = %s AND attr = %s"
    params: list[Any] = [key, ref.attr]
    if not delete_all:
        sql += " AND dataset = %s"
        params.append(dataset_id or "")
    await cur.execute(sql, params)
    series = [r[0] for r in await cur.fetchall()]
    if not series:
        which = f" with datasetId {dataset_id}" if dataset_id else ""
        raise ResourceNotFound(
            f"Temporal Entity {ref.entity_id} has no attribute {ref.attr}{which}"
        )
    await _drop_series(cur, series)
    await cur.execute("UPDATE temporal_entities SET modified_at = %s WHERE key = %s", (now, key))


async def _instance(
    cur: Cursor, ref: AttrRef, instance_id: str
) -> tuple[int, int, int, int, int, StoredAttribute]:
    """(key, series, ts, observed, created_at, doc) of one instance of the attribute."""
    entity = await _entity_key(cur, ref.tenant, ref.entity_id)
    await cur.execute(
        "SELECT 1 FROM temporal_series WHERE entity = %s AND attr = %s", (entity, ref.attr)
    )
    if await cur.fetchone() is None:
        raise ResourceNotFound(f"Temporal Entity {ref.entity_id} has no attribute {ref.attr}")
    await cur.execute(
        "SELECT i.key, i.series, i.ts, i.observed, i.created_at, i.doc FROM temporal_instances i "
        "JOIN temporal_series s ON s.key = i.series "
        "WHERE i.key = %s AND s.entity = %s AND s.attr = %s",
        (_instance_key(instance_id), entity, ref.attr),
    )
    row = await cur.fetchone()
    if row is None:
        raise ResourceNotFound(f"Attribute instance {instance_id} does not exist")
    return row[0], row[1], row[2], row[3], row[4], row[5]


async def delete_instance(cur: Cursor, ref: AttrRef, instance_id: str) -> None:
    """Clause 5.6.15."""
    key, series, ts, observed, _, _ = await _instance(cur, ref, instance_id)
    await cur.execute("DELETE FROM temporal_instances WHERE key = %s", (key,))
    if observed == OBSERVED:
        await recompute_rollup(cur, series, ts // HOUR_US)


async def modify_instance(
    cur: Cursor, ref: AttrRef, instance_id: str, fragment: StoredAttribute, now: str
) -> None:
    """Clause 5.6.14: the members given replace those of the instance; its datasetId stays."""
    key, series, ts, observed, created, inst = await _instance(cur, ref, instance_id)
    dataset = inst.get("datasetId")
    inst.update({k: v for k, v in fragment.items() if k not in ("createdAt", "modifiedAt")})
    if dataset is None:
        inst.pop("datasetId", None)
    else:
        inst["datasetId"] = dataset
    new = instance_row(series, inst, created)
    await cur.execute(
        "UPDATE temporal_instances SET ts = %s, observed = %s, modified_at = %s, num = %s, "
        "doc = %s WHERE key = %s",
        (new.ts, new.observed, parse_time(now, "modifiedAt"), new.num, Jsonb(new.doc), key),
    )
    if observed == OBSERVED:
        await recompute_rollup(cur, series, ts // HOUR_US)
    if new.observed == OBSERVED and (observed != OBSERVED or new.ts // HOUR_US != ts // HOUR_US):
        await recompute_rollup(cur, series, new.ts // HOUR_US)


async def expire(cur: Cursor, tenant: str, rule: RetentionTarget, cutoff: int, batch: int) -> int:
    """Deletes up to ``batch`` instances older than ``cutoff`` of one tenant's temporal
    Entities of the rule's types (all when None, less those of ``rule.exclude``), and
    their hourly rollups before the cutoff's hour; returns how many instances went."""
    entities = "SELECT key FROM temporal_entities WHERE tenant = %s"
    params: list[Any] = [tenant]
    if rule.types:
        entities = "SELECT entity FROM temporal_types WHERE tenant = %s AND type = ANY(%s)"
        params.append(list(rule.types))
    if rule.exclude:
        entities += (
            f" AND {'entity' if rule.types else 'key'} NOT IN (SELECT entity FROM "
            "temporal_types WHERE tenant = %s AND type = ANY(%s))"
        )
        params += [tenant, list(rule.exclude)]
    await cur.execute(f"SELECT key FROM temporal_series WHERE entity IN ({entities})", params)
    removed, hour = 0, cutoff // HOUR_US
    for (series,) in await cur.fetchall():
        await cur.execute(
            "DELETE FROM temporal_instances WHERE key IN (SELECT key FROM temporal_instances "
            "WHERE series = %s AND ts < %s ORDER BY ts LIMIT %s)",
            (series, cutoff, batch - removed),
        )
        if cur.rowcount <= 0:
            continue
        removed += cur.rowcount
        # Rollups go for the hours now empty; the first hour still holding instances (the
        # step stopped there, or the cutoff is inside it) is recomputed from them.
        await cur.execute(
            "SELECT min(ts) FROM temporal_instances WHERE series = %s AND ts < %s",
            (series, cutoff),
        )
        row = await cur.fetchone()
        left = row[0] if row else None
        first = hour if left is None else left // HOUR_US
        await cur.execute(
            "DELETE FROM temporal_rollups WHERE series = %s AND hour < %s", (series, first)
        )
        if left is not None or cutoff % HOUR_US:
            await recompute_rollup(cur, series, first)
        if removed >= batch:
            break
    return removed
