"""Parser of the NGSI-LD Query Language, ``q`` (ETSI GS CIM 009 V1.8.1, clause 4.9).

The grammar accepted here, a superset of the clause's ABNF::

    Query      = OrTerm
    OrTerm     = AndTerm *("|" AndTerm)        ; AND binds tighter than OR (clause 4.9)
    AndTerm    = Primary *(";" Primary)
    Primary    = "(" OrTerm ")" / QueryTerm    ; any depth, as in EXAMPLE 6
    QueryTerm  = ["!"] Attribute               ; existence; "!" is an Orion-LD extension
               / Attribute ("==" / "!=") (Value *("," Value) / Comparable ".." Comparable / URI)
               / Attribute (">" / ">=" / "<" / "<=") Comparable
               / Attribute ("~=" / "!~=") RegExp    ; quoted JSON string, or bare text
    Attribute  = Name *("." Name) *("[" Key *("." Key) "]")
    Comparable = Number / quotedStr / dateTime / date / time
    Value      = Comparable / true / false

A dotted name after the first is a sub-attribute, unless it is one of INSTANCE_MEMBERS
(``observedAt``, ``unitCode``, ...), which must come last. Any invalid text raises
``BadRequestData``; nothing else escapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import Any, Generic, TypeVar, cast

from cityos.core.query.ast import (
    INSTANCE_MEMBERS,
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
)
from cityos.errors import BadRequestData

__all__ = [
    "Cursor",
    "Logic",
    "check_regex",
    "expand_q",
    "parse_json_string",
    "parse_logical",
    "parse_q",
]

N = TypeVar("N")

MAX_DEPTH = 32
_INT64 = 2**63

_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})?", re.ASCII
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z?", re.ASCII)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", re.ASCII)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s;|),\"\\\x00-\x1f\x7f]+")
_OPERATORS = ("==", "!=", ">=", "<=", ">", "<", "!~=", "~=")  # longest first where shared
_TERM_END = ("", ";", "|", ")")
_KEY_PATH = re.compile(r"[\w\-@:]+(?:\.[\w\-@:]+)*")


class Cursor:
    """A position in query text, shared by the q, scopeQ, type and projection parsers."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what
        self.depth = 0
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error("it contains characters that are not valid Unicode") from None

    def error(self, message: str) -> BadRequestData:
        return BadRequestData(f"Invalid {self.what} at position {self.pos}: {message}")

    def peek(self, size: int = 1) -> str:
        return self.text[self.pos : self.pos + size]

    def eat(self, token: str) -> bool:
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str, message: str) -> None:
        if not self.eat(token):
            raise self.error(message)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        return found.group() if found else None

    def name(self, description: str) -> str:
        """A name per clause 4.6.2 (letter, then letters, digits or ``_``), optionally
        prefixed (``prefix:name``)."""
        start = self.pos
        self.word(description)
        if self.peek() == ":" and self.peek(2)[1:].isalpha():
            self.pos += 1
            self.word(description)
        return self.text[start : self.pos]

    def word(self, description: str) -> str:
        """A letter, then letters, digits or ``_`` (clause 4.9 ``AttrName``)."""
        start = self.pos
        if not self.peek().isalpha():
            raise self.error(f"expected {description}")
        self.pos += 1
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.pos += 1
        return self.text[start : self.pos]


@dataclass(frozen=True)
class Logic(Generic[N]):
    """How one language builds its terms, and its AND / OR node classes (each takes one
    ``terms`` tuple). Nested nodes of the same class are flattened into their parent."""

    atom: Callable[[Cursor], N]
    and_type: type[Any]
    or_type: type[Any]
    or_ops: str = "|"

    def combine(self, kind: type[Any], terms: list[N]) -> N:
        if len(terms) == 1:
            return terms[0]
        flat: list[N] = []
        for term in terms:
            flat.extend(term.terms if isinstance(term, kind) else (term,))
        return cast(N, kind(tuple(flat)))


def parse_logical(cursor: Cursor, logic: Logic[N]) -> N:
    """Parse the whole text: AND (``;``) binds tighter than OR, parentheses group."""
    node = _parse_or(cursor, logic)
    if not cursor.at_end():
        raise cursor.error(f"unexpected character {cursor.peek()!r}")
    return node


