"""Access policies of a tenant: who may do what to which data (the Trust issue, item 2).

A tenant's :class:`Policy` holds

- *grants*: roles → operations (read, write, delete, subscribe, admin) on Entity types,
  an id pattern and attributes, optionally also to principals of other tenants
  (``fromTenants``: an explicit cross-tenant grant; without one a principal never reaches
  another tenant's data);
- a *classification* of types and attributes: ``open`` (readable by anyone when the tenant
  publishes open data), ``limited`` (readable under any read grant that covers it: the
  default), ``closed`` (only under a grant that names the type or attribute itself, or the
  tenant's ``admin`` role), ``personal`` (under a read grant that covers it, and then only
  with a valid consent of its data subject for the caller's client, see
  ``cityos.core.consent``; residents always see their own);
- how personal data is linked to its data subject: a Relationship (``dataSubject`` by
  default) or, for types such as ``Person``, the Entity id itself.

:class:`Access` answers for one principal in one tenant; building one is cached by the
caller, answering is dictionary lookups. No HTTP, no SQL here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cityos.core.model import StoredEntity, now_iso
from cityos.core.principal import ADMIN_ROLE, Principal
from cityos.errors import BadRequestData

__all__ = [
    "LEVELS",
    "OPERATIONS",
    "Access",
    "Grant",
    "Policy",
    "parse_policy",
    "policy_document",
    "policy_from_doc",
]

OPERATIONS = ("read", "write", "delete", "subscribe", "admin")
LEVELS = ("open", "limited", "closed", "personal")
_RANK = {level: i for i, level in enumerate(LEVELS)}
ANY_ROLE = "*"
DEFAULT_SUBJECT_TERM = "dataSubject"
_GRANT_MEMBERS = {"roles", "operations", "types", "attrs", "idPattern", "fromTenants"}
_POLICY_MEMBERS = {
    "@context",
    "grants",
    "classification",
    "publishOpenData",
    "dataSubject",
}


@dataclass(frozen=True, slots=True)
class Grant:
    roles: frozenset[str]
    operations: frozenset[str]
    types: frozenset[str] | None = None  # expanded IRIs; None: every type
    attrs: frozenset[str] | None = None  # expanded IRIs; None: every attribute
    id_pattern: str | None = None
    from_tenants: frozenset[str] = frozenset()

    def names_type(self, types: Iterable[str]) -> bool:
        return self.types is not None and any(t in self.types for t in types)

    def covers_type(self, types: Iterable[str]) -> bool:
        return self.types is None or any(t in self.types for t in types)

    def covers_id(self, entity_id: str) -> bool:
        return self.id_pattern is None or re.search(self.id_pattern, entity_id) is not None


@dataclass(frozen=True, slots=True)
class Policy:
    """A tenant's policy, every name expanded. ``body`` keeps the document as given."""

    tenant: str
    grants: tuple[Grant, ...] = ()
    type_levels: Mapping[str, str] = field(default_factory=dict)
    attr_levels: Mapping[str, str] = field(default_factory=dict)
    default_level: str = "limited"
    publish_open: bool = False
    subject_attr: str = ""  # expanded IRI of the Relationship naming the data subject
    self_subject_types: frozenset[str] = frozenset()  # their Entity id is the data subject
    body: Mapping[str, Any] = field(default_factory=dict)

    def type_level(self, types: Iterable[str]) -> str:
        """The strictest level of an Entity's types."""
        level = -1
        for t in types:
            level = max(level, _RANK.get(self.type_levels.get(t, self.default_level), 1))
        return LEVELS[level] if level >= 0 else self.default_level

    def attr_level(self, types: Iterable[str], attr: str) -> str:
        own = self.attr_levels.get(attr)
        inherited = self.type_level(types)
        if own is None:
            return inherited
        return own if _RANK[own] >= _RANK[inherited] else inherited

    def data_subject(self, entity: StoredEntity) -> str | None:
        """The resident an Entity's personal data is about (None: nobody can consent)."""
        if any(t in self.self_subject_types for t in entity.get("type", ())):
            subject: str = entity["id"]
            return subject
        for inst in entity.get("attrs", {}).get(self.subject_attr, ()):
            value = inst.get("value")
            if isinstance(value, str):
                return value
        return None


