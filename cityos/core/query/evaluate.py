"""Pure-Python matching of a stored Entity against the query ASTs.

Subscriptions use this to test one Entity; each storage backend translates the same
ASTs to its own SQL (``cityos.storage.sqlite.query_sql``), and a test checks that both
select the same Entities. Names in the ASTs must already be expanded to IRIs.

Semantics (GS CIM 009 V1.8.1, clause 4.9), shared with the SQL translation:

- The target of ``A.S[k]`` is ``attrs[A][0].attrs[S][0].value[k]``: the default (first)
  instance of each attribute. ``A.observedAt`` is a member of the instance.
- Kinds only meet their own kind: a number literal matches numbers, a string or URI
  literal strings, ``true``/``false`` booleans. Date, time and DateTime literals compare
  as strings with a string or with the ``@value`` of a typed literal.
- ``==`` (a value, a list or a range) also matches when any element of an array target
  matches. ``!=`` is ``==`` negated, for a target that exists: ``color!="red"`` matches
  ``"blue"``, ``5`` and ``["blue"]``, not ``["blue", "red"]`` nor a missing attribute.
- ``>``, ``>=``, ``<``, ``<=`` never match arrays, nor the object of a Relationship
  (clause 4.9 allows it only ``==`` and ``!=``; patterns on it are kept as an extension).
- ``~=`` is ``re.search`` on a string, or on any string element of an array; ``!~=``
  matches a string that does not match, or an array holding strings none of which
  match. Non-strings never match either.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from cityos.core.model import RELATIONSHIP_TYPES, StoredEntity
from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    Projection,
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
)
from cityos.core.query.orderby import OrderKey
from cityos.core.query.scope import scope_term_regex

__all__ = [
    "match_attrs",
    "match_q",
    "match_scope",
    "match_types",
    "sort_entities",
    "target_value",
]

_MISSING: Any = object()
_TEMPORAL_KINDS = frozenset({LiteralKind.DATE_TIME, LiteralKind.DATE, LiteralKind.TIME})

_ORDER: dict[CompareOp, Callable[[Any, Any], bool]] = {
    CompareOp.GREATER: lambda a, b: a > b,
    CompareOp.GREATER_EQ: lambda a, b: a >= b,
    CompareOp.LESS: lambda a, b: a < b,
    CompareOp.LESS_EQ: lambda a, b: a <= b,
}


def match_q(entity: StoredEntity, node: QNode) -> bool:
    """Does ``entity`` satisfy the (expanded) ``q`` AST?"""
    if isinstance(node, QAnd):
        return all(match_q(entity, term) for term in node.terms)
    if isinstance(node, QOr):
        return any(match_q(entity, term) for term in node.terms)
    if isinstance(node, QExists):
        found = target_value(entity, node.path, instance=True) is not _MISSING
        return found != node.negated
    if isinstance(node, QPattern):
        return _match_pattern(target_value(entity, node.path), node)
    return _match_comparison(entity, node)


def match_scope(entity: StoredEntity, node: ScopeNode) -> bool:
    """Does ``entity`` satisfy the ``scopeQ`` AST (clause 4.19)?"""
    if isinstance(node, ScopeAnd):
        return all(match_scope(entity, term) for term in node.terms)
    if isinstance(node, ScopeOr):
        return any(match_scope(entity, term) for term in node.terms)
    scopes = entity.get("scope")
    scopes = [scopes] if isinstance(scopes, str) else scopes if isinstance(scopes, list) else []
    return any(_scope_matches(node, s) for s in scopes if isinstance(s, str))


def match_types(entity: StoredEntity, node: TypeNode) -> bool:
    """Does ``entity`` satisfy the (expanded) type selection (clause 4.17)?"""
    if isinstance(node, TypeName):
        types = entity.get("type")
        return node.name in ([types] if isinstance(types, str) else types or [])
    check = all if isinstance(node, TypeAnd) else any
    return check(match_types(entity, term) for term in node.terms)


def match_attrs(entity: StoredEntity, attrs: Projection) -> bool:
    """Does ``entity`` hold any of the (expanded) attributes listed by ``attrs``?"""
    held = entity.get("attrs")
    return isinstance(held, dict) and any(name in held for name in attrs.names())


def target_value(entity: StoredEntity, path: AttrPath, instance: bool = False) -> Any:
    """What ``path`` addresses in ``entity``, or a private sentinel when nothing is there.

    With ``instance`` and a plain ``A.S`` path, the attribute instance itself (for the
    existence test); otherwise its value, member or compound-value item."""
    node = _first(_get(_get(entity, "attrs"), path.attr))
    for sub in path.subattrs:
        node = _first(_get(_get(node, "attrs"), sub))
    if path.member:
        return _get(node, path.member)
    if instance and not path.keys:
        return node
    node = _get(node, "value")
    for key in path.keys:
        node = _get(node, key)
    return node


def sort_entities(entities: list[StoredEntity], keys: Sequence[OrderKey]) -> list[StoredEntity]:
    """orderBy (clause 4.23) in Python, with the SQL translation's rules: Entities without
    the key last in both directions; numbers before strings before other values."""
    ordered = list(entities)
    for key in reversed(keys):

        def value(entity: StoredEntity, key: OrderKey = key) -> Any:
            if key.member == "type":
                return entity["type"][0] if entity.get("type") else _MISSING
            if key.member is not None:
                return entity.get(key.member, _MISSING)
            assert key.path is not None
            return target_value(entity, key.path)

        present = [e for e in ordered if value(e) is not _MISSING and value(e) is not None]
        missing = [e for e in ordered if value(e) is _MISSING or value(e) is None]
        present.sort(key=lambda e: _rank(value(e)), reverse=key.descending)
        ordered = present + missing
    return ordered


def _rank(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (2, int(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, repr(value))


def _get(node: Any, key: str) -> Any:
    return node[key] if isinstance(node, dict) and key in node else _MISSING


def _first(node: Any) -> Any:
    return node[0] if isinstance(node, list) and node else _MISSING


def _comparable(value: Any, kind: LiteralKind) -> Any:
    """``value`` if it is of the literal's kind (a typed literal's ``@value`` for dates)."""
    if kind in _TEMPORAL_KINDS:
        if isinstance(value, dict):
            value = value.get("@value")
        return value if isinstance(value, str) else _MISSING
    if kind is LiteralKind.NUMBER:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind is LiteralKind.BOOLEAN:
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    return value if ok else _MISSING


def _equals(value: Any, wanted: QLiteral | QRange | QValueList) -> bool:
    if isinstance(wanted, QValueList):
        return any(_equals(value, item) for item in wanted.items)
    if isinstance(wanted, QRange):
        found = _comparable(value, wanted.low.kind)
        return found is not _MISSING and wanted.low.value <= found <= wanted.high.value
    found = _comparable(value, wanted.kind)
    return found is not _MISSING and found == wanted.value


def _match_comparison(entity: StoredEntity, node: QComparison) -> bool:
    value = target_value(entity, node.path)
    if value is _MISSING:
        return False
    if node.op in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        equal = _equals(value, node.value) or (
            isinstance(value, list) and any(_equals(item, node.value) for item in value)
        )
        return equal == (node.op is CompareOp.EQUAL)
    literal = node.value
    assert isinstance(literal, QLiteral)  # the parser only gives order operators literals
    if _is_relationship(entity, node.path):
        return False
    found = _comparable(value, literal.kind)
    return found is not _MISSING and _ORDER[node.op](found, literal.value)


def _is_relationship(entity: StoredEntity, path: AttrPath) -> bool:
    # Clause 4.9: a Relationship's object only meets == and !=.
    if path.member or path.keys:
        return False
    kind = _get(target_value(entity, path, instance=True), "type")
    return isinstance(kind, str) and kind in RELATIONSHIP_TYPES


def _match_pattern(value: Any, node: QPattern) -> bool:
    regex = _compiled(node.pattern)
    if isinstance(value, str):
        return (regex.search(value) is not None) != node.negated
    if not isinstance(value, list):
        return False
    strings = [item for item in value if isinstance(item, str)]
    hit = any(regex.search(item) is not None for item in strings)
    return not hit and bool(strings) if node.negated else hit


def _scope_matches(term: ScopeTerm, scope: str) -> bool:
    if not term.levels:
        return True
    if "+" in term.levels:
        return _compiled(scope_term_regex(term)).search(scope) is not None
    base = "/" + "/".join(term.levels)
    return scope == base or (term.descendants and scope.startswith(base + "/"))


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
