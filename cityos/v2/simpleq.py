"""Orion's Simple Query Language (``q`` and ``mq``) as the NGSI-LD q AST.

FIWARE-NGSI v2, "Simple Query Language"::

    query     = statement *(";" statement)          ; all must hold (AND)
    statement = ["!"] path                          ; the target property exists (or not)
              / path op value
    op        = "==" / ":" / "!=" / ">" / ">=" / "<" / "<=" / "~="
    value     = item *("," item) / item ".." item   ; list (== any, != none) or range
    item      = 'quoted text' / true / false / number / date / text
    path      = token *("." token)                  ; 'a.b' quotes a token holding dots

In ``q`` the first token is the attribute and the rest are keys into its value; in ``mq``
the second token is a metadata name (``unitCode`` and ``observedAt`` are the attribute's
own members, ``dateCreated``/``dateModified`` its createdAt/modifiedAt) and the rest keys.
The result is the ``cityos.core.query.ast`` tree the store already runs (``q_to_sql``),
with every name expanded through the v2 @context. An unquoted string compared with ``==``
or ``!=`` also matches the same text as an NGSI-LD id (``refRoom==Room1`` finds the
Relationship to ``urn:ngsi-v2:Room1``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    QAnd,
    QComparison,
    QExists,
    QLiteral,
    QNode,
    QPattern,
    QRange,
    QValue,
    QValueList,
)
from cityos.errors import BadRequestData
from cityos.v2.names import Names

__all__ = ["and_all", "parse_simple_query"]

_OPERATORS = ("==", "!=", ">=", "<=", "~=", ">", "<", ":")
_OPS = {
    "==": CompareOp.EQUAL,
    ":": CompareOp.EQUAL,
    "!=": CompareOp.UNEQUAL,
    ">": CompareOp.GREATER,
    ">=": CompareOp.GREATER_EQ,
    "<": CompareOp.LESS,
    "<=": CompareOp.LESS_EQ,
}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$")
_MEMBERS = {
    "unitCode": "unitCode",
    "observedAt": "observedAt",
    "dateCreated": "createdAt",
    "dateModified": "modifiedAt",
}
_BUILTIN_ATTRS = frozenset({"dateCreated", "dateModified", "dateExpires"})


def _split(text: str, separator: str) -> Iterator[str]:
    """Splits on ``separator`` outside single quotes."""
    start, quoted = 0, False
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif char == separator and not quoted:
            yield text[start:i]
            start = i + 1
    if quoted:
        raise BadRequestData(f"Unbalanced quote in {text!r}")
    yield text[start:]


def _find_operator(statement: str) -> tuple[int, str] | None:
    quoted = False
    for i, char in enumerate(statement):
        if char == "'":
            quoted = not quoted
        elif not quoted:
            for op in _OPERATORS:
                if statement.startswith(op, i):
                    return i, op
    return None


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == "'" else token


def _tokens(path: str) -> list[str]:
    tokens = [_unquote(t) for t in _split(path, ".")]
    if not path or any(not t for t in tokens):
        raise BadRequestData(f"Invalid attribute path {path!r} in query")
    return tokens


def _literal(text: str) -> QLiteral:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return QLiteral(LiteralKind.STRING, text[1:-1])
    if text in ("true", "false"):
        return QLiteral(LiteralKind.BOOLEAN, text == "true")
    if _NUMBER.match(text):
        number = float(text)
        return QLiteral(LiteralKind.NUMBER, int(number) if number.is_integer() else number)
    if _DATE.match(text):
        return QLiteral(LiteralKind.DATE_TIME, text)
    if not text:
        raise BadRequestData("A query statement has an empty value")
    return QLiteral(LiteralKind.STRING, text)


def _with_ids(literal: QLiteral, names: Names) -> list[QLiteral]:
    if literal.kind is not LiteralKind.STRING or not isinstance(literal.value, str):
        return [literal]
    as_id = names.ids.to_ld(literal.value)
    return [literal] if as_id == literal.value else [literal, QLiteral(literal.kind, as_id)]


def _value(text: str, op: CompareOp, names: Names) -> QValue:
    items = list(_split(text, ","))
    if op not in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        if len(items) != 1:
            raise BadRequestData(f"Operator {op.value} takes one value, not {text!r}")
        return _literal(text)
    if len(items) == 1 and ".." in text and not text.startswith("'"):
        low, _, high = text.partition("..")
        return QRange(_literal(low), _literal(high))
    literals = [
        lit
        for item in items
        for lit in ([_literal(item)] if item.startswith("'") else _with_ids(_literal(item), names))
    ]
    return literals[0] if len(literals) == 1 else QValueList(tuple(literals))


def _path(tokens: list[str], names: Names, metadata: bool) -> AttrPath:
    if not metadata:
        if tokens[0] in _BUILTIN_ATTRS:
            raise BadRequestData(f"q on the builtin attribute {tokens[0]} is not supported")
        return AttrPath(names.expand(tokens[0]), keys=tuple(tokens[1:]))
    if len(tokens) < 2:
        raise BadRequestData(
            f"An mq path needs an attribute and a metadata name: {'.'.join(tokens)}"
        )
    attr, md, keys = names.expand(tokens[0]), tokens[1], tuple(tokens[2:])
    if md in _MEMBERS:
        if keys:
            raise BadRequestData(f"Metadata {md} has no keys to select")
        return AttrPath(attr, member=_MEMBERS[md])
    return AttrPath(attr, subattrs=(names.expand(md),), keys=keys)


def _statement(text: str, names: Names, metadata: bool) -> QNode:
    found = _find_operator(text)
    if found is None:
        negated = text.startswith("!")
        return QExists(_path(_tokens(text[1:] if negated else text), names, metadata), negated)
    at, op = found
    path = _path(_tokens(text[:at]), names, metadata)
    rest = text[at + len(op) :]
    if op == "~=":
        pattern = _unquote(rest)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadRequestData(f"Invalid regular expression {pattern!r}: {exc}") from None
        return QPattern(path, pattern)
    return QComparison(path, _OPS[op], _value(rest, _OPS[op], names))


def parse_simple_query(text: str, names: Names, metadata: bool = False) -> list[QNode]:
    """The statements of a ``q`` (or, with ``metadata``, ``mq``) expression."""
    statements = [s.strip() for s in _split(text, ";")]
    if not any(statements):
        raise BadRequestData("Empty query expression")
    return [_statement(s, names, metadata) for s in statements if s]


def and_all(nodes: list[QNode]) -> QNode | None:
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else QAnd(tuple(nodes))
