"""The store as one principal may use it: every read filtered, every write checked.

When authentication is on, each request's handlers reach the store through a
:class:`GuardedStore` (``api.deps.services``) instead of the store itself. It implements
the same :class:`~cityos.storage.base.Store` Protocol, so no handler of NGSI-LD,
NGSI-v2, temporal or subscriptions needs to know about access rules, and none can forget
them:

- reads (``get_entity``, ``query_entities``, ``temporal_entity``, ``query_temporal``,
  ``type_counts``, ``attribute_summary``) return only what the principal may read: queries
  are narrowed to readable types before they run (so counts and pages leak nothing), and
  every Entity passes :meth:`cityos.core.access.Access.view` (attributes removed, personal
  data only under consent);
- writes wrap each change so that it checks, inside the write transaction, the Entity
  as stored and as it would be stored: ``write`` on the types and attributes it touches,
  ``delete`` to delete. A refused change raises Forbidden and leaves the Entity untouched,
  like any failing change (one Entity of a batch refused does not stop the others);
- Subscriptions need ``subscribe``; registrations and @contexts need ``admin``.

Denied reads of a principal without credentials answer 401, of a known one 403.
Every release of personal data is written to the audit log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from cityos.core.access import Access
from cityos.core.model import StoredEntity
from cityos.core.principal import ADMIN_ROLE, Principal
from cityos.core.query.ast import (
    AttrPath,
    CompareOp,
    LiteralKind,
    QAnd,
    QComparison,
    QExists,
    QLiteral,
    QNode,
    QOr,
    QPattern,
    QValueList,
    TypeAnd,
    TypeName,
    TypeNode,
    TypeOr,
)
from cityos.core.temporal import TemporalEntity, TemporalQuery
from cityos.errors import CityOSError, Forbidden, Unauthorized
from cityos.storage.base import Change, EntityQuery, Page, Store, WriteOutcome
from cityos.trust import Trust, Viewer

__all__ = ["GuardedStore", "subject_term"]


def _type_names(node: TypeNode | None) -> list[str]:
    if node is None:
        return []
    if isinstance(node, TypeName):
        return [node.name]
    return [n for t in node.terms for n in _type_names(t)]


def _plain(node: TypeNode) -> bool:
    """A type or a list of types (``A`` or ``A,B``), no ``;`` or parentheses."""
    return isinstance(node, TypeName) or (
        isinstance(node, TypeOr) and all(isinstance(t, TypeName) for t in node.terms)
    )


def _q_attrs(node: QNode | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, QAnd | QOr):
        return set().union(*(_q_attrs(t) for t in node.terms))
    assert isinstance(node, QExists | QComparison | QPattern)
    return {node.path.attr}


class GuardedStore:
    """A Store seen by one principal (see the module's docstring)."""

    def __init__(self, store: Store, trust: Trust, principal: Principal) -> None:
        self.inner = store
        self.trust = trust
        self.principal = principal
        self.viewer = Viewer(trust, principal)

    # -- decisions ---------------------------------------------------------------------------

    def deny(self, detail: str) -> CityOSError:
        if not self.principal.authenticated:
            return Unauthorized("Authentication is required: " + detail)
        return Forbidden(detail)

    async def access(self, tenant: str) -> Access:
        return await self.trust.access(tenant, self.principal)

    async def require(self, tenant: str, op: str) -> Access:
        access = await self.access(tenant)
        if not access.may_anything(op):
            raise self.deny(f"no policy of this tenant grants '{op}' to this caller")
        return access

    async def view(self, tenant: str, access: Access, entities: list[StoredEntity]) -> list[Any]:
        return await self.viewer.view(tenant, access, entities)

    # -- Entities ------------------------------------------------------------------------------

    async def get_entity(self, tenant: str, entity_id: str) -> StoredEntity:
        access = await self.require(tenant, "read")
        entity = await self.inner.get_entity(tenant, entity_id)
        (seen,) = await self.view(tenant, access, [entity])
        if seen is None:
            raise self.deny(f"this caller may not read Entity {entity_id}")
        result: StoredEntity = seen
        return result

    async def query_entities(self, query: EntityQuery) -> Page:
        access = await self.require(query.tenant, "read")
        narrowed = await self._narrow(access, query)
        if narrowed is None:
            return Page([], 0 if query.count else None)
        page = await self.inner.query_entities(narrowed)
        seen = await self.view(query.tenant, access, page.entities)
        return Page([e for e in seen if e is not None], page.count)

    async def _readable_types(self, access: Access, query: EntityQuery) -> list[str] | None:
        """The types a query may reach (None: every type, no narrowing needed)."""
        policy = access.policy
        asked = _type_names(query.types)
        if access.admin and not any(lv == "personal" for lv in policy.type_levels.values()):
            return None
        if asked:
            readable = [t for t in asked if access.may_read_type(t)]
            if not readable:
                raise self.deny("this caller may not read Entities of the types asked for")
            personal = [t for t in readable if policy.type_levels.get(t) == "personal"]
            if personal and len(personal) != len(readable):
                # Personal types are released per data subject: ask for them on their own.
                readable = [t for t in readable if t not in personal]
            return readable
        if not access.admin and all(g.types is not None for g in access.grants):
            names = {t for g in access.grants if "read" in g.operations for t in g.types or ()}
            if policy.publish_open:
                names |= {t for t, lv in policy.type_levels.items() if lv == "open"}
        else:
            names = set(await self.inner.type_counts(query.tenant))
        return sorted(
            t for t in names if access.may("read", (t,)) and policy.type_levels.get(t) != "personal"
        )

    async def _narrow(self, access: Access, query: EntityQuery) -> EntityQuery | None:
        if access.principal.kind == "open":
            return query
        policy = access.policy
        types = await self._readable_types(access, query)
        if types is not None and not types:
            return None
        changes: dict[str, Any] = {}
        if types is not None:
            allowed: TypeNode = (
                TypeName(types[0]) if len(types) == 1 else TypeOr(tuple(TypeName(t) for t in types))
            )
            if query.types is None or not _plain(query.types):
                changes["types"] = (
                    allowed if query.types is None else TypeAnd((query.types, allowed))
                )
            elif set(types) != set(_type_names(query.types)):
                # a list of types narrowed to a list: the store still plans it as a list
                # (its type and geo indexes), which a TypeAnd would defeat
                changes["types"] = allowed
        self._check_named(access, query, types)
        # personal types: only the data subjects that consented (or the caller itself)
        if types and all(policy.type_levels.get(t) == "personal" for t in types):
            subjects = await self.viewer.subjects(query.tenant, types)
            if not subjects:
                return None
            if all(t in policy.self_subject_types for t in types):
                ids = [i for i in query.ids if i in subjects] if query.ids else sorted(subjects)
                if not ids:
                    return None
                changes["ids"] = ids
            else:
                term = subject_term(policy.subject_attr, sorted(subjects))
                changes["q"] = term if query.q is None else QAnd((query.q, term))
        pattern = self._id_pattern(access, query, types)
        if pattern is not None:
            changes["id_pattern"] = pattern
        return dataclasses.replace(query, **changes) if changes else query

    def _check_named(self, access: Access, query: EntityQuery, types: list[str] | None) -> None:
        """q, attrs, orderBy and geoQ may only name attributes readable in every type the
        query reaches, and never personal ones (a filter would reveal their values)."""
        reach = tuple(types) if types is not None else ()
        named = (
            _q_attrs(query.q) | set(query.attrs) | {k.path.attr for k in query.order_by if k.path}
        )
        if query.geoproperty:
            named.add(query.geoproperty)
        for attr in named:
            levels = (
                [access.attr_readable((t,), attr, None) for t in reach]
                if reach
                else [access.attr_readable((), attr, None)]
            )
            if any(lv is None or lv == "personal" for lv in levels):
                raise self.deny(f"this caller may not query by attribute {attr}")

    def _id_pattern(
        self, access: Access, query: EntityQuery, types: list[str] | None
    ) -> str | None:
        """The query's idPattern narrowed to the id patterns of the grants that reach it."""
        patterns = {
            g.id_pattern
            for g in access.grants
            if "read" in g.operations and (types is None or g.covers_type(types))
        }
        if not access.admin and patterns and None not in patterns:
            if len(patterns) > 1:
                raise Forbidden("Query one type at a time: this caller's grants limit ids per type")
            (pattern,) = patterns
            assert pattern is not None
            own = query.id_pattern
            return pattern if own is None else f"(?=.*(?:{pattern}))(?:{own})"
        return None

    async def _personal_shown(self, tenant: str, access: Access, type_iri: str) -> bool:
        """Whether a personal type (and its attributes) is listed to the caller: it sees
        some of it now, as a grant holder under a resident's consent or as the data subject
        (or guardian) itself. Otherwise even the names stay hidden."""
        if self.principal.persons:
            return True
        return access.may("read", (type_iri,)) and bool(
            await self.viewer.subjects(tenant, [type_iri])
        )

    async def type_counts(self, tenant: str) -> dict[str, int]:
        access = await self.require(tenant, "read")
        counts = await self.inner.type_counts(tenant)
        levels = access.policy.type_levels
        shown = {}
        for t, n in counts.items():
            if levels.get(t) == "personal":
                if await self._personal_shown(tenant, access, t):
                    shown[t] = n
            elif access.may("read", (t,)):
                shown[t] = n
        return shown

    async def attribute_summary(self, tenant: str) -> list[Any]:
        access = await self.require(tenant, "read")
        rows = await self.inner.attribute_summary(tenant)
        levels = access.policy.type_levels
        shown = []
        for r in rows:
            if levels.get(r.type) == "personal":
                if await self._personal_shown(tenant, access, r.type):
                    shown.append(r)
                continue
            level = access.attr_readable((r.type,), r.attribute, None)
            if not access.may("read", (r.type,)) or level is None:
                continue
            if level != "personal" or bool(await self.viewer.subjects(tenant, [r.attribute])):
                shown.append(r)
        return shown

    async def write(self, tenant: str, entity_id: str, change: Change) -> WriteOutcome:
        access = await self.access(tenant)
        return await self.inner.write(tenant, entity_id, self._checked(access, change))

    async def write_many(
        self, tenant: str, changes: Sequence[tuple[str, Change]]
    ) -> list[WriteOutcome | Exception]:
        access = await self.access(tenant)
        return await self.inner.write_many(
            tenant, [(i, self._checked(access, c)) for i, c in changes]
        )

    def _checked(self, access: Access, change: Change) -> Change:
        """The change, refusing (inside the write transaction, before anything is written)
        what the principal may not do to this Entity."""
        if access.admin:
            return change
        deny = self.deny

        def checked(before: StoredEntity | None) -> tuple[StoredEntity | None, Any]:
            if before is not None and not access.may("read", before.get("type", ()), before["id"]):
                # an Entity the caller cannot see answers as if it were not there for writes too
                if not access.may_anything("write") and not access.may_anything("delete"):
                    raise deny("this caller may not change Entities of this tenant")
            # changes may edit the stored Entity in place: compare with a snapshot
            snapshot = _snapshot(before)
            after, result = change(before)
            _check_change(access, snapshot, after, deny)
            return after, result

        return checked

    async def tenant_exists(self, tenant: str) -> bool:
        return await self.inner.tenant_exists(tenant)

    async def tenants(self) -> list[str]:
        names = await self.inner.tenants()
        return [t for t in names if self.principal.member_of(t)]

    # -- Subscriptions ---------------------------------------------------------------------------

    async def save_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self.require(tenant, "subscribe")
        await self.trust.own_subscription(tenant, sub_id, self.principal)
        await self.inner.save_subscription(tenant, sub_id, doc)

    async def delete_subscription(self, tenant: str, sub_id: str) -> None:
        await self.require(tenant, "subscribe")
        await self.inner.delete_subscription(tenant, sub_id)
        await self.trust.disown_subscription(tenant, sub_id)

    # -- temporal ----------------------------------------------------------------------------------

    async def temporal_add(
        self, tenant: str, entity: StoredEntity, change: Change, must_exist: bool
    ) -> bool:
        access = await self.access(tenant)
        _check_change(access, None, entity, self.deny, op_on_new="write")
        return await self.inner.temporal_add(
            tenant, entity, self._checked(access, change), must_exist
        )

    async def _entity_write(self, tenant: str, entity_id: str, op: str, attrs: set[str]) -> None:
        access = await self.access(tenant)
        if access.admin:
            return
        entity = await self.inner.temporal_entity(tenant, entity_id, TemporalQuery(last_n=1))
        if not access.may_write_attrs(op, entity.types, entity_id, attrs):
            raise self.deny(f"this caller may not {op} this Entity's history")

    async def temporal_delete_entity(self, tenant: str, entity_id: str, change: Change) -> None:
        await self._entity_write(tenant, entity_id, "delete", set())
        access = await self.access(tenant)
        await self.inner.temporal_delete_entity(tenant, entity_id, self._checked(access, change))

    async def temporal_delete_attribute(
        self, tenant: str, entity_id: str, attr: str, *rest: Any
    ) -> None:
        await self._entity_write(tenant, entity_id, "delete", {attr})
        await self.inner.temporal_delete_attribute(tenant, entity_id, attr, *rest)

    async def temporal_delete_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> None:
        await self._entity_write(tenant, entity_id, "delete", {attr})
        await self.inner.temporal_delete_instance(tenant, entity_id, attr, instance_id)

    async def temporal_modify_instance(
        self, tenant: str, entity_id: str, attr: str, *rest: Any
    ) -> None:
        await self._entity_write(tenant, entity_id, "write", {attr})
        await self.inner.temporal_modify_instance(tenant, entity_id, attr, *rest)

    async def temporal_entity(
        self, tenant: str, entity_id: str, tq: TemporalQuery
    ) -> TemporalEntity:
        access = await self.require(tenant, "read")
        found = await self.inner.temporal_entity(tenant, entity_id, tq)
        (seen,) = await self._temporal_view(tenant, access, [found])
        if seen is None:
            raise self.deny(f"this caller may not read Entity {entity_id}")
        result: TemporalEntity = seen
        return result

    async def query_temporal(
        self, query: EntityQuery, tq: TemporalQuery, alternatives: Sequence[EntityQuery] = ()
    ) -> tuple[list[TemporalEntity], int | None]:
        access = await self.require(query.tenant, "read")
        narrowed = await self._narrow(access, query)
        if narrowed is None:
            return [], (0 if query.count else None)
        alts = []
        for alt in alternatives:
            one = await self._narrow(access, alt)
            if one is not None:
                alts.append(one)
        found, count = await self.inner.query_temporal(narrowed, tq, alts)
        seen = await self._temporal_view(query.tenant, access, found)
        return [e for e in seen if e is not None], count

    async def _temporal_view(
        self, tenant: str, access: Access, found: list[TemporalEntity]
    ) -> list[TemporalEntity | None]:
        """Temporal Entities through the same view as Entities: the attributes (and their
        history) the principal may not see are removed."""
        plain = [
            {
                "id": t.id,
                "type": t.types,
                "attrs": {a: (insts[-1:] if insts else [{}]) for a, insts in t.attrs.items()}
                | {a: [{}] for a in t.aggregates if a not in t.attrs},
            }
            for t in found
        ]
        # the data subject of a temporal Entity is its latest dataSubject value
        seen = await self.view(tenant, access, plain)
        out: list[TemporalEntity | None] = []
        for t, v in zip(found, seen, strict=True):
            if v is None:
                out.append(None)
                continue
            keep = set(v["attrs"])
            if keep == set(t.attrs) | set(t.aggregates):
                out.append(t)
            else:
                out.append(
                    dataclasses.replace(
                        t,
                        attrs={a: i for a, i in t.attrs.items() if a in keep},
                        aggregates={a: g for a, g in t.aggregates.items() if a in keep},
                    )
                )
        return out

    # -- administration ----------------------------------------------------------------------------

    async def _admin(self) -> None:
        if self.principal.kind == "open":
            return
        # @contexts are shared by every tenant (they are vocabulary, not data): the
        # administrator of any tenant may manage them
        if not (self.principal.authenticated and ADMIN_ROLE in self.principal.roles):
            raise self.deny("only an administrator may change this")

    async def save_context(self, entry: Any) -> None:
        await self._admin()
        await self.inner.save_context(entry)

    async def delete_context(self, url: str) -> None:
        await self._admin()
        await self.inner.delete_context(url)

    async def create_registration(self, tenant: str, *args: Any, **kwargs: Any) -> None:
        await self.require(tenant, "admin")
        await self.inner.create_registration(tenant, *args, **kwargs)

    async def update_registration(self, tenant: str, *args: Any, **kwargs: Any) -> None:
        await self.require(tenant, "admin")
        await self.inner.update_registration(tenant, *args, **kwargs)

    async def delete_registration(self, tenant: str, *args: Any, **kwargs: Any) -> None:
        await self.require(tenant, "admin")
        await self.inner.delete_registration(tenant, *args, **kwargs)

    async def get_registration(self, tenant: str, reg_id: str) -> Any:
        await self.require(tenant, "read")
        return await self.inner.get_registration(tenant, reg_id)

    async def registrations(self, tenant: str) -> list[Any]:
        await self.require(tenant, "read")
        return await self.inner.registrations(tenant)

    async def save_csource_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self.require(tenant, "subscribe")
        await self.inner.save_csource_subscription(tenant, sub_id, doc)

    async def delete_csource_subscription(self, tenant: str, sub_id: str) -> None:
        await self.require(tenant, "subscribe")
        await self.inner.delete_csource_subscription(tenant, sub_id)

    def __getattr__(self, name: str) -> Any:
        # Everything else (trust documents, the audit log, outboxes, lifecycle) is the
        # City OS's own business, never a handler's: refuse rather than pass it through.
        raise AttributeError(f"GuardedStore has no {name!r}: handlers may not use it")


def subject_term(attr: str, subjects: list[str]) -> QNode:
    literals = tuple(QLiteral(LiteralKind.URI, s) for s in subjects)
    value = literals[0] if len(literals) == 1 else QValueList(literals)
    return QComparison(AttrPath(attr), CompareOp.EQUAL, value)


def _snapshot(entity: StoredEntity | None) -> StoredEntity | None:
    """A copy deep enough to survive a change made in place (attribute instance lists
    and the instances themselves are replaced or edited, never their nested values)."""
    if entity is None:
        return None
    attrs = {a: [dict(i) for i in insts] for a, insts in entity.get("attrs", {}).items()}
    return {**entity, "type": list(entity.get("type", ())), "attrs": attrs}


def _changed_attrs(before: StoredEntity | None, after: StoredEntity | None) -> set[str]:
    old = (before or {}).get("attrs", {})
    new = (after or {}).get("attrs", {})
    return {a for a in old.keys() | new.keys() if _strip(old.get(a)) != _strip(new.get(a))}


_STAMPS = ("createdAt", "modifiedAt")


def _strip(instances: Any) -> Any:
    if not instances:
        return None
    return [{k: v for k, v in i.items() if k not in _STAMPS} for i in instances]


def _check_change(
    access: Access,
    before: StoredEntity | None,
    after: StoredEntity | None,
    deny: Callable[[str], CityOSError],
    op_on_new: str = "write",
) -> None:
    if access.admin:
        return
    entity = after if after is not None else before
    if entity is None:
        return
    entity_id = entity["id"]
    if after is None:  # a deletion
        if not access.may_write_attrs("delete", entity.get("type", ()), entity_id, set()):
            raise deny(f"this caller may not delete Entity {entity_id}")
        return
    types = set(after.get("type", ())) | set((before or {}).get("type", ()))
    changed = _changed_attrs(before, after)
    removed = {a for a in changed if a not in after.get("attrs", {})}
    if removed and not access.may_write_attrs("delete", types, entity_id, removed):
        raise deny(f"this caller may not delete attributes of Entity {entity_id}")
    written = changed - removed
    if (before is None or written or types != set(before.get("type", ()))) and not (
        access.may_write_attrs(op_on_new, types, entity_id, written)
    ):
        raise deny(f"this caller may not write Entity {entity_id} or these attributes")
