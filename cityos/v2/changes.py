"""The NGSI-v2 writes as changes of the store (see ``cityos.storage.base.Change``).

Each is a pure function of the stored Entity, run by the store inside its write
transaction, so NGSI-LD Subscriptions, temporal history and notifications see a v2 write
exactly as they see an NGSI-LD one. A change that raises leaves the Entity untouched.

v2 semantics (FIWARE-NGSI v2, "Entities Operations"), on the default instance of each
attribute (the one without ``datasetId``; others are kept):

- append (POST /attrs): set each attribute; ``options=append`` (appendStrict) leaves out
  the attributes that exist.
- update (PATCH /attrs): leaves out the attributes that do not exist.
  As Orion does, the others are written and the answer is 422 naming those left out
  (:class:`Refused`); when nothing is left to write, nothing changes. Metadata not given
  are kept, as Orion keeps them (unless ``overrideMetadata``).
- replace (PUT /attrs): the attributes given become all the attributes.
- An Entity matches a request only in its service path (when the request names one) and
  of its ``type`` (when given); otherwise it does not exist for the request (404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cityos.core.model import StoredAttribute, StoredEntity
from cityos.errors import ResourceNotFound
from cityos.storage.base import Change
from cityos.v2.errors import Unprocessable
from cityos.v2.names import Names

__all__ = [
    "NOT_FOUND",
    "AttrWrite",
    "Refused",
    "Target",
    "delete_attribute",
    "delete_attributes",
    "delete_entity",
    "replace_all",
    "replace_attribute",
    "set_attributes",
    "set_value",
    "upsert",
]

NOT_FOUND = "The requested entity has not been found. Check type and id"
Attrs = dict[str, list[StoredAttribute]]
ChangeResult = tuple[StoredEntity | None, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """The Entity a request addresses: its v2 id, and optionally its type IRIs and the
    scope of the request's service path (``check_scope``: the header was given)."""

    v2_id: str
    types: tuple[str, ...] = ()
    scope: str | None = None
    check_scope: bool = False

    def matches(self, entity: StoredEntity) -> bool:
        if self.types and not set(self.types) & set(entity["type"]):
            return False
        if not self.check_scope:
            return True
        scopes = entity.get("scope") or []
        return self.scope in scopes if self.scope else not scopes

    def existing(self, current: StoredEntity | None) -> StoredEntity:
        if current is None or not self.matches(current):
            raise ResourceNotFound(NOT_FOUND)
        return current


def _default(instances: list[StoredAttribute]) -> StoredAttribute | None:
    return next((i for i in instances if "datasetId" not in i), None)


def _merged(old: StoredAttribute | None, new: StoredAttribute) -> StoredAttribute:
    """``new`` with the metadata of ``old`` it does not give, and ``old``'s createdAt."""
    if old is None:
        return new
    merged = dict(new)
    merged["createdAt"] = old.get("createdAt", new["createdAt"])
    for member in ("unitCode", "observedAt"):
        if member in old and member not in new:
            merged[member] = old[member]
    subs = {**old.get("attrs", {}), **new.get("attrs", {})}
    if subs:
        merged["attrs"] = subs
    return merged


def _put(entity: StoredEntity, iri: str, inst: StoredAttribute, merge: bool) -> None:
    attrs = entity.setdefault("attrs", {})
    instances = attrs.get(iri, [])
    old = _default(instances)
    if merge:
        inst = _merged(old, inst)
    elif old is not None:
        inst = {**inst, "createdAt": old.get("createdAt", inst["createdAt"])}
    attrs[iri] = [inst, *(i for i in instances if "datasetId" in i)]


def _names_text(entity: StoredEntity, iris: list[str], names: Names) -> str:
    listed = ", ".join(names.compact(i) for i in iris)
    return f"{names.ids.from_ld(entity['id'])} - [ {listed} ]"


@dataclass(frozen=True, slots=True)
class AttrWrite:
    """Attributes to set on an Entity, and how (POST /attrs, PATCH /attrs, op/update)."""

    attrs: Attrs
    now: str
    strict: bool = False  # appendStrict: leave out the attributes that exist
    must_exist: bool = False  # update: leave out the attributes that do not exist
    override: bool = False  # options=overrideMetadata: the metadata given replace the old


