"""The single SQLite writer: one thread, one connection, group commit.

SQLite allows one writer at a time, so City OS keeps exactly one (as Datasette does) and
queues every write to it. The thread takes whatever is queued (up to ``MAX_GROUP`` jobs),
runs each job inside its own SAVEPOINT of one ``BEGIN IMMEDIATE`` transaction and commits
once: with ``synchronous=FULL`` that one fsync makes the whole group durable, which is how
thousands of acknowledged writes per second fit in a disk's few thousand fsyncs. A job that
raises is rolled back to its savepoint alone. Futures are resolved only after COMMIT
returns, so nobody is told "done" before the write is on disk.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Writer"]

log = logging.getLogger(__name__)
MAX_GROUP = 512
Job = Callable[[sqlite3.Connection], Any]
_STOP = object()


class Writer:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cityos-sqlite-writer", daemon=True)
        self._after_commit: list[Callable[[list[Any]], None]] = []
        self._ready = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    async def run(self, job: Job) -> Any:
        """Runs ``job(conn)`` in the write transaction; returns its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((job, future, loop))
        return await future

    def run_sync(self, job: Job) -> Any:
        """For startup and CLI work outside an event loop."""
        done = threading.Event()
        box: list[Any] = []
        self._queue.put((job, (done, box), None))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def _run(self) -> None:
        conn = self._connect()
        self._ready.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._queue.put(_STOP)
                        break
                    group.append(item)
                self._commit_group(conn, group)
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[Any]) -> None:
        results: list[Any] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, _, _ in group:
                results.append(_run_job(conn, job))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("SQLite commit failed; %d writes are reported as failed", len(group))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            results = [exc] * len(group)
        for (_, target, loop), result in zip(group, results, strict=True):
            _deliver(target, loop, result)


def _run_job(conn: sqlite3.Connection, job: Job) -> Any:
    conn.execute("SAVEPOINT job")
    try:
        result = job(conn)
    except Exception as exc:  # reported to the caller of this job only
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return _Failure(exc)
    conn.execute("RELEASE job")
    return result


class _Failure:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _deliver(target: Any, loop: asyncio.AbstractEventLoop | None, result: Any) -> None:
    if isinstance(result, _Failure):
        result = result.exc
    if loop is None:
        done, box = target
        box.append(result)
        done.set()
        return
    loop.call_soon_threadsafe(_settle, target, result)


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
