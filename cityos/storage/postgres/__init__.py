"""The PostgreSQL/PostGIS backend (``postgresql://`` database URLs): see store.py."""

from cityos.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
