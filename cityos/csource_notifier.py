"""Notifications of context source registration subscriptions (GS CIM 009 V1.8.1 clauses
5.11.7 and 5.3.2), on the machinery of :mod:`cityos.notifier`.

:class:`CSourceNotifier` is a :class:`~cityos.notifier.Notifier` with its own subscriptions,
its own outbox table and its own :class:`~cityos.notify.delivery.Deliverer`; dispatch,
per-endpoint queues, retries, HTTP and MQTT delivery, status (timesSent, lastSuccess, ...),
throttling and timeInterval work exactly as for Entity subscriptions. What differs is what
is matched (``core.csource_subscriptions``) and what is rendered (a
ContextSourceNotification with the registrations and a triggerReason)::

    registration created, updated, deleted  -> outbox(): the store calls it in the
                                               registration's write transaction -> one
                                               outbox row per live subscription concerned
    subscription created or updated         -> notify_matching(): every registration it
                                               matches now, as newlyMatching
    timeInterval                            -> the same, periodically (no outbox row)

As Entity notifications are written in the transaction of their change, a registration
change and the notifications it triggers commit together: a crash loses neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from cityos.core.contexts import ContextRegistry
from cityos.core.csource_subscriptions import (
    NOTIFICATION_TYPE,
    parse_csource_subscription,
    registration_queries,
    relevant_registration,
    selects,
    trigger_reason,
)
from cityos.core.model import now_iso
from cityos.core.registrations import Registration, render_registration
from cityos.core.subscriptions import Subscription
from cityos.core.temporal import now_us
from cityos.notifier import Notifier, restore_subscriptions, serialize_notification
from cityos.storage.base import RegistrationOutbox, Store

__all__ = ["CSourceNotifier", "restore_csource_subscriptions"]

Row = tuple[str, str, str, str]  # tenant, subscription id, registration id, payload


class CSourceOutbox:
    """The store under the names the Notifier calls, for csource subscriptions: their own
    table and outbox. Registrations are not written through the store's listener, so the
    ``listener`` and ``on_commit`` the Notifier sets here are never called."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.listener: Any = None
        self.on_commit: Any = None

    async def save_subscription(self, tenant: str, sub_id: str, doc: Any) -> None:
        await self.store.save_csource_subscription(tenant, sub_id, doc)

    async def pending_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]:
        return await self.store.pending_csource_notifications(after_key, limit)

    async def finish_notifications(self, keys: Sequence[int]) -> None:
        await self.store.finish_csource_notifications(keys)


class CSourceNotifier(Notifier):
    @classmethod
    def create(cls, store: Store, contexts: ContextRegistry) -> CSourceNotifier:
        return cls(CSourceOutbox(store), contexts)

    @property
    def backend(self) -> Store:
        outbox: CSourceOutbox = self.store
        return outbox.store

    def outbox(self, tenant: str) -> RegistrationOutbox:
        """What the store calls in a registration's write transaction: the notification
        rows the change triggers, added in that transaction (``Store.create_registration``).
        Call :meth:`kick` after the write to send them."""
        return lambda before, after: self.rows_for(tenant, before, after)

    def rows_for(self, tenant: str, before: Any, after: Any) -> list[Row]:
        """A registration was created (``before`` None), updated, or deleted (``after``
        None): both are stored documents. The notifications it triggers."""
        old = Registration.from_doc(before) if before is not None else None
        new = Registration.from_doc(after) if after is not None else None
        shown = new if new is not None else old
        assert shown is not None
        now, clock = now_iso(), now_us()
        rows = []
        for sub in self._by_tenant.get(tenant, ()):
            if not sub.is_live(now) or sub.time_interval is not None:
                continue
            queries = registration_queries(sub)
            reason = trigger_reason(queries, old, new, clock)
            if reason is None or self._throttled(sub):
                continue
            reg = relevant_registration(queries, shown)
            rows.append(_row(sub, reason, [reg], shown.id))
        return rows

    async def notify_matching(self, sub: Subscription) -> None:
        """On creation or update of a subscription (clauses 5.11.2, 5.11.3): one
        notification with every registration it matches now, if any, as newlyMatching."""
        if not sub.is_live(now_iso()) or sub.time_interval is not None:
            return
        registrations = await self._matching(sub)
        if registrations:
            await self._enqueue([_row(sub, "newlyMatching", registrations, "")])

    async def _matching(self, sub: Subscription) -> list[Registration]:
        queries, clock = registration_queries(sub), now_us()
        stored = map(Registration.from_doc, await self.backend.registrations(sub.tenant))
        return [relevant_registration(queries, r) for r in stored if selects(queries, r, clock)]

    async def _enqueue(self, rows: list[Row]) -> None:
        if rows:
            await self.backend.add_csource_notifications(rows)
            self.kick()

    async def render(
        self, sub: Subscription, payloads: list[Any], notification_id: str
    ) -> tuple[bytes, dict[str, str]]:
        """A CsourceNotification (clause 5.3.2): the registrations, their names compacted
        with the subscription's @context, and why they are notified."""
        ctx = await self.contexts.compile(sub.context)
        sys_attrs = bool(sub.body["notification"].get("sysAttrs", False))
        data = [
            render_registration(Registration.from_doc(doc), ctx, sys_attrs)
            for payload in payloads
            for doc in payload["registrations"]
        ]
        body: dict[str, Any] = {
            # Its own id space: csource notifications are counted apart from Entity ones.
            "id": notification_id.replace(":Notification:", ":ContextSourceNotification:"),
            "type": NOTIFICATION_TYPE,
            "subscriptionId": sub.id,
            "notifiedAt": now_iso(),
            "data": data,
            "triggerReason": payloads[0]["reason"],
        }
        return serialize_notification(sub, body)

    async def _send_current(self, sub: Subscription, now: str) -> None:
        """timeInterval (clause 5.11.7): every registration the subscription matches now."""
        registrations = await self._matching(sub)
        if not registrations or self.deliverer is None:
            return
        payload = orjson.loads(_row(sub, "newlyMatching", registrations, "")[3])
        self._periodic_key += 1
        key = self._periodic_key
        await self._send(sub, key, "", [payload], f"urn:ngsi-ld:Notification:p{key}")


def _row(sub: Subscription, reason: str, registrations: list[Registration], reg_id: str) -> Row:
    payload = {"reason": reason, "registrations": [r.to_doc() for r in registrations]}
    return (sub.tenant, sub.id, reg_id, orjson.dumps(payload).decode())


async def restore_csource_subscriptions(
    store: Store, registry: ContextRegistry
) -> list[Subscription]:
    """The csource subscriptions kept in the store, with their state."""
    rows = await store.load_csource_subscriptions()
    return await restore_subscriptions(rows, registry, parse_csource_subscription)
