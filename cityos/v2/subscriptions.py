"""NGSI-v2 Subscriptions as NGSI-LD Subscriptions (FIWARE-NGSI v2, "Subscriptions").

A v2 Subscription is kept as an NGSI-LD Subscription (``cityos.core.subscriptions``), so
one notifier matches every change of either API against both kinds, from the same
outbox. The v2 document rides along in the member ``v2`` (with its id and the id
prefix), which the notifier reads to render v2 notifications (``cityos.v2.notifications``)
and this module to render the Subscription back. Names stay v2 names: the NGSI-LD
Subscription is parsed with the v2 @context, as its notifications are rendered::

    subject.entities[] {id|idPattern, type}    entities[] (id and idPattern by the id rule)
    subject.condition.attrs                    watchedAttributes
    subject.condition.expression q, mq         q (the Simple Query Language as NGSI-LD q)
    subject.condition.expression georel...     geoQ on location
    subject.condition.alterationTypes          notificationTrigger
    Fiware-ServicePath (not the root)          scopeQ
    notification.http.url, httpCustom.url+qs   notification.endpoint.uri
    notification.mqtt.url + topic              notification.endpoint.uri mqtt://host/topic
    throttling, expires, status                throttling, expiresAt, isActive

``typePattern``, entities without a type, templated URLs and methods other than POST are
refused with 400: NGSI-LD selectors need a type, and delivery posts to one URL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from cityos.core.model import now_iso
from cityos.core.query.ast import AttrPath, QAnd, QNode, QOr
from cityos.core.subscriptions import Subscription
from cityos.errors import BadRequestData
from cityos.v2.fields import check_field
from cityos.v2.geo import GEO_ATTRIBUTE, parse_geo_query
from cityos.v2.names import Names
from cityos.v2.servicepath import PathFilter
from cityos.v2.simpleq import and_all, parse_simple_query

__all__ = ["FORMATS", "LD_PREFIX", "V2_MEMBER", "ld_body", "render_subscription", "v2_id_of"]

V2_MEMBER = "v2"
LD_PREFIX = "urn:ngsi-ld:Subscription:"
FORMATS = ("normalized", "keyValues", "values")
_TRIGGERS = {
    "entityCreate": ("entityCreated",),
    "entityUpdate": ("attributeCreated", "attributeUpdated"),
    "entityChange": ("attributeCreated", "attributeUpdated"),
    "entityDelete": ("entityDeleted",),
}
_DEFAULT_TYPES = ("entityCreate", "entityChange")
_TOP = frozenset({"description", "subject", "notification", "expires", "status", "throttling"})


def _require(cond: bool, detail: str) -> None:
    if not cond:
        raise BadRequestData(detail)


def v2_id_of(ld_id: str) -> str:
    return ld_id[len(LD_PREFIX) :] if ld_id.startswith(LD_PREFIX) else ld_id


def _selector(item: Any, names: Names) -> dict[str, Any]:
    _require(isinstance(item, dict), "Each subject.entities item must be an object")
    _require(
        not set(item) - {"id", "idPattern", "type", "typePattern"},
        "Unknown member in subject.entities",
    )
    _require("typePattern" not in item, "typePattern is not supported in subscriptions yet")
    _require("type" in item, "Each subject.entities item needs a type here")
    _require(not ("id" in item and "idPattern" in item), "id and idPattern exclude each other")
    out: dict[str, Any] = {"type": check_field(item["type"], "Entity type")}
    if "id" in item:
        out["id"] = names.ids.to_ld(check_field(item["id"], "Entity id"))
    pattern = item.get("idPattern")
    if pattern is not None and pattern not in (".*", "^.*$"):
        _require(isinstance(pattern, str), "idPattern must be a string")
        out["idPattern"] = names.ids.pattern(pattern)
    return out


def _compact(node: QNode, names: Names) -> QNode:
    """The q AST with v2 names again, so NGSI-LD re-expands them with the same @context."""
    if isinstance(node, QAnd | QOr):
        return type(node)(tuple(_compact(t, names) for t in node.terms))
    path = node.path
    compact = AttrPath(
        names.compact(path.attr),
        tuple(names.compact(s) for s in path.subattrs),
        path.member,
        path.keys,
    )
    return replace(node, path=compact)


def _condition(condition: Any, names: Names, ld: dict[str, Any]) -> None:
    _require(isinstance(condition, dict), "subject.condition must be an object")
    attrs = condition.get("attrs") or []
    _require(
        isinstance(attrs, list) and all(isinstance(a, str) for a in attrs),
        "condition.attrs must be names",
    )
    if attrs:
        ld["watchedAttributes"] = attrs
    expression = condition.get("expression") or {}
    _require(isinstance(expression, dict), "condition.expression must be an object")
    nodes = parse_simple_query(expression["q"], names) if expression.get("q") else []
    if expression.get("mq"):
        nodes += parse_simple_query(expression["mq"], names, metadata=True)
    q = and_all(nodes)
    if q is not None:
        ld["q"] = _compact(q, names).render()
    geo = parse_geo_query(
        expression.get("georel"), expression.get("geometry"), expression.get("coords")
    )
    if geo is not None:
        ld["geoQ"] = {**geo.to_object(), "geoproperty": GEO_ATTRIBUTE}
    types = condition.get("alterationTypes") or list(_DEFAULT_TYPES)
    _require(
        isinstance(types, list) and all(t in _TRIGGERS for t in types), "Invalid alterationTypes"
    )
    ld["notificationTrigger"] = sorted({t for a in types for t in _TRIGGERS[a]})


def _endpoint(notification: dict[str, Any]) -> str:
    kinds = [k for k in ("http", "httpCustom", "mqtt", "mqttCustom") if k in notification]
    _require(len(kinds) == 1, "notification needs one of http, httpCustom or mqtt")
    spec = notification[kinds[0]]
    _require(
        isinstance(spec, dict) and isinstance(spec.get("url"), str),
        f"notification.{kinds[0]} needs a url",
    )
    url: str = spec["url"]
    _require("${" not in url, "Templates in notification URLs are not supported yet")
    if kinds[0] in ("mqtt", "mqttCustom"):
        _require(
            url.startswith(("mqtt://", "mqtts://")),
            "notification.mqtt.url must be mqtt://host:port",
        )
        topic = spec.get("topic")
        _require(
            isinstance(topic, str) and bool(topic) and "${" not in topic,
            "notification.mqtt needs a topic",
        )
        return url.rstrip("/") + "/" + str(topic).lstrip("/")
    _require(url.startswith(("http://", "https://")), "The notification url must be an http(s) URL")
    if kinds[0] == "httpCustom":
        _require(
            spec.get("method", "POST") == "POST",
            "httpCustom methods other than POST are not supported yet",
        )
        qs = spec.get("qs") or {}
        _require(
            isinstance(qs, dict) and "${" not in str(qs),
            "httpCustom.qs must be an object without templates",
        )
        if qs:
            url += ("&" if "?" in url else "?") + urlencode(qs)
    return url


def _notification(notification: Any) -> dict[str, Any]:
    _require(isinstance(notification, dict), "A subscription needs a notification object")
    _require(
        not ("attrs" in notification and "exceptAttrs" in notification),
        "attrs and exceptAttrs exclude each other",
    )
    for key in ("attrs", "exceptAttrs", "metadata"):
        value = notification.get(key, [])
        _require(
            isinstance(value, list) and all(isinstance(v, str) for v in value),
            f"notification.{key} must be names",
        )
    _require(
        notification.get("attrsFormat", "normalized") in FORMATS,
        "attrsFormat must be normalized, keyValues or values",
    )
    custom = notification.get("httpCustom") or {}
    _require(isinstance(custom.get("headers", {}), dict), "httpCustom.headers must be an object")
    _require(
        isinstance(custom.get("payload", ""), str | type(None)),
        "httpCustom.payload must be a string",
    )
    return {"endpoint": {"uri": _endpoint(notification), "accept": "application/json"}}


def _timing(doc: dict[str, Any], ld: dict[str, Any]) -> None:
    throttling = doc.get("throttling")
    if throttling is not None:
        _require(type(throttling) in (int, float) and throttling >= 0, "throttling must be seconds")
        if throttling:
            ld["throttling"] = throttling
    expires = _utc(doc["expires"]) if doc.get("expires") is not None else None
    if expires is not None and expires > now_iso():
        ld["expiresAt"] = expires
    status = doc.get("status", "active")
    # failed and expired are states a client copies back from a GET; they keep it active.
    _require(
        status in ("active", "inactive", "failed", "expired"), "status must be active or inactive"
    )
    # Orion lets a client set expires in the past (the Subscription is then expired);
    # NGSI-LD refuses such an expiresAt, so it is kept inactive and shown as expired.
    ld["isActive"] = status != "inactive" and (expires is None or expires > now_iso())


def _utc(text: Any) -> str:
    """An ISO 8601 time as NGSI-LD wants it (a zone; UTC when none is given, as Orion reads it)."""
    _require(isinstance(text, str), "expires must be an ISO 8601 date and time")
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequestData(f"expires {text!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ld_body(
    doc: Any, names: Names, paths: PathFilter, service_path: str, sub_id: str | None = None
) -> dict[str, Any]:
    """The NGSI-LD Subscription body of a v2 Subscription document; ``paths`` are the
    service paths it watches (the root, which scopeQ cannot name, adds no condition)."""
    _require(isinstance(doc, dict), "A subscription must be a JSON object")
    _require(
        not set(doc) - _TOP, f"Unknown subscription members: {', '.join(sorted(set(doc) - _TOP))}"
    )
    subject = doc.get("subject")
    _require(
        isinstance(subject, dict) and isinstance(subject.get("entities"), list),
        "subject.entities is needed",
    )
    v2_id = sub_id or uuid.uuid4().hex[:24]
    ld: dict[str, Any] = {
        "id": LD_PREFIX + v2_id,
        "type": "Subscription",
        "entities": [_selector(i, names) for i in subject["entities"]],
    }
    _require(bool(ld["entities"]), "subject.entities must not be empty")
    _condition(subject.get("condition") or {}, names, ld)
    ld["notification"] = _notification(doc.get("notification"))
    _timing(doc, ld)
    scope_q = paths.scope_q
    if scope_q is not None:
        ld["scopeQ"] = scope_q.render()
    if isinstance(doc.get("description"), str):
        ld["description"] = doc["description"]
    ld[V2_MEMBER] = {
        "id": v2_id,
        "doc": _without_state(doc),
        "idPrefix": names.ids.prefix,
        "servicePath": service_path,
    }
    return ld


_STATE = frozenset(
    {
        "timesSent",
        "lastNotification",
        "lastSuccess",
        "lastFailure",
        "lastSuccessCode",
        "lastFailureReason",
        "failsCounter",
    }
)


def _without_state(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the client defines it: the counters a GET shows are not kept."""
    out = {k: v for k, v in doc.items() if k != "status" or v in ("active", "inactive")}
    notification = out.get("notification")
    if isinstance(notification, dict):
        out["notification"] = {k: v for k, v in notification.items() if k not in _STATE}
    return out


def render_subscription(sub: Subscription, now: str) -> dict[str, Any]:
    """The v2 Subscription with its id, status and counters."""
    meta = sub.body[V2_MEMBER]
    doc = dict(meta["doc"])
    status = sub.status
    out: dict[str, Any] = {"id": meta["id"], **doc}
    expires = _utc(doc["expires"]) if doc.get("expires") is not None else None
    expired = expires is not None and expires <= now
    if expired:
        out["status"] = "expired"
    elif not sub.is_active:
        out["status"] = "inactive"
    else:
        out["status"] = "failed" if status.get("status") == "failed" else "active"
    notification = dict(doc.get("notification", {}))
    notification.setdefault("attrsFormat", "normalized")
    for key in ("timesSent", "lastNotification", "lastSuccess", "lastFailure"):
        if key in status:
            notification[key] = status[key]
    if "timesFailed" in status:
        notification["failsCounter"] = status["timesFailed"]
    out["notification"] = notification
    return out
