"""Tests of cityos/storage/sqlite/query_sql.py.

The key property: on a real SQLite file holding many varied stored Entities, the SQL of
every query selects exactly the Entities that the pure-Python evaluator
(``cityos.core.query.evaluate``) matches.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cityos.core.model import StoredEntity
from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    QAnd,
    QComparison,
    QExists,
    QLiteral,
    QNode,
    QOr,
    QPattern,
    QRange,
    QValueList,
    ScopeAnd,
    ScopeNode,
    ScopeOr,
    ScopeTerm,
    TypeAnd,
    TypeName,
    TypeNode,
    TypeOr,
)
from cityos.core.query.evaluate import match_attrs, match_q, match_scope, match_types
from cityos.core.query.projection import parse_attrs
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types
from cityos.errors import BadRequestData
from cityos.storage.sqlite.query_sql import (
    attrs_to_sql,
    index_statements,
    q_to_sql,
    register_functions,
    scope_to_sql,
    types_to_sql,
    value_expr,
)

SCHEMA = """
CREATE TABLE entities (
    rowid INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
    types TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (tenant, id));
CREATE TABLE entity_types (
    tenant TEXT NOT NULL, type TEXT NOT NULL, entity_rowid INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, entity_rowid)) WITHOUT ROWID;
"""

TERMS = {
    "num": "https://ex.org/num",
    "str": "https://ex.org/str",
    "arr": "https://ex.org/arr",
    "dt": "https://ex.org/dt",
    "comp": "https://ex.org/comp",
    "rel": "https://ex.org/rel",
    "quote": "https://ex.org/it's",  # a quote the SQL literal must double
    "uni": "https://ex.org/ünï",
    "sub": "https://ex.org/sub",
    "T1": "https://ex.org/T1",
    "T2": "https://ex.org/T2",
    "T3": "https://ex.org/T3",
}
ATTRS = ["num", "str", "arr", "dt", "comp", "rel", "quote", "uni"]
TENANT = "city"

DATE_TIMES = ["2020-01-01T00:00:00Z", "2020-06-01T00:00:00Z", "2021-06-01T12:00:00Z"]
SCALARS: list[Any] = [
    0, 1, 2, 2.5, -1, 10, 1.0, True, False, None, "a", "b", "red", "", "A", "it's", "ünï",
    *DATE_TIMES, "2020-01-01", "2021-01-01", "12:00:00", "urn:x:1", "urn:x:2",
]  # fmt: skip
SCOPES = ["/a", "/a/b", "/a/b/c", "/a/c", "/b", "/ab", "/a/bc"]


def expand(term: str) -> str:
    return TERMS.get(term, "https://ex.org/" + term)


def _value(r: random.Random, depth: int = 0) -> Any:
    roll = r.random()
    if roll < 0.55 or depth > 1:
        return r.choice(SCALARS)
    if roll < 0.7:
        return {"@type": "DateTime", "@value": r.choice(DATE_TIMES)}
    if roll < 0.85:
        return [_value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {"k": _value(r, depth + 1), "n": {"deep": r.choice(SCALARS)}}


def _instance(r: random.Random, term: str, nested: bool = True) -> dict[str, Any]:
    kind = "Relationship" if term == "rel" and r.random() < 0.8 else "Property"
    instance: dict[str, Any] = {"type": kind, "value": _value(r)}
    if r.random() < 0.3:
        instance["observedAt"] = r.choice(DATE_TIMES)
    if r.random() < 0.2:
        instance["unitCode"] = r.choice(["CEL", "KMH"])
    if nested and r.random() < 0.3:
        instance["attrs"] = {TERMS["sub"]: [_instance(r, "sub", nested=False)]}
    return instance


def _entity(r: random.Random, number: int) -> StoredEntity:
    attrs = {expand(t): [_instance(r, t)] for t in ATTRS if r.random() < 0.6}
    entity: StoredEntity = {
        "id": f"urn:ngsi-ld:Thing:{number}",
        "type": r.sample([TERMS["T1"], TERMS["T2"], TERMS["T3"]], r.randint(1, 2)),
        "attrs": attrs,
    }
    if r.random() < 0.7:
        entity["scope"] = r.sample(SCOPES, r.randint(1, 2))
    return entity


ENTITIES = [_entity(random.Random(seed), seed) for seed in range(400)]


def _insert(conn: sqlite3.Connection, tenant: str, entity: StoredEntity) -> None:
    doc = json.dumps(entity, ensure_ascii=False)  # raw non-ASCII, as orjson writes it
    cursor = conn.execute(
        "INSERT INTO entities (tenant, id, types, doc) VALUES (?, ?, ?, ?)",
        (tenant, entity["id"], json.dumps(entity["type"]), doc),
    )
    conn.executemany(
        "INSERT INTO entity_types VALUES (?, ?, ?)",
        [(tenant, t, cursor.lastrowid) for t in entity["type"]],
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(Path(tmp_path_factory.mktemp("query_sql")) / "entities.db")
    register_functions(conn)
    conn.executescript(SCHEMA)
    for entity in ENTITIES:
        _insert(conn, TENANT, entity)
        # Another tenant's Entities differ in type and must never be selected.
        _insert(conn, "other", {**entity, "type": [TERMS["T1"], TERMS["T2"], TERMS["T3"]]})
    conn.commit()
    yield conn
    conn.close()


def sql_ids(conn: sqlite3.Connection, fragment: tuple[str, list[Any]]) -> set[str]:
    sql = f"SELECT e.id FROM entities e WHERE e.tenant = ? AND {fragment[0]}"
    return {row[0] for row in conn.execute(sql, [TENANT, *fragment[1]])}


def assert_q_agrees(conn: sqlite3.Connection, node: QNode) -> None:
    expanded = expand_q(node, expand)
    expected = {e["id"] for e in ENTITIES if match_q(e, expanded)}
    assert sql_ids(conn, q_to_sql(expanded)) == expected, node.render()


# --- Agreement on a table of hand-written queries.

QUERIES = [
    "num", "!num", "num==1", "num==1.0", "num!=1", "num>1", "num>=1", "num<2.5", "num<=0",
    "num==0..2", "num!=0..2", "num==1,2,\"a\"", "num!=1,true", "num==true", "num!=false",
    'str=="a"', 'str!="a"', 'str>"A"', 'str=="a".."c"', 'str==""', "str~=^a", "str!~=^a",
    "str~=(?i)RED", "str~=ü", "str~='", "arr==1", "arr!=1", 'arr=="red"', "arr==0..2",
    "arr>1", "arr~=^r", "arr!~=^r", "arr==2020-01-01T00:00:00Z", "arr!=2020-01-01T00:00:00Z",
    "dt==2020-01-01T00:00:00Z", "dt!=2020-01-01T00:00:00Z", "dt>2020-03-01T00:00:00Z",
    "dt<=2020-06-01T00:00:00Z", "dt==2020-01-01T00:00:00Z..2020-12-31T00:00:00Z",
    "dt==2020-01-01", "dt>2020-01-01", "dt<12:00:01", "dt.observedAt>=2020-06-01T00:00:00Z",
    'comp[k]=="a"', "comp[k]==1", "comp[n.deep]>0", "comp[n][deep]==2021-01-01",
    "comp[k][n]", "comp[missing]", "!comp[k]", "comp[k]!=1", "comp[k]~=^r",
    "rel==urn:x:1", "rel!=urn:x:1", 'rel=="urn:x:2"', "rel>\"urn:x:1\"", "rel~=urn:x:\\d",
    "quote==1", "quote!=\"it's\"", "quote~=it's", "uni==\"ünï\"", "uni>=1",
    "num.sub", "num.sub==1", "str.sub!=\"a\"", "arr.sub[k]", "rel.sub>0", "dt.sub.observedAt",
    'num.unitCode=="CEL"', "num.observedAt", "!num.observedAt", "num.sub.unitCode",
    "(num>1|str==\"a\");arr", "num>1|str==\"a\";arr", "!num;!str|dt", "(num|str);(arr|dt)",
]  # fmt: skip


@pytest.mark.parametrize("text", QUERIES)
def test_sql_agrees_with_evaluator_on_known_queries(db: sqlite3.Connection, text: str) -> None:
    assert_q_agrees(db, parse_q(text))


def test_known_queries_select_something(db: sqlite3.Connection) -> None:
    # Guards the dataset: most queries select a proper, non-empty subset.
    sizes = [len(sql_ids(db, q_to_sql(expand_q(parse_q(t), expand)))) for t in QUERIES]
    assert sum(0 < size < len(ENTITIES) for size in sizes) > len(QUERIES) * 0.8


# --- Agreement on Hypothesis-generated queries over the same vocabulary.

K = LiteralKind
numbers = st.sampled_from([0, 1, 2, 2.5, -1, 10]).map(lambda n: QLiteral(K.NUMBER, n))
strings = st.sampled_from(["a", "b", "red", "", "A", "it's", "ünï", DATE_TIMES[0]]).map(
    lambda s: QLiteral(K.STRING, s)
)
temporals = (
    st.sampled_from(DATE_TIMES).map(lambda s: QLiteral(K.DATE_TIME, s))
    | st.sampled_from(["2020-01-01", "2021-01-01"]).map(lambda s: QLiteral(K.DATE, s))
    | st.sampled_from(["12:00:00", "06:00:00"]).map(lambda s: QLiteral(K.TIME, s))
)
comparables = numbers | strings | temporals
literals = (
    comparables
    | st.booleans().map(lambda b: QLiteral(K.BOOLEAN, b))
    | st.sampled_from(["urn:x:1", "urn:x:2"]).map(lambda u: QLiteral(K.URI, u))
)
ranges = comparables.flatmap(
    lambda low: comparables.filter(lambda high: high.kind is low.kind).map(
        lambda high: QRange(low, high)
    )
)
value_lists = st.lists(literals, min_size=2, max_size=3).map(lambda items: QValueList(tuple(items)))


@st.composite
def paths(draw: st.DrawFn) -> AttrPath:
    member = draw(st.sampled_from([None, None, None, "observedAt", "unitCode"]))
    keys = () if member else draw(st.sampled_from([(), (), ("k",), ("n", "deep"), ("k", "n")]))
    subattrs = draw(st.sampled_from([(), (), ("sub",)]))
    return AttrPath(draw(st.sampled_from(ATTRS)), subattrs, member, keys)


@st.composite
def comparisons(draw: st.DrawFn) -> QComparison:
    op = draw(st.sampled_from(list(CompareOp)))
    if op in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        return QComparison(draw(paths()), op, draw(literals | ranges | value_lists))
    return QComparison(draw(paths()), op, draw(comparables))


patterns = st.sampled_from(["^a", "r", "^$", "(?i)RED", "urn:x:\\d", "ü", "'", "^2020"])
q_terms = (
    comparisons()
    | st.builds(QExists, paths(), st.booleans())
    | st.builds(QPattern, paths(), patterns, st.booleans())
)
q_trees = st.recursive(
    q_terms,
    lambda inner: (
        st.builds(QAnd, st.lists(inner, min_size=2, max_size=3).map(tuple))
        | st.builds(QOr, st.lists(inner, min_size=2, max_size=3).map(tuple))
    ),
    max_leaves=5,
)
AGREEMENT = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@AGREEMENT
@given(q_trees)
def test_sql_agrees_with_evaluator_on_generated_q(db: sqlite3.Connection, node: QNode) -> None:
    assert_q_agrees(db, node)


scope_terms = st.builds(
    ScopeTerm,
    st.lists(st.sampled_from(["a", "b", "c", "bc", "+"]), min_size=0, max_size=3).map(tuple),
    st.booleans(),
).filter(lambda term: bool(term.levels) or term.descendants)
scope_trees = st.recursive(
    scope_terms,
    lambda inner: (
        st.builds(ScopeAnd, st.lists(inner, min_size=2, max_size=3).map(tuple))
        | st.builds(ScopeOr, st.lists(inner, min_size=2, max_size=3).map(tuple))
    ),
    max_leaves=4,
)


@AGREEMENT
@given(scope_trees)
def test_sql_agrees_with_evaluator_on_scope_q(db: sqlite3.Connection, node: ScopeNode) -> None:
    expected = {e["id"] for e in ENTITIES if match_scope(e, node)}
    assert sql_ids(db, scope_to_sql(node)) == expected, node.render()


type_trees = st.recursive(
    st.sampled_from(["T1", "T2", "T3", "T4"]).map(TypeName),
    lambda inner: (
        st.builds(TypeAnd, st.lists(inner, min_size=2, max_size=3).map(tuple))
        | st.builds(TypeOr, st.lists(inner, min_size=2, max_size=3).map(tuple))
    ),
    max_leaves=4,
)


@AGREEMENT
@given(type_trees)
def test_sql_agrees_with_evaluator_on_types(db: sqlite3.Connection, node: TypeNode) -> None:
    expanded = expand_types(node, expand)
    expected = {e["id"] for e in ENTITIES if match_types(e, expanded)}
    assert sql_ids(db, types_to_sql(expanded, TENANT)) == expected, node.render()


@pytest.mark.parametrize("text", ["/a", "/a/#", "/+/b", "/#", "(/a/#;/b),/ab"])
def test_scope_table(db: sqlite3.Connection, text: str) -> None:
    node = parse_scope_q(text)
    assert sql_ids(db, scope_to_sql(node)) == {e["id"] for e in ENTITIES if match_scope(e, node)}


@pytest.mark.parametrize("text", ["T1", "T1,T2", "T1|T3", "(T1;T2)", "(T1;T2)|T3", "T4"])
def test_types_table(db: sqlite3.Connection, text: str) -> None:
    node = expand_types(parse_types(text), expand)
    assert sql_ids(db, types_to_sql(node, TENANT)) == {
        e["id"] for e in ENTITIES if match_types(e, node)
    }


def test_plain_type_list_uses_the_entity_types_table() -> None:
    sql, params = types_to_sql(TypeOr((TypeName("urn:A"), TypeName("urn:B"))), TENANT)
    assert sql == (
        "e.rowid IN (SELECT entity_rowid FROM entity_types WHERE tenant = ? AND type IN (?, ?))"
    )
    assert params == [TENANT, "urn:A", "urn:B"]


@pytest.mark.parametrize("names", ["num", "num,str", "quote,uni", "nope"])
def test_attrs_agree(db: sqlite3.Connection, names: str) -> None:
    attrs = parse_attrs(",".join(expand(n) for n in names.split(",")))
    expected = {e["id"] for e in ENTITIES if match_attrs(e, attrs)}
    assert sql_ids(db, attrs_to_sql(attrs.names())) == expected


# --- SQL text, safety and query plans.


def test_value_expr_is_the_indexed_expression() -> None:
    assert value_expr(AttrPath("https://ex.org/t")) == (
        """json_extract(e.doc, '$.attrs."https://ex.org/t"[0].value')"""
    )
    assert (
        value_expr(AttrPath("urn:it's"))
        == """json_extract(e.doc, '$.attrs."urn:it''s"[0].value')"""
    )


@pytest.mark.parametrize("name", ['urn:a"b', "urn:a\\b", "urn:a\nb"])
def test_unsafe_names_are_rejected(name: str) -> None:
    with pytest.raises(BadRequestData, match="cannot be queried"):
        q_to_sql(QExists(AttrPath(name)))
    with pytest.raises(BadRequestData):
        index_statements(name)


def test_regexp_function_ignores_non_text() -> None:
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    rows = conn.execute(
        "SELECT regexp('^a', 'abc'), regexp('^a', 'b'), regexp('1', 1), regexp('a', NULL)"
    )
    assert rows.fetchone() == (1, 0, 0, 0)


def _plan(conn: sqlite3.Connection, text: str, iri: str) -> str:
    sql, params = q_to_sql(expand_q(parse_q(text), lambda _: iri))
    query = f"EXPLAIN QUERY PLAN SELECT e.id FROM entities e WHERE e.tenant = ? AND {sql}"
    return "\n".join(row[3] for row in conn.execute(query, [TENANT, *params]))


def test_equality_plans_as_multi_index_or(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plan.db")
    register_functions(conn)
    conn.executescript(SCHEMA)
    iri = TERMS["quote"]
    for number in range(300):
        value = [number % 7, "x"] if number % 10 == 0 else number % 50
        entity = {
            "id": f"urn:e:{number}",
            "type": [TERMS["T1"]],
            "attrs": {iri: [{"type": "Property", "value": value}]},
        }
        _insert(conn, TENANT, entity)
    for statement in index_statements(iri):
        conn.execute(statement)
    conn.execute("ANALYZE")
    value_index, array_index = (s.split()[5] for s in index_statements(iri))
    plan = _plan(conn, "a==3", iri)
    assert "MULTI-INDEX OR" in plan
    assert f"USING INDEX {value_index} (<expr>=?)" in plan
    assert f"USING INDEX {array_index} (<expr>=?)" in plan
    assert f"USING INDEX {value_index} (<expr>>?)" in _plan(conn, "a>3", iri)
    assert "MULTI-INDEX OR" in _plan(conn, "a==1,2", iri)
    # [3, "x"] for 10, 80, 150, 220, 290; 3 for 3, 53, 103, 153, 203, 253
    assert len(sql_ids(conn, q_to_sql(expand_q(parse_q("a==3"), lambda _: iri)))) == 11