@dataclass(frozen=True, slots=True)
class Refused:
    """What a write left out; Orion writes the rest and then answers 422 with this."""

    detail: str


def _set_attributes(entity: StoredEntity, write: AttrWrite, names: Names) -> Refused | None:
    attrs = entity.get("attrs", {})
    existing = {iri for iri in write.attrs if _default(attrs.get(iri, []))}
    refused: list[str] = []
    if write.strict:
        refused = [i for i in write.attrs if i in existing]
        prefix = "one or more of the attributes in the request already exist: "
    elif write.must_exist:
        refused = [i for i in write.attrs if i not in existing]
        prefix = "do not exist: "
    if refused and len(refused) == len(write.attrs):  # nothing to write: nothing changes
        raise Unprocessable(prefix + _names_text(entity, refused, names))
    for iri, instances in write.attrs.items():
        if iri not in refused:
            _put(entity, iri, instances[0], merge=not write.override)
    entity["modifiedAt"] = write.now
    return Refused(prefix + _names_text(entity, refused, names)) if refused else None


def set_attributes(target: Target, write: AttrWrite, names: Names) -> Change:
    """POST and PATCH /attrs: the attributes of ``write``; the result is :class:`Refused`
    when some were left out (and the others written)."""

    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        return entity, _set_attributes(entity, write, names)

    return change


def upsert(
    entity: StoredEntity, target: Target, strict: bool, names: Names, add_type: bool = False
) -> Change:
    """Create the Entity, or append its attributes to the existing one; ``add_type``: its
    type is added to the existing Entity's types (NGSI-LD Entities may have several)."""

    def change(current: StoredEntity | None) -> ChangeResult:
        if current is None:
            return entity, "created"
        existing = target.existing(current)
        if add_type:
            existing["type"] = list(dict.fromkeys([*existing["type"], *entity["type"]]))
        write = AttrWrite(entity.get("attrs", {}), entity["modifiedAt"], strict=strict)
        return existing, _set_attributes(existing, write, names) or "updated"

    return change


def replace_all(target: Target, attrs: Attrs, now: str) -> Change:
    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        entity["attrs"] = attrs
        entity["modifiedAt"] = now
        return entity, None

    return change


def _attribute(entity: StoredEntity, iri: str) -> StoredAttribute:
    inst = _default(entity.get("attrs", {}).get(iri, []))
    if inst is None:
        raise ResourceNotFound("The entity does not have such attribute")
    return inst


def replace_attribute(target: Target, iri: str, inst: StoredAttribute, now: str) -> Change:
    """PUT /attrs/{name}: the attribute (value, type and metadata) is replaced."""

    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        _attribute(entity, iri)
        _put(entity, iri, inst, merge=False)
        entity["modifiedAt"] = now
        return entity, None

    return change


def set_value(
    target: Target, iri: str, make: Callable[[StoredAttribute], StoredAttribute], now: str
) -> Change:
    """PUT /attrs/{name}/value: ``make`` builds the new instance from the stored one (its
    v2 type is kept), and the metadata are kept."""

    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        old = _attribute(entity, iri)
        _put(entity, iri, make(old), merge=True)
        entity["modifiedAt"] = now
        return entity, None

    return change


def delete_attribute(target: Target, iri: str, now: str) -> Change:
    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        _attribute(entity, iri)
        kept = [i for i in entity["attrs"][iri] if "datasetId" in i]
        if kept:
            entity["attrs"][iri] = kept
        else:
            del entity["attrs"][iri]
        entity["modifiedAt"] = now
        return entity, None

    return change


def delete_attributes(target: Target, iris: list[str], now: str, names: Names) -> Change:
    """op/update delete with attributes: all must exist."""

    def change(current: StoredEntity | None) -> ChangeResult:
        entity = target.existing(current)
        missing = [i for i in iris if not _default(entity.get("attrs", {}).get(i, []))]
        if missing:
            raise Unprocessable("do not exist: " + _names_text(entity, missing, names))
        for iri in iris:
            delete_attribute(target, iri, now)(entity)
        return entity, None

    return change


def delete_entity(target: Target) -> Change:
    def change(current: StoredEntity | None) -> ChangeResult:
        target.existing(current)
        return None, None

    return change
