"""Parsing NGSI-LD Entities from requests into the stored form (GS CIM 009 V1.8.1 clause 4.5).

Accepts the normalized and the concise representation (clause 4.5.1), validates every
Attribute and expands names and types through the request's compiled @context. Nothing in
here touches storage: the result is a :data:`~cityos.core.model.StoredEntity` (or one
attribute's instances) that storage keeps as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from cityos.core import geo
from cityos.core.jsonld import CompiledContext, is_absolute_iri
from cityos.core.model import ATTRIBUTE_TYPES, VALUE_MEMBER, StoredAttribute, StoredEntity
from cityos.errors import BadRequestData, InvalidRequest

__all__ = [
    "ENTITY_MEMBERS",
    "GEO_ATTRIBUTES",
    "NULL_URI",
    "check_name",
    "check_uri",
    "is_datetime",
    "is_null",
    "parse_attribute",
    "parse_attribute_fragment",
    "parse_entity",
    "parse_fragment",
    "parse_scope",
    "parse_temporal_entity",
]

NULL_URI = "urn:ngsi-ld:null"  # clause 4.5.0: the value that deletes in a merge
ENTITY_MEMBERS = frozenset(
    {"id", "@id", "type", "@type", "scope", "@context", "createdAt", "modifiedAt", "deletedAt"}
)
GEO_ATTRIBUTES = frozenset({"location", "observationSpace", "operationSpace"})
_META = frozenset(
    {
        "type",
        "observedAt",
        "unitCode",
        "datasetId",
        "createdAt",
        "modifiedAt",
        "deletedAt",
        "instanceId",
        "objectType",
        "lang",
        "@context",
    }
)
# Members that name their attribute type on their own; "value" is Property or GeoProperty.
_MEMBER_TYPE = {member: t for t, member in VALUE_MEMBER.items() if member != "value"}
# clause 4.6.2: characters that may not appear in Entity type or Attribute names.
_FORBIDDEN = re.compile(r"[<>\"'=;()\s\x00-\x1f\x7f]")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$")
_SCOPE = re.compile(r"^/[^/#+\s]+(/[^/#+\s]+)*$")


_VALID_NAMES: set[str] = set()


def check_name(name: object, what: str = "Attribute name") -> str:
    if isinstance(name, str) and name in _VALID_NAMES:  # names repeat; the set is capped
        return name
    if not isinstance(name, str) or not name or _FORBIDDEN.search(name):
        raise BadRequestData(f"{what} {name!r} is empty or contains a forbidden character")
    if name.startswith("@"):  # JSON-LD keeps @-names for keywords
        raise BadRequestData(f"{what} {name!r} starts with @, which JSON-LD keeps for keywords")
    if len(_VALID_NAMES) < 50_000:
        _VALID_NAMES.add(name)
    return name


def check_uri(value: object, what: str = "Entity id") -> str:
    if not isinstance(value, str) or not is_absolute_iri(value) or _FORBIDDEN.search(value):
        raise BadRequestData(f"{what} {value!r} is not a valid URI")
    return value


def is_datetime(value: object) -> bool:
    return isinstance(value, str) and bool(_DATETIME.match(value))


def parse_scope(value: object) -> list[str]:
    scopes = value if isinstance(value, list) else [value]
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE.match(scope):
            raise BadRequestData(f"Scope {scope!r} is not a valid scope such as /Kagawa/Takamatsu")
    return list(dict.fromkeys(scopes))


def parse_types(value: object, ctx: CompiledContext) -> list[str]:
    types = value if isinstance(value, list) else [value]
    if not types:
        raise BadRequestData("Entity type must not be empty")
    expanded = [ctx.expand(check_name(t, "Entity type")) for t in types]
    for term, iri in zip(types, expanded, strict=True):
        if iri.startswith("@") or not is_absolute_iri(iri):
            raise BadRequestData(f"Entity type {term!r} does not expand to an IRI")
    return list(dict.fromkeys(expanded))


def _reject_nulls(attrs: dict[str, list[StoredAttribute]]) -> None:
    # clause 5.2.1: the NGSI-LD Null only means "delete" in merges and partial updates.
    for name, instances in attrs.items():
        for inst in instances:
            if inst.get("value") == NULL_URI:
                raise BadRequestData(
                    f"Attribute {name} is urn:ngsi-ld:null, which only deletes in an update"
                )
            _reject_nulls(inst.get("attrs", {}))


def parse_entity(
    body: object, ctx: CompiledContext, now: str, *, require_type: bool = True
) -> StoredEntity:
    """An Entity for create, replace or upsert. Its id and (unless told otherwise) type are required."""
    if not isinstance(body, dict):
        raise InvalidRequest("An Entity must be a JSON object")
    entity_id = body.get("id", body.get("@id"))
    if entity_id is None:
        raise BadRequestData("The Entity has no id")
    type_value = body.get("type", body.get("@type"))
    if type_value is None and require_type:
        raise BadRequestData(f"Entity {entity_id} has no type")
    entity: StoredEntity = {
        "id": check_uri(entity_id),
        "type": [],
        "createdAt": now,
        "modifiedAt": now,
    }
    if type_value is not None:
        entity["type"] = parse_types(type_value, ctx)
    if "scope" in body:
        entity["scope"] = parse_scope(body["scope"])
    entity["attrs"] = parse_fragment(body, ctx, now)
    _reject_nulls(entity["attrs"])
    return entity


def parse_temporal_entity(
    body: object, ctx: CompiledContext, now: str, *, require_type: bool = True
) -> StoredEntity:
    """A temporal Entity (clause 4.5.7, 5.6.11): each attribute is an array of instances,
    each one a point in the attribute's history (several may share a datasetId)."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("A temporal Entity must be a non-empty JSON object")
    entity = parse_entity(
        {k: v for k, v in body.items() if k in ENTITY_MEMBERS}, ctx, now, require_type=require_type
    )
    attrs: dict[str, list[StoredAttribute]] = {}
    for name, iri, value in _attributes(body, ctx):
        items = value if isinstance(value, list) and _is_instance_list(value) else [value]
        attrs[iri] = [inst for item in items for inst in parse_attribute(name, item, ctx, now)]
    _reject_nulls(attrs)
    entity["attrs"] = attrs
    return entity


