"""Translation of the query ASTs (``cityos.core.query``) to SQLite 3.40 SQL.

Every function returns ``(sql_fragment, params)`` for a WHERE clause over::

    entities e       rowid, tenant, id, types (JSON array of type IRIs), doc (StoredEntity JSON)
    entity_types     (tenant, type, entity_rowid), PRIMARY KEY (tenant, type, entity_rowid)

The semantics are those of ``cityos.core.query.evaluate`` (a test checks both select the
same Entities). Two rules keep the SQL fast:

- JSON paths are SQL literals, never bound parameters, so that the expression indexes of
  ``index_statements`` match: the value of attribute A is exactly
  ``json_extract(e.doc, '$.attrs."<IRI>"[0].value')``.
- ``==`` on a value that may be an array is written
  ``(<expr> = ? ... OR (json_type(e.doc, <path>) = 'array' AND EXISTS (... json_each ...)))``
  which, with both indexes, SQLite plans as a MULTI-INDEX OR. A kind guard such as
  ``json_type(...) IN ('integer', 'real')`` is an extra AND term, which the planner
  applies after the index lookup.

The stored JSON must keep non-ASCII characters unescaped (orjson's default): SQLite
matches a path label against the raw key text.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sqlite3
from collections.abc import Iterable
from typing import Any

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
    QValue,
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
from cityos.core.query.scope import scope_term_regex
from cityos.core.query.typeexpr import type_names
from cityos.errors import BadRequestData

__all__ = [
    "attrs_to_sql",
    "index_statements",
    "json_path",
    "q_to_sql",
    "register_functions",
    "scope_to_sql",
    "types_to_sql",
    "value_expr",
]

Params = list[Any]

_TEMPORAL = frozenset({LiteralKind.DATE_TIME, LiteralKind.DATE, LiteralKind.TIME})
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')
_NUMERIC = "IN ('integer', 'real')"
_KIND_TYPES = {
    LiteralKind.NUMBER: _NUMERIC,
    LiteralKind.STRING: "= 'text'",
    LiteralKind.URI: "= 'text'",
    LiteralKind.BOOLEAN: "IN ('true', 'false')",
}
_ELEMENT_TEMPORAL = (
    "CASE j.type WHEN 'text' THEN j.value WHEN 'object' THEN "
    "CASE json_type(j.value, '$.\"@value\"') WHEN 'text' "
    "THEN json_extract(j.value, '$.\"@value\"') END END"
)


def json_path(path: AttrPath, instance: bool = False) -> str:
    """The JSON path of what ``path`` addresses in a StoredEntity (see
    ``evaluate.target_value``); raises ``BadRequestData`` for an unusable name."""
    parts = ["$.attrs", _label(path.attr), "[0]"]
    for sub in path.subattrs:
        parts += [".attrs", _label(sub), "[0]"]
    if path.member:
        parts.append(_label(path.member))
    elif not instance or path.keys:
        parts.append(".value")
        parts += [_label(key) for key in path.keys]
    return "".join(parts)


def value_expr(path: AttrPath) -> str:
    """``json_extract(e.doc, '<path>')``: the expression the value index is built on."""
    return f"json_extract(e.doc, {_literal(json_path(path))})"


def index_statements(attr_iri: str) -> list[str]:
    """What an auto-indexer runs for an attribute: an index on its value and a partial
    index on its JSON type where it is an array (for the array form of ``==``)."""
    path = _literal(json_path(AttrPath(attr_iri)))
    name = "ix_attr_" + hashlib.sha1(attr_iri.encode()).hexdigest()[:16]
    array = f"json_type(doc, {path})"
    return [
        f"CREATE INDEX IF NOT EXISTS {name}_value ON entities(json_extract(doc, {path}))",
        f"CREATE INDEX IF NOT EXISTS {name}_array ON entities({array}) WHERE {array} = 'array'",
    ]


def q_to_sql(node: QNode) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities that match an expanded ``q`` AST."""
    params: Params = []
    return _q(node, params), params


