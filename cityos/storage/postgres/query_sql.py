"""Translation of the query ASTs (``cityos.core.query``) to PostgreSQL 15 SQL over JSONB.

Every function returns ``(sql_fragment, params)`` for a WHERE clause over::

    entities e    key, tenant, id, types (text[] of type IRIs), doc (StoredEntity, jsonb)

Placeholders are psycopg's ``%s``. The semantics are those of
``cityos.core.query.evaluate`` (the contract suite checks both stores select the same
Entities). Rules that keep the SQL right and fast:

- A JSON path is a chain of ``->`` with SQL string literals (``e.doc -> 'attrs' -> '<IRI>'
  -> 0 -> 'value'``), never bound parameters, so that an expression index on the value
  of an attribute (``indexes.py``) matches the query's expression exactly.
- Values compare as jsonb with a kind guard (``jsonb_typeof``): jsonb orders numbers
  numerically and never raises, whatever the stored value is. Strings and DateTimes
  compare as text ``COLLATE "C"`` (code point order, as Python and SQLite do), whatever
  the database's collation.
- ``==`` on a plain literal adds a containment test, ``doc @> {...}``, which the GIN
  index ``entities_doc`` answers: it is implied by the exact test, so it only narrows.
- Patterns (``~=``, ``idPattern``) are PostgreSQL regular expressions (``~``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg.types.json import Jsonb

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

__all__ = [
    "attrs_to_sql",
    "literal",
    "q_to_sql",
    "scope_to_sql",
    "types_to_sql",
    "value_expr",
]

Params = list[Any]

_TEMPORAL = frozenset({LiteralKind.DATE_TIME, LiteralKind.DATE, LiteralKind.TIME})
_TEXT = frozenset({LiteralKind.STRING, LiteralKind.URI}) | _TEMPORAL
_JSON_KIND = {
    LiteralKind.NUMBER: "number",
    LiteralKind.STRING: "string",
    LiteralKind.URI: "string",
    LiteralKind.BOOLEAN: "boolean",
}


def literal(text: str) -> str:
    """An SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1),
    with ``%`` doubled for psycopg: every statement is run with a parameter sequence, even
    an empty one, so ``%%`` always reaches the server as ``%``."""
    return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def _steps(path: AttrPath, instance: bool = False) -> list[str]:
    """The ``->`` steps from ``e.doc`` to what ``path`` addresses (``target_value``)."""
    steps = ["'attrs'", literal(path.attr), "0"]
    for sub in path.subattrs:
        steps += ["'attrs'", literal(sub), "0"]
    if path.member:
        steps.append(literal(path.member))
    elif not instance or path.keys:
        steps.append("'value'")
        steps += [literal(key) for key in path.keys]
    return steps


def _expr(steps: list[str]) -> str:
    return "(e.doc -> " + " -> ".join(steps) + ")"


def value_expr(path: AttrPath) -> str:
    """The jsonb expression of the value ``path`` addresses (what value indexes hold)."""
    return _expr(_steps(path))


def q_to_sql(node: QNode) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities that match an expanded ``q`` AST."""
    params: Params = []
    return _q(node, params), params