def parse_fragment(
    body: dict[str, Any], ctx: CompiledContext, now: str
) -> dict[str, list[StoredAttribute]]:
    """The attributes of an Entity or Entity fragment, by expanded name."""
    return {
        iri: parse_attribute(name, value, ctx, now) for name, iri, value in _attributes(body, ctx)
    }


def _attributes(body: dict[str, Any], ctx: CompiledContext) -> Iterator[tuple[str, str, Any]]:
    """(name, expanded name, value) of each attribute member of a body."""
    for name, value in body.items():
        if name in ENTITY_MEMBERS:
            continue
        check_name(name)
        iri = ctx.expand(name)
        if iri.startswith("@"):
            raise BadRequestData(f"Attribute name {name!r} expands to the JSON-LD keyword {iri}")
        yield name, iri, value


def parse_attribute(name: str, value: Any, ctx: CompiledContext, now: str) -> list[StoredAttribute]:
    """One attribute's instances, the default instance first; datasetIds must be unique."""
    if isinstance(value, dict):
        return [_parse_instance(name, value, ctx, now)]
    raw = value if isinstance(value, list) and _is_instance_list(value) else [value]
    instances = [_parse_instance(name, item, ctx, now) for item in raw]
    seen: set[str | None] = set()
    for inst in instances:
        ds = inst.get("datasetId")
        if ds in seen:
            raise BadRequestData(
                f"Attribute {name} has two instances with datasetId {ds or '(default)'}"
            )
        seen.add(ds)
    instances.sort(key=lambda i: "datasetId" in i)
    return instances


