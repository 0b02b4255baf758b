"""Subscriptions: parsing, validation and matching (GS CIM 009 V1.8.1 clauses 5.2.12, 5.8).

A Subscription is stored in an expanded form (:class:`Subscription`); which changes it
is notified of is decided here, purely, from an Entity before and after a committed
change (:func:`triggers_for`). Delivery lives in ``cityos.notifier``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

from cityos.core import geo
from cityos.core.entities import check_name, check_uri, is_datetime
from cityos.core.jsonld import CompiledContext
from cityos.core.linked import Shape, parse_shape
from cityos.core.model import StoredEntity
from cityos.core.query.ast import QNode, ScopeNode, TypeNode
from cityos.core.query.evaluate import match_q, match_scope, match_types
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types, parse_types
from cityos.errors import BadRequestData

__all__ = [
    "DEFAULT_TRIGGERS",
    "TRIGGERS",
    "EntitySelector",
    "Subscription",
    "apply_fragment",
    "apply_members",
    "parse_subscription",
    "triggers_for",
]

TRIGGERS = frozenset(
    {
        "entityCreated",
        "entityUpdated",
        "entityDeleted",
        "attributeCreated",
        "attributeUpdated",
        "attributeDeleted",
    }
)
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")  # clause 5.2.12
FORMATS = frozenset({"normalized", "concise", "keyValues", "simplified"})
ACCEPTS = frozenset({"application/json", "application/ld+json", "application/geo+json"})
_SCHEMES = ("http://", "https://", "mqtt://", "mqtts://")
_SYSTEM_MEMBERS = frozenset({"createdAt", "modifiedAt"})


@dataclass(frozen=True, slots=True)
class EntitySelector:
    type: TypeNode  # an Entity Type Selection (clause 4.17), names expanded
    id: str | None = None
    id_pattern: str | None = None

    def matches(self, entity: StoredEntity) -> bool:
        if not match_types(entity, self.type):
            return False
        if self.id is not None and self.id != entity["id"]:
            return False
        return self.id_pattern is None or re.search(self.id_pattern, entity["id"]) is not None


@dataclass(slots=True)
class Subscription:
    """A Subscription with every name expanded; ``body`` keeps the client's members."""

    id: str
    tenant: str
    body: dict[str, Any]  # the Subscription as given (compact names), for rendering back
    context: Any  # the @context it was created with (a URL, object or list) or None
    entities: tuple[EntitySelector, ...] = ()
    watched: frozenset[str] | None = None
    triggers: frozenset[str] = frozenset(DEFAULT_TRIGGERS)
    q: QNode | None = None
    scope_q: ScopeNode | None = None
    geo_q: geo.GeoQuery | None = None
    attributes: tuple[str, ...] | None = None  # notification.attributes, expanded
    shape: Shape = Shape()  # notification.pick / omit (clause 4.21), compact names
    dataset_ids: tuple[str | None, ...] | None = None  # datasetId; None is the default instance
    time_interval: float | None = None
    throttling: float | None = None
    expires_at: str | None = None
    is_active: bool = True
    status: dict[str, Any] = field(default_factory=dict)  # set by the first delivery

    def is_live(self, now: str) -> bool:
        return self.is_active and (self.expires_at is None or self.expires_at > now)

    def selects(self, entity: StoredEntity) -> bool:
        """Whether the Entity is one this Subscription watches (selectors, q, scopeQ, geoQ)."""
        if self.entities and not any(s.matches(entity) for s in self.entities):
            return False
        if self.q is not None and not match_q(entity, self.q):
            return False
        if self.scope_q is not None and not match_scope(entity, self.scope_q):
            return False
        return self.geo_q is None or geo.matches_entity(self.geo_q, entity)


def _require(cond: bool, detail: str) -> None:
    if not cond:
        raise BadRequestData(detail)


def parse_subscription(
    body: Any, ctx: CompiledContext, tenant: str, context: Any, now: str
) -> Subscription:
    """Validates a Subscription (clause 5.2.12) and expands its names."""
    _require(isinstance(body, dict), "A Subscription must be a JSON object")
    _require(body.get("type") == "Subscription", "A Subscription needs type Subscription")
    sub_id = body.get("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4().hex}")
    check_uri(sub_id, "Subscription id")
    body = {**body, "id": sub_id}
    body.pop("@context", None)
    sub = Subscription(id=sub_id, tenant=tenant, body=body, context=context)
    return apply_members(sub, body, ctx, now)


def apply_fragment(sub: Subscription, body: Any, ctx: CompiledContext, now: str) -> Subscription:
    """A PATCH of the Subscription (clauses 5.8.2, 5.11.3): ``body`` less its @context must
    give some member and name no other Subscription."""
    _require(isinstance(body, dict), "A Subscription fragment must be a JSON object")
    fragment = {k: v for k, v in body.items() if k != "@context"}
    _require(
        bool(fragment)
        and fragment.get("id", sub.id) == sub.id
        and fragment.get("type", "Subscription") == "Subscription",
        "The fragment is empty or names another Subscription",
    )
    return apply_members(sub, fragment, ctx, now)