def scope_to_sql(node: ScopeNode) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities that match a ``scopeQ`` AST."""
    params: Params = []
    return _scope(node, params), params


def types_to_sql(node: TypeNode, tenant: str) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities of an expanded type selection."""
    names = type_names(node)
    if names is not None:
        marks = ", ".join("?" * len(names))
        sql = (
            "e.rowid IN (SELECT entity_rowid FROM entity_types "
            f"WHERE tenant = ? AND type IN ({marks}))"
        )
        return sql, [tenant, *names]
    params: Params = []
    return _types(node, tenant, params), params


def attrs_to_sql(names: Iterable[str]) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities holding any of the (expanded) attributes
    ``names`` (clause 5.7.2: with ``attrs``, only such Entities match)."""
    held = [
        f"json_type(e.doc, {_literal('$.attrs' + _label(name))}) IS NOT NULL"
        for name in sorted(names)
    ]
    return "(" + " OR ".join(held) + ")", []


def register_functions(conn: sqlite3.Connection) -> None:
    """Install ``regexp(pattern, value)`` (Python ``re.search``) on a connection."""
    conn.create_function("regexp", 2, _regexp, deterministic=True)


def _regexp(pattern: Any, value: Any) -> int:
    if not isinstance(pattern, str) or not isinstance(value, str):
        return 0
    return 1 if _compiled(pattern).search(value) else 0


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _label(name: str) -> str:
    # A quoted label has no escapes in SQLite's JSON paths, and JSON escapes these
    # characters in keys, so a name holding one could never match; refuse it.
    if _UNSAFE.search(name):
        raise BadRequestData(
            f"Attribute name {name!r} cannot be queried: it contains a quote, a backslash or a control character"
        )
    return f'."{name}"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _join(op: str, parts: list[str]) -> str:
    return "(" + f" {op} ".join(parts) + ")"


def _q(node: QNode, params: Params) -> str:
    if isinstance(node, QAnd | QOr):
        op = "AND" if isinstance(node, QAnd) else "OR"
        return _join(op, [_q(term, params) for term in node.terms])
    if isinstance(node, QExists):
        path = _literal(json_path(node.path, instance=True))
        return f"json_type(e.doc, {path}) IS {'' if node.negated else 'NOT '}NULL"
    target = _Target(json_path(node.path))
    if isinstance(node, QPattern):
        return _pattern(target, node, params)
    return _comparison(target, node, params)


class _Target:
    """The SQL expressions of one JSON path of ``e.doc``, or of a ``json_each`` element."""

    def __init__(self, path: str | None) -> None:
        self.path = _literal(path) if path is not None else ""
        self.at_value = _literal(path + '."@value"') if path is not None else ""
        self.x = f"json_extract(e.doc, {self.path})" if path is not None else "j.value"
        self.t = f"json_type(e.doc, {self.path})" if path is not None else "j.type"

    def value(self, kind: LiteralKind) -> str:
        if kind not in _TEMPORAL:
            return self.x
        if self.path:
            return f"COALESCE(json_extract(e.doc, {self.at_value}), {self.x})"
        return _ELEMENT_TEMPORAL

    def guard(self, kind: LiteralKind) -> str:
        if kind not in _TEMPORAL:
            return f"{self.t} {_KIND_TYPES[kind]}"
        if self.path:
            return f"({self.t} = 'text' OR json_type(e.doc, {self.at_value}) = 'text')"
        return "j.type IN ('text', 'object')"

    def each(self) -> str:
        return f"SELECT 1 FROM json_each(e.doc, {self.path}) j WHERE"


_ELEMENT = _Target(None)


def _equal(side: _Target, wanted: QValue, params: Params) -> str:
    if isinstance(wanted, QValueList):
        return _join("OR", [_equal(side, item, params) for item in wanted.items])
    if isinstance(wanted, QRange):
        kind = wanted.low.kind
        params += [wanted.low.value, wanted.high.value]
        return f"({side.value(kind)} BETWEEN ? AND ? AND {side.guard(kind)})"
    params.append(wanted.value)
    if _needs_no_guard(wanted):
        return f"({side.value(wanted.kind)} = ?)"
    return f"({side.value(wanted.kind)} = ? AND {side.guard(wanted.kind)})"


def _needs_no_guard(wanted: QLiteral) -> bool:
    """A string literal can only equal a JSON string: json_extract returns other JSON values
    as numbers or NULL, and arrays/objects as JSON text starting with [ or {. Leaving the
    type guard out spares a second parse of the document per candidate row."""
    return (
        wanted.kind in (LiteralKind.STRING, LiteralKind.URI)
        and isinstance(wanted.value, str)
        and not wanted.value.startswith(("[", "{"))
    )


def _comparison(target: _Target, node: QComparison, params: Params) -> str:
    if node.op in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        top = _equal(target, node.value, params)
        element = _equal(_ELEMENT, node.value, params)
        equal = f"({top} OR ({target.t} = 'array' AND EXISTS ({target.each()} {element})))"
        if node.op is CompareOp.EQUAL:
            return equal
        return f"({target.t} IS NOT NULL AND NOT IFNULL({equal}, 0))"
    literal = node.value
    assert isinstance(literal, QLiteral)  # the parser only gives order operators literals
    params.append(literal.value)
    sql = f"({target.value(literal.kind)} {node.op.value} ? AND {target.guard(literal.kind)}"
    return sql + _not_relationship(node.path) + ")"


def _not_relationship(path: AttrPath) -> str:
    # Clause 4.9: a Relationship's object only meets == and !=.
    if path.member or path.keys:
        return ""
    kind = _literal(json_path(path, instance=True) + '."type"')
    return (
        f" AND IFNULL(json_extract(e.doc, {kind}), '') NOT IN ('Relationship', 'ListRelationship')"
    )


def _pattern(target: _Target, node: QPattern, params: Params) -> str:
    strings = f"{target.each()} j.type = 'text'"
    if not node.negated:
        params += [node.pattern, node.pattern]
        return (
            f"(({target.t} = 'text' AND regexp(?, {target.x})) OR ({target.t} = 'array' "
            f"AND EXISTS ({strings} AND regexp(?, j.value))))"
        )
    params += [node.pattern, node.pattern]
    return (
        f"(({target.t} = 'text' AND NOT regexp(?, {target.x})) OR ({target.t} = 'array' "
        f"AND EXISTS ({strings}) AND NOT EXISTS ({strings} AND regexp(?, j.value))))"
    )


def _scope(node: ScopeNode, params: Params) -> str:
    if isinstance(node, ScopeAnd | ScopeOr):
        op = "AND" if isinstance(node, ScopeAnd) else "OR"
        return _join(op, [_scope(term, params) for term in node.terms])
    each = "EXISTS (SELECT 1 FROM json_each(e.doc, '$.scope') s WHERE s.type = 'text'"
    return f"{each}{_scope_condition(node, params)})"


def _scope_condition(term: ScopeTerm, params: Params) -> str:
    if not term.levels:
        return ""
    if "+" in term.levels:
        params.append(scope_term_regex(term))
        return " AND regexp(?, s.value)"
    base = "/" + "/".join(term.levels)
    if term.descendants:
        params += [base, base + "/*"]
        return " AND (s.value = ? OR s.value GLOB ?)"
    params.append(base)
    return " AND s.value = ?"


def _types(node: TypeNode, tenant: str, params: Params) -> str:
    if isinstance(node, TypeName):
        params += [tenant, node.name]
        return (
            "EXISTS (SELECT 1 FROM entity_types t WHERE t.tenant = ? AND t.type = ? "
            "AND t.entity_rowid = e.rowid)"
        )
    op = "AND" if isinstance(node, TypeAnd) else "OR"
    assert isinstance(node, TypeAnd | TypeOr)
    return _join(op, [_types(term, tenant, params) for term in node.terms])