def _is_instance_list(value: list[Any]) -> bool:
    return bool(value) and all(
        isinstance(v, dict) and (v.get("type") in ATTRIBUTE_TYPES or _infer_type(v) != "Property")
        for v in value
    )


def _infer_type(value: dict[str, Any]) -> str:
    """Concise representation (clause 4.5.1.2): the attribute type follows from its members."""
    for member, attr_type in _MEMBER_TYPE.items():
        if member in value:
            return attr_type
    if "value" in value:
        return "GeoProperty" if _looks_geo(value["value"]) else "Property"
    return "Property"


def _looks_geo(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in geo.GEOMETRY_TYPES
        and "coordinates" in value
    )


def _parse_instance(name: str, value: Any, ctx: CompiledContext, now: str) -> StoredAttribute:
    if not isinstance(value, dict):
        return {"type": "Property", "value": value, "createdAt": now, "modifiedAt": now}
    if "type" in value and value["type"] not in ATTRIBUTE_TYPES:
        if _looks_geo(value):  # concise GeoProperty given as a bare geometry
            return {
                "type": "GeoProperty",
                "value": geo.validate_geometry(value),
                "createdAt": now,
                "modifiedAt": now,
            }
        raise BadRequestData(f"Attribute {name} has an unknown type {value['type']!r}")
    attr_type = value.get("type") or _infer_type(value)
    if "type" not in value and not any(m in value for m in (*_MEMBER_TYPE, "value")):
        return {"type": "Property", "value": value, "createdAt": now, "modifiedAt": now}
    inst: StoredAttribute = {"type": attr_type, "value": _main_value(name, attr_type, value, ctx)}
    _parse_meta(name, value, inst)
    inst["createdAt"] = now
    inst["modifiedAt"] = now
    subs = {k: v for k, v in value.items() if k not in _META and k not in VALUE_MEMBER.values()}
    if subs:
        inst["attrs"] = parse_fragment(subs, ctx, now)
    return inst


def is_null(v: Any) -> bool:
    """The NGSI-LD null (clause 4.5.0): ``urn:ngsi-ld:null`` in the member's own shape."""
    if v == NULL_URI:
        return True
    if isinstance(v, dict) and len(v) == 1:
        return bool(next(iter(v.values())) == NULL_URI)
    return isinstance(v, list) and v == [NULL_URI]


def _main_value(name: str, attr_type: str, value: dict[str, Any], ctx: CompiledContext) -> Any:
    member = VALUE_MEMBER[attr_type]
    if member not in value:
        raise BadRequestData(f"Attribute {name} of type {attr_type} has no {member} member")
    v = value[member]
    if v is None:
        raise BadRequestData(f"Attribute {name} has a null {member}")
    if is_null(v):
        return NULL_URI
    checker = _CHECKS.get(attr_type)
    return checker(name, v, ctx) if checker else v


def parse_attribute_fragment(
    name: str, value: Any, ctx: CompiledContext, now: str
) -> StoredAttribute:
    """A fragment of one attribute instance for a partial update (clause 5.6.4): only
    the members given, so the update can merge them into the stored instance."""
    if not isinstance(value, dict) or not value:
        raise BadRequestData(f"A fragment of attribute {name} must be a non-empty JSON object")
    attr_type = value.get("type")
    if attr_type is not None and attr_type not in ATTRIBUTE_TYPES:
        raise BadRequestData(f"Attribute {name} has an unknown type {attr_type!r}")
    given = [m for m in _MEMBER_TYPE if m in value] + (["value"] if "value" in value else [])
    out: StoredAttribute = {}
    if attr_type is not None:
        out["type"] = attr_type
    if given:
        inferred = attr_type or (_MEMBER_TYPE.get(given[0]) or _infer_type(value))
        out["value"] = _main_value(name, inferred, value, ctx)
    _parse_meta(name, value, {**out, "type": attr_type or "Property"} if "type" not in out else out)
    for key in ("observedAt", "unitCode", "datasetId", "objectType"):
        if key in value and value[key] is not None:
            out[key] = value[key]
    subs = {k: v for k, v in value.items() if k not in _META and k not in VALUE_MEMBER.values()}
    if subs:
        out["attrs"] = parse_fragment(subs, ctx, now)
    out["modifiedAt"] = now
    return out


