"""``orderBy`` (GS CIM 009 V1.9.1 clause 4.23): sort keys for Entity queries.

    orderBy = Key *("," Key)
    Key     = Path [";" ("asc" / "desc")]
    Path    = "id" / "type" / "createdAt" / "modifiedAt" / AttrPath   ; as in q, clause 4.9

Attribute names are expanded by the caller (``expand_order``), like q paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from cityos.core.entities import check_name
from cityos.core.query.ast import INSTANCE_MEMBERS, AttrPath
from cityos.errors import BadRequestData

__all__ = ["ENTITY_KEYS", "OrderKey", "expand_order", "parse_order_by"]

ENTITY_KEYS = frozenset({"id", "type", "createdAt", "modifiedAt"})


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One sort key: an Entity member (``id``...) or an attribute path, and its direction."""

    member: str | None = None
    path: AttrPath | None = None
    descending: bool = False


def parse_order_by(text: str) -> tuple[OrderKey, ...]:
    keys = []
    for part in text.split(","):
        name, _, direction = part.strip().partition(";")
        if direction not in ("", "asc", "desc"):
            raise BadRequestData(f"orderBy direction must be asc or desc, not {direction!r}")
        if not name:
            raise BadRequestData(f"orderBy {text!r} has an empty key")
        keys.append(_key(name, direction == "desc"))
    return tuple(keys)


def _key(name: str, descending: bool) -> OrderKey:
    if name in ENTITY_KEYS:
        return OrderKey(member=name, descending=descending)
    segments = name.split(".")
    for segment in segments:
        check_name(segment, "orderBy attribute")
    member = segments[-1] if len(segments) > 1 and segments[-1] in INSTANCE_MEMBERS else None
    names = segments[:-1] if member else segments
    return OrderKey(path=AttrPath(names[0], tuple(names[1:]), member), descending=descending)


def expand_order(keys: tuple[OrderKey, ...], expand: Callable[[str], str]) -> tuple[OrderKey, ...]:
    out = []
    for key in keys:
        if key.path is None:
            out.append(key)
            continue
        path = replace(
            key.path,
            attr=expand(key.path.attr),
            subattrs=tuple(expand(s) for s in key.path.subattrs),
        )
        out.append(replace(key, path=path))
    return tuple(out)
