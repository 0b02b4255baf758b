"""Pure changes to a stored Entity: the semantics of each NGSI-LD update operation.

Storage applies these inside its write transaction (read, change, write), so two writers
on one Entity never lose an update; nothing here does I/O. Clause numbers are
GS CIM 009 V1.8.1, clause 5.6.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from cityos.core.entities import NULL_URI
from cityos.core.model import StoredAttribute, StoredEntity
from cityos.errors import BadRequestData, ResourceNotFound

__all__ = [
    "UpdateResult",
    "append_attrs",
    "apply_scope",
    "delete_attr",
    "merge_entity",
    "partial_update_attr",
    "replace_attr",
    "replace_entity",
    "update_attrs",
]

Attrs = dict[str, list[StoredAttribute]]


@dataclass
class UpdateResult:
    """Which attributes changed and which did not, with reasons (clause 5.2.18 UpdateResult)."""

    updated: list[str] = field(default_factory=list)
    not_updated: list[tuple[str, str]] = field(default_factory=list)


def _key(inst: StoredAttribute) -> str | None:
    return inst.get("datasetId")


def _put_instance(current: list[StoredAttribute], new: StoredAttribute) -> None:
    for i, old in enumerate(current):
        if _key(old) == _key(new):
            new["createdAt"] = old.get("createdAt", new.get("createdAt"))
            current[i] = new
            return
    current.append(new)
    current.sort(key=lambda x: "datasetId" in x)


def _touch(entity: StoredEntity, now: str) -> None:
    entity["modifiedAt"] = now


def replace_entity(old: StoredEntity, new: StoredEntity) -> StoredEntity:
    """PUT /entities/{id} (clause 5.6.18): everything but id and createdAt is replaced."""
    new["createdAt"] = old["createdAt"]
    return new


def append_attrs(
    entity: StoredEntity, attrs: Attrs, now: str, no_overwrite: bool = False
) -> UpdateResult:
    """POST /entities/{id}/attrs (clause 5.6.3)."""
    result = UpdateResult()
    current = entity.setdefault("attrs", {})
    for name, instances in attrs.items():
        existing = current.setdefault(name, [])
        for inst in instances:
            if no_overwrite and any(_key(o) == _key(inst) for o in existing):
                result.not_updated.append(
                    (name, "Attribute exists and options=noOverwrite was given")
                )
                continue
            _put_instance(existing, inst)
            if name not in result.updated:
                result.updated.append(name)
        if not existing:
            del current[name]
    if result.updated:
        _touch(entity, now)
    return result


def update_attrs(entity: StoredEntity, attrs: Attrs, now: str) -> UpdateResult:
    """PATCH /entities/{id}/attrs (clause 5.6.2). Attributes the Entity lacks are added,
    as the ETSI conformance suite expects (011_01_03, 046_23); the NGSI-LD Null deletes."""
    result = UpdateResult()
    current = entity.setdefault("attrs", {})
    for name, instances in attrs.items():
        existing = current.setdefault(name, [])
        for inst in instances:
            if inst.get("value") == NULL_URI:  # clause 4.5.0: the NGSI-LD null deletes
                existing[:] = [o for o in existing if _key(o) != _key(inst)]
            else:
                _put_instance(existing, inst)
        if name not in result.updated:
            result.updated.append(name)
        if not existing:
            current.pop(name, None)
    if result.updated:
        _touch(entity, now)
    return result


def merge_entity(entity: StoredEntity, attrs: Attrs, now: str) -> UpdateResult:
    """PATCH /entities/{id} (clause 5.6.17): attributes are merged, ``urn:ngsi-ld:null`` deletes."""
    result = UpdateResult()
    current = entity.setdefault("attrs", {})
    for name, instances in attrs.items():
        for inst in instances:
            _merge_instance(current, name, inst, now)
        if name in current and not current[name]:
            del current[name]
        result.updated.append(name)
    _touch(entity, now)
    return result


def _merge_instance(current: Attrs, name: str, inst: StoredAttribute, now: str) -> None:
    existing = current.setdefault(name, [])
    if inst.get("value") == NULL_URI:
        existing[:] = [o for o in existing if _key(o) != _key(inst)]
        return
    old = next((o for o in existing if _key(o) == _key(inst)), None)
    if old is None:
        _put_instance(existing, inst)
        return
    merged = _merge_members(old, inst, now)
    _put_instance(existing, merged)


def _merge_members(old: StoredAttribute, new: StoredAttribute, now: str) -> StoredAttribute:
    merged = copy.copy(old)
    for key, value in new.items():
        if key in ("attrs", "createdAt"):
            continue
        merged[key] = value
    subs = dict(old.get("attrs", {}))
    for sub_name, sub_instances in new.get("attrs", {}).items():
        for sub in sub_instances:
            _merge_instance(subs, sub_name, sub, now)
        if not subs.get(sub_name):
            subs.pop(sub_name, None)
    if subs:
        merged["attrs"] = subs
    else:
        merged.pop("attrs", None)
    merged["modifiedAt"] = now
    return merged


def partial_update_attr(
    entity: StoredEntity, name: str, fragment: StoredAttribute, now: str
) -> None:
    """PATCH /entities/{id}/attrs/{attrId} (clause 5.6.4): members of one instance change."""
    existing = entity.get("attrs", {}).get(name)
    old = next((o for o in existing or [] if _key(o) == _key(fragment)), None)
    if old is None or existing is None:
        raise ResourceNotFound(
            f"Entity {entity['id']} has no attribute {name}{_dataset_text(_key(fragment))}"
        )
    if fragment.get("value") == NULL_URI:
        # clause 5.6.4 with 4.5.0: the NGSI-LD null deletes the instance.
        existing.remove(old)
        if not existing:
            del entity["attrs"][name]
        _touch(entity, now)
        return
    if "type" in fragment and fragment["type"] != old["type"]:
        raise BadRequestData(f"Attribute {name} is a {old['type']}, not a {fragment['type']}")
    merged = _merge_members(old, fragment, now)
    _put_instance(existing, merged)
    _touch(entity, now)


def replace_attr(
    entity: StoredEntity, name: str, instances: list[StoredAttribute], now: str
) -> None:
    """PUT /entities/{id}/attrs/{attrId} (clause 5.6.19)."""
    existing = entity.get("attrs", {}).get(name)
    if not existing:
        raise ResourceNotFound(f"Entity {entity['id']} has no attribute {name}")
    for inst in instances:
        _put_instance(existing, inst)
    _touch(entity, now)


def delete_attr(
    entity: StoredEntity, name: str, dataset_id: str | None, delete_all: bool, now: str
) -> None:
    """DELETE /entities/{id}/attrs/{attrId} (clause 5.6.5); ``scope`` deletes the Entity's scope."""
    if name == "scope":
        if "scope" not in entity:
            raise ResourceNotFound(f"Entity {entity['id']} has no scope")
        del entity["scope"]
        _touch(entity, now)
        return
    attrs = entity.get("attrs", {})
    existing = attrs.get(name)
    if not existing:
        raise ResourceNotFound(f"Entity {entity['id']} has no attribute {name}")
    if delete_all:
        del attrs[name]
    else:
        kept = [o for o in existing if _key(o) != dataset_id]
        if len(kept) == len(existing):
            raise ResourceNotFound(
                f"Entity {entity['id']} has no attribute {name}{_dataset_text(dataset_id)}"
            )
        if kept:
            attrs[name] = kept
        else:
            del attrs[name]
    _touch(entity, now)


def apply_scope(entity: StoredEntity, scope: list[str], mode: str, result: UpdateResult) -> None:
    """Scope in an update (clause 4.18): replaced (append, merge), added to under
    noOverwrite, or replaced only if present (update)."""
    if mode == "append-keep":  # noOverwrite: the scopes given are added to those there
        entity["scope"] = list(dict.fromkeys([*entity.get("scope", []), *scope]))
    elif mode == "update" and "scope" not in entity:
        result.not_updated.append(("scope", "The Entity has no scope"))
        return
    elif scope == [NULL_URI]:
        entity.pop("scope", None)
    else:
        entity["scope"] = scope
    result.updated.append("scope")


def _dataset_text(dataset_id: str | None) -> str:
    return f" with datasetId {dataset_id}" if dataset_id else ""