def _check_geo(name: str, v: Any, ctx: CompiledContext) -> Any:
    if _is_plain_point(v):
        return v
    if name in GEO_ATTRIBUTES or _looks_geo(v) or isinstance(v, dict):
        return geo.validate_geometry(v)
    raise BadRequestData(f"GeoProperty {name} has no GeoJSON geometry value")


def _check_object(name: str, v: Any, ctx: CompiledContext) -> Any:
    objects = v if isinstance(v, list) else [v]
    if not objects:
        raise BadRequestData(f"Relationship {name} has an empty object")
    for obj in objects:
        check_uri(obj, f"Relationship {name} object")
    return v


def _check_language_map(name: str, v: Any, ctx: CompiledContext) -> Any:
    if not isinstance(v, dict) or not v:
        raise BadRequestData(f"LanguageProperty {name} needs a non-empty languageMap object")
    for lang, text in v.items():
        texts = text if isinstance(text, list) else [text]
        if not isinstance(lang, str) or not all(isinstance(t, str) for t in texts):
            raise BadRequestData(f"LanguageProperty {name} maps language {lang!r} to a non-string")
    return v


def _check_list(name: str, v: Any, ctx: CompiledContext) -> Any:
    if not isinstance(v, list):
        raise BadRequestData(f"Attribute {name} needs a JSON array")
    return v


def _check_object_list(name: str, v: Any, ctx: CompiledContext) -> Any:
    items = _check_list(name, v, ctx)
    for item in items:
        check_uri(
            item.get("object") if isinstance(item, dict) else item,
            f"ListRelationship {name} object",
        )
    return items


def _check_vocab(name: str, v: Any, ctx: CompiledContext) -> Any:
    vocabs = v if isinstance(v, list) else [v]
    if not vocabs or not all(isinstance(x, str) for x in vocabs):
        raise BadRequestData(f"VocabProperty {name} needs a string or an array of strings")
    expanded = [ctx.expand(x) for x in vocabs]
    return expanded if isinstance(v, list) else expanded[0]


def _is_plain_point(v: Any) -> bool:
    """The common case, checked without the general GeoJSON validator: a Point [lon, lat]."""
    if not isinstance(v, dict) or v.get("type") != "Point" or len(v) != 2:
        return False
    c = v.get("coordinates")
    return (
        isinstance(c, list)
        and len(c) == 2
        and all(type(x) in (int, float) for x in c)
        and -180 <= c[0] <= 180
        and -90 <= c[1] <= 90
    )


_CHECKS = {
    "GeoProperty": _check_geo,
    "Relationship": _check_object,
    "LanguageProperty": _check_language_map,
    "ListProperty": _check_list,
    "ListRelationship": _check_object_list,
    "VocabProperty": _check_vocab,
}


def _parse_meta(name: str, value: dict[str, Any], inst: StoredAttribute) -> None:
    if "observedAt" in value:
        if not is_datetime(value["observedAt"]):
            raise BadRequestData(f"Attribute {name} has an observedAt that is not a DateTime")
        inst["observedAt"] = value["observedAt"]
    if "unitCode" in value:
        if not isinstance(value["unitCode"], str):
            raise BadRequestData(f"Attribute {name} has a unitCode that is not a string")
        inst["unitCode"] = value["unitCode"]
    if value.get("datasetId") is not None:
        inst["datasetId"] = check_uri(value["datasetId"], f"datasetId of attribute {name}")
    if "objectType" in value and inst["type"] in ("Relationship", "ListRelationship"):
        inst["objectType"] = value["objectType"]
