"""Automatic expression indexes for the attributes that ``q`` queries compare.

A q term on attribute A compiles to ``json_extract(e.doc, '$.attrs."A"[0].value')``
(``query_sql.value_expr``). Without an index on that expression every such query scans
the tenant's Entities (about 50 queries/s at 100,000 Entities here); with one it runs
about 5,000 times/s. So the first q query on an attribute asks the writer thread to build
the index in the background, and later queries use it. The indexes are recorded in
``attribute_indexes`` and capped at ``MAX_INDEXES`` to bound the cost on writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import sqlite3
from typing import Any

from cityos.core.query.ast import AttrPath
from cityos.storage.sqlite.query_sql import index_statements
from cityos.storage.sqlite.writer import Writer

__all__ = ["MAX_INDEXES", "AttributeIndexer", "indexable_attributes"]

log = logging.getLogger(__name__)
MAX_INDEXES = 64


def indexable_attributes(node: Any) -> set[str]:
    """The attributes a q AST compares by their top-level value."""
    found: set[str] = set()
    if isinstance(node, AttrPath):
        if not node.subattrs and node.member is None and not node.keys:
            found.add(node.attr)
        return found
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            found |= indexable_attributes(getattr(node, f.name))
    elif isinstance(node, tuple | list):
        for item in node:
            found |= indexable_attributes(item)
    return found


class AttributeIndexer:
    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self.indexed: set[str] = set()
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, conn: sqlite3.Connection) -> None:
        self.indexed = {r[0] for r in conn.execute("SELECT attr FROM attribute_indexes")}

    def want(self, q: Any) -> None:
        for attr in indexable_attributes(q) - self.indexed - self._pending:
            if len(self.indexed) + len(self._pending) >= MAX_INDEXES:
                return
            self._pending.add(attr)
            task = asyncio.get_running_loop().create_task(self._build(attr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _build(self, attr: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            for statement in index_statements(attr):
                conn.execute(statement)
            now = dt.datetime.now(dt.UTC).isoformat()
            conn.execute("INSERT OR IGNORE INTO attribute_indexes VALUES (?, ?)", (attr, now))

        try:
            await self._writer.run(job)
            self.indexed.add(attr)
            log.info("Built the expression index for attribute %s", attr)
        finally:
            self._pending.discard(attr)

    async def wait(self) -> None:
        """Waits for indexes being built (tests and benchmarks use this)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
