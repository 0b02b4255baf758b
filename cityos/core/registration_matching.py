"""Matching context source registrations against a query (GS CIM 009 V1.8.1 clauses
5.10.2 and 5.12): which registered sources may hold the Entities a client asks for.

The registrations of a tenant are few, so each is tested here, in Python::

    a registration matches when
      one RegistrationInfo matches the Entity selection (type, id, idPattern)
          and the Attributes (attrs, and those a q names),
      csf matches its registration properties, scopeQ its scope,
      the geo-query its location, observationSpace or operationSpace,
      and the temporal query its observationInterval or managementInterval.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from cityos.core import geo
from cityos.core.model import ATTRIBUTE_TYPES, VALUE_MEMBER, StoredEntity
from cityos.core.query.ast import QAnd, QNode, QOr, ScopeNode, TypeNode
from cityos.core.query.evaluate import match_q, match_scope, match_types
from cityos.core.registrations import (
    REGISTRATION_TYPE,
    EntityInfo,
    Registration,
    RegistrationInfo,
)
from cityos.core.temporal import parse_time

__all__ = ["RegistrationQuery", "csf_matches", "matches", "q_attributes"]


@dataclass(frozen=True, slots=True)
class RegistrationQuery:
    """A query for registrations, every name expanded. ``attrs`` joins the ``attrs``
    parameter with the Attributes a ``q`` names: clause 5.10.2.4 matches both against the
    RegistrationInfo alike. ``csf`` filters on registration properties."""

    types: TypeNode | None = None
    ids: tuple[str, ...] = ()
    id_pattern: str | None = None
    attrs: frozenset[str] = frozenset()
    csf: QNode | None = None
    scope_q: ScopeNode | None = None
    geo: geo.GeoQuery | None = None
    geo_member: str | None = None  # which of GEO_MEMBERS the geoproperty names, if any
    timerel: str | None = None
    time_at: int = 0
    end_time_at: int = 0
    timeproperty: str = "observedAt"


def q_attributes(node: QNode) -> frozenset[str]:
    """The Attribute names a ``q`` expression addresses."""
    if isinstance(node, QAnd | QOr):
        return frozenset().union(*(q_attributes(t) for t in node.terms))
    return frozenset({node.path.attr})


def matches(reg: Registration, query: RegistrationQuery) -> bool:
    """Whether the registration is one the query discovers (clause 5.10.2.4)."""
    if not any(_info_matches(info, query) for info in reg.information):
        return False
    if query.csf is not None and not csf_matches(reg, query.csf):
        return False
    if query.scope_q is not None and not match_scope(
        {"scope": reg.members.get("scope")}, query.scope_q
    ):
        return False
    if query.geo is not None and not _geo_matches(reg, query.geo, query.geo_member):
        return False
    return _time_matches(reg, query)


def _info_matches(info: RegistrationInfo, query: RegistrationQuery) -> bool:
    """Clause 5.12: a RegistrationInfo without entities matches any Entity, one without
    propertyNames and relationshipNames any Attribute."""
    if info.entities is not None and not any(_entity_matches(e, query) for e in info.entities):
        return False
    registered = info.attributes
    return not query.attrs or registered is None or bool(query.attrs & registered)


def _entity_matches(entity: EntityInfo, query: RegistrationQuery) -> bool:
    if query.types is not None and not match_types({"type": [entity.type]}, query.types):
        return False
    if query.ids:
        if entity.id is not None and entity.id not in query.ids:
            return False
        if entity.id_pattern is not None and not any(
            re.search(entity.id_pattern, i) for i in query.ids
        ):
            return False
    # Whether two id patterns share an id cannot be decided in general: a registered
    # pattern is taken to possibly match the queried one, as discovery lists the sources
    # that possibly hold the Entities (clause 5.10.2.1).
    return (
        query.id_pattern is None
        or entity.id is None
        or bool(re.search(query.id_pattern, entity.id))
    )


def csf_matches(reg: Registration, csf: QNode) -> bool:
    """Whether the registration's properties satisfy a ``csf`` filter (clause 4.9 q
    grammar over registration properties)."""
    return match_q(_as_entity(reg), csf)


def _as_entity(reg: Registration) -> StoredEntity:
    """The registration properties as the Attributes of an Entity, so that ``csf`` is
    evaluated by the same code as ``q``."""
    attrs = {k: [_as_attribute(v)] for k, v in reg.properties.items()}
    return {"id": reg.id, "type": [REGISTRATION_TYPE], "attrs": attrs}


def _as_attribute(value: Any) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind in ATTRIBUTE_TYPES and VALUE_MEMBER[kind] in value:
        return {**value, "value": value[VALUE_MEMBER[kind]]}
    return {"type": "Property", "value": value}


# How each geo relation is asked of a registered area: the area matches "if the location
# directly matches or if the location possibly contains locations that would match the
# geoquery" (clause 5.10.2.4). An Entity within, overlapping or intersecting the query
# geometry can lie in any area that meets it; one containing or equal to it only in an
# area that contains it; one disjoint from it in any area not inside it.
_POSSIBLY = {"within": "intersects", "overlaps": "intersects", "equals": "contains"}


def _geo_matches(reg: Registration, gq: geo.GeoQuery, member: str | None) -> bool:
    area = reg.members.get(member) if member is not None else None
    if area is None:
        return False
    if gq.georel == "disjoint":
        return not geo.matches(replace(gq, georel="within"), area)
    return geo.matches(replace(gq, georel=_POSSIBLY.get(gq.georel, gq.georel)), area)


def _time_matches(reg: Registration, query: RegistrationQuery) -> bool:
    """Without a temporal query only registrations without time intervals match; with
    one, the interval of the timeproperty must overlap the queried period (5.10.2.4)."""
    if query.timerel is None:
        return not ({"observationInterval", "managementInterval"} & set(reg.members))
    key = "observationInterval" if query.timeproperty == "observedAt" else "managementInterval"
    interval = reg.members.get(key)
    if interval is None:
        return False
    start = parse_time(interval["startAt"])
    end = parse_time(interval["endAt"]) if "endAt" in interval else None
    if query.timerel == "before":
        return start <= query.time_at
    if query.timerel == "after":
        return end is None or end >= query.time_at
    return start <= query.end_time_at and (end is None or end >= query.time_at)
