"""The PostgreSQL/PostGIS store: JSONB documents, a connection pool, many writers.

Rules (see docs/architecture.md and docs/howto/postgresql.md):
- every write is one transaction that locks the Entities it touches (``writes.py``),
  runs their changes in Python and commits with ``synchronous_commit = on`` (``durable``)
  before returning, so an acknowledged write survives a crash of the server;
- notification outbox rows are inserted in that same transaction, from the notifier's
  listener, exactly as on SQLite;
- SQL comes from the parsed query AST (``query_sql``, ``select``); no domain logic in
  SQL: no stored functions, no triggers. geoQ narrows with PostGIS (GiST) and decides
  with ``cityos.core.geo``, as SQLite does with its R*Tree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

from cityos.core import geo
from cityos.core.model import StoredAttribute, StoredEntity, now_iso
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import TemporalEntity, TemporalQuery
from cityos.errors import BadRequestData, ResourceNotFound
from cityos.storage.base import (
    AttributeSummaryRow,
    Change,
    EntityQuery,
    Page,
    WriteOutcome,
)
from cityos.storage.postgres import history_edit, history_query, history_write, jsonb
from cityos.storage.postgres.indexes import AttributeIndexer
from cityos.storage.postgres.migrate import migrate
from cityos.storage.postgres.records import Conn, Documents, Pool, insert_outbox
from cityos.storage.postgres.select import Select, build_select
from cityos.storage.postgres.trust import PostgresTrust
from cityos.storage.postgres.writes import Cursor, apply_changes, lock_entities
from cityos.storage.trust_common import DelegatesTrust

__all__ = ["PostgresStore"]

Listener = Callable[[str, list[WriteOutcome]], list[tuple[str, str, str, str]]]
Then = Callable[[Cursor, list[WriteOutcome]], Awaitable[None]]
T = TypeVar("T")


class PostgresStore(DelegatesTrust, Documents):
    def __init__(
        self, url: str, durable: bool = True, history: bool = True, max_connections: int = 10
    ) -> None:
        super().__init__(lambda: self.pool)
        self.url = url
        self._durable = durable
        self.history = history  # record every change as temporal instances
        self._max = max_connections
        self._pool_: Pool | None = None
        self._tenants: set[str] = set()  # known to exist (a tenant is never removed)
        self.indexer = AttributeIndexer(lambda: self.pool)
        # Set by the notifier: called in the write transaction with the outcomes, returns
        # outbox rows to insert with them; and called after each commit.
        self.listener: Listener | None = None
        self.on_commit: Callable[[], None] | None = None
        self.trust = PostgresTrust(self.transaction, self._fetch)

    # -- connections ----------------------------------------------------------------

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        set_json_loads(orjson.loads, conn)
        set_json_dumps(jsonb.dumps, conn)
        commit = "on" if self._durable else "off"
        await conn.execute(f"SET synchronous_commit = {commit}")

    async def open(self) -> None:
        """Applies the pending migrations on one connection, then opens the pool. A server
        that cannot be reached fails here at once, with libpq's reason."""
        try:
            conn = await AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"PostgreSQL cannot be reached: {exc}".strip()) from exc
        async with conn:
            await migrate(conn)
        pool: Pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
            name="cityos",
        )
        await pool.open(wait=True)
        self._pool_ = pool
        await self.indexer.load()

    async def close(self) -> None:
        if self._pool_ is not None:
            await self.indexer.wait()
            await self._pool_.close()
            self._pool_ = None

    @property
    def pool(self) -> Pool:
        assert self._pool_ is not None, "store is not open"
        return self._pool_

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return await super()._fetch(sql, params)
        except psycopg.errors.InvalidRegularExpression as exc:
            raise BadRequestData(f"Pattern is not a valid regular expression: {exc}") from exc

    # -- entities -------------------------------------------------------------------

    async def get_entity(self, tenant: str, entity_id: str) -> StoredEntity:
        rows = await self._fetch(
            "SELECT doc FROM entities WHERE tenant = %s AND id = %s", (tenant, entity_id)
        )
        if not rows:
            raise ResourceNotFound(f"Entity {entity_id} does not exist")
        doc: StoredEntity = rows[0][0]
        return doc

    async def query_entities(self, query: EntityQuery) -> Page:
        if query.q is not None:
            self.indexer.want(query.q)
        select = build_select(query)
        page = Page()
        if query.geo is None:
            rows = await self._fetch(select.page(), [*select.params, query.limit, query.offset])
            page.entities = [r[0] for r in rows]
            if query.count:
                page.count = (await self._fetch(select.count, select.params))[0][0]
            return page
        matched = await self._geo_matches(query, select)
        page.entities = await self._docs_by_key(matched[query.offset : query.offset + query.limit])
        page.count = len(matched) if query.count else None
        return page

    async def _geo_matches(self, query: EntityQuery, select: Select) -> list[int]:
        """Keys of the prefiltered candidates whose GeoProperty matches exactly, nearest
        first for ``near``, else in the query's order. Only the GeoProperty is read here;
        whole documents are read afterwards for the requested page alone."""
        gq, attr = query.geo, query.geoproperty
        assert gq is not None and attr is not None
        sql = select.ranked("e.key, e.doc -> 'attrs' -> %s")
        hits: list[tuple[float, int, int]] = []
        for n, (key, instances) in enumerate(await self._fetch(sql, [attr, *select.params])):
            geoms = [i["value"] for i in instances or [] if i.get("type") == "GeoProperty"]
            if gq.georel == "near":
                if geoms:
                    distance, nearest = min((geo.distance_m(gq, g), i) for i, g in enumerate(geoms))
                    if geo.matches(gq, geoms[nearest]):
                        hits.append((distance, n, key))
            elif any(geo.matches(gq, g) for g in geoms):
                hits.append((0.0, n, key))
        hits.sort()
        return [h[2] for h in hits]

    async def _docs_by_key(self, keys: list[int]) -> list[StoredEntity]:
        if not keys:
            return []
        rows = await self._fetch(
            "SELECT key, doc FROM entities WHERE key = ANY(%s::bigint[])", (keys,)
        )
        by_key = {r[0]: r[1] for r in rows}
        return [by_key[k] for k in keys if k in by_key]

    async def write(self, tenant: str, entity_id: str, change: Change) -> WriteOutcome:
        return _raised((await self.write_many(tenant, [(entity_id, change)]))[0])

    async def write_many(
        self, tenant: str, changes: Sequence[tuple[str, Change]]
    ) -> list[WriteOutcome | Exception]:
        keep_history = self.history

        async def then(cur: Cursor, done: list[WriteOutcome]) -> None:
            if keep_history:
                await history_write.record(cur, tenant, done)

        return await self._write_job(tenant, changes, then)

    async def _write_job(
        self, tenant: str, changes: Sequence[tuple[str, Change]], then: Then
    ) -> list[WriteOutcome | Exception]:
        """Runs the changes in one transaction, then ``then`` (history) and the notifier's
        listener on what they did, inserting its outbox rows in the same transaction."""
        listener = self.listener

        async def job(conn: Conn) -> list[WriteOutcome | Exception]:
            async with conn.cursor() as cur:
                outcomes = await apply_changes(cur, tenant, changes)
                done = [
                    o
                    for o in outcomes
                    if isinstance(o, WriteOutcome) and (o.before is not None or o.after is not None)
                ]
                await then(cur, done)
                if tenant not in self._tenants and any(o.after is not None for o in done):
                    await _add_tenant(cur, tenant)
                rows = listener(tenant, done) if listener is not None else []
                if rows:
                    await insert_outbox(conn, rows)
                return outcomes

        outcomes = await self.transaction(job)
        if any(isinstance(o, WriteOutcome) and o.after is not None for o in outcomes):
            self._tenants.add(tenant)
        if self.on_commit is not None:
            self.on_commit()
        return outcomes

    async def _locked(
        self, tenant: str, entity_id: str, work: Callable[[Cursor], Awaitable[Any]]
    ) -> Any:
        """``work(cur)`` in a transaction holding the Entity's lock (history edits)."""

        async def job(conn: Conn) -> Any:
            async with conn.cursor() as cur:
                await lock_entities(cur, tenant, [entity_id])
                return await work(cur)

        return await self.transaction(job)

    async def _reading(self, work: Callable[[Cursor], Awaitable[T]]) -> T:
        async def job(conn: Conn) -> T:
            async with conn.cursor() as cur:
                return await work(cur)

        return await self.transaction(job)

    # -- tenants and discovery -------------------------------------------------------

    async def tenant_exists(self, tenant: str) -> bool:
        if tenant in self._tenants:
            return True
        if await self._fetch("SELECT 1 FROM tenants WHERE name = %s", (tenant,)):
            self._tenants.add(tenant)
            return True
        return False

    async def tenants(self) -> list[str]:
        rows = await self._fetch('SELECT name FROM tenants ORDER BY name COLLATE "C"')
        return [r[0] for r in rows]

    async def type_counts(self, tenant: str) -> dict[str, int]:
        rows = await self._fetch(
            "SELECT t, count(*) FROM entities e, unnest(e.types) t WHERE e.tenant = %s GROUP BY t",
            (tenant,),
        )
        return {r[0]: r[1] for r in rows}

    async def attribute_summary(self, tenant: str) -> list[AttributeSummaryRow]:
        rows = await self._fetch(
            "SELECT t, a.key, a.value -> 0 ->> 'type', count(*) FROM entities e, "
            "unnest(e.types) t, jsonb_each(e.doc -> 'attrs') a WHERE e.tenant = %s "
            "GROUP BY 1, 2, 3",
            (tenant,),
        )
        return [AttributeSummaryRow(*r) for r in rows]

    # -- temporal history (history_*.py) -----------------------------------------------

    async def temporal_add(
        self, tenant: str, entity: StoredEntity, change: Change, must_exist: bool
    ) -> bool:
        created: list[bool] = []

        async def then(cur: Cursor, done: list[WriteOutcome]) -> None:
            # An Entity written while history was off has no temporal Entity yet.
            existed = bool(done) and done[0].before is not None
            created.append(
                await history_write.add_instances(cur, tenant, entity, must_exist and not existed)
            )
            await _add_tenant(cur, tenant)  # the history is there even with no current Entity

        _raised((await self._write_job(tenant, [(entity["id"], change)], then))[0])
        self._tenants.add(tenant)
        return created[0]

    async def temporal_delete_entity(self, tenant: str, entity_id: str, change: Change) -> None:
        async def then(cur: Cursor, done: list[WriteOutcome]) -> None:
            # The current Entity alone (history was off) is deleted too.
            await history_edit.delete_entity(cur, tenant, entity_id, must_exist=not done)

        _raised((await self._write_job(tenant, [(entity_id, change)], then))[0])

    async def temporal_delete_attribute(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        dataset_id: str | None,
        delete_all: bool,
        now: str,
    ) -> None:
        ref = history_edit.AttrRef(tenant, entity_id, attr)
        await self._locked(
            tenant,
            entity_id,
            lambda cur: history_edit.delete_attribute(cur, ref, dataset_id, delete_all, now),
        )

    async def temporal_delete_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> None:
        ref = history_edit.AttrRef(tenant, entity_id, attr)
        await self._locked(
            tenant, entity_id, lambda cur: history_edit.delete_instance(cur, ref, instance_id)
        )

    async def temporal_modify_instance(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        instance_id: str,
        fragment: StoredAttribute,
        now: str,
    ) -> None:
        ref = history_edit.AttrRef(tenant, entity_id, attr)
        await self._locked(
            tenant,
            entity_id,
            lambda cur: history_edit.modify_instance(cur, ref, instance_id, fragment, now),
        )

    async def temporal_entity(
        self, tenant: str, entity_id: str, tq: TemporalQuery
    ) -> TemporalEntity:
        return await self._reading(
            lambda cur: history_query.temporal_entity(cur, tenant, entity_id, tq)
        )

    async def query_temporal(
        self, query: EntityQuery, tq: TemporalQuery, alternatives: Sequence[EntityQuery] = ()
    ) -> tuple[list[TemporalEntity], int | None]:
        return await self._reading(
            lambda cur: history_query.query_temporal(cur, query, tq, alternatives)
        )

    async def expire_history(
        self, tenant: str, rule: RetentionTarget, cutoff_us: int, batch: int = 5000
    ) -> int:
        """One bounded retention step (see cityos/retention.py); returns instances removed."""

        async def job(conn: Conn) -> int:
            async with conn.cursor() as cur:
                return await history_edit.expire(cur, tenant, rule, cutoff_us, batch)

        return await self.transaction(job)

    async def scrub(self) -> None:
        """VACUUM the tables that hold entity values and their history, so the space of
        deleted rows is reclaimed for reuse. PostgreSQL does not zero dead tuples: the bytes
        stay in the data files until overwritten; ``VACUUM FULL`` (an exclusive lock, a
        maintenance window) rewrites the tables without them (docs/howto/trust.md)."""
        async with self.pool.connection() as conn:  # autocommit: VACUUM refuses transactions
            for table in _SCRUBBED:
                await conn.execute(f"VACUUM {table}")


_SCRUBBED = (
    "entities",
    "entity_geo",
    "temporal_entities",
    "temporal_series",
    "temporal_instances",
    "temporal_rollups",
)


def _raised(outcome: WriteOutcome | Exception) -> WriteOutcome:
    """One change's outcome, or the error it refused with, raised."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def _add_tenant(cur: Cursor, tenant: str) -> None:
    await cur.execute(
        "INSERT INTO tenants VALUES (%s, %s) ON CONFLICT DO NOTHING", (tenant, now_iso())
    )
