"""The trust layer's documents and the hash-chained audit log, on PostgreSQL.

Many writers append at once here (API workers, processes, machines), so an append takes a
transaction-level advisory lock on the log first, then reads the chain head (last ``seq``
and hash) and inserts the new records, and the lock is held until the commit. The next
appender's read (read committed: a new snapshot per statement) runs after that commit and
sees the new head, so two writers never build on one head and the chain never forks. A
document's audit entries are appended in the transaction that writes the document, so
neither commits without the other. The chain itself is ``cityos.core.audit``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from psycopg.types.json import Json

from cityos.core.audit import GENESIS, chain
from cityos.storage.base import AuditEntry, AuditRecord
from cityos.storage.postgres.records import Conn
from cityos.storage.postgres.writes import lock_key
from cityos.storage.trust_common import equal_filters

__all__ = ["PostgresTrust", "append"]

Transaction = Callable[[Callable[[Conn], Awaitable[Any]]], Awaitable[Any]]
Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
_LOCK = lock_key("cityos", "audit_log")
_COLUMNS = "seq, at, action, actor, tenant, target, person, detail, prev, hash"


async def append(conn: Conn, entries: Sequence[AuditEntry]) -> None:
    """Appends ``entries`` to the chain, in the caller's transaction."""
    if not entries:
        return
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
    cur = await conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    row = await cur.fetchone()
    head_seq, head = (row[0], row[1]) if row is not None else (0, GENESIS)
    rows = [_row(r) for r in chain(entries, head_seq, head)]
    async with conn.cursor() as insert:
        await insert.executemany(
            f"INSERT INTO audit_log ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def _row(record: AuditRecord) -> tuple[Any, ...]:
    e = record.entry
    return (
        record.seq,
        e.at,
        e.action,
        e.actor,
        e.tenant,
        e.target,
        e.person,
        Json(e.detail),
        record.prev,
        record.hash,
    )


def _record(row: Sequence[Any]) -> AuditRecord:
    entry = AuditEntry(row[1], row[2], row[3], row[4], row[5], row[6], row[7])
    return AuditRecord(row[0], entry, row[8], row[9])


class PostgresTrust:
    """The trust methods of the Store protocol; ``PostgresStore`` delegates to it."""

    def __init__(self, transaction: Transaction, fetch: Fetch) -> None:
        self._transaction = transaction
        self._fetch = fetch

    async def trust_get(self, kind: str, tenant: str, doc_id: str) -> Any | None:
        rows = await self._fetch(
            "SELECT doc FROM trust_docs WHERE kind = %s AND tenant = %s AND id = %s",
            (kind, tenant, doc_id),
        )
        return rows[0][0] if rows else None

    async def trust_list(
        self, kind: str, tenant: str | None = None, key: str | None = None
    ) -> list[tuple[str, str, Any]]:
        where, params = equal_filters((("tenant", tenant), ("key", key)), "%s")
        sql = f"SELECT tenant, id, doc FROM trust_docs WHERE kind = %s{where}"
        params.insert(0, kind)
        rows = await self._fetch(sql + ' ORDER BY tenant COLLATE "C", id COLLATE "C"', params)
        return [(r[0], r[1], r[2]) for r in rows]

    async def trust_put(  # noqa: PLR0913 - the Store protocol's signature
        self,
        kind: str,
        tenant: str,
        doc_id: str,
        doc: Any,
        key: str = "",
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        entries = list(audit)

        async def job(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO trust_docs VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, tenant, id) "
                "DO UPDATE SET key = excluded.key, doc = excluded.doc",
                (kind, tenant, doc_id, key, Json(doc)),
            )
            await append(conn, entries)

        await self._transaction(job)

    async def trust_delete(
        self, kind: str, tenant: str, doc_id: str, audit: Sequence[AuditEntry] = ()
    ) -> bool:
        entries = list(audit)

        async def job(conn: Conn) -> bool:
            cur = await conn.execute(
                "DELETE FROM trust_docs WHERE kind = %s AND tenant = %s AND id = %s",
                (kind, tenant, doc_id),
            )
            await append(conn, entries)
            return cur.rowcount > 0

        found: bool = await self._transaction(job)
        return found

    async def audit_append(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            batch = list(entries)
            await self._transaction(lambda conn: append(conn, batch))

    async def audit_read(
        self,
        after: int = 0,
        limit: int = 1000,
        person: str | None = None,
        tenant: str | None = None,
    ) -> list[AuditRecord]:
        where, params = equal_filters((("person", person), ("tenant", tenant)), "%s")
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > %s{where}"
        params.insert(0, after)
        rows = await self._fetch(sql + " ORDER BY seq LIMIT %s", [*params, limit])
        return [_record(r) for r in rows]