def _strings(body: Mapping[str, Any], name: str, where: str) -> list[str] | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BadRequestData(f"{where}: {name} must be a string or a list of strings")
    return value


def _parse_grant(raw: Any, index: int, expand: Callable[[str], str]) -> Grant:
    where = f"grants[{index}]"
    if not isinstance(raw, dict):
        raise BadRequestData(f"{where} must be a JSON object")
    unknown = set(raw) - _GRANT_MEMBERS
    if unknown:
        raise BadRequestData(f"{where} has unknown member {sorted(unknown)[0]!r}")
    roles = _strings(raw, "roles", where)
    ops = _strings(raw, "operations", where)
    if not roles:
        raise BadRequestData(f'{where} needs roles (use "*" for every principal)')
    if not ops:
        raise BadRequestData(f"{where} needs operations")
    bad = [o for o in ops if o not in OPERATIONS]
    if bad:
        raise BadRequestData(f"{where}: operation {bad[0]!r} is not one of {', '.join(OPERATIONS)}")
    pattern = raw.get("idPattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise BadRequestData(f"{where}: idPattern must be a string")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise BadRequestData(f"{where}: idPattern is not a valid regex: {exc}") from exc
    types = _strings(raw, "types", where)
    attrs = _strings(raw, "attrs", where)
    return Grant(
        roles=frozenset(roles),
        operations=frozenset(ops),
        types=None if types is None else frozenset(expand(t) for t in types),
        attrs=None if attrs is None else frozenset(expand(a) for a in attrs),
        id_pattern=pattern,
        from_tenants=frozenset(_strings(raw, "fromTenants", where) or ()),
    )


def _levels(raw: Any, where: str, expand: Callable[[str], str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequestData(f"{where} must be a JSON object of name: level")
    out = {}
    for name, level in raw.items():
        if level not in LEVELS:
            raise BadRequestData(f"{where}.{name}: level must be one of {', '.join(LEVELS)}")
        out[expand(name)] = level
    return out


def parse_policy(body: Any, tenant: str, expand: Callable[[str], str]) -> Policy:
    """A policy document as an administrator PUTs it::

    {"publishOpenData": true,
     "grants": [{"roles": ["disaster"], "operations": ["read", "subscribe"],
                 "types": ["WaterObserved"]}],
     "classification": {"default": "limited", "types": {"Child": "personal"},
                        "attributes": {"phone": "personal"}},
     "dataSubject": {"attribute": "dataSubject", "selfTypes": ["Person"]}}
    """
    if not isinstance(body, dict):
        raise BadRequestData("A policy must be a JSON object")
    unknown = set(body) - _POLICY_MEMBERS
    if unknown:
        raise BadRequestData(f"Policy has unknown member {sorted(unknown)[0]!r}")
    grants_raw = body.get("grants", [])
    if not isinstance(grants_raw, list):
        raise BadRequestData("grants must be a list")
    cls = body.get("classification", {})
    if not isinstance(cls, dict) or set(cls) - {"default", "types", "attributes"}:
        raise BadRequestData("classification holds only default, types and attributes")
    default = cls.get("default", "limited")
    if default not in LEVELS or default == "personal":
        raise BadRequestData("classification.default must be open, limited or closed")
    subject = body.get("dataSubject", {})
    if not isinstance(subject, dict) or set(subject) - {"attribute", "selfTypes"}:
        raise BadRequestData("dataSubject holds only attribute and selfTypes")
    subject_term = subject.get("attribute", DEFAULT_SUBJECT_TERM)
    if not isinstance(subject_term, str) or not subject_term:
        raise BadRequestData("dataSubject.attribute must be an attribute name")
    publish = body.get("publishOpenData", False)
    if not isinstance(publish, bool):
        raise BadRequestData("publishOpenData must be true or false")
    return Policy(
        tenant=tenant,
        grants=tuple(_parse_grant(g, i, expand) for i, g in enumerate(grants_raw)),
        type_levels=_levels(cls.get("types"), "classification.types", expand),
        attr_levels=_levels(cls.get("attributes"), "classification.attributes", expand),
        default_level=default,
        publish_open=publish,
        subject_attr=expand(subject_term),
        self_subject_types=frozenset(
            expand(t) for t in _strings(subject, "selfTypes", "dataSubject") or ()
        ),
        body=body,
    )


def policy_from_doc(doc: Mapping[str, Any], tenant: str) -> Policy:
    """A stored policy: the body as given and the expansion of every name it used."""
    names: Mapping[str, str] = doc.get("expanded", {})
    return parse_policy(doc["body"], tenant, lambda term: names.get(term, term))


def empty_policy(tenant: str, expand: Callable[[str], str]) -> Policy:
    """A tenant nobody wrote a policy for: only its administrators reach its data."""
    return Policy(tenant=tenant, subject_attr=expand(DEFAULT_SUBJECT_TERM))


@dataclass(slots=True)
class Access:
    """What one principal may do in one tenant, under that tenant's policy."""

    policy: Policy
    principal: Principal
    grants: tuple[Grant, ...]
    admin: bool
    member: bool
    # Whether any grant limits ids (then decisions depend on the Entity id), and whether
    # the policy classifies anything personal: without either, decisions depend only on
    # types and attribute names and are remembered (an Access lives for one policy).
    by_id: bool = False
    personal_possible: bool = True
    _memo: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: Policy, principal: Principal) -> Access:
        tenant = policy.tenant
        member = principal.member_of(tenant)
        roles = principal.roles
        grants = tuple(
            g
            for g in policy.grants
            if principal.authenticated
            and (member or any(principal.member_of(t) for t in g.from_tenants))
            and (ANY_ROLE in g.roles or not roles.isdisjoint(g.roles))
        )
        admin = principal.kind == "open" or (
            member and principal.authenticated and ADMIN_ROLE in roles
        )
        by_id = any(g.id_pattern is not None for g in grants)
        personal = "personal" in (
            policy.default_level,
            *policy.type_levels.values(),
            *policy.attr_levels.values(),
        )
        return cls(policy, principal, grants, admin, member, by_id, personal)

    # -- operations on whole Entities ------------------------------------------------------

    def may(self, op: str, types: Iterable[str] = (), entity_id: str | None = None) -> bool:
        """Whether ``op`` is granted on an Entity of ``types`` (any type when empty)."""
        if self.admin:
            return True
        types = tuple(types)
        if self.by_id and entity_id is not None:
            return self._may(op, types, entity_id)
        key = ("may", op, types)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._may(op, types, None)
        result: bool = found
        return result

    def _may(self, op: str, types: tuple[str, ...], entity_id: str | None) -> bool:
        for g in self.grants:
            if op not in g.operations:
                continue
            if types and not g.covers_type(types):
                continue
            if entity_id is not None and not g.covers_id(entity_id):
                continue
            if types and self.policy.type_level(types) == "closed" and not g.names_type(types):
                continue  # closed data: only under a grant naming its type
            return True
        return op == "read" and bool(types) and self._open(types)

    def may_anything(self, op: str) -> bool:
        return (
            self.admin
            or any(op in g.operations for g in self.grants)
            or (op == "read" and self.policy.publish_open)
        )

    def _open(self, types: Iterable[str]) -> bool:
        return self.policy.publish_open and self.policy.type_level(types) == "open"

    def may_write_attrs(
        self, op: str, types: Iterable[str], entity_id: str, attrs: set[str]
    ) -> bool:
        """``op`` (write or delete) on these attributes of an Entity."""
        if self.admin:
            return True
        types = tuple(types)
        missing = set(attrs)
        for g in self.grants:
            if op not in g.operations or not g.covers_type(types) or not g.covers_id(entity_id):
                continue
            if g.attrs is None:
                return True
            missing -= g.attrs
            if not missing:
                return True
        return not attrs and self.may(op, types, entity_id)

    # -- reading ---------------------------------------------------------------------------

    def attr_readable(self, types: tuple[str, ...], attr: str, entity_id: str | None) -> str | None:
        """The level under which ``attr`` may be read ("personal" still needs a consent),
        or None when it is hidden from this principal."""
        if self.by_id and entity_id is not None:
            return self._attr_readable(types, attr, entity_id)
        key = (types, attr)
        memo = self._memo
        if key in memo:
            known: str | None = memo[key]
            return known
        level = memo[key] = self._attr_readable(types, attr, None)
        return level

    def _attr_readable(
        self, types: tuple[str, ...], attr: str, entity_id: str | None
    ) -> str | None:
        level = self.policy.attr_level(types, attr)
        if level == "open" and self.policy.publish_open:
            return level
        if self.admin:
            return level
        explicit = level == "closed"  # personal data is released by consent instead
        for g in self.grants:
            if "read" not in g.operations or not g.covers_type(types):
                continue
            if entity_id is not None and not g.covers_id(entity_id):
                continue
            if g.attrs is not None and attr not in g.attrs:
                continue
            if explicit and not (g.names_type(types) or (g.attrs is not None)):
                continue
            return level
        return None

    def view(
        self, entity: StoredEntity, released: Callable[[str, str], bool]
    ) -> StoredEntity | None:
        """The Entity as this principal may see it, or None when it may not see it at all.

        ``released(subject, category)`` says whether the data subject's consent lets this
        principal's client see ``category`` (an Entity type or attribute IRI) now.
        """
        types = tuple(entity.get("type", ()))
        entity_id = entity["id"]
        subject: str | None = None
        whole = False  # a consent covers the Entity's personal type: all its attributes
        if self.personal_possible and self.policy.type_level(types) == "personal":
            subject = self.policy.data_subject(entity)
            if subject is not None and subject in self.principal.persons:
                return entity  # a resident's (or their child's) own data, whole
            if not self.may("read", types, entity_id):
                return None
            whole = subject is not None and self._released(subject, types, released)
            if not whole:
                return None
        elif not self.may("read", types, entity_id):
            return None
        attrs = entity.get("attrs", {})
        kept: dict[str, Any] | None = None
        for name in attrs:
            level = self.attr_readable(types, name, entity_id)
            ok = level is not None
            if ok and level == "personal" and not whole:
                if subject is None:
                    subject = self.policy.data_subject(entity)
                ok = subject is not None and self._released(subject, (name,), released)
            if not ok and kept is None:
                kept = {k: v for k, v in attrs.items() if k != name}
            elif not ok and kept is not None:
                kept.pop(name, None)
        if kept is None:
            return entity
        return {**entity, "attrs": {k: v for k, v in attrs.items() if k in kept}}

    def _released(
        self, subject: str, categories: tuple[str, ...], released: Callable[[str, str], bool]
    ) -> bool:
        if subject in self.principal.persons:
            return True  # residents (and their guardians) read their own data
        return any(released(subject, c) for c in categories)

    def may_read_type(self, type_iri: str) -> bool:
        """Whether a query may ask for this type: under a grant, as open data, or, for a
        personal type, as a resident asking for their own data."""
        if self.may("read", (type_iri,)):
            return True
        return self.policy.type_levels.get(type_iri) == "personal" and bool(self.principal.persons)

    def personal_in(self, entity: StoredEntity) -> bool:
        """Whether the Entity holds data classified personal (its reads are audited)."""
        if not self.personal_possible:
            return False
        types = tuple(entity.get("type", ()))
        if self.policy.type_level(types) == "personal":
            return True
        return any(self.policy.attr_level(types, a) == "personal" for a in entity.get("attrs", {}))


def policy_document(body: Any, tenant: str, expand: Callable[[str], str]) -> dict[str, Any]:
    """A policy as stored: its body as given, and every name's expansion under the
    @context it came with (recorded once, so later @context changes do not alter it).
    Raises BadRequestData when the policy is not valid."""
    names: dict[str, str] = {}

    def record(term: str) -> str:
        names[term] = expand(term)
        return names[term]

    parse_policy(body, tenant, record)
    return {"body": body, "expanded": names, "modifiedAt": now_iso()}
