"""What only the PostgreSQL store has: its migrations, and where jsonb and PostgreSQL
regular expressions set limits SQLite does not have (docs/howto/postgresql.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cityos.cli import main
from cityos.core import changes
from cityos.core.query.ast import AttrPath, CompareOp, LiteralKind, QComparison, QLiteral
from cityos.errors import BadRequestData
from cityos.storage.base import EntityQuery, WriteOutcome
from cityos.storage.postgres import PostgresStore
from cityos.storage.postgres.migrate import migration_files
from cityos.storage.postgres.select import build_select


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    import postgres_server

    postgres_server.empty(postgres_url)
    opened = PostgresStore(postgres_url, durable=False)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def doc(entity_id: str, value: Any) -> dict[str, Any]:
    return {
        "id": entity_id,
        "type": ["https://ex.org/T"],
        "createdAt": "2026-01-01T00:00:00Z",
        "modifiedAt": "2026-01-01T00:00:00Z",
        "attrs": {"https://ex.org/v": [{"type": "Property", "value": value}]},
    }


def test_migrations_are_recorded_once_and_safe_to_rerun(postgres_url: str) -> None:
    for _ in range(2):  # `cityos migrate` twice; the store's own start applied them already
        result = CliRunner().invoke(main, ["migrate", "--database", postgres_url])
        assert result.exit_code == 0, result.output
        assert "schema is up to date" in result.output
        assert "postgresql://postgres@" in result.output
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
    assert rows == [(v, name) for v, name, _ in migration_files()]


async def test_a_value_jsonb_cannot_hold_refuses_that_change_alone(store: PostgresStore) -> None:
    outcomes = await store.write_many(
        "city",
        [
            ("urn:a", changes.create(doc("urn:a", "nul \x00 inside"))),
            ("urn:b", changes.create(doc("urn:b", "a literal \\u0000 is fine"))),
        ],
    )
    assert isinstance(outcomes[0], BadRequestData) and "U+0000" in outcomes[0].detail
    assert isinstance(outcomes[1], WriteOutcome)
    page = await store.query_entities(EntityQuery("city"))
    assert [e["id"] for e in page.entities] == ["urn:b"]


async def test_an_invalid_regular_expression_is_bad_request_data(store: PostgresStore) -> None:
    await store.write("city", "urn:a", changes.create(doc("urn:a", 1)))
    with pytest.raises(BadRequestData, match="regular expression"):
        await store.query_entities(EntityQuery("city", id_pattern="(unclosed"))


def test_check_config_never_prints_the_password() -> None:
    url = "postgresql://cityos:s3cret@db.example.org:5432/cityos"
    result = CliRunner().invoke(main, ["check-config"], env={"CITYOS_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "database_url = postgresql://cityos:***@db.example.org:5432/cityos" in result.output
    assert "s3cret" not in result.output


async def test_q_builds_expression_indexes_the_planner_uses(
    store: PostgresStore, postgres_url: str
) -> None:
    await store.write_many(
        "city", [(f"urn:{n}", changes.create(doc(f"urn:{n}", n))) for n in range(300)]
    )
    query = EntityQuery(
        "city",
        q=QComparison(
            AttrPath("https://ex.org/v"), CompareOp.GREATER, QLiteral(LiteralKind.NUMBER, 295)
        ),
    )
    assert [e["id"] for e in (await store.query_entities(query)).entities] == [
        f"urn:{n}" for n in range(296, 300)
    ]
    await store.indexer.wait()
    assert store.indexer.indexed == {"https://ex.org/v"}
    select = build_select(query)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("ANALYZE entities")
        conn.execute("SET enable_seqscan = off")  # 300 rows: make the choice visible
        plan = conn.execute("EXPLAIN " + select.page(), [*select.params, 20, 0]).fetchall()
    assert "ix_attr_" in "\n".join(row[0] for row in plan)
