"""NGSI-v2 attributes <-> stored NGSI-LD attribute instances.

v2 attribute (``{"type", "value", "metadata"}``) to the stored form
(``cityos.core.model``), by v2 type::

    Relationship (string value)   Relationship, object = the id rule applied to the value
    geo:json                      GeoProperty, the GeoJSON geometry
    geo:point|line|polygon|box    GeoProperty, the geometry in GeoJSON (see ``cityos.v2.geo``)
    DateTime                      Property, {"@type": "DateTime", "@value": ...}
    value null                    Property, the NGSI-LD Null urn:ngsi-ld:null (clause 4.5.0)
    anything else                 Property, the value as sent

Metadata become sub-Properties (names expanded like attribute names), except ``unitCode``
(Text) and ``observedAt`` (DateTime), which are NGSI-LD's own members of an attribute.

Reading back, the v2 type follows from the stored form: Relationship; GeoProperty is
``geo:json``; a Property is DateTime, Number, Text, Boolean, None or StructuredValue by its
value. Where that would not give back the type v2 wrote (``Float``, ``geo:point``, a
custom type), the instance keeps a ``v2`` member: ``{"type": <v2 type>}``, with the
original value for the Simple Location Format. NGSI-LD renders only the members it
knows, so this member is invisible there; it is used only while it still fits the stored
value (an NGSI-LD update that changes the value wins).
"""

from __future__ import annotations

import re
from typing import Any

from cityos.core.entities import NULL_URI, check_uri, is_datetime
from cityos.core.geo import validate_geometry
from cityos.core.model import StoredAttribute
from cityos.errors import BadRequestData
from cityos.v2.fields import BUILTIN_METADATA, check_field, check_metadata_name
from cityos.v2.geo import SIMPLE_TYPES, geojson_to_simple, simple_to_geojson
from cityos.v2.names import Names, orion_time

__all__ = [
    "MARKER",
    "default_type",
    "parse_attribute",
    "parse_value",
    "render_attribute",
    "v2_type_and_value",
]

MARKER = "v2"
# ISO 8601 as Orion accepts it: a date, optionally a time, optionally a zone.
_ISO8601 = re.compile(
    r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)
_ATTRIBUTE_MEMBERS = frozenset({"type", "value", "metadata"})


