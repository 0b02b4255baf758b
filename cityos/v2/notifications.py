"""v2 notifications from the one notifier (FIWARE-NGSI v2, "Notification Messages" and
"Custom Notifications").

:class:`Notifier` is ``cityos.notifier.Notifier`` rendering the Subscriptions that carry
a v2 document (``cityos.v2.subscriptions``) as Orion does: ``{"subscriptionId", "data"}``
with the Entities in ``normalized``, ``keyValues`` or ``values`` form, the headers
``Ngsiv2-AttrsFormat``, ``Fiware-Service`` and ``Fiware-ServicePath``, and the headers
and payload template of ``httpCustom`` (``${id}``, ``${type}``, ``${attr}``). Matching,
the outbox, retries and counters are the NGSI-LD notifier's own.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from cityos.core.model import StoredEntity
from cityos.core.subscriptions import Subscription
from cityos.notifier import Notifier as LDNotifier
from cityos.v2.entities import View, render_entity, v2_id, v2_type
from cityos.v2.names import Names, load_names
from cityos.v2.subscriptions import V2_MEMBER

__all__ = ["Notifier", "fill_template"]

_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


class Notifier(LDNotifier):
    """The notifier, rendering v2 Subscriptions' notifications in v2 form."""

    def raw_payload(self, sub: Subscription) -> bool:
        """Orion publishes a v2 notification over MQTT as it is, with no envelope."""
        return isinstance(sub.body.get(V2_MEMBER), dict)

    async def render(
        self, sub: Subscription, payloads: list[Any], notification_id: str
    ) -> tuple[bytes, dict[str, str]]:
        meta = sub.body.get(V2_MEMBER)
        if not isinstance(meta, dict):
            return await super().render(sub, payloads, notification_id)
        names = await load_names(self.contexts, sub.context or "", meta["idPrefix"])
        only_changed = meta["doc"].get("notification", {}).get("onlyChangedAttrs") is True
        entities = [_changed_only(p) if only_changed else p["entity"] for p in payloads]
        return render_v2(sub, meta, names, entities)


def _changed_only(payload: Any) -> StoredEntity:
    """The notified Entity with only the attributes its change changed (onlyChangedAttrs)."""
    entity: StoredEntity = payload["entity"]
    previous = payload.get("previous")
    if not previous:
        return entity
    before = previous.get("attrs", {})
    changed = {
        iri: instances
        for iri, instances in entity.get("attrs", {}).items()
        if _unstamped(instances) != _unstamped(before.get(iri, []))
    }
    return {**entity, "attrs": changed}


def _unstamped(instances: list[Any]) -> list[Any]:
    return [{k: v for k, v in i.items() if k != "modifiedAt"} for i in instances]


def _data(doc: dict[str, Any], names: Names, entities: list[StoredEntity]) -> list[Any]:
    notification = doc.get("notification", {})
    mode = notification.get("attrsFormat", "normalized")
    view = View(
        names, mode, notification.get("attrs") or None, notification.get("metadata") or None
    )
    data = [render_entity(e, view) for e in entities]
    excepted = set(notification.get("exceptAttrs") or [])
    if excepted and mode != "values":
        data = [{k: v for k, v in item.items() if k not in excepted} for item in data]
    return data


def fill_template(template: str, entity: dict[str, Any]) -> str:
    """``${name}`` replaced by the Entity's id, type or attribute value (text as is,
    anything else as JSON); a name it lacks by nothing."""

    def value(match: re.Match[str]) -> str:
        found = entity.get(match[1])
        if found is None:
            return ""
        return found if isinstance(found, str) else orjson.dumps(found).decode()

    return _TEMPLATE.sub(value, template)


def render_v2(
    sub: Subscription, meta: dict[str, Any], names: Names, entities: list[StoredEntity]
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one v2 notification of ``entities`` (one for httpCustom)."""
    doc: dict[str, Any] = meta["doc"]
    notification = doc.get("notification", {})
    custom = notification.get("httpCustom") or {}
    first: StoredEntity = entities[0] if entities else {"id": "", "type": [], "attrs": {}}
    scopes: list[str] = first.get("scope") or ["/"]
    flat = {
        **render_entity(first, View(names, "keyValues")),
        "id": v2_id(first, names),
        "type": v2_type(first, names),
    }
    headers = {
        "Content-Type": "application/json",
        "Ngsiv2-AttrsFormat": notification.get("attrsFormat", "normalized"),
        "Fiware-ServicePath": scopes[0],
    }
    if sub.tenant:
        headers["Fiware-Service"] = sub.tenant
    if custom.get("payload") is not None:
        body = fill_template(custom["payload"], flat).encode()
        headers.update({"Content-Type": "text/plain", "Ngsiv2-AttrsFormat": "custom"})
    else:
        body = orjson.dumps({"subscriptionId": meta["id"], "data": _data(doc, names, entities)})
    for key, value in custom.get("headers", {}).items():
        headers[fill_template(str(key), flat)] = fill_template(str(value), flat)
    return body, headers
