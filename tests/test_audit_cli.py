"""``cityos audit verify`` and ``cityos audit export`` on a real SQLite data directory,
written through the store, then tampered with directly in the database file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from cityos.cli import main
from cityos.core.audit import doc_to_record, verify
from cityos.storage.base import AuditEntry
from cityos.storage.sqlite.store import SQLiteStore

NOW = "2026-01-01T00:00:00.000000Z"


def event(n: int) -> AuditEntry:
    return AuditEntry(
        at=NOW,
        action="personal.read" if n % 3 else "consent.grant",
        actor=f"apikey:k{n}",
        tenant="takamatsu" if n <= 5 else "kagawa",
        target=f"urn:ngsi-ld:ChildTag:{n}",
        person=f"urn:ngsi-ld:Person:child{n % 2}",
        detail={"n": n},
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory whose audit log holds 8 records: 5 appended, 3 with documents."""

    async def prepare() -> None:
        store = SQLiteStore(tmp_path / "cityos.db", durable=False)
        await store.open()
        try:
            await store.audit_append([event(n) for n in range(1, 6)])
            for n in range(6, 9):
                await store.trust_put("consent", "kagawa", f"c{n}", {"n": n}, audit=[event(n)])
        finally:
            await store.close()

    asyncio.run(prepare())
    return tmp_path


def cityos(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tamper(data_dir: Path, sql: str) -> None:
    with closing(sqlite3.connect(data_dir / "cityos.db")) as conn, conn:
        conn.execute(sql)


def test_verify_an_intact_log(data_dir: Path) -> None:
    result = cityos("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    head = _head(data_dir)
    assert result.stdout == f"audit log intact: 8 records, head {head}\n"


def test_verify_an_empty_log(tmp_path: Path) -> None:
    result = cityos("audit", "verify", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == f"audit log intact: 0 records, head {'0' * 64}\n"


def test_verify_names_an_edited_record(data_dir: Path) -> None:
    tamper(data_dir, "UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 4")
    result = cityos("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "seq 4: record was edited (its hash does not match)" in result.stdout
    assert "audit log intact" not in result.stdout
    assert "NOT intact: 1 problems in 8 records" in result.stderr


def test_verify_names_a_deleted_middle_record(data_dir: Path) -> None:
    tamper(data_dir, "DELETE FROM audit_log WHERE seq = 3")
    result = cityos("audit", "verify", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert result.stdout == "seq 4: seq 3 missing before it\n"


def test_a_truncated_end_needs_the_kept_head(data_dir: Path) -> None:
    head = _head(data_dir)  # what the auditor kept from the last verify
    tamper(data_dir, "DELETE FROM audit_log WHERE seq >= 7")
    assert cityos("audit", "verify", "--data-dir", str(data_dir)).exit_code == 0  # alone: valid
    result = cityos("audit", "verify", "--expect-head", head, "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"seq 7: expected head {head} is not in the log")


def test_the_kept_head_still_verifies_once_the_log_grew(data_dir: Path) -> None:
    head = _head(data_dir)

    async def grow() -> None:
        store = SQLiteStore(data_dir / "cityos.db", durable=False)
        await store.open()
        await store.audit_append([event(9), event(10)])
        await store.close()

    asyncio.run(grow())
    result = cityos("audit", "verify", "--expect-head", head, "--data-dir", str(data_dir))
    assert result.exit_code == 0
    assert result.stdout.startswith("audit log intact: 10 records")


def test_export_to_stdout_is_a_verifiable_chain(data_dir: Path) -> None:
    result = cityos("audit", "export", "--data-dir", str(data_dir))
    assert result.exit_code == 0
    lines = result.stdout_bytes.splitlines()
    records = [doc_to_record(orjson.loads(line)) for line in lines]
    assert [r.seq for r in records] == list(range(1, 9))
    assert records[7].entry == event(8)
    assert verify(records).ok


def test_export_filters_to_a_file(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "child1.jsonl"
    result = cityos(
        "audit", "export", "--person", "urn:ngsi-ld:Person:child1", "--tenant", "takamatsu",
        "--after", "1", "--output", str(out), "--data-dir", str(data_dir),
    )  # fmt: skip
    assert result.exit_code == 0 and result.stdout == ""
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [d["seq"] for d in docs] == [3, 5]
    assert {d["person"] for d in docs} == {"urn:ngsi-ld:Person:child1"}
    assert set(docs[0]) >= {"seq", "prev", "hash", "detail", "action", "actor", "at"}


def test_verify_as_a_subprocess(data_dir: Path) -> None:
    """The installed command, as an auditor runs it (exit codes, no test runner between)."""
    command = [sys.executable, "-m", "cityos", "audit", "verify", "--data-dir", str(data_dir)]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("audit log intact: 8 records")
    tamper(data_dir, "UPDATE audit_log SET actor = 'apikey:someone-else' WHERE seq = 6")
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert "seq 6: record was edited" in bad.stdout


def _head(data_dir: Path) -> str:
    with closing(sqlite3.connect(data_dir / "cityos.db")) as conn:
        head: str = conn.execute("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()[
            0
        ]
    return head