def apply_members(
    sub: Subscription, body: dict[str, Any], ctx: CompiledContext, now: str
) -> Subscription:
    """The Subscription with the members of ``body`` (all of them, or a PATCH fragment)
    applied. A member the fragment does not give keeps its parsed form: its names were
    expanded with the @context it came with, which need not be this request's."""
    sub = replace(sub, body={**sub.body, **body})
    full = sub.body
    _require(
        bool(full.get("entities")) or bool(full.get("watchedAttributes")),
        "A Subscription needs entities or watchedAttributes",
    )
    sub = replace(
        sub,
        **_named_members(body, ctx),
        triggers=_triggers(full.get("notificationTrigger")),
        scope_q=parse_scope_q(_decoded(full["scopeQ"], "scopeQ")) if full.get("scopeQ") else None,
        time_interval=_positive(full, "timeInterval"),
        throttling=_positive(full, "throttling"),
        expires_at=_expires(full.get("expiresAt"), now) if "expiresAt" in body else sub.expires_at,
        is_active=_bool(full.get("isActive", True), "isActive"),
        dataset_ids=_dataset_ids(full.get("datasetId")),
    )
    _require(
        not (sub.time_interval and sub.watched),
        "timeInterval and watchedAttributes exclude each other",
    )
    _require(
        not (sub.time_interval and sub.throttling), "timeInterval and throttling exclude each other"
    )
    notification: Any = full.get("notification")
    _check_notification(notification)
    if "notification" in body:
        attributes = _names(notification, "attributes", ctx)
        sub.attributes = tuple(sorted(attributes)) if attributes is not None else None
        sub.shape = parse_shape(notification)
    return sub


def _named_members(body: dict[str, Any], ctx: CompiledContext) -> dict[str, Any]:
    """The parsed members that hold names, expanded with ``ctx``: those ``body`` gives."""
    out: dict[str, Any] = {}
    if "entities" in body:
        out["entities"] = _selectors(body["entities"], ctx)
    if "watchedAttributes" in body:
        out["watched"] = _names(body, "watchedAttributes", ctx)
    if "q" in body:
        out["q"] = expand_q(parse_q(_decoded(body["q"], "q")), ctx.expand) if body["q"] else None
    if "geoQ" in body:
        out["geo_q"] = _geo(body["geoQ"], ctx)
    return out


def _decoded(text: Any, key: str) -> str:
    # Query strings are written URL-encoded (clause 4.9 is a query-string grammar), and
    # clients copy them into Subscriptions as such: name=="Eiffel%20Tower".
    _require(isinstance(text, str), f"{key} must be a string")
    return unquote(text)


def _dataset_ids(value: Any) -> tuple[str | None, ...] | None:
    """datasetId (clause 5.2.12): which Attribute instances a notification shows (clause
    4.5.5); ``@none`` names the default instance."""
    if value is None:
        return None
    _require(
        isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value),
        "datasetId must be a non-empty array of URIs",
    )
    return tuple(None if v == "@none" else check_uri(v, "datasetId") for v in value)


