"""The embedded SQLite store: WAL mode, one writer thread with group commit, readers inline.

Rules (see docs/architecture.md):
- every write goes through :class:`~cityos.storage.sqlite.writer.Writer`, in
  ``BEGIN IMMEDIATE`` transactions, ``synchronous=FULL``: a returned write is on disk;
- reads use a separate connection on the event loop thread; WAL lets them run beside
  the writer and they always see the last commit;
- SQL comes from the parsed query AST (``query_sql``, ``geo_sql``); no domain logic in SQL.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from cityos.core import geo
from cityos.core.contexts import ContextEntry
from cityos.core.model import StoredAttribute, StoredEntity, now_iso
from cityos.core.query.evaluate import match_q, match_scope, match_types, sort_entities
from cityos.core.query.typeexpr import type_names
from cityos.core.retention import RetentionTarget
from cityos.core.temporal import TemporalEntity, TemporalQuery
from cityos.errors import AlreadyExists, ResourceNotFound
from cityos.storage.base import (
    AttributeSummaryRow,
    Change,
    EntityQuery,
    Page,
    RegistrationOutbox,
    WriteOutcome,
)
from cityos.storage.sqlite import history
from cityos.storage.sqlite.bulk import apply_changes
from cityos.storage.sqlite.indexes import AttributeIndexer
from cityos.storage.sqlite.query_sql import register_functions
from cityos.storage.sqlite.select import build_geo_candidates, build_select
from cityos.storage.sqlite.trust import SQLiteTrust
from cityos.storage.sqlite.writer import Writer
from cityos.storage.trust_common import DelegatesTrust

__all__ = ["SQLiteStore"]

Listener = Callable[[str, list[WriteOutcome]], list[tuple[str, str, str, str]]]
_loads = orjson.loads
_dumps = orjson.dumps
# The table of each kind of subscription and the table of its notification outbox.
_ENTITY_SUBS = ("subscriptions", "notification_outbox")
_CSOURCE_SUBS = ("csource_subscriptions", "csource_notification_outbox")


class SQLiteStore(DelegatesTrust):
    def __init__(self, path: Path, durable: bool = True, history: bool = True) -> None:
        self.path = path
        self._durable = durable
        self.history = history  # record every change as temporal instances
        self._writer = Writer(self._connect_writer)
        self._reader: sqlite3.Connection | None = None
        self._tenants: set[str] = set()
        self._version: dict[str, int] = {}
        self._summary: dict[str, tuple[int, Any]] = {}
        self.indexer = AttributeIndexer(self._writer)
        # Set by the notifier: called in the write transaction with the outcomes, returns
        # outbox rows to insert with them; and called after each commit.
        self.listener: Listener | None = None
        self.on_commit: Callable[[], None] | None = None
        self.trust = SQLiteTrust(self._writer, lambda: self.reader)

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=" + ("FULL" if self._durable else "NORMAL"))
        conn.execute("PRAGMA busy_timeout=10000")
        # Page cache, not mmap: mapped pages count as resident memory and would grow with
        # the database; a town's small server should stay within a fixed memory budget.
        conn.execute("PRAGMA cache_size=-32768")
        conn.execute("PRAGMA mmap_size=0")
        # Deleted content is overwritten with zeros (Debian's default; not every build's),
        # so erased personal data does not linger in free space (see scrub()).
        conn.execute("PRAGMA secure_delete=ON")
        register_functions(conn)
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        _migrate(conn)
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.start()
        self._reader = self._connect()
        self._tenants = {r[0] for r in self._reader.execute("SELECT name FROM tenants")}
        self.indexer.load(self._reader)

    async def close(self) -> None:
        self._writer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def reader(self) -> sqlite3.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # -- entities -------------------------------------------------------------------

    async def get_entity(self, tenant: str, entity_id: str) -> StoredEntity:
        row = self.reader.execute(
            "SELECT doc FROM entities WHERE tenant = ? AND id = ?", (tenant, entity_id)
        ).fetchone()
        if row is None:
            raise ResourceNotFound(f"Entity {entity_id} does not exist")
        doc: StoredEntity = _loads(row[0])
        return doc

    async def query_entities(self, query: EntityQuery) -> Page:
        if query.q is not None:
            self.indexer.want(query.q)
        select = build_select(query)
        page = Page()
        if query.geo is None:
            rows = self.reader.execute(
                select.sql + " LIMIT ? OFFSET ?", [*select.params, query.limit, query.offset]
            )
            page.entities = [_loads(r[0]) for r in rows]
            if query.count:
                page.count = self.reader.execute(select.count_sql, select.params).fetchone()[0]
            return page
        fast = build_geo_candidates(query)
        if fast is not None:
            matched = self._geo_matches_from_index(query, *fast)
        else:
            matched = self._geo_matches(query, select.sql, select.params)
        wanted = matched[query.offset : query.offset + query.limit]
        page.entities = self._docs_by_rowid(wanted)
        page.count = len(matched) if query.count else None
        return page

    def _geo_matches(self, query: EntityQuery, sql: str, params: list[Any]) -> list[int]:
        return [rowid for _, rowid in self._geo_ranked(query, sql, params)]

    def _geo_ranked(
        self, query: EntityQuery, sql: str, params: list[Any]
    ) -> list[tuple[float, int]]:
        """Rowids of the prefiltered candidates whose GeoProperty matches exactly, nearest
        first for ``near``. Only the GeoProperty is read here; whole documents are read
        afterwards for the requested page alone."""
        gq, attr = query.geo, query.geoproperty
        assert gq is not None and attr is not None
        path = '$.attrs."' + attr.replace('"', "") + '"'
        geo_sql_text = sql.replace(
            "SELECT e.doc FROM", "SELECT e.rowid, json_extract(e.doc, ?) FROM", 1
        )
        hits: list[tuple[float, int, int]] = []
        for n, (rowid, raw) in enumerate(self.reader.execute(geo_sql_text, [path, *params])):
            geoms = [i["value"] for i in _loads(raw or "[]") if i.get("type") == "GeoProperty"]
            if gq.georel == "near":
                if not geoms:
                    continue
                distance = min(geo.distance_m(gq, g) for g in geoms)
                if geo.matches(gq, _nearest(gq, geoms, distance)):
                    hits.append((distance, n, rowid))
            elif any(geo.matches(gq, g) for g in geoms):
                hits.append((0.0, n, rowid))
        hits.sort()
        return [(h[0], h[2]) for h in hits]

    def _geo_matches_from_index(self, query: EntityQuery, sql: str, params: list[Any]) -> list[int]:
        """Like _geo_matches, but Points are judged from their indexed position; only
        Entities with other geometries have their GeoProperty read from the document."""
        gq = query.geo
        assert gq is not None
        best: dict[int, float] = {}
        others: list[int] = []
        for rowid, px, py in self.reader.execute(sql, params):
            if px is None:
                others.append(rowid)
                continue
            point = {"type": "Point", "coordinates": [px, py]}
            if geo.matches(gq, point):
                distance = geo.distance_m(gq, point) if gq.georel == "near" else 0.0
                best[rowid] = min(distance, best.get(rowid, distance))
        if others:
            marks = ", ".join("?" * len(others))
            rest = self._geo_ranked(
                query,
                f"SELECT e.doc FROM entities e WHERE e.rowid IN ({marks}) ORDER BY e.rowid",
                others,
            )
            for distance, rowid in rest:
                best[rowid] = min(distance, best.get(rowid, distance))
        return [r for _, r in sorted((d, r) for r, d in best.items())]

    def _docs_by_rowid(self, rowids: list[int]) -> list[StoredEntity]:
        if not rowids:
            return []
        marks = ", ".join("?" * len(rowids))
        rows = self.reader.execute(
            f"SELECT rowid, doc FROM entities WHERE rowid IN ({marks})", rowids
        )
        by_rowid = {r[0]: r[1] for r in rows}
        return [_loads(by_rowid[r]) for r in rowids if r in by_rowid]

    async def write(self, tenant: str, entity_id: str, change: Change) -> WriteOutcome:
        outcome = (await self.write_many(tenant, [(entity_id, change)]))[0]
        return _raised(outcome)

    async def write_many(
        self, tenant: str, changes: Sequence[tuple[str, Change]]
    ) -> list[WriteOutcome | Exception]:
        keep_history = self.history

        def then(conn: sqlite3.Connection, outcomes: list[WriteOutcome]) -> None:
            if keep_history:
                history.record(conn, tenant, outcomes)

        return await self._write_job(tenant, changes, then)

    async def _write_job(
        self,
        tenant: str,
        changes: Sequence[tuple[str, Change]],
        then: Callable[[sqlite3.Connection, list[WriteOutcome]], None],
    ) -> list[WriteOutcome | Exception]:
        """Runs the changes in one job of the writer, then ``then`` (history) and the
        notifier's listener on what they did, all in the same transaction."""
        known = tenant in self._tenants
        listener = self.listener

        def job(conn: sqlite3.Connection) -> list[WriteOutcome | Exception]:
            if not known:
                conn.execute("INSERT OR IGNORE INTO tenants VALUES (?, ?)", (tenant, now_iso()))
            outcomes = apply_changes(conn, tenant, changes)
            done = [
                o
                for o in outcomes
                if isinstance(o, WriteOutcome) and (o.before is not None or o.after is not None)
            ]
            then(conn, done)
            if listener is not None:
                rows = listener(tenant, done)
                if rows:
                    conn.executemany(
                        "INSERT INTO notification_outbox (tenant, subscription_id, entity_id, payload) "
                        "VALUES (?, ?, ?, ?)",
                        rows,
                    )
            return outcomes

        outcomes: list[WriteOutcome | Exception] = await self._writer.run(job)
        if self.on_commit is not None:
            self.on_commit()
        if any(isinstance(o, WriteOutcome) and o.after is not None for o in outcomes):
            self._tenants.add(tenant)
        self._version[tenant] = self._version.get(tenant, 0) + 1
        return outcomes

    # -- temporal history (storage/sqlite/history.py) ------------------------------------

    async def temporal_add(
        self, tenant: str, entity: StoredEntity, change: Change, must_exist: bool
    ) -> bool:
        created: list[bool] = []

        def then(conn: sqlite3.Connection, outcomes: list[WriteOutcome]) -> None:
            # An Entity written while history was off has no temporal Entity yet.
            existed = bool(outcomes) and outcomes[0].before is not None
            created.append(history.add_instances(conn, tenant, entity, must_exist and not existed))

        _raised((await self._write_job(tenant, [(entity["id"], change)], then))[0])
        self._tenants.add(tenant)  # the history is there even when no current Entity is
        return created[0]

    async def temporal_delete_entity(self, tenant: str, entity_id: str, change: Change) -> None:
        def then(conn: sqlite3.Connection, outcomes: list[WriteOutcome]) -> None:
            # The current Entity alone (history was off) is deleted too.
            history.delete_entity(conn, tenant, entity_id, must_exist=not outcomes)

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
        # These need an existing temporal Entity, so its tenant exists already.
        await self._writer.run(
            lambda c: history.delete_attribute(
                c, history.AttrRef(tenant, entity_id, attr), dataset_id, delete_all, now
            ),
        )

    async def temporal_delete_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> None:
        await self._writer.run(
            lambda c: history.delete_instance(
                c, history.AttrRef(tenant, entity_id, attr), instance_id
            ),
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
        await self._writer.run(
            lambda c: history.modify_instance(
                c, history.AttrRef(tenant, entity_id, attr), instance_id, fragment, now
            ),
        )

    async def temporal_entity(
        self, tenant: str, entity_id: str, tq: TemporalQuery
    ) -> TemporalEntity:
        row = self.reader.execute(
            f"SELECT {history.ENTITY_COLUMNS} FROM temporal_entities WHERE tenant = ? AND id = ?",
            (tenant, entity_id),
        ).fetchone()
        if row is None:
            raise ResourceNotFound(f"Temporal Entity {entity_id} does not exist")
        return history.read_entity(self.reader, row, tq)

    async def query_temporal(
        self, query: EntityQuery, tq: TemporalQuery, alternatives: Sequence[EntityQuery] = ()
    ) -> tuple[list[TemporalEntity], int | None]:
        """Temporal Entities matching the query (clause 5.7.4), or any of ``alternatives``
        too (the EntitySelectors of a POST query), a page of them with their instances, and
        their number when asked. Ids and plain type names select rows by index; type
        expressions, idPattern, ``q``, ``scopeQ`` and ``geoQ`` are then tested on each
        candidate, the last three on its newest state."""
        found: dict[int, Any] = {}
        latest: dict[int, StoredEntity] = {}  # newest states read by the filters, reused
        for selection in (query, *alternatives):
            for row in self._temporal_candidates(selection, tq, latest):
                found.setdefault(row[0], row)
        matched = [found[key] for key in sorted(found)]
        if query.order_by:
            states = {row[1]: row for row in matched}
            for row in matched:
                if row[0] not in latest:
                    latest[row[0]] = history.latest_state(self.reader, row)
            ordered = sort_entities([latest[row[0]] for row in matched], query.order_by)
            matched = [states[e["id"]] for e in ordered]
        page = matched[query.offset : query.offset + query.limit]
        entities = history.read_entities(self.reader, page, tq)
        return entities, len(matched) if query.count else None

    def _temporal_candidates(
        self, query: EntityQuery, tq: TemporalQuery, latest: dict[int, StoredEntity]
    ) -> list[Any]:
        sql = f"SELECT {history.ENTITY_COLUMNS} FROM temporal_entities WHERE tenant = ?"
        params: list[Any] = [query.tenant]
        if query.ids:
            sql += f" AND id IN ({', '.join('?' * len(query.ids))})"
            params.extend(query.ids)
        names = type_names(query.types) if query.types is not None else None
        if names:
            sql += (
                " AND key IN (SELECT entity FROM temporal_types WHERE tenant = ? "
                f"AND type IN ({', '.join('?' * len(names))}))"
            )
            params.extend([query.tenant, *names])
        matches = _TemporalFilter(self.reader, query, tq, names, latest)
        rows = self.reader.execute(sql + " ORDER BY key", params).fetchall()
        return [row for row in rows if matches(row)]

    async def expire_history(
        self, tenant: str, rule: RetentionTarget, cutoff_us: int, batch: int = 5000
    ) -> int:
        """One bounded retention step (see cityos/retention.py); returns instances removed."""
        removed: int = await self._writer.run(
            lambda c: history.expire(c, tenant, rule, cutoff_us, batch)
        )
        return removed

    # -- tenants and discovery -------------------------------------------------------

    async def tenant_exists(self, tenant: str) -> bool:
        return tenant in self._tenants

    async def tenants(self) -> list[str]:
        return sorted(self._tenants)

    async def type_counts(self, tenant: str) -> dict[str, int]:
        rows = self.reader.execute(
            "SELECT type, count(*) FROM entity_types WHERE tenant = ? GROUP BY type", (tenant,)
        )
        return {r[0]: r[1] for r in rows}

    async def attribute_summary(self, tenant: str) -> list[AttributeSummaryRow]:
        version = self._version.get(tenant, 0)
        cached = self._summary.get(tenant)
        if cached is not None and cached[0] == version:
            rows: list[AttributeSummaryRow] = cached[1]
            return rows
        sql = (
            "SELECT t.type, a.key, json_extract(a.value, '$[0].type'), count(*) "
            "FROM entities e JOIN entity_types t ON t.entity_rowid = e.rowid, json_each(e.doc, '$.attrs') a "
            "WHERE e.tenant = ? GROUP BY 1, 2, 3"
        )
        rows = [AttributeSummaryRow(*r) for r in self.reader.execute(sql, (tenant,))]
        self._summary[tenant] = (version, rows)
        return rows

    # -- subscriptions and their notification outbox ------------------------------------

    async def save_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self._save_subscription(_ENTITY_SUBS, tenant, sub_id, doc)

    async def delete_subscription(self, tenant: str, sub_id: str) -> None:
        await self._delete_subscription(_ENTITY_SUBS, tenant, sub_id)

    async def load_subscriptions(self) -> list[tuple[str, str, Any]]:
        return self._load_subscriptions(_ENTITY_SUBS)

    async def pending_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        return self._pending(_ENTITY_SUBS, after_key, limit)

    async def finish_notifications(self, keys: Sequence[int]) -> None:
        await self._finish(_ENTITY_SUBS, keys)

    # The same for either kind of subscription: its table and its outbox table. Table names
    # come from the constants below, never from a request.

    async def _save_subscription(
        self, tables: tuple[str, str], tenant: str, sub_id: str, doc: Any
    ) -> None:
        values = (tenant, sub_id, _dumps(doc).decode())
        sql = f"INSERT OR REPLACE INTO {tables[0]} VALUES (?, ?, ?)"
        await self._writer.run(lambda c: c.execute(sql, values))

    async def _delete_subscription(self, tables: tuple[str, str], tenant: str, sub_id: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute(f"DELETE FROM {tables[0]} WHERE tenant = ? AND id = ?", (tenant, sub_id))
            conn.execute(
                f"DELETE FROM {tables[1]} WHERE tenant = ? AND subscription_id = ?",
                (tenant, sub_id),
            )

        await self._writer.run(job)

    def _load_subscriptions(self, tables: tuple[str, str]) -> list[tuple[str, str, Any]]:
        rows = self.reader.execute(f"SELECT tenant, id, doc FROM {tables[0]}")
        return [(r[0], r[1], _loads(r[2])) for r in rows]

    def _pending(
        self, tables: tuple[str, str], after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        # Both outboxes have the columns key, tenant, subscription id, the id of what
        # changed (an Entity or a registration) and the payload, in this order.
        rows = self.reader.execute(
            f"SELECT * FROM {tables[1]} WHERE key > ? ORDER BY key LIMIT ?", (after_key, limit)
        )
        return [(r[0], r[1], r[2], r[3], _loads(r[4])) for r in rows]

    async def _finish(self, tables: tuple[str, str], keys: Sequence[int]) -> None:
        params = [(k,) for k in keys]
        sql = f"DELETE FROM {tables[1]} WHERE key = ?"
        await self._writer.run(lambda c: c.executemany(sql, params))

    # -- context source registrations (core/registrations.py) --------------------------

    async def create_registration(
        self, tenant: str, reg_id: str, doc: Any, outbox: RegistrationOutbox | None = None
    ) -> None:
        values = (tenant, reg_id, _dumps(doc).decode())

        def job(conn: sqlite3.Connection) -> None:
            sql = "INSERT OR IGNORE INTO csource_registrations VALUES (?, ?, ?)"
            if conn.execute(sql, values).rowcount == 0:
                raise AlreadyExists(f"Context source registration {reg_id} already exists")
            _csource_outbox(conn, outbox, None, doc)

        await self._writer.run(job)

    async def update_registration(
        self,
        tenant: str,
        reg_id: str,
        change: Callable[[Any], Any],
        outbox: RegistrationOutbox | None = None,
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            before = SQLiteStore._registration_row(conn, tenant, reg_id)
            after = change(before)
            conn.execute(
                "UPDATE csource_registrations SET doc = ? WHERE tenant = ? AND id = ?",
                (_dumps(after).decode(), tenant, reg_id),
            )
            _csource_outbox(conn, outbox, before, after)

        await self._writer.run(job)

    async def delete_registration(
        self, tenant: str, reg_id: str, outbox: RegistrationOutbox | None = None
    ) -> None:
        def job(conn: sqlite3.Connection) -> None:
            before = SQLiteStore._registration_row(conn, tenant, reg_id)
            sql = "DELETE FROM csource_registrations WHERE tenant = ? AND id = ?"
            conn.execute(sql, (tenant, reg_id))
            _csource_outbox(conn, outbox, before, None)

        await self._writer.run(job)

    @staticmethod
    def _registration_row(conn: sqlite3.Connection, tenant: str, reg_id: str) -> Any:
        row = conn.execute(
            "SELECT doc FROM csource_registrations WHERE tenant = ? AND id = ?", (tenant, reg_id)
        ).fetchone()
        if row is None:
            raise SQLiteStore._no_registration(reg_id)
        return _loads(row[0])

    async def get_registration(self, tenant: str, reg_id: str) -> Any:
        row = self.reader.execute(
            "SELECT doc FROM csource_registrations WHERE tenant = ? AND id = ?", (tenant, reg_id)
        ).fetchone()
        if row is None:
            raise SQLiteStore._no_registration(reg_id)
        return _loads(row[0])

    async def registrations(self, tenant: str) -> list[Any]:
        rows = self.reader.execute(
            "SELECT doc FROM csource_registrations WHERE tenant = ? ORDER BY id", (tenant,)
        )
        return [_loads(r[0]) for r in rows]

    @staticmethod
    def _no_registration(reg_id: str) -> ResourceNotFound:
        return ResourceNotFound(f"Context source registration {reg_id} does not exist")

    # -- context source registration subscriptions (clause 5.11) -------------------------

    async def save_csource_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self._save_subscription(_CSOURCE_SUBS, tenant, sub_id, doc)

    async def delete_csource_subscription(self, tenant: str, sub_id: str) -> None:
        await self._delete_subscription(_CSOURCE_SUBS, tenant, sub_id)

    async def load_csource_subscriptions(self) -> list[tuple[str, str, Any]]:
        return self._load_subscriptions(_CSOURCE_SUBS)

    async def add_csource_notifications(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        await self._writer.run(lambda c: c.executemany(_CSOURCE_OUTBOX_SQL, rows))

    async def pending_csource_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        return self._pending(_CSOURCE_SUBS, after_key, limit)

    async def finish_csource_notifications(self, keys: Sequence[int]) -> None:
        await self._finish(_CSOURCE_SUBS, keys)

    # -- @context registry -------------------------------------------------------------

    async def save_context(self, entry: ContextEntry) -> None:
        values = (
            entry.url,
            entry.local_id,
            entry.kind,
            _dumps(entry.document).decode(),
            entry.created_at,
        )
        await self._writer.run(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO jsonld_contexts VALUES (?, ?, ?, ?, ?)", values
            )
        )

    async def delete_context(self, url: str) -> None:
        await self._writer.run(
            lambda c: c.execute("DELETE FROM jsonld_contexts WHERE url = ?", (url,))
        )

    async def load_contexts(self) -> list[ContextEntry]:
        rows = self.reader.execute(
            "SELECT url, local_id, kind, document, created_at FROM jsonld_contexts"
        )
        return [ContextEntry(r[0], r[1], r[2], _loads(r[3]), r[4]) for r in rows]

    async def scrub(self) -> None:
        """Rebuilds the database file without the free pages that still hold deleted
        values (VACUUM, with secure_delete so nothing freed on the way survives either),
        then truncates the write-ahead log, whose frames hold earlier page images.
        VACUUM cannot run inside the writer's transactions: it takes its own connection
        and waits (busy_timeout) for the writer's lock like any other writer."""

        def job() -> None:
            conn = self._connect()
            try:
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()

        await asyncio.to_thread(job)


def _raised(outcome: WriteOutcome | Exception) -> WriteOutcome:
    """One change's outcome, or the error it refused with, raised."""
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


class _TemporalFilter:
    """What the indexes could not select of a temporal query: type expressions, idPattern,
    instances in the window, and q, scopeQ and geoQ on the Entity's newest state."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        query: EntityQuery,
        tq: TemporalQuery,
        names: tuple[str, ...] | None,
        latest: dict[int, StoredEntity],
    ) -> None:
        self.conn, self.query, self.tq, self.latest = conn, query, tq, latest
        self.by_expression = query.types is not None and not names
        self.pattern = re.compile(query.id_pattern) if query.id_pattern else None
        self.geo = (
            query.geo.with_property_iri(query.geoproperty)
            if query.geo is not None and query.geoproperty
            else query.geo
        )
        self.narrowed = bool(tq.timerel or tq.attrs or tq.dataset_ids is not None)

    def __call__(self, row: Sequence[Any]) -> bool:
        query = self.query
        if self.pattern is not None and not self.pattern.search(row[1]):
            return False
        if self.by_expression and query.types is not None:
            if not match_types({"type": _loads(row[2])}, query.types):
                return False
        if self.narrowed and not history.has_instances(self.conn, row[0], self.tq):
            return False
        if query.q is None and query.scope_q is None and self.geo is None:
            return True
        latest = self.latest.get(row[0])
        if latest is None:
            latest = self.latest[row[0]] = history.latest_state(self.conn, row)
        return (
            (query.q is None or match_q(latest, query.q))
            and (query.scope_q is None or match_scope(latest, query.scope_q))
            and (self.geo is None or geo.matches_entity(self.geo, latest))
        )


def _nearest(gq: Any, geoms: list[Any], distance: float) -> Any:
    """The geometry at ``distance`` (so ``near`` is tested on the closest instance)."""
    if len(geoms) == 1:
        return geoms[0]
    return next(g for g in geoms if geo.distance_m(gq, g) == distance)


def _migrate(conn: sqlite3.Connection) -> None:
    """Applies the numbered plain-SQL migrations not yet applied (``PRAGMA user_version``)."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    folder = resources.files("cityos.storage.sqlite") / "migrations"
    scripts = sorted((p.name, p) for p in folder.iterdir() if p.name.endswith(".sql"))
    for name, path in scripts:
        version = int(name.split("_", 1)[0])
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        for statement in path.read_text().split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")


_CSOURCE_OUTBOX_SQL = (
    "INSERT INTO csource_notification_outbox "
    "(tenant, subscription_id, registration_id, payload) VALUES (?, ?, ?, ?)"
)


def _csource_outbox(
    conn: sqlite3.Connection, outbox: RegistrationOutbox | None, before: Any, after: Any
) -> None:
    """The csource notifications a registration change triggers, in its transaction."""
    if outbox is not None:
        rows = outbox(before, after)
        if rows:
            conn.executemany(_CSOURCE_OUTBOX_SQL, rows)
