"""A PostgreSQL server and databases for the tests, shared by every conftest.

The server comes from, in this order:

1. ``CITYOS_TEST_POSTGRES_URL``, a ``postgresql://`` URL (any database on the server; the
   tests create their own beside it);
2. a server on ``postgresql://postgres@127.0.0.1:5432`` (trust auth, as on a dev box);
3. a throwaway cluster started here with ``initdb``/``pg_ctl`` from
   ``/usr/lib/postgresql/*/bin`` in a temporary directory (as the ``postgres`` user when
   the tests run as root, since PostgreSQL refuses to run as root).

When none of the three works, :func:`server` fails the test with every reason: tests
that need PostgreSQL are never skipped.

``CITYOS_TEST_STORE=postgres`` runs the API tests on PostgreSQL too (tests/conftest.py
and tests/api/helpers.py build their store with :func:`open_test_store`).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from cityos.config import Settings
from cityos.storage.postgres import PostgresStore
from cityos.storage.sqlite.store import SQLiteStore

STORE = os.environ.get("CITYOS_TEST_STORE", "sqlite")
# The database of this session when the API tests run on PostgreSQL (set by tests/conftest.py).
session_database: list[str] = []

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> str | None:
    """None when a connection works, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Cluster:
    """A throwaway PostgreSQL cluster in a temporary directory."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("no initdb under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="cityos-pg-"))
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            owner = pwd.getpwnam(self.user)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr or result.stdout}")

    def start(self) -> str:
        data = str(self.dir / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases on."""
    reasons = []
    for url in (os.environ.get("CITYOS_TEST_POSTGRES_URL"), LOCAL_URL):
        if url:
            reason = _reachable(url)
            if reason is None:
                yield url
                return
            reasons.append(f"{url}: {reason}")
    cluster = None
    try:
        cluster = _Cluster()
        url = cluster.start()
    except (RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        reasons.append(f"throwaway cluster: {exc}")
        pytest.fail(
            "PostgreSQL is needed and none could be used: "
            + "; ".join(reasons)
            + ". Set CITYOS_TEST_POSTGRES_URL or install PostgreSQL with PostGIS "
            "(apt-get install postgresql postgresql-postgis).",
            pytrace=False,
        )
    try:
        yield url
    finally:
        cluster.stop()


@contextlib.contextmanager
def database(server_url: str) -> Iterator[str]:
    """A database of its own on the server, dropped at the end."""
    name = f"cityos_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(server_url)._replace(path="/" + name).geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty(url: str) -> None:
    """Removes every row (the schema stays), so each test starts from nothing. Keys go on
    from where they were: no test may count on a first key."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            f'"{row[0]}"'
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename NOT IN ('schema_migrations', 'spatial_ref_sys')"
            )
        ]
        # DELETE, not TRUNCATE: on a few rows it is much faster, since TRUNCATE syncs
        # new files to disk for every table.
        if tables:
            conn.execute(b"; ".join(f"DELETE FROM {t}".encode() for t in tables))


def open_test_store(settings: Settings) -> Any:
    """The store the API tests use: SQLite in ``settings.data_dir``, or this session's
    PostgreSQL database with ``CITYOS_TEST_STORE=postgres``."""
    if STORE == "postgres":
        return PostgresStore(session_database[0], durable=settings.durable)
    return SQLiteStore(settings.sqlite_path, durable=settings.durable)
