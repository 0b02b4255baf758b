"""The trust layer's documents and the hash-chained audit log, on SQLite.

Writes are jobs of the single writer (``writer.py``), so they are serialized and durable
like every other write. An append reads the chain head (last ``seq`` and hash) and
inserts the new records inside the same job, in the same transaction: two appends can
never both build on one head, so the chain never forks. A document's audit entries are
appended in the job that writes the document, so neither commits without the other.
Reads use the store's reader connection. The chain itself is ``cityos.core.audit``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from cityos.core.audit import GENESIS, chain
from cityos.storage.base import AuditEntry, AuditRecord
from cityos.storage.sqlite.writer import Writer
from cityos.storage.trust_common import equal_filters

__all__ = ["SQLiteTrust", "append"]

_COLUMNS = "seq, at, action, actor, tenant, target, person, detail, prev, hash"


def append(conn: sqlite3.Connection, entries: Sequence[AuditEntry]) -> None:
    """Appends ``entries`` to the chain, in the caller's write transaction."""
    if not entries:
        return
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    head_seq, head = (row[0], row[1]) if row is not None else (0, GENESIS)
    conn.executemany(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_row(r) for r in chain(entries, head_seq, head)],
    )


def _row(record: AuditRecord) -> tuple[Any, ...]:
    e = record.entry
    detail = orjson.dumps(e.detail).decode()
    return (
        record.seq,
        e.at,
        e.action,
        e.actor,
        e.tenant,
        e.target,
        e.person,
        detail,
        record.prev,
        record.hash,
    )


def _record(row: Sequence[Any]) -> AuditRecord:
    entry = AuditEntry(row[1], row[2], row[3], row[4], row[5], row[6], orjson.loads(row[7]))
    return AuditRecord(row[0], entry, row[8], row[9])


class SQLiteTrust:
    """The trust methods of the Store protocol; ``SQLiteStore`` delegates to it."""

    def __init__(self, writer: Writer, reader: Callable[[], sqlite3.Connection]) -> None:
        self._writer = writer
        self._reader = reader

    async def trust_get(self, kind: str, tenant: str, doc_id: str) -> Any | None:
        row = (
            self._reader()
            .execute(
                "SELECT doc FROM trust_docs WHERE kind = ? AND tenant = ? AND id = ?",
                (kind, tenant, doc_id),
            )
            .fetchone()
        )
        return None if row is None else orjson.loads(row[0])

    async def trust_list(
        self, kind: str, tenant: str | None = None, key: str | None = None
    ) -> list[tuple[str, str, Any]]:
        where, params = equal_filters((("tenant", tenant), ("key", key)), "?")
        sql = f"SELECT tenant, id, doc FROM trust_docs WHERE kind = ?{where}"
        params.insert(0, kind)
        rows = self._reader().execute(sql + " ORDER BY tenant, id", params)
        return [(r[0], r[1], orjson.loads(r[2])) for r in rows]

    async def trust_put(  # noqa: PLR0913 - the Store protocol's signature
        self,
        kind: str,
        tenant: str,
        doc_id: str,
        doc: Any,
        key: str = "",
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        values = (kind, tenant, doc_id, key, orjson.dumps(doc).decode())
        entries = list(audit)

        def job(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO trust_docs VALUES (?, ?, ?, ?, ?)", values)
            append(conn, entries)

        await self._writer.run(job)

    async def trust_delete(
        self, kind: str, tenant: str, doc_id: str, audit: Sequence[AuditEntry] = ()
    ) -> bool:
        entries = list(audit)

        def job(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM trust_docs WHERE kind = ? AND tenant = ? AND id = ?",
                (kind, tenant, doc_id),
            )
            append(conn, entries)
            return cur.rowcount > 0

        found: bool = await self._writer.run(job)
        return found

    async def audit_append(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            batch = list(entries)
            await self._writer.run(lambda conn: append(conn, batch))

    async def audit_read(
        self,
        after: int = 0,
        limit: int = 1000,
        person: str | None = None,
        tenant: str | None = None,
    ) -> list[AuditRecord]:
        where, params = equal_filters((("person", person), ("tenant", tenant)), "?")
        sql = f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ?{where}"
        params.insert(0, after)
        rows = self._reader().execute(sql + " ORDER BY seq LIMIT ?", [*params, limit])
        return [_record(r) for r in rows]
