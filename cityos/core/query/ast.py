"""Abstract syntax trees of the NGSI-LD query languages (ETSI GS CIM 009 V1.8.1).

Every node is a frozen dataclass, so two parses of the same text compare equal, and every
node can ``render()`` itself back to query text (``parse(node.render()) == node``)::

    q (clause 4.9)             QNode = QAnd | QOr | QExists | QComparison | QPattern
                                QComparison.value = QLiteral | QRange | QValueList
                                every term addresses an AttrPath
    scopeQ (clause 4.19)       ScopeNode = ScopeAnd | ScopeOr | ScopeTerm
    type selection (4.17)      TypeNode = TypeAnd | TypeOr | TypeName
    attrs / pick / omit (4.21) Projection(items: ProjectionItem, ...)

Parsers build a normal form: an ``And`` never holds an ``And`` (nor an ``Or`` an ``Or``)
and each holds at least two terms. Names are the raw terms the client wrote until the
caller maps them to IRIs (``expand_q``, ``expand_types``, ``expand_projection``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

__all__ = [
    "INSTANCE_MEMBERS",
    "AttrPath",
    "CompareOp",
    "LiteralKind",
    "Projection",
    "ProjectionItem",
    "QAnd",
    "QComparison",
    "QExists",
    "QLiteral",
    "QNode",
    "QOr",
    "QPattern",
    "QRange",
    "QValue",
    "QValueList",
    "ScopeAnd",
    "ScopeNode",
    "ScopeOr",
    "ScopeTerm",
    "TypeAnd",
    "TypeName",
    "TypeNode",
    "TypeOr",
]

# Members of a stored attribute instance that ``attr.member`` addresses instead of a
# sub-attribute (clause 4.9, EXAMPLE 8: ``temperature.observedAt>=...``).
INSTANCE_MEMBERS = frozenset(
    {"createdAt", "modifiedAt", "deletedAt", "observedAt", "unitCode", "datasetId", "objectType"}
)


class LiteralKind(StrEnum):
    NUMBER = "number"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE_TIME = "dateTime"
    DATE = "date"
    TIME = "time"
    URI = "uri"


class CompareOp(StrEnum):
    EQUAL = "=="
    UNEQUAL = "!="
    GREATER = ">"
    GREATER_EQ = ">="
    LESS = "<"
    LESS_EQ = "<="


@dataclass(frozen=True)
class QLiteral:
    kind: LiteralKind
    value: str | int | float | bool

    def render(self) -> str:
        if self.kind is LiteralKind.STRING:
            return json.dumps(self.value, ensure_ascii=False)
        if self.kind is LiteralKind.BOOLEAN:
            return "true" if self.value else "false"
        if self.kind is LiteralKind.NUMBER:
            return repr(self.value)
        return str(self.value)


@dataclass(frozen=True)
class QRange:
    low: QLiteral
    high: QLiteral

    def render(self) -> str:
        return f"{self.low.render()}..{self.high.render()}"


@dataclass(frozen=True)
class QValueList:
    items: tuple[QLiteral, ...]

    def render(self) -> str:
        return ",".join(item.render() for item in self.items)


QValue: TypeAlias = QLiteral | QRange | QValueList


@dataclass(frozen=True)
class AttrPath:
    """``attr.sub1.sub2.member[key1.key2]``: what a q term targets (clause 4.9).

    ``attr`` and ``subattrs`` are Property/Relationship names (expanded to IRIs by the
    caller); ``member`` is one of INSTANCE_MEMBERS; ``keys`` walk into a compound value
    and are never expanded.
    """

    attr: str
    subattrs: tuple[str, ...] = ()
    member: str | None = None
    keys: tuple[str, ...] = ()

    def render(self) -> str:
        names = [self.attr, *self.subattrs, *([self.member] if self.member else [])]
        trail = "[" + ".".join(self.keys) + "]" if self.keys else ""
        return ".".join(names) + trail


@dataclass(frozen=True)
class QExists:
    """``attr`` (the target exists) or, as an extension, ``!attr`` (it does not)."""

    path: AttrPath
    negated: bool = False

    def render(self) -> str:
        return ("!" if self.negated else "") + self.path.render()


@dataclass(frozen=True)
class QComparison:
    path: AttrPath
    op: CompareOp
    value: QValue

    def render(self) -> str:
        return f"{self.path.render()}{self.op.value}{self.value.render()}"


@dataclass(frozen=True)
class QPattern:
    """``attr~=regex`` or ``attr!~=regex``; rendered with the regex as a JSON string."""

    path: AttrPath
    pattern: str
    negated: bool = False

    def render(self) -> str:
        op = "!~=" if self.negated else "~="
        return self.path.render() + op + json.dumps(self.pattern, ensure_ascii=False)


@dataclass(frozen=True)
class QAnd:
    terms: tuple[QNode, ...]

    def render(self) -> str:
        return ";".join(_grouped(term, QOr) for term in self.terms)


@dataclass(frozen=True)
class QOr:
    terms: tuple[QNode, ...]

    def render(self) -> str:
        return "|".join(_grouped(term, QOr) for term in self.terms)


QNode: TypeAlias = QAnd | QOr | QExists | QComparison | QPattern


@dataclass(frozen=True)
class ScopeTerm:
    """``/a/+/c`` (``+`` is one level) with an optional ``/#`` (this scope and below).

    No levels with ``descendants`` is the bare ``/#``: any non-empty scope (clause 4.19).
    """

    levels: tuple[str, ...]
    descendants: bool = False

    def render(self) -> str:
        if not self.levels:
            return "/#"
        return "/" + "/".join(self.levels) + ("/#" if self.descendants else "")


@dataclass(frozen=True)
class ScopeAnd:
    terms: tuple[ScopeNode, ...]

    def render(self) -> str:
        # Clause 4.19 only allows a conjunction inside parentheses.
        return "(" + ";".join(_grouped(term, ScopeOr) for term in self.terms) + ")"


@dataclass(frozen=True)
class ScopeOr:
    terms: tuple[ScopeNode, ...]

    def render(self) -> str:
        return ",".join(_grouped(term, ScopeOr) for term in self.terms)


ScopeNode: TypeAlias = ScopeAnd | ScopeOr | ScopeTerm


@dataclass(frozen=True)
class TypeName:
    name: str

    def render(self) -> str:
        return self.name


@dataclass(frozen=True)
class TypeAnd:
    terms: tuple[TypeNode, ...]

    def render(self) -> str:
        # Clause 4.17 only allows a conjunction inside parentheses.
        return "(" + ";".join(_grouped(term, TypeOr) for term in self.terms) + ")"


@dataclass(frozen=True)
class TypeOr:
    terms: tuple[TypeNode, ...]

    def render(self) -> str:
        return ",".join(_grouped(term, TypeOr) for term in self.terms)


TypeNode: TypeAlias = TypeAnd | TypeOr | TypeName


@dataclass(frozen=True)
class ProjectionItem:
    """An attribute (or Entity member) name, with the projection of the Entities it
    links to for Linked Entity Retrieval (``rel{a,b}``, clause 4.21)."""

    name: str
    linked: Projection | None = None

    def render(self) -> str:
        return self.name + ("{" + self.linked.render() + "}" if self.linked else "")


@dataclass(frozen=True)
class Projection:
    items: tuple[ProjectionItem, ...]

    def render(self) -> str:
        return ",".join(item.render() for item in self.items)

    def names(self) -> frozenset[str]:
        return frozenset(item.name for item in self.items)


def _grouped(term: QNode | ScopeNode | TypeNode, group: type) -> str:
    text = term.render()
    return f"({text})" if isinstance(term, group) else text