def _selectors(value: Any, ctx: CompiledContext) -> tuple[EntitySelector, ...]:
    if value is None:
        return ()
    _require(isinstance(value, list) and bool(value), "entities must be a non-empty array")
    out = []
    for item in value:
        _require(
            isinstance(item, dict) and isinstance(item.get("type"), str),
            "Each entities item needs a type",
        )
        if "id" in item:
            check_uri(item["id"], "entities id")
        pattern = item.get("idPattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except (re.error, TypeError) as exc:
                raise BadRequestData(
                    f"idPattern {pattern!r} is not a valid regular expression"
                ) from exc
        types = expand_types(parse_types(item["type"]), ctx.expand)
        out.append(EntitySelector(types, item.get("id"), pattern))
    return tuple(out)


def _names(container: Any, key: str, ctx: CompiledContext) -> frozenset[str] | None:
    if not isinstance(container, dict) or key not in container:
        return None
    value = container[key]
    _require(isinstance(value, list) and bool(value), f"{key} must be a non-empty array of names")
    return frozenset(ctx.expand(check_name(n)) for n in value)


def _triggers(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset(DEFAULT_TRIGGERS)
    _require(
        isinstance(value, list) and bool(value), "notificationTrigger must be a non-empty array"
    )
    unknown = [t for t in value if t not in TRIGGERS]
    _require(not unknown, f"Unknown notificationTrigger {unknown[0] if unknown else ''!r}")
    return frozenset(value)


def _geo(value: Any, ctx: CompiledContext) -> geo.GeoQuery | None:
    if value is None:
        return None
    gq = geo.parse_geoq_object(value)
    return gq.with_property_iri(ctx.expand(gq.geoproperty))


def _positive(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    _require(
        type(value) in (int, float) and value > 0, f"{key} must be a positive number of seconds"
    )
    return float(value)


def _expires(value: Any, now: str) -> str | None:
    if value is None:
        return None
    _require(is_datetime(value), "expiresAt must be a DateTime")
    _require(value > now, "expiresAt must be in the future")
    return str(value)


def _bool(value: Any, key: str) -> bool:
    _require(isinstance(value, bool), f"{key} must be true or false")
    return bool(value)


def _check_notification(notification: Any) -> None:
    _require(isinstance(notification, dict), "A Subscription needs a notification object")
    endpoint = notification.get("endpoint")
    _require(isinstance(endpoint, dict), "notification needs an endpoint")
    uri = endpoint.get("uri")
    _require(
        isinstance(uri, str) and uri.startswith(_SCHEMES),
        "endpoint.uri must be an http(s) or mqtt(s) URL",
    )
    accept = endpoint.get("accept", "application/json")
    _require(accept in ACCEPTS, f"endpoint.accept {accept!r} is not supported")
    fmt = notification.get("format", "normalized")
    _require(fmt in FORMATS, f"notification.format {fmt!r} is not supported")
    for key in ("pick", "omit"):
        names = notification.get(key)
        _require(
            names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names)),
            f"notification.{key} must be an array of names",
        )
    both = set(notification.get("pick") or []) & set(notification.get("omit") or [])
    _require(not both, f"{', '.join(sorted(both))} is in both pick and omit")
    projections = [k for k in ("attributes", "pick", "omit") if notification.get(k) is not None]
    _require(len(projections) < 2, f"notification.{' and '.join(projections)} exclude each other")
    for key in ("receiverInfo", "notifierInfo"):
        items = endpoint.get(key, [])
        _require(
            isinstance(items, list)
            and all(isinstance(i, dict) and "key" in i and "value" in i for i in items),
            f"endpoint.{key} must be an array of key/value objects",
        )


def _attribute_changes(before: StoredEntity, after: StoredEntity) -> dict[str, set[str]]:
    """The names of the Attributes created, updated and deleted by a change. An Attribute
    with several instances changes per instance (clause 4.5.5): deleting the instance of
    one datasetId is an attributeDeleted, adding one of a new datasetId an
    attributeCreated."""
    old, new = before.get("attrs", {}), after.get("attrs", {})
    created, deleted, updated = set(new) - set(old), set(old) - set(new), set()
    for name in old.keys() & new.keys():
        was, now = old[name], new[name]
        if len(was) == 1 and len(now) == 1 and was[0].get("datasetId") == now[0].get("datasetId"):
            if _strip(was[0]) != _strip(now[0]):
                updated.add(name)
            continue
        was_by_id = {i.get("datasetId"): i for i in was}
        now_by_id = {i.get("datasetId"): i for i in now}
        if now_by_id.keys() - was_by_id.keys():
            created.add(name)
        if was_by_id.keys() - now_by_id.keys():
            deleted.add(name)
        if any(_strip(was_by_id[d]) != _strip(now_by_id[d]) for d in was_by_id.keys() & now_by_id):
            updated.add(name)
    return {"attributeCreated": created, "attributeDeleted": deleted, "attributeUpdated": updated}


def _strip(instance: dict[str, Any]) -> dict[str, Any]:
    # A write that leaves everything but the timestamps alone still counts as an update
    # (the same value observed again is news to a subscriber); modifiedAt alone does not.
    return {k: v for k, v in instance.items() if k != "modifiedAt"}


def triggers_for(
    sub: Subscription, before: StoredEntity | None, after: StoredEntity | None
) -> str | None:
    """The trigger under which ``sub`` is notified of this change, or None (clause 5.8.1)."""
    entity = after if after is not None else before
    if entity is None or not sub.selects(entity):
        return None
    if before is None and after is not None:
        if "entityCreated" in sub.triggers:
            return "entityCreated"
        created = set(after.get("attrs", {}))
        return (
            "attributeCreated"
            if "attributeCreated" in sub.triggers and _watched(sub, created)
            else None
        )
    if after is None:
        return _entity_deleted(sub, entity)
    assert before is not None
    changed = _attribute_changes(before, after)
    for trigger in ("attributeCreated", "attributeUpdated", "attributeDeleted"):
        if trigger in sub.triggers and _watched(sub, changed[trigger]):
            return trigger
    entity_changed = (
        any(changed.values())
        or before.get("type") != after.get("type")
        or before.get("scope") != after.get("scope")
    )
    if "entityUpdated" in sub.triggers and entity_changed:
        return "entityUpdated"
    return None


def _entity_deleted(sub: Subscription, before: StoredEntity) -> str | None:
    """Deleting an Entity deletes its Attributes too: a Subscription to attributeDeleted
    of one of them is notified, unless it asks for entityDeleted itself."""
    if "entityDeleted" in sub.triggers:
        return "entityDeleted"
    if "attributeDeleted" in sub.triggers and _watched(sub, set(before.get("attrs", {}))):
        return "attributeDeleted"
    return None


def _watched(sub: Subscription, names: set[str]) -> bool:
    return bool(names) if sub.watched is None else bool(names & sub.watched)
