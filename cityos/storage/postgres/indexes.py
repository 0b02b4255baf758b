"""Expression indexes for the attributes ``q`` queries compare, built on first use.

``==`` is answered by the GIN index on the whole document (``doc @> {...}``), but order
comparisons and ranges are not: a q term on attribute A compares
``(e.doc -> 'attrs' -> 'A' -> 0 -> 'value')`` (``query_sql.value_expr``) as jsonb, or its
text ``COLLATE "C"`` for strings and DateTimes. So the first q query on an attribute
builds two B-tree indexes on those expressions, ``CONCURRENTLY`` (writers are not
blocked) and in the background, as the SQLite store does; later queries use them. They
are recorded in ``attribute_indexes`` and capped at ``MAX_INDEXES`` to bound the cost
on writes. Every worker process may start a build: ``IF NOT EXISTS`` and the table make
that harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from cityos.core.query.ast import AttrPath
from cityos.storage.postgres.query_sql import value_expr
from cityos.storage.postgres.records import Pool

__all__ = ["MAX_INDEXES", "AttributeIndexer", "index_statements", "indexable_attributes"]

log = logging.getLogger(__name__)
MAX_INDEXES = 64


def indexable_attributes(node: Any) -> set[str]:
    """The attributes a q AST compares by their top-level value."""
    found: set[str] = set()
    if isinstance(node, AttrPath):
        if not node.subattrs and node.member is None and not node.keys:
            found.add(node.attr)
        return found
    for name in getattr(node, "__dataclass_fields__", ()):
        found |= indexable_attributes(getattr(node, name))
    if isinstance(node, tuple | list):
        for item in node:
            found |= indexable_attributes(item)
    return found


def index_statements(attr: str) -> list[str]:
    """The two indexes of an attribute: its value as jsonb, and as text in code point
    order. Run with an (empty) parameter sequence: ``value_expr`` doubles ``%``."""
    name = "ix_attr_" + hashlib.sha1(attr.encode()).hexdigest()[:16]
    value = value_expr(AttrPath(attr)).replace("e.doc", "doc")
    return [
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_value ON entities ({value})",
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_text ON entities "
        f"((({value} #>> '{{}}') COLLATE \"C\"))",
    ]


class AttributeIndexer:
    def __init__(self, pool: Callable[[], Pool]) -> None:
        self._pool = pool
        self.indexed: set[str] = set()
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        async with self._pool().connection() as conn:
            cur = await conn.execute("SELECT attr FROM attribute_indexes")
            self.indexed = {row[0] for row in await cur.fetchall()}

    def want(self, q: Any) -> None:
        for attr in sorted(indexable_attributes(q) - self.indexed - self._pending):
            if len(self.indexed) + len(self._pending) >= MAX_INDEXES:
                return
            self._pending.add(attr)
            task = asyncio.get_running_loop().create_task(self._build(attr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _build(self, attr: str) -> None:
        try:
            async with self._pool().connection() as conn:  # autocommit: CONCURRENTLY
                for statement in index_statements(attr):
                    await conn.execute(statement, ())
                await conn.execute(
                    "INSERT INTO attribute_indexes VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (attr, dt.datetime.now(dt.UTC).isoformat()),
                )
            self.indexed.add(attr)
            log.info("Built the expression indexes for attribute %s", attr)
        except psycopg.Error:  # queries still work, by scanning; the next start retries
            log.exception("Building the expression indexes for attribute %s failed", attr)
        finally:
            self._pending.discard(attr)

    async def wait(self) -> None:
        """Waits for the indexes being built (close, tests and benchmarks use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
