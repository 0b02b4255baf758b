"""Documents beside the Entities: Subscriptions and their notification outbox, @contexts
and context source registrations. Each function is one short statement or transaction
on a pooled connection; the documents are ``json`` (kept as written), not ``jsonb``:
nothing queries into them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from cityos.core.contexts import ContextEntry
from cityos.errors import AlreadyExists, ResourceNotFound
from cityos.storage.base import RegistrationOutbox
from cityos.storage.postgres.writes import lock_key

__all__ = ["Conn", "Documents", "Pool", "insert_outbox", "shielded"]

Pool = AsyncConnectionPool[AsyncConnection[Any]]
Conn = AsyncConnection[Any]
log = logging.getLogger(__name__)
_ATTEMPTS = 5
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Kind:
    """A kind of subscription: its table, its outbox table and the outbox's subject."""

    table: str
    outbox: str
    subject: str  # what changed: an Entity id or a registration id

    @property
    def lock(self) -> int:
        # Outbox keys must become visible in key order: the dispatcher reads past a
        # cursor, so a transaction holding key 10 that commits after the one holding key
        # 11 would be skipped. Writers adding outbox rows take this lock until their commit.
        return lock_key("cityos", self.outbox)


_ENTITY_SUBS = _Kind("subscriptions", "notification_outbox", "entity_id")
_CSOURCE_SUBS = _Kind("csource_subscriptions", "csource_notification_outbox", "registration_id")


