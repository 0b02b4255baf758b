"""Distributed operations (GS CIM 009 V1.8.1 clauses 4.3.6, 5.5.x, 5.6 and 5.7): which
registered Context Sources an operation reaches, which Attributes each one takes, and how
the Entity fragments they answer merge with the local Entity.

Pure functions over :class:`~cityos.core.registrations.Registration`; the HTTP calls are in
``cityos.federation`` and the request handling in ``cityos.api.distributed``::

    a write      exclusive sources take their registered Attributes of the Entity first,
                 redirect sources then take what matches of the rest, and neither is kept
                 locally; inclusive sources get a copy of what matches and the rest is
                 written locally; auxiliary sources are never written to (clause 4.3.6.3).
    a read       every matching source but auxiliary answers alongside the local store;
                 auxiliary sources only fill Attributes nobody else has (clause 4.3.6.2).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cityos.core.model import StoredAttribute, StoredEntity
from cityos.core.registrations import Registration, RegistrationInfo
from cityos.core.temporal import TemporalEntity, TemporalQuery, parse_time
from cityos.errors import CityOSError

__all__ = [
    "OPERATION_GROUPS",
    "Target",
    "TypeTest",
    "conflict",
    "exclusive_attrs",
    "redirect_refusing",
    "merge_entities",
    "merge_temporal",
    "read_targets",
    "split_write",
    "supported_operations",
    "write_targets",
]

# Clause 4.20 (Table 4.20-1): the named groups of operations a registration may list.
_RETRIEVE_OPS = frozenset({"retrieveEntity", "queryEntity", "queryBatch"})
_DISCOVERY_OPS = frozenset(
    {
        *("retrieveEntityTypes", "retrieveEntityTypeDetails", "retrieveEntityTypeInfo"),
        *("retrieveAttrTypes", "retrieveAttrTypeDetails", "retrieveAttrTypeInfo"),
    }
)
_SUBSCRIPTION_OPS = frozenset(
    {
        *("createSubscription", "updateSubscription", "retrieveSubscription"),
        *("querySubscription", "deleteSubscription"),
    }
)
OPERATION_GROUPS: dict[str, frozenset[str]] = {
    "federationOps": _RETRIEVE_OPS
    | _DISCOVERY_OPS
    | _SUBSCRIPTION_OPS
    | {"retrieveTemporal", "queryTemporal"},
    "updateOps": frozenset({"updateEntity", "updateAttrs", "replaceEntity", "replaceAttrs"}),
    "retrieveOps": frozenset({"retrieveEntity", "queryEntity"}),
    "redirectionOps": _RETRIEVE_OPS
    | _DISCOVERY_OPS
    | {
        *("createEntity", "updateEntity", "appendAttrs", "updateAttrs", "deleteAttrs"),
        *("deleteEntity", "mergeEntity", "replaceEntity", "replaceAttrs", "purgeEntity"),
    },
    "associationOps": _SUBSCRIPTION_OPS
    | {
        *("retrieveEntityMap", "updateEntityMap", "deleteEntityMap"),
        *("createEntityMapQueryEntity", "createEntityMapQueryTemporal"),
    },
}
_DEFAULT_OPERATIONS = ("federationOps",)  # clause 5.2.9


def supported_operations(reg: Registration) -> frozenset[str]:
    """The operations a registration supports, its groups unfolded."""
    out: set[str] = set()
    for op in reg.members.get("operations", _DEFAULT_OPERATIONS):
        out |= OPERATION_GROUPS.get(op, {op})
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Target:
    """A registration an operation reaches, and the Attributes it registered for the Entity
    (None: every Attribute)."""

    reg: Registration
    attrs: frozenset[str] | None

    @property
    def mode(self) -> str:
        mode: str = self.reg.members.get("mode", "inclusive")
        return mode

    @property
    def endpoint(self) -> str:
        endpoint: str = self.reg.members["endpoint"]
        return endpoint

    def takes(self, attr: str) -> bool:
        return self.attrs is None or attr in self.attrs


TypeTest = Callable[[str], bool]


def _infos_for(info: RegistrationInfo, entity_id: str | None, type_ok: TypeTest | None) -> bool:
    """Whether a RegistrationInfo covers the Entity (clause 5.12): its id, and its type when
    the operation knows it (a retrieval by id does not)."""
    if info.entities is None:
        return True
    for e in info.entities:
        if type_ok is not None and not type_ok(e.type):
            continue
        if e.id is not None and entity_id is not None and e.id != entity_id:
            continue
        if e.id_pattern is not None and entity_id is not None:
            if not re.search(e.id_pattern, entity_id):
                continue
        return True
    return False


def _target(reg: Registration, entity_id: str | None, type_ok: TypeTest | None) -> Target | None:
    matched = [i for i in reg.information if _infos_for(i, entity_id, type_ok)]
    if not matched:
        return None
    attrs: set[str] = set()
    for info in matched:
        if info.attributes is None:
            return Target(reg, None)
        attrs |= info.attributes
    return Target(reg, frozenset(attrs))


def _reaching(regs: Iterable[Registration], ops: Iterable[str], now_us: int) -> list[Registration]:
    wanted = frozenset(ops)
    return [r for r in regs if not r.expired(now_us) and wanted & supported_operations(r)]


def write_targets(
    regs: Iterable[Registration],
    op: str,
    entity_id: str,
    types: Sequence[str] | None,
    now_us: int,
) -> list[Target]:
    """The registrations a write ``op`` on the Entity is forwarded to: exclusive first,
    then redirect, then inclusive (clause 4.3.6.4); auxiliary ones are never written to."""
    order = {"exclusive": 0, "redirect": 1, "inclusive": 2}
    type_ok = None if types is None else frozenset(types).__contains__
    targets = [
        t
        for r in _reaching(regs, (op,), now_us)
        if (t := _target(r, entity_id, type_ok)) is not None and t.mode in order
    ]
    targets.sort(key=lambda t: order[t.mode])
    return targets


def redirect_refusing(
    regs: Iterable[Registration],
    op: str,
    entity_id: str,
    types: Sequence[str] | None,
    attrs: Iterable[str] | None,
    now_us: int,
) -> Registration | None:
    """A redirect registration that covers the write but whose source does not support
    ``op``: the Entity is held there, so the write cannot be done here either (clause
    5.6.1.4 and its siblings: Conflict)."""
    type_ok = None if types is None else frozenset(types).__contains__
    written = frozenset(attrs) if attrs is not None else None
    for reg in regs:
        if reg.expired(now_us) or reg.members.get("mode") != "redirect":
            continue
        if op in supported_operations(reg):
            continue
        target = _target(reg, entity_id, type_ok)
        if target is None:
            continue
        if written is None or target.attrs is None or written & target.attrs:
            return reg
    return None


def read_targets(
    regs: Iterable[Registration],
    ops: Sequence[str],
    entity_id: str | None,
    type_ok: TypeTest | None,
    attrs: Iterable[str] | None,
    now_us: int,
) -> list[Target]:
    """The registrations a retrieval reaches: those supporting one of ``ops`` whose
    information covers the Entity (or a queried type) and one of the asked Attributes."""
    asked = frozenset(attrs) if attrs else None
    out = []
    for reg in _reaching(regs, ops, now_us):
        target = _target(reg, entity_id, type_ok)
        if target is None:
            continue
        if asked is not None and target.attrs is not None and not (asked & target.attrs):
            continue
        out.append(target)
    return out


def split_write(
    attrs: Iterable[str], targets: Sequence[Target]
) -> tuple[list[tuple[Target, frozenset[str]]], frozenset[str]]:
    """Which Attributes of a write each target gets, and which stay local (clause 4.3.6.3):
    an exclusive source takes its Attributes away from everyone after it; redirect sources
    each get what matches of the rest (overlapping ones all get it), which is then no
    longer written locally; an inclusive source gets a copy. ``targets`` come in that
    order (``write_targets``); those left with nothing to write are dropped. With no
    ``attrs`` (an operation on the whole Entity) every target takes part."""
    remaining = set(attrs)
    whole = not remaining
    plan: list[tuple[Target, frozenset[str]]] = []
    redirected: set[str] = set()
    for target in targets:
        if target.mode == "inclusive":
            remaining -= redirected
            redirected = set()
        taken = frozenset(a for a in remaining if target.takes(a))
        if not taken and not whole:
            continue
        plan.append((target, taken))
        if target.mode == "exclusive":
            remaining -= taken
        elif target.mode == "redirect":
            redirected |= taken
    return plan, frozenset(remaining - redirected)


def conflict(
    reg: Registration, others: Iterable[Registration], local: dict[str, StoredEntity]
) -> str | None:
    """Why a new exclusive or redirect registration would contradict what exists
    (clauses 4.3.6.3, 5.9.2.4), or None: a redirect one over an Entity held here, an
    exclusive one over Attributes held here, either over an exclusive one's Entity and
    Attributes. ``local`` holds the stored Entities the registration names by id."""
    mode = reg.members.get("mode", "inclusive")
    if mode not in ("exclusive", "redirect"):
        return None
    mine = _claims(reg)
    for entity_id, attrs in mine:
        entity = local.get(entity_id)
        if entity is not None and mode == "redirect":
            return f"Entity {entity_id} is held here; a redirect registration cannot take it"
        held = set(entity.get("attrs", {})) if entity is not None else set()
        if mode == "exclusive" and attrs is not None and held & attrs:
            return f"Entity {entity_id} holds {', '.join(sorted(held & attrs))} here already"
    for other in others:
        if other.id == reg.id or other.members.get("mode") != "exclusive":
            continue
        for entity_id, attrs in _claims(other):
            for my_id, my_attrs in mine:
                if my_id == entity_id and (attrs is None or my_attrs is None or attrs & my_attrs):
                    return f"Registration {other.id} already holds {entity_id} exclusively"
    return None


def _claims(reg: Registration) -> list[tuple[str, frozenset[str] | None]]:
    return [
        (e.id, info.attributes)
        for info in reg.information
        for e in info.entities or ()
        if e.id is not None
    ]


# -- merging the fragments of one Entity (clause 4.3.6.2, 5.7.1.4) ----------------------


def _stamp(inst: StoredAttribute) -> str:
    return str(inst.get("observedAt") or inst.get("modifiedAt") or "")


def _merge_attribute(
    mine: list[StoredAttribute], theirs: list[StoredAttribute]
) -> list[StoredAttribute]:
    """Instances by datasetId; where both have one, the most recently observed wins (the
    local one on a tie or when neither says)."""
    by_dataset = {inst.get("datasetId"): inst for inst in mine}
    for inst in theirs:
        key = inst.get("datasetId")
        current = by_dataset.get(key)
        if current is None or _stamp(inst) > _stamp(current):
            by_dataset[key] = inst
    return sorted(by_dataset.values(), key=lambda i: "datasetId" in i)


def exclusive_attrs(targets: Iterable[Target], entity_id: str) -> frozenset[str]:
    """The Attributes of the Entity that exclusive registrations give to their sources
    alone: a local copy of them is never shown (clause 4.3.6.3)."""
    out: set[str] = set()
    for t in targets:
        if t.mode != "exclusive" or t.attrs is None:
            continue
        ids = {e.id for i in t.reg.information for e in i.entities or () if e.id is not None}
        if entity_id in ids:
            out |= t.attrs
    return frozenset(out)


def merge_entities(
    local: StoredEntity | None,
    fragments: Sequence[tuple[Target, StoredEntity]],
    hidden: frozenset[str] = frozenset(),
) -> StoredEntity | None:
    """One Entity from the local one (less its ``hidden`` Attributes) and the fragments
    the sources answered."""
    merged: StoredEntity | None = None
    if local is not None:
        attrs = {k: v for k, v in local.get("attrs", {}).items() if k not in hidden}
        merged = {**local, "attrs": attrs}
    auxiliary: list[tuple[Target, StoredEntity]] = []
    for target, fragment in fragments:
        if target.mode == "auxiliary":
            auxiliary.append((target, fragment))
            continue
        merged = _absorb(merged, target, fragment, override=True)
    for target, fragment in auxiliary:
        merged = _absorb(merged, target, fragment, override=False)
    return merged


def _absorb(
    merged: StoredEntity | None, target: Target, fragment: StoredEntity, override: bool
) -> StoredEntity:
    if merged is None:
        return {**fragment, "attrs": dict(fragment.get("attrs", {}))}
    types = list(dict.fromkeys([*merged.get("type", []), *fragment.get("type", [])]))
    merged["type"] = types
    attrs = merged.setdefault("attrs", {})
    for name, instances in fragment.get("attrs", {}).items():
        if not target.takes(name):
            continue
        if name not in attrs:
            attrs[name] = instances
        elif override and target.mode == "exclusive":
            attrs[name] = instances
        elif override:
            attrs[name] = _merge_attribute(attrs[name], instances)
    return merged


# -- merging temporal evolutions (clause 5.7.3.4, 5.7.4.4 with distributed operations) --


def merge_temporal(
    local: TemporalEntity | None, remote: Sequence[TemporalEntity], tq: TemporalQuery
) -> TemporalEntity | None:
    """One temporal Entity from the local history and the sources': each Attribute's
    instances joined in time order (by the query's timeproperty), then cut to the newest
    ``lastN`` when the query asks for it."""
    if local is None and not remote:
        return None
    base = local or remote[0]
    merged = TemporalEntity(
        base.id,
        list(base.types),
        base.scope,
        base.created_at,
        base.modified_at,
        base.deleted_at,
        {k: list(v) for k, v in base.attrs.items()},
        dict(base.aggregates),
        base.content_range,
    )
    for entity in remote if local is not None else remote[1:]:
        merged.types = list(dict.fromkeys([*merged.types, *entity.types]))
        for name, instances in entity.attrs.items():
            merged.attrs.setdefault(name, []).extend(instances)
    for name, instances in merged.attrs.items():
        instances.sort(key=lambda i: _instant(i, tq.timeproperty))
        if tq.last_n is not None:
            merged.attrs[name] = instances[-tq.last_n :]
    return merged


def _instant(inst: StoredAttribute, timeproperty: str) -> int:
    value = inst.get(timeproperty) or inst.get("createdAt")
    try:
        return parse_time(value, timeproperty)
    except CityOSError:
        return 0
