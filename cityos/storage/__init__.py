"""Storage backends behind the :class:`~cityos.storage.base.Store` Protocol.

``open_store`` picks one from the settings' ``database_url``: empty or ``sqlite:///``
for the embedded SQLite store, ``postgresql://`` (or ``postgres://``) for PostgreSQL.
Backends are imported only when chosen, so SQLite needs no PostgreSQL driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cityos.config import Settings
    from cityos.storage.base import Store

__all__ = ["is_postgres_url", "open_store"]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened (``await store.open()``)."""
    if is_postgres_url(settings.database_url):
        from cityos.storage.postgres import PostgresStore

        return PostgresStore(
            settings.database_url, durable=settings.durable, history=settings.temporal_history
        )
    from cityos.storage.sqlite.store import SQLiteStore

    return SQLiteStore(
        settings.sqlite_path, durable=settings.durable, history=settings.temporal_history
    )
