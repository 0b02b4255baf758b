"""NGSI-v2 Entities <-> stored NGSI-LD Entities, and v2's representations of them.

Writing: ``id`` through the id rule (``cityos.v2.ids``), ``type`` (default ``Thing``) and
attribute names through the v2 @context (``cityos.v2.names``), attributes through
``cityos.v2.attributes``; the Fiware-ServicePath becomes the Entity's ``scope``.

Reading (FIWARE-NGSI v2 "Simplified Entity Representation"): ``normalized`` (type, value,
metadata per attribute), ``keyValues``, ``values`` (an array of values, in the order of
``attrs``) and ``unique`` (values, without repeats). An NGSI-LD Entity of several types
shows its first; an attribute with several instances (``datasetId``) shows its default
instance, else its first. The builtin attributes ``dateCreated`` and ``dateModified`` come
from the Entity's ``createdAt`` and ``modifiedAt`` when ``attrs`` names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cityos.core.model import StoredAttribute, StoredEntity
from cityos.errors import BadRequestData
from cityos.v2.attributes import default_type, parse_attribute, parse_value, render_attribute
from cityos.v2.fields import check_attr_name, check_field
from cityos.v2.names import Names, orion_time

__all__ = [
    "DEFAULT_TYPE",
    "View",
    "default_instance",
    "parse_attrs",
    "parse_entity",
    "render_entity",
    "v2_id",
    "v2_type",
]

DEFAULT_TYPE = "Thing"
MODES = ("normalized", "keyValues", "values", "unique")
_BUILTINS = {"dateCreated": "createdAt", "dateModified": "modifiedAt"}
Attrs = dict[str, list[StoredAttribute]]


def parse_attrs(body: Any, names: Names, now: str, key_values: bool = False) -> Attrs:
    """The attributes of a v2 body (without ``id`` and ``type``), by expanded name."""
    if not isinstance(body, dict):
        raise BadRequestData("The request body must be a JSON object")
    attrs: Attrs = {}
    for name, value in body.items():
        check_attr_name(name)
        if key_values:
            inst = parse_value(default_type(value), value, names, now)
        else:
            inst = parse_attribute(name, value, names, now)
        attrs[names.expand(name)] = [inst]
    return attrs


def parse_entity(
    body: Any, names: Names, now: str, scope: str | None, key_values: bool = False
) -> StoredEntity:
    """A v2 Entity for create or upsert, in the stored form."""
    if not isinstance(body, dict):
        raise BadRequestData("An Entity must be a JSON object")
    if "id" not in body:
        raise BadRequestData("The Entity has no id")
    entity_id = check_field(body["id"], "Entity id")
    entity_type = check_field(body.get("type", DEFAULT_TYPE), "Entity type")
    attrs = parse_attrs(
        {k: v for k, v in body.items() if k not in ("id", "type")}, names, now, key_values
    )
    entity: StoredEntity = {
        "id": names.ids.to_ld(entity_id),
        "type": [names.entity_type(entity_type)],
        "createdAt": now,
        "modifiedAt": now,
        "attrs": attrs,
    }
    if scope is not None:
        entity["scope"] = [scope]
    return entity


def v2_id(entity: StoredEntity, names: Names) -> str:
    return names.ids.from_ld(entity["id"])


def v2_type(entity: StoredEntity, names: Names) -> str:
    return names.compact(entity["type"][0]) if entity["type"] else DEFAULT_TYPE


def default_instance(instances: list[StoredAttribute]) -> StoredAttribute | None:
    return next((i for i in instances if "datasetId" not in i), instances[0] if instances else None)


@dataclass(frozen=True, slots=True)
class View:
    """How a request wants Entities shown: the mode, ``attrs`` and ``metadata`` (v2 names)."""

    names: Names
    mode: str = "normalized"
    attrs: list[str] | None = None
    metadata: list[str] | None = None
    with_id: bool = True


def _selected(entity: StoredEntity, view: View) -> Iterator[tuple[str, StoredAttribute]]:
    """(v2 name, stored instance) of the attributes to show, in the order to show them.
    A builtin is a pseudo-instance holding the system time."""
    names, attrs = view.names, entity.get("attrs", {})
    if view.attrs is None or "*" in view.attrs:
        wanted = [names.compact(iri) for iri in attrs]
        wanted += [a for a in view.attrs or [] if a in _BUILTINS]
    else:
        wanted = view.attrs
    for name in wanted:
        if name in _BUILTINS:
            yield name, _builtin(entity, name)
            continue
        inst = default_instance(attrs.get(names.expand(name), []))
        if inst is not None:
            yield name, inst


def _builtin(entity: StoredEntity, name: str) -> StoredAttribute:
    time = orion_time(entity[_BUILTINS[name]])
    return {"type": "Property", "value": {"@type": "DateTime", "@value": time}}


def render_entity(entity: StoredEntity, view: View) -> Any:
    """One Entity in the view's representation (an object, or an array for values modes)."""
    pairs = list(_selected(entity, view))
    if view.mode in ("values", "unique"):
        values = [render_attribute(inst, view.names, [])["value"] for _, inst in pairs]
        return _unique(values) if view.mode == "unique" else values
    out: dict[str, Any] = {}
    if view.with_id:
        out["id"] = v2_id(entity, view.names)
        out["type"] = v2_type(entity, view.names)
    for name, inst in pairs:
        rendered = render_attribute(inst, view.names, view.metadata)
        out[name] = rendered["value"] if view.mode == "keyValues" else rendered
    return out


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out
