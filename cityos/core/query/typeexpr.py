"""Parser of the NGSI-LD Entity Type Selection Language (GS CIM 009 V1.8.1, clause 4.17).

The grammar accepted here, a superset of the clause's ABNF::

    EntityTypes = AndTerm *(("|" / ",") AndTerm)   ; "," is the older list form of OR
    AndTerm     = Primary *(";" Primary)
    Primary     = "(" EntityTypes ")" / EntityType
    EntityType  = Name / URI     ; a name per clause 4.6.2 (optionally prefix:name)

The clause only allows ``;`` inside parentheses; AND binding tighter than OR gives the
same meaning to every text it accepts. As the clause notes, ``, ; ( ) |`` cannot appear
in a URI used here.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cityos.core.query.ast import TypeAnd, TypeName, TypeNode, TypeOr
from cityos.core.query.q import Cursor, Logic, parse_logical

__all__ = ["expand_types", "parse_types", "type_names"]

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s,;|()\"\\\x00-\x1f\x7f]+")
_NAME_END = ",;|()"


def parse_types(text: str) -> TypeNode:
    """Parse a ``type`` selection; raises ``BadRequestData`` for invalid text."""
    return parse_logical(Cursor(text, "type expression"), _TYPE_LOGIC)


def expand_types(node: TypeNode, expand: Callable[[str], str]) -> TypeNode:
    """Map every Entity Type name through ``expand`` (term to IRI)."""
    if isinstance(node, TypeName):
        return TypeName(expand(node.name))
    return type(node)(tuple(expand_types(term, expand) for term in node.terms))


def type_names(node: TypeNode) -> tuple[str, ...] | None:
    """The names of a plain disjunction (``A``, ``A,B``, ``A|B``), else ``None``."""
    if isinstance(node, TypeName):
        return (node.name,)
    if isinstance(node, TypeOr) and all(isinstance(t, TypeName) for t in node.terms):
        return tuple(t.name for t in node.terms if isinstance(t, TypeName))
    return None


def _parse_type(cursor: Cursor) -> TypeNode:
    start = cursor.pos
    uri = cursor.match(_URI)
    if uri is not None:
        cursor.pos += len(uri)
    else:
        cursor.name("an entity type name or URI")
    if cursor.peek() and cursor.peek() not in _NAME_END:
        raise cursor.error(f"unexpected character {cursor.peek()!r} in an entity type")
    return TypeName(cursor.text[start : cursor.pos])


_TYPE_LOGIC: Logic[TypeNode] = Logic(
    atom=_parse_type, and_type=TypeAnd, or_type=TypeOr, or_ops="|,"
)