async def insert_outbox(
    conn: AsyncConnection[Any],
    rows: list[tuple[str, str, str, str]],
    kind: _Kind = _ENTITY_SUBS,
) -> None:
    """Adds notification rows (tenant, subscription, subject id, payload JSON text) in the
    caller's transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (kind.lock,))
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO {kind.outbox} (tenant, subscription_id, {kind.subject}, payload) "
            "VALUES (%s, %s, %s, %s::json)",
            rows,
        )


def _no_registration(reg_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"Context source registration {reg_id} does not exist")


async def _registration_row(conn: AsyncConnection[Any], tenant: str, reg_id: str) -> Any:
    cur = await conn.execute(
        "SELECT doc FROM csource_registrations WHERE tenant = %s AND id = %s FOR UPDATE",
        (tenant, reg_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise _no_registration(reg_id)
    return row[0]


async def _csource_outbox(
    conn: AsyncConnection[Any], outbox: RegistrationOutbox | None, before: Any, after: Any
) -> None:
    """The csource notifications a registration change triggers, in its transaction."""
    if outbox is not None:
        rows = list(outbox(before, after))
        if rows:
            await insert_outbox(conn, rows, _CSOURCE_SUBS)


class Documents:
    """The Store methods for Subscriptions, the outbox, @contexts and registrations."""

    def __init__(self, pool: Callable[[], Pool]) -> None:
        self._pool = pool

    async def save_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self._save_subscription(_ENTITY_SUBS, tenant, sub_id, doc)

    async def delete_subscription(self, tenant: str, sub_id: str) -> None:
        await self._delete_subscription(_ENTITY_SUBS, tenant, sub_id)

    async def load_subscriptions(self) -> list[tuple[str, str, Any]]:
        return await self._load_subscriptions(_ENTITY_SUBS)

    async def pending_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        return await self._pending(_ENTITY_SUBS, after_key, limit)

    async def finish_notifications(self, keys: Sequence[int]) -> None:
        await self._finish(_ENTITY_SUBS, keys)

    # -- context source registration subscriptions (clause 5.11) -------------------------

    async def save_csource_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self._save_subscription(_CSOURCE_SUBS, tenant, sub_id, doc)

    async def delete_csource_subscription(self, tenant: str, sub_id: str) -> None:
        await self._delete_subscription(_CSOURCE_SUBS, tenant, sub_id)

    async def load_csource_subscriptions(self) -> list[tuple[str, str, Any]]:
        return await self._load_subscriptions(_CSOURCE_SUBS)

    async def add_csource_notifications(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        async def job(conn: Conn) -> None:
            await insert_outbox(conn, list(rows), _CSOURCE_SUBS)

        await self.transaction(job)

    async def pending_csource_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        return await self._pending(_CSOURCE_SUBS, after_key, limit)

    async def finish_csource_notifications(self, keys: Sequence[int]) -> None:
        await self._finish(_CSOURCE_SUBS, keys)

    # The same for either kind of subscription: its table and its outbox table. Table
    # names come from the constants above, never from a request.

    async def _save_subscription(self, kind: _Kind, tenant: str, sub_id: str, doc: Any) -> None:
        await self._run(
            f"INSERT INTO {kind.table} VALUES (%s, %s, %s) "
            "ON CONFLICT (tenant, id) DO UPDATE SET doc = excluded.doc",
            (tenant, sub_id, Json(doc)),
        )

    async def _delete_subscription(self, kind: _Kind, tenant: str, sub_id: str) -> None:
        async def job(conn: Conn) -> None:
            await conn.execute(
                f"DELETE FROM {kind.table} WHERE tenant = %s AND id = %s", (tenant, sub_id)
            )
            await conn.execute(
                f"DELETE FROM {kind.outbox} WHERE tenant = %s AND subscription_id = %s",
                (tenant, sub_id),
            )

        await self.transaction(job)

    async def _load_subscriptions(self, kind: _Kind) -> list[tuple[str, str, Any]]:
        rows = await self._fetch(f"SELECT tenant, id, doc FROM {kind.table} ORDER BY tenant, id")
        return [(r[0], r[1], r[2]) for r in rows]

    async def _pending(
        self, kind: _Kind, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        rows = await self._fetch(
            f"SELECT key, tenant, subscription_id, {kind.subject}, payload FROM {kind.outbox} "
            "WHERE key > %s ORDER BY key LIMIT %s",
            (after_key, limit),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def _finish(self, kind: _Kind, keys: Sequence[int]) -> None:
        await self._run(f"DELETE FROM {kind.outbox} WHERE key = ANY(%s::bigint[])", (list(keys),))

    # -- @context registry -------------------------------------------------------------

    async def save_context(self, entry: ContextEntry) -> None:
        await self._run(
            "INSERT INTO jsonld_contexts VALUES (%s, %s, %s, %s, %s) ON CONFLICT (url) DO "
            "UPDATE SET local_id = excluded.local_id, kind = excluded.kind, "
            "document = excluded.document, created_at = excluded.created_at",
            (entry.url, entry.local_id, entry.kind, Json(entry.document), entry.created_at),
        )

    async def delete_context(self, url: str) -> None:
        await self._run("DELETE FROM jsonld_contexts WHERE url = %s", (url,))

    async def load_contexts(self) -> list[ContextEntry]:
        rows = await self._fetch(
            "SELECT url, local_id, kind, document, created_at FROM jsonld_contexts ORDER BY url"
        )
        return [ContextEntry(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def create_registration(
        self, tenant: str, reg_id: str, doc: Any, outbox: RegistrationOutbox | None = None
    ) -> None:
        async def job(conn: Conn) -> None:
            cur = await conn.execute(
                "INSERT INTO csource_registrations VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (tenant, reg_id, Json(doc)),
            )
            if cur.rowcount == 0:
                raise AlreadyExists(f"Context source registration {reg_id} already exists")
            await _csource_outbox(conn, outbox, None, doc)

        await self.transaction(job)

    async def update_registration(
        self,
        tenant: str,
        reg_id: str,
        change: Callable[[Any], Any],
        outbox: RegistrationOutbox | None = None,
    ) -> None:
        async def job(conn: Conn) -> None:
            before = await _registration_row(conn, tenant, reg_id)
            after = change(before)
            await conn.execute(
                "UPDATE csource_registrations SET doc = %s WHERE tenant = %s AND id = %s",
                (Json(after), tenant, reg_id),
            )
            await _csource_outbox(conn, outbox, before, after)

        await self.transaction(job)

    async def delete_registration(
        self, tenant: str, reg_id: str, outbox: RegistrationOutbox | None = None
    ) -> None:
        async def job(conn: Conn) -> None:
            before = await _registration_row(conn, tenant, reg_id)
            await conn.execute(
                "DELETE FROM csource_registrations WHERE tenant = %s AND id = %s",
                (tenant, reg_id),
            )
            await _csource_outbox(conn, outbox, before, None)

        await self.transaction(job)

    async def get_registration(self, tenant: str, reg_id: str) -> Any:
        rows = await self._fetch(
            "SELECT doc FROM csource_registrations WHERE tenant = %s AND id = %s",
            (tenant, reg_id),
        )
        if not rows:
            raise _no_registration(reg_id)
        return rows[0][0]

    async def registrations(self, tenant: str) -> list[Any]:
        rows = await self._fetch(
            'SELECT doc FROM csource_registrations WHERE tenant = %s ORDER BY id COLLATE "C"',
            (tenant,),
        )
        return [r[0] for r in rows]

    async def transaction(self, job: Callable[[Conn], Awaitable[T]]) -> T:
        """``job(conn)`` in one transaction on a pooled connection (see :func:`shielded`).
        A job PostgreSQL aborts to break a lock cycle runs again: jobs are changes and
        queries, which compute everything anew from what they read."""

        async def run() -> T:
            for attempt in range(_ATTEMPTS):
                try:
                    async with self._pool().connection() as conn, conn.transaction():
                        return await job(conn)
                except psycopg.errors.DeadlockDetected:
                    if attempt == _ATTEMPTS - 1:
                        raise
                    log.warning("A write was chosen to break a lock cycle; running it again")
            raise AssertionError("unreachable")

        return await shielded(run())

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async def fetch() -> list[Any]:
            async with self._pool().connection() as conn:
                cur = await conn.execute(sql, params)
                return await cur.fetchall()

        return await shielded(fetch())

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        async def run() -> int:
            async with self._pool().connection() as conn:
                cur = await conn.execute(sql, params)
                return cur.rowcount

        return await shielded(run())


async def shielded(work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work`` to its end in a task of its own, so that cancelling the caller always
    cancels the caller. Why: psycopg_pool waits for a connection with ``asyncio.wait_for``,
    which on Python 3.11 can swallow a cancellation that arrives as the wait ends
    (CPython gh-86296); a background loop (the notifier's) would then never stop. The
    statement itself is short and finishes (or rolls back) on its own."""
    return await asyncio.shield(asyncio.ensure_future(work))
