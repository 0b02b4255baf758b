"""Versioned schema migrations for PostgreSQL: ``migrations/NNN_name.sql``, plain SQL.

``schema_migrations`` records each applied version. Every migration runs in its own
transaction under one advisory lock, so several workers starting at once apply each
file exactly once, and running them again (``cityos migrate``) changes nothing.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

from psycopg import AsyncConnection

from cityos.storage.postgres.writes import lock_key

__all__ = ["migrate", "migration_files"]

_LOCK = lock_key("cityos", "schema_migrations")


def migration_files() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in order."""
    folder = resources.files("cityos.storage.postgres") / "migrations"
    found = []
    for path in folder.iterdir():
        if path.name.endswith(".sql"):
            found.append((int(path.name.split("_", 1)[0]), path.name, path.read_text()))
    return sorted(found)


async def migrate(conn: AsyncConnection[Any]) -> list[str]:
    """Applies the migrations not applied yet; returns the names of those it applied.
    ``conn`` must be in autocommit mode (each migration is its own transaction)."""
    applied: list[str] = []
    for version, name, sql in migration_files():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)"
            )
            cur = await conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = %s", (version,)
            )
            if await cur.fetchone() is not None:
                continue
            await conn.execute(sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                (version, name, dt.datetime.now(dt.UTC).isoformat()),
            )
            applied.append(name)
    return applied
