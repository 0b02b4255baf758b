"""Context source registrations: parsing, validation, merging and rendering
(GS CIM 009 V1.8.1 clauses 5.2.8-5.2.10, 5.9, 5.10.1). Queries are matched in
``cityos.core.registration_matching``.

A registration is kept in an expanded stored form (:class:`Registration`): Entity types,
``propertyNames`` and ``relationshipNames`` become IRIs through the request's @context, and
so do the names of registration properties (members the spec does not define, clause
5.2.9); every value is kept as given. Responses compact the names with the reader's
@context, exactly as for Entities::

    CSourceRegistration          (clause 5.2.9)
     ├── information: [RegistrationInfo]                       (5.2.10)
     │     ├── entities: [EntityInfo {type, id?, idPattern?}]  (5.2.8)
     │     └── propertyNames, relationshipNames
     ├── endpoint, mode, operations, expiresAt, management, ...
     └── registration properties (any other member)
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from cityos.core import geo
from cityos.core.entities import check_name, check_uri, is_datetime, parse_scope
from cityos.core.jsonld import CompiledContext
from cityos.core.temporal import parse_duration, parse_time
from cityos.errors import BadRequestData

__all__ = [
    "GEO_MEMBERS",
    "MODES",
    "OPERATIONS",
    "REGISTRATION_TYPE",
    "EntityInfo",
    "Registration",
    "RegistrationInfo",
    "check_id_pattern",
    "merge_registration",
    "parse_registration",
    "render_registration",
]

REGISTRATION_TYPE = "ContextSourceRegistration"
MODES = frozenset({"inclusive", "exclusive", "redirect", "auxiliary"})
# Clause 4.20: the operations a Context Source may support, then the named groups of them.
OPERATIONS = frozenset(
    {
        *("createEntity", "updateEntity", "appendAttrs", "updateAttrs", "deleteAttrs"),
        *("deleteEntity", "createBatch", "upsertBatch", "updateBatch", "deleteBatch"),
        *("upsertTemporal", "appendAttrsTemporal", "deleteAttrsTemporal"),
        *("updateAttrInstanceTemporal", "deleteAttrInstanceTemporal", "deleteTemporal"),
        *("mergeEntity", "replaceEntity", "replaceAttrs", "mergeBatch", "purgeEntity"),
        *("retrieveEntity", "queryEntity", "queryBatch", "retrieveTemporal", "queryTemporal"),
        *("retrieveEntityTypes", "retrieveEntityTypeDetails", "retrieveEntityTypeInfo"),
        *("retrieveAttrTypes", "retrieveAttrTypeDetails", "retrieveAttrTypeInfo"),
        *("createSubscription", "updateSubscription", "retrieveSubscription"),
        *("querySubscription", "deleteSubscription"),
        *("retrieveEntityMap", "updateEntityMap", "deleteEntityMap"),
        *("createEntityMapQueryEntity", "createEntityMapQueryTemporal"),
        "retrieveContextSourceIdentity",
        *("federationOps", "associationOps", "updateOps", "retrieveOps", "redirectionOps"),
    }
)
DEFAULTS: dict[str, Any] = {"mode": "inclusive", "operations": ["federationOps"]}  # 5.2.9
GEO_MEMBERS = ("location", "observationSpace", "operationSpace")
# Kept by City OS, never taken from a request: the system timestamps and the status of
# the distributed operations the registration triggered (clause 5.2.9).
_READ_ONLY = frozenset(
    {"createdAt", "modifiedAt", "status", "timesSent", "timesFailed", "lastSuccess", "lastFailure"}
)
_REQUIRED = ("information", "endpoint")
_NULL = "urn:ngsi-ld:null"
_MANAGEMENT = frozenset({"localOnly", "cacheDuration", "timeout", "cooldown"})


@dataclass(frozen=True, slots=True)
class EntityInfo:
    type: str  # expanded
    id: str | None = None
    id_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    entities: tuple[EntityInfo, ...] | None  # None: any Entity
    property_names: tuple[str, ...] | None  # expanded
    relationship_names: tuple[str, ...] | None

    @property
    def attributes(self) -> frozenset[str] | None:
        """The registered Attribute names, or None when any Attribute is provided."""
        if self.property_names is None and self.relationship_names is None:
            return None
        return frozenset((*(self.property_names or ()), *(self.relationship_names or ())))


@dataclass(frozen=True, slots=True)
class Registration:
    """A registration in its stored form. ``members`` holds every member but id, type and
    the read-only ones, in the order given; registration properties by expanded name."""

    id: str
    members: dict[str, Any]
    created_at: str
    modified_at: str
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def information(self) -> tuple[RegistrationInfo, ...]:
        return tuple(_info_from_stored(i) for i in self.members["information"])

    @property
    def properties(self) -> dict[str, Any]:
        """The registration properties, by expanded name."""
        return {k: v for k, v in self.members.items() if k not in _MEMBERS}

    def expired(self, now_us: int) -> bool:
        expires = self.members.get("expiresAt")
        return expires is not None and parse_time(expires, "expiresAt") <= now_us

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "members": self.members,
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "status": self.status,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Registration:
        return cls(doc["id"], doc["members"], doc["createdAt"], doc["modifiedAt"], doc["status"])


def _require(cond: bool, detail: str) -> None:
    if not cond:
        raise BadRequestData(detail)


# -- parsing and merging (clauses 5.9.2, 5.9.3) ------------------------------------------


def parse_registration(body: Any, ctx: CompiledContext, now: str) -> Registration:
    """Validates a CSourceRegistration (clause 5.2.9) and expands its names."""
    _require(isinstance(body, dict), "A context source registration must be a JSON object")
    _require(
        body.get("type") == REGISTRATION_TYPE,
        f"A context source registration needs type {REGISTRATION_TYPE}",
    )
    reg_id = body.get("id", f"urn:ngsi-ld:ContextSourceRegistration:{uuid.uuid4()}")
    check_uri(reg_id, "Context source registration id")
    members: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("id", "type", "@context") or name in _READ_ONLY:
            continue
        _require(value is not None, f"Member {name} of a registration must not be null")
        key, parsed = _parse_member(name, value, ctx, now)
        members[key] = parsed
    for name in _REQUIRED:
        _require(name in members, f"A context source registration needs {name}")
    check_mode(members)
    return Registration(reg_id, members, created_at=now, modified_at=now)


# Clause 4.20: the operations that change data; an auxiliary source never takes them.
_READ_OPERATIONS = frozenset(
    {
        *("retrieveEntity", "queryEntity", "queryBatch", "retrieveTemporal", "queryTemporal"),
        *("retrieveEntityTypes", "retrieveEntityTypeDetails", "retrieveEntityTypeInfo"),
        *("retrieveAttrTypes", "retrieveAttrTypeDetails", "retrieveAttrTypeInfo"),
        *("querySubscription", "retrieveSubscription", "retrieveEntityMap"),
        *("retrieveContextSourceIdentity", "federationOps", "retrieveOps"),
        *("createSubscription", "updateSubscription", "deleteSubscription"),
    }
)


def check_mode(members: dict[str, Any]) -> None:
    """What each mode requires of a registration (clauses 4.3.6.3, 5.9.2.4): an exclusive
    one names Entity ids (no type-only group, no idPattern) and Attributes; an auxiliary
    one supports no write operation."""
    mode = members.get("mode", "inclusive")
    if mode == "exclusive":
        for info in members["information"]:
            entities = info.get("entities") or []
            _require(
                bool(entities) and all("id" in e and "idPattern" not in e for e in entities),
                "An exclusive registration must name each Entity by id (clause 4.3.6.3)",
            )
            _require(
                bool(info.get("propertyNames") or info.get("relationshipNames")),
                "An exclusive registration must name its Attributes (clause 4.3.6.3)",
            )
    if mode == "auxiliary":
        writes = [op for op in members.get("operations", ()) if op not in _READ_OPERATIONS]
        _require(
            not writes,
            f"An auxiliary registration cannot take write operations: {', '.join(writes)}",
        )


def merge_registration(
    reg: Registration, fragment: Any, ctx: CompiledContext, now: str
) -> Registration:
    """The registration with a PATCH fragment merged in (clause 5.9.3): each member given
    replaces the stored one, ``null`` (or ``urn:ngsi-ld:null``) removes it."""
    _require(isinstance(fragment, dict), "A registration fragment must be a JSON object")
    given = {k: v for k, v in fragment.items() if k != "@context" and k not in _READ_ONLY}
    _require(bool(given), "The registration fragment is empty")
    _require(given.pop("id", reg.id) == reg.id, "The id of a registration cannot change")
    _require(
        given.pop("type", REGISTRATION_TYPE) == REGISTRATION_TYPE,
        f"The type of a registration is {REGISTRATION_TYPE}",
    )
    members = dict(reg.members)
    for name, value in given.items():
        if value is None or value == _NULL:
            _require(name not in _REQUIRED, f"{name} of a registration cannot be removed")
            members.pop(name if name in _MEMBERS else ctx.expand(name), None)
            continue
        key, parsed = _parse_member(name, value, ctx, now)
        if key == "contextSourceInfo":  # a redacted secret sent back keeps the stored one
            parsed = _keep_secrets(parsed, reg.members.get(key, []))
        members[key] = parsed
    check_mode(members)
    return replace(reg, members=members, modified_at=now)


def _keep_secrets(
    pairs: list[dict[str, Any]], stored: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    known = {p["key"]: p["value"] for p in stored}
    return [
        {**p, "value": known[p["key"]]} if p["value"] == REDACTED and p["key"] in known else p
        for p in pairs
    ]


def _parse_member(name: str, value: Any, ctx: CompiledContext, now: str) -> tuple[str, Any]:
    """The stored key and value of one member; any member the spec does not define is a
    registration property, its name expanded and its value kept as given."""
    parse = _MEMBERS.get(name)
    if parse is not None:
        return name, parse(name, value, ctx, now)
    return ctx.expand(check_name(name, "Registration property name")), value


# -- members ---------------------------------------------------------------------------


def _information(name: str, value: Any, ctx: CompiledContext, now: str) -> list[dict[str, Any]]:
    _require(isinstance(value, list) and bool(value), "information must be a non-empty array")
    return [_registration_info(item, ctx) for item in value]


def _registration_info(item: Any, ctx: CompiledContext) -> dict[str, Any]:
    """One RegistrationInfo (clause 5.2.10), expanded; it must name something."""
    _require(isinstance(item, dict), "Each information item must be a JSON object")
    unknown = set(item) - {"entities", "propertyNames", "relationshipNames"}
    _require(not unknown, f"Unknown member {sorted(unknown)[0] if unknown else ''} in information")
    _require(bool(item), "An information item needs entities, propertyNames or relationshipNames")
    out: dict[str, Any] = {}
    if "entities" in item:
        entities = item["entities"]
        _require(
            isinstance(entities, list) and bool(entities),
            "information entities must be a non-empty array",
        )
        out["entities"] = [_entity_info(e, ctx) for e in entities]
    for key in ("propertyNames", "relationshipNames"):
        if key in item:
            names = item[key]
            _require(
                isinstance(names, list) and bool(names), f"{key} must be a non-empty array of names"
            )
            out[key] = [ctx.expand(check_name(n)) for n in names]
    return out


def _entity_info(item: Any, ctx: CompiledContext) -> dict[str, Any]:
    """One EntityInfo (clause 5.2.8): a type, optionally an id or an id pattern."""
    _require(isinstance(item, dict), "Each entities item must be a JSON object")
    unknown = set(item) - {"type", "id", "idPattern"}
    _require(not unknown, f"Unknown member {sorted(unknown)[0] if unknown else ''} in entities")
    _require("type" in item, "Each entities item needs a type")
    out: dict[str, Any] = {"type": ctx.expand(check_name(item["type"], "Entity type"))}
    if "id" in item:
        out["id"] = check_uri(item["id"])
    if "idPattern" in item:
        out["idPattern"] = check_id_pattern(item["idPattern"])
    return out


def check_id_pattern(pattern: Any) -> str:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise BadRequestData(f"idPattern {pattern!r} is not a valid regular expression") from exc
    return str(pattern)


def _info_from_stored(info: dict[str, Any]) -> RegistrationInfo:
    entities = info.get("entities")
    return RegistrationInfo(
        entities=None
        if entities is None
        else tuple(EntityInfo(e["type"], e.get("id"), e.get("idPattern")) for e in entities),
        property_names=_tuple(info.get("propertyNames")),
        relationship_names=_tuple(info.get("relationshipNames")),
    )


def _tuple(names: list[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(names)


def _endpoint(name: str, value: Any, ctx: CompiledContext, now: str) -> str:
    # Clause 5.2.9 asks for a dereferenceable URI exposing the NGSI-LD API, whose only
    # binding is HTTP (clause 6): anything else could never be called.
    _require(
        isinstance(value, str) and re.match(r"^https?://[^/\s]+", value) is not None,
        f"endpoint {value!r} is not an http(s) URL",
    )
    return str(value)


def _text(name: str, value: Any, ctx: CompiledContext, now: str) -> str:
    _require(isinstance(value, str) and bool(value.strip()), f"{name} must be a non-empty string")
    return str(value)


def _mode(name: str, value: Any, ctx: CompiledContext, now: str) -> str:
    _require(value in MODES, f"mode {value!r} is not one of {', '.join(sorted(MODES))}")
    return str(value)


def _operations(name: str, value: Any, ctx: CompiledContext, now: str) -> list[str]:
    _require(
        isinstance(value, list) and bool(value), "operations must be a non-empty array of names"
    )
    unknown = [op for op in value if op not in OPERATIONS]
    _require(not unknown, f"Unknown operation {unknown[0] if unknown else ''!r} (clause 4.20)")
    return list(value)


def _expires_at(name: str, value: Any, ctx: CompiledContext, now: str) -> str:
    _require(is_datetime(value), f"expiresAt {value!r} is not a DateTime")
    _require(parse_time(value) > parse_time(now), "expiresAt must be in the future")
    return str(value)


def _interval(name: str, value: Any, ctx: CompiledContext, now: str) -> dict[str, str]:
    """A TimeInterval (clause 5.2.11): startAt, and endAt after it when given."""
    _require(
        isinstance(value, dict) and set(value) <= {"startAt", "endAt"} and "startAt" in value,
        f"{name} must be an object with startAt and optionally endAt",
    )
    for key, time in value.items():
        _require(is_datetime(time), f"{name}.{key} {time!r} is not a DateTime")
    if "endAt" in value:
        _require(
            parse_time(value["endAt"]) > parse_time(value["startAt"]),
            f"{name}.endAt must be later than startAt",
        )
    return dict(value)


def _geometry(name: str, value: Any, ctx: CompiledContext, now: str) -> dict[str, Any]:
    try:
        return geo.validate_geometry(value)
    except BadRequestData as exc:
        raise BadRequestData(f"{name} is not a GeoJSON geometry: {exc.detail}") from exc


def _key_values(name: str, value: Any, ctx: CompiledContext, now: str) -> list[dict[str, str]]:
    _require(
        isinstance(value, list)
        and all(
            isinstance(i, dict)
            and set(i) == {"key", "value"}
            and all(isinstance(v, str) for v in i.values())
            for i in value
        ),
        f"{name} must be an array of {{key, value}} objects with string members",
    )
    return list(value)


def _local_only(name: str, value: Any, ctx: CompiledContext, now: str) -> bool:
    """``localOnly`` given beside ``management`` rather than in it (clause 5.2.9, V1.9.1):
    the source is asked only for the data it holds itself."""
    _require(isinstance(value, bool), "localOnly must be true or false")
    return bool(value)


def _management(name: str, value: Any, ctx: CompiledContext, now: str) -> dict[str, Any]:
    """The management member: localOnly, cacheDuration, timeout and cooldown (clause 5.2.9)."""
    _require(isinstance(value, dict) and bool(value), "management must be a non-empty object")
    unknown = set(value) - _MANAGEMENT
    _require(not unknown, f"Unknown member {sorted(unknown)[0] if unknown else ''} in management")
    if "localOnly" in value:
        _require(isinstance(value["localOnly"], bool), "management.localOnly must be true or false")
    if "cacheDuration" in value:
        _duration(value["cacheDuration"])
    for key in ("timeout", "cooldown"):
        if key in value:
            number = value[key]
            _require(
                type(number) in (int, float) and number > 0,
                f"management.{key} must be a positive number of milliseconds",
            )
    return dict(value)


def _duration(text: Any) -> None:
    try:
        parse_duration(text if isinstance(text, str) else "")
    except BadRequestData as exc:
        raise BadRequestData(
            f"management.cacheDuration {text!r} is not an ISO 8601 duration"
        ) from exc


def _scope(name: str, value: Any, ctx: CompiledContext, now: str) -> Any:
    parse_scope(value)
    return value


_MEMBERS = {
    "information": _information,
    "endpoint": _endpoint,
    "registrationName": _text,
    "description": _text,
    "tenant": _text,
    "mode": _mode,
    "operations": _operations,
    "expiresAt": _expires_at,
    "observationInterval": _interval,
    "managementInterval": _interval,
    "location": _geometry,
    "observationSpace": _geometry,
    "operationSpace": _geometry,
    "contextSourceInfo": _key_values,
    "management": _management,
    "localOnly": _local_only,
    "scope": _scope,
}


# -- rendering (clause 5.10.1) -----------------------------------------------------------


def render_registration(reg: Registration, ctx: CompiledContext, sys_attrs: bool) -> dict[str, Any]:
    """The registration with its names compacted by ``ctx``, its defaults (mode, operations)
    and, once distributed operations have used it, its status members (clause 5.2.9)."""
    out: dict[str, Any] = {"id": reg.id, "type": REGISTRATION_TYPE}
    for key, value in reg.members.items():
        if key == "information":
            out[key] = [_render_info(i, ctx) for i in value]
        elif key == "contextSourceInfo":
            out[key] = [_redacted(pair) for pair in value]
        else:
            out[key if key in _MEMBERS else ctx.compact(key)] = value
    for key, default in DEFAULTS.items():
        out.setdefault(key, default)
    out.update(reg.status)
    if sys_attrs:
        out["createdAt"], out["modifiedAt"] = reg.created_at, reg.modified_at
    return out


# contextSourceInfo pairs City OS sends a source as headers (clause 5.2.9): the credentials
# among them are secrets, never shown again once registered.
_SECRET_KEYS = re.compile(r"authorization|api-?key|token|secret|password|cookie", re.IGNORECASE)
REDACTED = "********"


def _redacted(pair: dict[str, Any]) -> dict[str, Any]:
    if _SECRET_KEYS.search(str(pair.get("key", ""))):
        return {**pair, "value": REDACTED}
    return pair


def _render_info(info: dict[str, Any], ctx: CompiledContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "entities" in info:
        out["entities"] = [{**e, "type": ctx.compact(e["type"])} for e in info["entities"]]
    for key in ("propertyNames", "relationshipNames"):
        if key in info:
            out[key] = [ctx.compact(n) for n in info[key]]
    return out