def scope_to_sql(node: ScopeNode) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities that match a ``scopeQ`` AST."""
    params: Params = []
    return _scope(node, params), params


def types_to_sql(node: TypeNode) -> tuple[str, Params]:
    """The WHERE fragment selecting the Entities of an expanded type selection; a plain
    list of names is one ``&&`` on the GIN index of ``types``."""
    if isinstance(node, TypeOr) and all(isinstance(t, TypeName) for t in node.terms):
        return "e.types && %s::text[]", [[t.name for t in node.terms if isinstance(t, TypeName)]]
    params: Params = []
    return _types(node, params), params


def attrs_to_sql(names: Iterable[str]) -> tuple[str, Params]:
    """Entities holding any of the (expanded) attributes ``names`` (clause 5.7.2)."""
    return "(e.doc -> 'attrs') ?| %s::text[]", [sorted(names)]


def _join(op: str, parts: list[str]) -> str:
    return "(" + f" {op} ".join(parts) + ")"


def _q(node: QNode, params: Params) -> str:
    if isinstance(node, QAnd | QOr):
        op = "AND" if isinstance(node, QAnd) else "OR"
        return _join(op, [_q(term, params) for term in node.terms])
    if isinstance(node, QExists):
        target = _expr(_steps(node.path, instance=True))
        return f"({target} IS {'' if node.negated else 'NOT '}NULL)"
    if isinstance(node, QPattern):
        return _pattern(value_expr(node.path), node, params)
    return _comparison(node, params)


def _comparable(x: str, kind: LiteralKind) -> tuple[str, str]:
    """(guard, expression) of ``x`` compared with a literal of ``kind``: jsonb for numbers
    and booleans, text in code point order for strings, URIs and temporal literals (the
    ``@value`` of a typed literal for the latter)."""
    if kind in _TEMPORAL:
        x = f"COALESCE({x} -> '@value', {x})"
    if kind in _TEXT:
        return f"jsonb_typeof({x}) = 'string'", f"({x} #>> '{{}}') COLLATE \"C\""
    return f"jsonb_typeof({x}) = '{_JSON_KIND[kind]}'", x


def _bind(kind: LiteralKind, value: Any, params: Params) -> str:
    if kind in _TEXT:
        params.append(str(value))
        return '(%s::text COLLATE "C")'
    params.append(Jsonb(value))
    return "%s::jsonb"


def _equal(x: str, wanted: QValue, params: Params) -> str:
    if isinstance(wanted, QValueList):
        return _join("OR", [_equal(x, item, params) for item in wanted.items])
    if isinstance(wanted, QRange):
        guard, value = _comparable(x, wanted.low.kind)
        low = _bind(wanted.low.kind, wanted.low.value, params)
        high = _bind(wanted.high.kind, wanted.high.value, params)
        return f"({guard} AND {value} BETWEEN {low} AND {high})"
    guard, value = _comparable(x, wanted.kind)
    return f"({guard} AND {value} = {_bind(wanted.kind, wanted.value, params)})"


def _comparison(node: QComparison, params: Params) -> str:
    x = value_expr(node.path)
    if node.op in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        # Parameters are bound in the order their placeholders appear in the SQL.
        contained = _contained(node.path, node.value, params) if node.op is CompareOp.EQUAL else ""
        top = _equal(x, node.value, params)
        element = _equal("j.v", node.value, params)
        elements = f"jsonb_array_elements(CASE jsonb_typeof({x}) WHEN 'array' THEN {x} END)"
        equal = f"({top} OR EXISTS (SELECT 1 FROM {elements} j(v) WHERE {element}))"
        if node.op is CompareOp.UNEQUAL:
            return f"({x} IS NOT NULL AND NOT COALESCE({equal}, false))"
        return f"({contained} AND {equal})" if contained else equal
    literal_value = node.value
    assert isinstance(literal_value, QLiteral)  # order operators only take literals
    guard, value = _comparable(x, literal_value.kind)
    bound = _bind(literal_value.kind, literal_value.value, params)
    return f"({guard} AND {value} {node.op.value} {bound}{_not_relationship(node.path)})"


def _not_relationship(path: AttrPath) -> str:
    # Clause 4.9: a Relationship's object only meets == and !=.
    if path.member or path.keys:
        return ""
    kind = _expr(_steps(path, instance=True)) + " ->> 'type'"
    return f" AND COALESCE({kind}, '') NOT IN ('Relationship', 'ListRelationship')"


def _contained(path: AttrPath, wanted: QValue, params: Params) -> str:
    """``doc @> {attrs: {A: [{value: v}]}}`` (or ``[v]`` for an array value): true of
    every Entity the exact test keeps, and answered by the GIN index. Empty when the
    value is not a plain literal (ranges, DateTimes, which may be typed literals)."""
    items = wanted.items if isinstance(wanted, QValueList) else (wanted,)
    if not all(isinstance(i, QLiteral) and i.kind in _JSON_KIND for i in items):
        return ""
    shapes = []
    for item in items:
        assert isinstance(item, QLiteral)
        for value in (item.value, [item.value]):
            shapes.append("e.doc @> %s::jsonb")
            params.append(Jsonb(_document(path, value)))
    return _join("OR", shapes)


def _document(path: AttrPath, value: Any) -> dict[str, Any]:
    """The smallest document holding ``value`` where ``path`` points (any instance)."""
    node: Any = value
    if path.member:
        node = {path.member: node}
    else:
        for key in reversed(path.keys):
            node = {key: node}
        node = {"value": node}
    for name in reversed((path.attr, *path.subattrs)):
        node = {"attrs": {name: [node]}}
    result: dict[str, Any] = node
    return result


def _pattern(x: str, node: QPattern, params: Params) -> str:
    text = f"({x} #>> '{{}}')"
    strings = (
        f"SELECT 1 FROM jsonb_array_elements(CASE jsonb_typeof({x}) WHEN 'array' THEN {x} END) "
        "j(v) WHERE jsonb_typeof(j.v) = 'string'"
    )
    params += [node.pattern, node.pattern]
    if not node.negated:
        return (
            f"((jsonb_typeof({x}) = 'string' AND {text} ~ %s) OR "
            f"EXISTS ({strings} AND (j.v #>> '{{}}') ~ %s))"
        )
    return (
        f"((jsonb_typeof({x}) = 'string' AND NOT {text} ~ %s) OR "
        f"(EXISTS ({strings}) AND NOT EXISTS ({strings} AND (j.v #>> '{{}}') ~ %s)))"
    )


def _scope(node: ScopeNode, params: Params) -> str:
    if isinstance(node, ScopeAnd | ScopeOr):
        op = "AND" if isinstance(node, ScopeAnd) else "OR"
        return _join(op, [_scope(term, params) for term in node.terms])
    # lax $.scope[*] yields a scope kept as one string too, as match_scope reads it.
    each = (
        "EXISTS (SELECT 1 FROM jsonb_path_query(e.doc, 'lax $.scope[*]') s(v) "
        "WHERE jsonb_typeof(s.v) = 'string'"
    )
    return f"{each}{_scope_condition(node, params)})"


def _scope_condition(term: ScopeTerm, params: Params) -> str:
    if not term.levels:
        return ""
    scope = "(s.v #>> '{}')"
    if "+" in term.levels:
        # Levels are letters, digits and _ (the scopeQ grammar), so none needs escaping.
        parts = ["[^/]+" if level == "+" else level for level in term.levels]
        params.append("^/" + "/".join(parts) + ("(/.*)?" if term.descendants else "") + "$")
        return f" AND {scope} ~ %s"
    base = "/" + "/".join(term.levels)
    if term.descendants:
        params += [base, base + "/"]
        return f" AND ({scope} = %s OR starts_with({scope}, %s))"
    params.append(base)
    return f" AND {scope} = %s"


def _types(node: TypeNode, params: Params) -> str:
    if isinstance(node, TypeName):
        params.append([node.name])
        return "e.types @> %s::text[]"
    op = "AND" if isinstance(node, TypeAnd) else "OR"
    assert isinstance(node, TypeAnd | TypeOr)
    return _join(op, [_types(term, params) for term in node.terms])