def _parse_or(cursor: Cursor, logic: Logic[N]) -> N:
    terms = [_parse_and(cursor, logic)]
    while cursor.peek() and cursor.peek() in logic.or_ops:
        cursor.pos += 1
        terms.append(_parse_and(cursor, logic))
    return logic.combine(logic.or_type, terms)


def _parse_and(cursor: Cursor, logic: Logic[N]) -> N:
    terms = [_parse_primary(cursor, logic)]
    while cursor.eat(";"):
        terms.append(_parse_primary(cursor, logic))
    return logic.combine(logic.and_type, terms)


def _parse_primary(cursor: Cursor, logic: Logic[N]) -> N:
    if not cursor.eat("("):
        return logic.atom(cursor)
    cursor.depth += 1
    if cursor.depth > MAX_DEPTH:
        raise cursor.error(f"parentheses are nested more than {MAX_DEPTH} deep")
    node = _parse_or(cursor, logic)
    cursor.expect(")", "expected ')'")
    cursor.depth -= 1
    return node


def parse_q(text: str) -> QNode:
    """Parse a ``q`` expression into its AST; attribute names stay as written."""
    return parse_logical(Cursor(text, "q expression"), _Q_LOGIC)


def expand_q(node: QNode, expand: Callable[[str], str]) -> QNode:
    """Map every attribute and sub-attribute name through ``expand`` (term to IRI).

    Member names (``observedAt``...) and compound keys are left alone (clause 4.9)."""
    if isinstance(node, QAnd | QOr):
        return type(node)(tuple(expand_q(term, expand) for term in node.terms))
    path = node.path
    expanded = replace(
        path, attr=expand(path.attr), subattrs=tuple(expand(s) for s in path.subattrs)
    )
    return replace(node, path=expanded)


