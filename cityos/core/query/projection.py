"""Attribute lists and projections: ``attrs``, ``pick`` and ``omit``.

``pick`` and ``omit`` follow the NGSI-LD Attribute Projection Language (GS CIM 009
V1.8.1, clause 4.21)::

    ProjectionTerm = Item *(("," / "|") Item)
    Item           = Name ["{" ProjectionTerm "}"]   ; "{...}": Linked Entity Retrieval

``attrs`` is a plain comma-separated list of attribute names (clause 5.7.2). A name is a
term (clause 4.6.2) or an IRI. ``id``, ``type`` and ``scope`` name Entity members, not
attributes: they are never expanded, and only ``pick`` / ``omit`` select them. System
members (``createdAt``, ``modifiedAt``) are left to the renderer (``options=sysAttrs``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cityos.core.model import StoredEntity
from cityos.core.query.ast import Projection, ProjectionItem
from cityos.core.query.q import MAX_DEPTH, Cursor

__all__ = [
    "ENTITY_MEMBERS",
    "expand_projection",
    "omit_entity",
    "parse_attrs",
    "parse_omit",
    "parse_pick",
    "pick_entity",
    "select_attrs",
]

ENTITY_MEMBERS = frozenset({"id", "type", "scope"})
_UNEXPANDED = ENTITY_MEMBERS | {"createdAt", "modifiedAt", "deletedAt"}
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s,|{}\"\\\x00-\x1f\x7f]+")


def parse_attrs(text: str) -> Projection:
    """Parse an ``attrs`` list (``a,b,c``)."""
    return _parse_list(Cursor(text, "attrs list"), separators=",", linked=False)


def parse_pick(text: str) -> Projection:
    """Parse a ``pick`` projection (clause 4.21)."""
    return _parse_list(Cursor(text, "pick list"), separators=",|", linked=True)


def parse_omit(text: str) -> Projection:
    """Parse an ``omit`` projection (clause 4.21)."""
    return _parse_list(Cursor(text, "omit list"), separators=",|", linked=True)


def expand_projection(projection: Projection, expand: Callable[[str], str]) -> Projection:
    """Map every attribute name through ``expand``; Entity members stay as they are."""
    return Projection(tuple(_expand_item(item, expand) for item in projection.items))


def pick_entity(entity: StoredEntity, pick: Projection) -> StoredEntity:
    """Keep only the listed members and attributes (names already expanded)."""
    names = pick.names()
    kept = {k: v for k, v in entity.items() if k not in ENTITY_MEMBERS or k in names}
    kept["attrs"] = {k: v for k, v in entity.get("attrs", {}).items() if k in names}
    return kept


def omit_entity(entity: StoredEntity, omit: Projection) -> StoredEntity:
    """Drop the listed members and attributes (names already expanded)."""
    names = omit.names()
    kept = {k: v for k, v in entity.items() if k not in names & ENTITY_MEMBERS}
    kept["attrs"] = {k: v for k, v in entity.get("attrs", {}).items() if k not in names}
    return kept


def select_attrs(entity: StoredEntity, attrs: Projection) -> StoredEntity:
    """Keep only the listed attributes; Entity members all stay."""
    names = attrs.names()
    return {**entity, "attrs": {k: v for k, v in entity.get("attrs", {}).items() if k in names}}


def _expand_item(item: ProjectionItem, expand: Callable[[str], str]) -> ProjectionItem:
    name = item.name if item.name in _UNEXPANDED else expand(item.name)
    linked = expand_projection(item.linked, expand) if item.linked else None
    return ProjectionItem(name, linked)


def _parse_list(cursor: Cursor, separators: str, linked: bool) -> Projection:
    projection = _parse_items(cursor, separators, linked)
    if not cursor.at_end():
        raise cursor.error(f"unexpected character {cursor.peek()!r}")
    return projection


def _parse_items(cursor: Cursor, separators: str, linked: bool) -> Projection:
    items = [_parse_item(cursor, separators, linked)]
    while cursor.peek() and cursor.peek() in separators:
        cursor.pos += 1
        items.append(_parse_item(cursor, separators, linked))
    return Projection(tuple(items))


def _parse_item(cursor: Cursor, separators: str, linked: bool) -> ProjectionItem:
    uri = cursor.match(_URI)
    if uri is not None:
        cursor.pos += len(uri)
        name = uri
    else:
        name = cursor.name("an attribute name")
    if not (linked and cursor.eat("{")):
        return ProjectionItem(name)
    cursor.depth += 1
    if cursor.depth > MAX_DEPTH:
        raise cursor.error(f"braces are nested more than {MAX_DEPTH} deep")
    nested = _parse_items(cursor, separators, linked)
    cursor.expect("}", "expected '}'")
    cursor.depth -= 1
    return ProjectionItem(name, nested)
