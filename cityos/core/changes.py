"""Changes: each NGSI-LD write as a function from the stored Entity (or None) to the new one.

Storage runs a change atomically (see ``cityos.storage.base``); a change raises a
CityOSError to refuse, and then nothing of that Entity is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cityos.core import operations as ops
from cityos.core.entities import NULL_URI, parse_fragment, parse_scope, parse_types
from cityos.core.jsonld import CompiledContext
from cityos.core.model import StoredAttribute, StoredEntity
from cityos.core.temporal import parse_time
from cityos.errors import AlreadyExists, ResourceNotFound
from cityos.storage.base import Change

__all__ = [
    "Fragment",
    "append",
    "create",
    "delete",
    "delete_attribute",
    "absorb_history",
    "delete_if_present",
    "fragment_from_body",
    "merge",
    "partial_update",
    "prune",
    "replace",
    "replace_attribute",
    "update",
    "upsert",
]

Attrs = dict[str, list[StoredAttribute]]


def _existing(current: StoredEntity | None, entity_id: str) -> StoredEntity:
    if current is None:
        raise ResourceNotFound(f"Entity {entity_id} does not exist")
    return current


def create(entity: StoredEntity) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        if current is not None:
            raise AlreadyExists(f"Entity {entity['id']} already exists")
        return entity, "created"

    return change


def upsert(entity: StoredEntity, replace_all: bool) -> Change:
    """Batch upsert (clause 5.6.8): create, or replace / update the existing Entity."""

    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        if current is None:
            return entity, "created"
        if replace_all:
            return ops.replace_entity(current, entity), "updated"
        current["type"] = list(dict.fromkeys([*current["type"], *entity["type"]]))
        if "scope" in entity:
            current["scope"] = entity["scope"]
        ops.append_attrs(current, entity.get("attrs", {}), entity["modifiedAt"])
        current["modifiedAt"] = entity["modifiedAt"]
        return current, "updated"

    return change


def replace(entity: StoredEntity) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        return ops.replace_entity(_existing(current, entity["id"]), entity), None

    return change


def _add_types(current: StoredEntity, types: list[str]) -> None:
    if types:
        current["type"] = list(dict.fromkeys([*current["type"], *types]))


@dataclass(frozen=True, slots=True)
class Fragment:
    """An Entity fragment of an update: attributes, and optionally types to add and a scope."""

    entity_id: str
    attrs: Attrs
    now: str
    types: list[str] = field(default_factory=list)
    scope: list[str] | None = None


def fragment_from_body(
    body: dict[str, Any], entity_id: str, ctx: CompiledContext, now: str
) -> Fragment:
    """An update's Entity fragment: attributes plus the optional type and scope members."""
    types = parse_types(body["type"], ctx) if "type" in body else []
    scope = parse_scope(body["scope"]) if "scope" in body and body["scope"] != NULL_URI else None
    if body.get("scope") == NULL_URI:
        scope = [NULL_URI]
    return Fragment(entity_id, parse_fragment(body, ctx, now), now, types, scope)


def _members(
    current: StoredEntity, fragment: Fragment, mode: str, result: ops.UpdateResult
) -> None:
    _add_types(current, fragment.types)
    if fragment.scope is not None:
        ops.apply_scope(current, fragment.scope, mode, result)


def merge(fragment: Fragment) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, fragment.entity_id)
        result = ops.merge_entity(current, fragment.attrs, fragment.now)
        _members(current, fragment, "merge", result)
        return current, result

    return change


def append(fragment: Fragment, no_overwrite: bool) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, fragment.entity_id)
        result = ops.append_attrs(current, fragment.attrs, fragment.now, no_overwrite)
        _members(current, fragment, "append-keep" if no_overwrite else "append", result)
        current["modifiedAt"] = fragment.now
        return current, result

    return change


def update(fragment: Fragment) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, fragment.entity_id)
        result = ops.update_attrs(current, fragment.attrs, fragment.now)
        _members(current, fragment, "update", result)
        current["modifiedAt"] = fragment.now
        return current, result

    return change


def partial_update(entity_id: str, name: str, fragments: list[StoredAttribute], now: str) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, entity_id)
        for fragment in fragments:
            ops.partial_update_attr(current, name, fragment, now)
        return current, None

    return change


def replace_attribute(
    entity_id: str, name: str, instances: list[StoredAttribute], now: str
) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, entity_id)
        ops.replace_attr(current, name, instances, now)
        return current, None

    return change


def delete_attribute(
    entity_id: str, name: str, dataset_id: str | None, delete_all: bool, now: str
) -> Change:
    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, entity_id)
        ops.delete_attr(current, name, dataset_id, delete_all, now)
        return current, None

    return change


def prune(entity_id: str, drop: list[str] | None, keep: list[str] | None, now: str) -> Change:
    """Purge with ``drop``/``keep`` (clause 5.6.21): remove attributes, keep the Entity."""

    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, entity_id)
        attrs = current.get("attrs", {})
        gone = [
            a
            for a in attrs
            if (drop is not None and a in drop) or (keep is not None and a not in keep)
        ]
        for name in gone:
            del attrs[name]
        if gone:
            current["modifiedAt"] = now
        return current, gone

    return change


def delete(entity_id: str, types: list[str] | None = None) -> Change:
    """DELETE /entities/{id}; with ``type`` (clause 6.5.3.2) only an Entity of that type."""

    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        current = _existing(current, entity_id)
        if types and not set(types) & set(current["type"]):
            raise ResourceNotFound(f"Entity {entity_id} is not of type {', '.join(types)}")
        return None, None

    return change


def _later_or_equal(new: StoredAttribute, old: StoredAttribute) -> bool:
    new_at, old_at = new.get("observedAt"), old.get("observedAt")
    if not isinstance(new_at, str) or not isinstance(old_at, str):
        return True
    return parse_time(new_at, "observedAt") >= parse_time(old_at, "observedAt")


def absorb_history(entity: StoredEntity) -> Change:
    """A temporal write (clause 5.6.11, 5.6.12) as seen by the current state: the newest
    given instance of each attribute and datasetId becomes current, unless the Entity
    already holds a newer observation. A fragment without types leaves a missing Entity
    missing."""

    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        latest: Attrs = {}
        for name, instances in entity.get("attrs", {}).items():
            by_dataset: dict[str | None, StoredAttribute] = {}
            for inst in instances:
                old = by_dataset.get(inst.get("datasetId"))
                if old is None or _later_or_equal(inst, old):
                    by_dataset[inst.get("datasetId")] = inst
            latest[name] = sorted(by_dataset.values(), key=lambda i: "datasetId" in i)
        if current is None:
            if not entity.get("type"):
                return None, None
            return {**entity, "attrs": latest}, "created"
        _add_types(current, entity.get("type", []))
        if "scope" in entity:
            current["scope"] = entity["scope"]
        attrs = current.setdefault("attrs", {})
        for name, instances in latest.items():
            existing = attrs.setdefault(name, [])
            for inst in instances:
                old = next(
                    (o for o in existing if o.get("datasetId") == inst.get("datasetId")), None
                )
                if old is None or _later_or_equal(inst, old):
                    ops.append_attrs(current, {name: [inst]}, entity["modifiedAt"])
        current["modifiedAt"] = entity["modifiedAt"]
        return current, "updated"

    return change


def delete_if_present(entity_id: str) -> Change:
    """Deleting the temporal representation (clause 5.6.16) deletes the Entity too, if any."""

    def change(current: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
        return None, current is not None

    return change