def check_regex(pattern: str, cursor: Cursor) -> None:
    """Reject a pattern Python's ``re`` cannot compile, before any backend sees it."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise cursor.error(f"invalid regular expression ({exc})") from None


def _parse_term(cursor: Cursor) -> QNode:
    if cursor.eat("!"):
        path = _parse_path(cursor)
        _expect_term_end(cursor)
        return QExists(path, negated=True)
    path = _parse_path(cursor)
    if cursor.peek() in _TERM_END:
        return QExists(path)
    op = _parse_operator(cursor)
    if op in ("~=", "!~="):
        return QPattern(path, _parse_regex(cursor), negated=op == "!~=")
    node = QComparison(path, CompareOp(op), _parse_value(cursor, CompareOp(op)))
    _expect_term_end(cursor)
    return node


def _expect_term_end(cursor: Cursor) -> None:
    if cursor.peek() not in _TERM_END:
        raise cursor.error("expected ';', '|', ')' or the end of the expression")


def _parse_operator(cursor: Cursor) -> str:
    for op in _OPERATORS:
        if cursor.eat(op):
            return op
    raise cursor.error("expected an operator")


def _parse_path(cursor: Cursor) -> AttrPath:
    names = [cursor.name("an attribute name")]
    while cursor.eat("."):
        if len(names) > 1 and names[-1] in INSTANCE_MEMBERS:
            raise cursor.error(f"member {names[-1]} must end the attribute path")
        names.append(cursor.name("an attribute name after '.'"))
    member = names.pop() if len(names) > 1 and names[-1] in INSTANCE_MEMBERS else None
    keys: list[str] = []
    while cursor.eat("["):
        trail = cursor.match(_KEY_PATH)
        if trail is None:
            raise cursor.error("expected a compound value key")
        cursor.pos += len(trail)
        keys.extend(trail.split("."))
        cursor.expect("]", "expected ']'")
    if member and keys:
        raise cursor.error(f"member {member} has no compound value to address")
    return AttrPath(names[0], tuple(names[1:]), member, tuple(keys))


def _parse_value(cursor: Cursor, op: CompareOp) -> QValue:
    first = _parse_literal(cursor)
    if op not in (CompareOp.EQUAL, CompareOp.UNEQUAL):
        _require_comparable(cursor, first, f"operator {op.value}")
        return first
    if cursor.eat(".."):
        return _make_range(cursor, first, _parse_literal(cursor))
    if cursor.peek() != ",":
        return first
    items = [first]
    while cursor.eat(","):
        items.append(_parse_literal(cursor))
    return QValueList(tuple(items))


def _require_comparable(cursor: Cursor, literal: QLiteral, where: str) -> None:
    if literal.kind in (LiteralKind.BOOLEAN, LiteralKind.URI):
        raise cursor.error(f"{where} needs a number, a string, a date or a time")


def _make_range(cursor: Cursor, low: QLiteral, high: QLiteral) -> QRange:
    _require_comparable(cursor, low, "a range")
    _require_comparable(cursor, high, "a range")
    if low.kind is not high.kind:
        raise cursor.error("both ends of a range must be of the same kind")
    return QRange(low, high)


def _parse_literal(cursor: Cursor) -> QLiteral:
    if cursor.peek() == '"':
        return QLiteral(LiteralKind.STRING, parse_json_string(cursor))
    found = [(kind, token) for kind, pattern in _UNQUOTED if (token := cursor.match(pattern))]
    if not found:
        raise cursor.error("expected a value")
    # The first kind whose token ends where a value may end; else the caller reports
    # what follows the first token found.
    ended = [(kind, token) for kind, token in found if _value_ends(cursor, cursor.pos + len(token))]
    kind, token = (ended or found)[0]
    literal = QLiteral(kind, _convert(cursor, kind, token))
    cursor.pos += len(token)
    return literal


def _value_ends(cursor: Cursor, pos: int) -> bool:
    text = cursor.text
    return pos >= len(text) or text[pos] in ";|)," or text.startswith("..", pos)


def _convert(cursor: Cursor, kind: LiteralKind, token: str) -> str | int | float | bool:
    try:
        if kind is LiteralKind.NUMBER:
            return _to_number(token)
        _TEMPORAL_CHECKS.get(kind, str)(token)
    except ValueError as exc:
        raise cursor.error(f"invalid {kind.value} {token} ({exc})") from None
    return token == "true" if kind is LiteralKind.BOOLEAN else token


def _to_number(token: str) -> int | float:
    found = _NUMBER.fullmatch(token)
    if found and (found.group(1) or found.group(2)):
        number = float(token)
        if number in (float("inf"), float("-inf")):
            raise ValueError("out of range")
        return number
    value = int(token)
    if not -_INT64 <= value < _INT64:
        raise ValueError("out of range")
    return value


_UNQUOTED: tuple[tuple[LiteralKind, re.Pattern[str]], ...] = (
    (LiteralKind.DATE_TIME, _DATE_TIME),
    (LiteralKind.DATE, _DATE),
    (LiteralKind.TIME, _TIME),
    (LiteralKind.NUMBER, _NUMBER),
    (LiteralKind.BOOLEAN, re.compile("true|false")),
    (LiteralKind.URI, _URI),
)

_TEMPORAL_CHECKS: dict[LiteralKind, Callable[[str], object]] = {
    LiteralKind.DATE_TIME: datetime.fromisoformat,
    LiteralKind.DATE: date.fromisoformat,
    LiteralKind.TIME: time.fromisoformat,
}


def parse_json_string(cursor: Cursor) -> str:
    """A JSON string (RFC 8259, section 7) starting at the cursor's ``"``."""
    start = cursor.pos
    end = start + 1
    text = cursor.text
    while end < len(text) and text[end] != '"':
        end += 2 if text[end] == "\\" else 1
    if end >= len(text):
        raise cursor.error("the quoted string is not terminated")
    try:
        value = json.loads(text[start : end + 1])
        value.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as exc:
        raise cursor.error(f"invalid quoted string ({exc})") from None
    cursor.pos = end + 1
    return str(value)


def _parse_regex(cursor: Cursor) -> str:
    start = cursor.pos
    pattern = parse_json_string(cursor) if cursor.peek() == '"' else _scan_regex(cursor)
    if not pattern:
        raise cursor.error("expected a regular expression")
    end = cursor.pos
    cursor.pos = start
    check_regex(pattern, cursor)
    cursor.pos = end
    _expect_term_end(cursor)
    return pattern


def _scan_regex(cursor: Cursor) -> str:
    """A bare regex runs to the next ``;``, ``|`` or ``)`` outside its own groups and
    character classes; quote it to use those at its top level."""
    text, start = cursor.text, cursor.pos
    pos, depth, in_class = start, 0, False
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char in ";|)" and not depth:
            break
        pos += 1
    cursor.pos = min(pos, len(text))
    return text[start : cursor.pos]


_Q_LOGIC: Logic[QNode] = Logic(atom=_parse_term, and_type=QAnd, or_type=QOr)