def default_type(value: Any) -> str:
    """The type of an attribute or metadata written without one (v2 "Partial Representations")."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "Text"
    return "StructuredValue"


def _inferred_type(inst: StoredAttribute) -> str:
    kind, value = inst["type"], inst.get("value")
    if kind == "Relationship":
        return "Relationship"
    if kind == "GeoProperty":
        return "geo:json"
    if kind != "Property":
        return str(kind)
    if value == NULL_URI:
        return "None"
    if isinstance(value, dict) and value.get("@type") == "DateTime" and "@value" in value:
        return "DateTime"
    return default_type(value)


def _stored_value(v2_type: str, value: Any, names: Names) -> StoredAttribute:
    if v2_type == "Relationship" and isinstance(value, str):
        ld_id = names.ids.to_ld(check_field(value, "Relationship target"))
        return {"type": "Relationship", "value": check_uri(ld_id, "Relationship target")}
    if v2_type == "geo:json":
        return {"type": "GeoProperty", "value": validate_geometry(value)}
    if v2_type in SIMPLE_TYPES:
        return {"type": "GeoProperty", "value": simple_to_geojson(v2_type, value)}
    if v2_type == "DateTime":
        if not isinstance(value, str) or not _ISO8601.match(value):
            raise BadRequestData(f"DateTime value {value!r} is not an ISO 8601 date and time")
        return {"type": "Property", "value": {"@type": "DateTime", "@value": value}}
    return {"type": "Property", "value": NULL_URI if value is None else value}


def parse_value(v2_type: str, value: Any, names: Names, now: str) -> StoredAttribute:
    """One stored instance (no metadata) for a v2 type and value."""
    inst = _stored_value(check_field(v2_type, "Attribute type"), value, names)
    if _inferred_type(inst) != v2_type:
        inst[MARKER] = {"type": v2_type}
        if v2_type in SIMPLE_TYPES:
            inst[MARKER]["value"] = value
        elif value is None:  # told apart from the text "urn:ngsi-ld:null"
            inst[MARKER]["null"] = True
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    return inst


def parse_attribute(name: str, body: Any, names: Names, now: str) -> StoredAttribute:
    """A v2 attribute (normalized: an object with value, type, metadata) as a stored instance."""
    if not isinstance(body, dict):
        raise BadRequestData(f"Attribute {name} must be a JSON object")
    unknown = set(body) - _ATTRIBUTE_MEMBERS
    if unknown:
        raise BadRequestData(f"Attribute {name} has unknown members: {', '.join(sorted(unknown))}")
    value = body.get("value")
    inst = parse_value(body.get("type") or default_type(value), value, names, now)
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequestData(f"The metadata of attribute {name} must be a JSON object")
    for md_name, md in metadata.items():
        _add_metadata(inst, check_metadata_name(md_name), md, names, now)
    return inst


def _add_metadata(inst: StoredAttribute, name: str, md: Any, names: Names, now: str) -> None:
    if name in BUILTIN_METADATA:  # v2: builtins are not written by clients
        return
    if not isinstance(md, dict) or set(md) - {"type", "value"}:
        raise BadRequestData(f"Metadata {name} must be an object with type and value")
    value = md.get("value")
    md_type = md.get("type") or default_type(value)
    if name == "unitCode":
        if md_type != "Text" or not isinstance(value, str):
            raise BadRequestData("Metadata unitCode must be Text (it is NGSI-LD's unitCode)")
        inst["unitCode"] = value
    elif name == "observedAt":
        if md_type != "DateTime" or not is_datetime(value):
            raise BadRequestData("Metadata observedAt must be a DateTime with time and zone")
        inst["observedAt"] = value
    else:
        sub = parse_value(md_type, value, names, now)
        inst.setdefault("attrs", {})[names.expand(name)] = [sub]


def _plain_value(inst: StoredAttribute, names: Names) -> Any:
    kind, value = inst["type"], inst.get("value")
    if kind in ("Relationship", "ListRelationship"):
        return (
            [_target(v, names) for v in value] if isinstance(value, list) else _target(value, names)
        )
    if kind == "VocabProperty":
        return (
            [names.compact(v) for v in value]
            if isinstance(value, list)
            else names.compact(str(value))
        )
    if value == NULL_URI:
        return None
    if isinstance(value, dict) and value.get("@type") == "DateTime" and "@value" in value:
        return value["@value"]
    return value


def _target(value: Any, names: Names) -> Any:
    if isinstance(value, dict):  # a ListRelationship item {"object": ...}
        value = value.get("object")
    return names.ids.from_ld(value) if isinstance(value, str) else value


def v2_type_and_value(inst: StoredAttribute, names: Names) -> tuple[str, Any]:
    """The v2 type and value of a stored instance (see the module docstring)."""
    marker = inst.get(MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("type"), str):
        v2_type = marker["type"]
        if v2_type in SIMPLE_TYPES and inst["type"] == "GeoProperty":
            original = marker.get("value")
            if original is not None and _same_geometry(v2_type, original, inst["value"]):
                return v2_type, original
            simple = geojson_to_simple(v2_type, inst["value"])
            if simple is not None:
                return v2_type, simple
        elif inst["type"] == "Property":
            value = inst.get("value")
            # The value as written: the marker says how v2 typed it, so a typed-literal
            # shape or the NGSI-LD Null text stays what it is, unless v2 wrote null.
            return v2_type, None if marker.get("null") and value == NULL_URI else value
    return _inferred_type(inst), _plain_value(inst, names)


def _same_geometry(v2_type: str, original: Any, geometry: Any) -> bool:
    try:
        return bool(simple_to_geojson(v2_type, original) == geometry)
    except BadRequestData:
        return False


def _metadata(inst: StoredAttribute, names: Names) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if "unitCode" in inst:
        out["unitCode"] = {"type": "Text", "value": inst["unitCode"]}
    if "observedAt" in inst:
        out["observedAt"] = {"type": "DateTime", "value": inst["observedAt"]}
    for iri, subs in inst.get("attrs", {}).items():
        if subs:
            md_type, md_value = v2_type_and_value(subs[0], names)
            out[names.compact(iri)] = {"type": md_type, "value": md_value}
    return out


def render_attribute(
    inst: StoredAttribute, names: Names, metadata: list[str] | None = None
) -> dict[str, Any]:
    """A v2 attribute; ``metadata`` lists the metadata to show (None: all but builtins)."""
    v2_type, value = v2_type_and_value(inst, names)
    user = _metadata(inst, names)
    if metadata is None:
        shown = user
    else:
        shown = {k: v for k, v in user.items() if "*" in metadata or k in metadata}
        for builtin, member in (("dateCreated", "createdAt"), ("dateModified", "modifiedAt")):
            if builtin in metadata and member in inst:
                shown[builtin] = {"type": "DateTime", "value": orion_time(inst[member])}
    return {"type": v2_type, "value": value, "metadata": shown}
