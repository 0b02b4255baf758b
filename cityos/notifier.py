"""The notifier: from committed changes to delivered notifications, surviving crashes.

Flow (see docs/architecture.md):

1. In the write transaction, :meth:`Notifier.listener` matches each change against the
   tenant's live Subscriptions (``core.subscriptions.triggers_for``) and returns outbox
   rows; the store inserts them in the same transaction. A notification therefore exists
   exactly when its change was committed, in commit order.
2. After the commit the store calls :meth:`Notifier.kick`; the dispatch loop reads new
   outbox rows, renders each Notification (clause 5.3.1) and submits it to the
   :class:`~cityos.notify.delivery.Deliverer`, which keeps per-endpoint queues, per-entity
   order, timeouts and bounded retries.
3. When a delivery is final (success, or the last retry failed) its outbox row is
   deleted. A row still in the outbox at startup is delivered again: at least once, with
   the Notification id derived from the row so receivers can drop duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from cityos.core.contexts import CORE_CONTEXT_URL, ContextRegistry
from cityos.core.render import RenderOptions, render_entity
from cityos.core.subscriptions import Subscription, triggers_for
from cityos.notify.delivery import Attempt, Deliverer, Delivery
from cityos.storage.base import WriteOutcome

__all__ = ["Notifier"]

log = logging.getLogger(__name__)
_BATCH = 500
_FORMATS = {"simplified": "keyValues"}
_PREVIOUS = {"Property": "previousValue", "GeoProperty": "previousValue", "Relationship": "previousObject"}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Notifier:
    store: Any  # SQLiteStore: outbox and subscription persistence
    contexts: ContextRegistry
    subs: dict[tuple[str, str], Subscription] = field(default_factory=dict)
    _by_tenant: dict[str, tuple[Subscription, ...]] = field(default_factory=dict)
    _last_sent: dict[tuple[str, str], float] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _done: list[int] = field(default_factory=list)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    _cursor: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _streams: dict[tuple[str, str], set[asyncio.Queue[bytes]]] = field(default_factory=dict)
    deliverer: Deliverer | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, subscriptions: list[Subscription]) -> None:
        for sub in subscriptions:
            self.subs[(sub.tenant, sub.id)] = sub
        self._publish()
        self._loop = asyncio.get_running_loop()
        self.deliverer = Deliverer(self._on_attempt)
        await self.deliverer.start()
        self.store.listener = self.listener
        self.store.on_commit = self.kick
        self._tasks = [asyncio.create_task(self._dispatch()), asyncio.create_task(self._housekeeping())]
        self._wake.set()  # deliver what a crash or stop left in the outbox

    async def stop(self) -> None:
        self.store.listener = None
        self.store.on_commit = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.deliverer is not None:
            await self.deliverer.stop()
        await self._flush()

    def put(self, sub: Subscription) -> None:
        self.subs[(sub.tenant, sub.id)] = sub
        self._publish()

    def remove(self, tenant: str, sub_id: str) -> None:
        self.subs.pop((tenant, sub_id), None)
        self._publish()

    def _publish(self) -> None:
        # The writer thread reads these tuples; each is replaced whole, never mutated.
        by_tenant: dict[str, list[Subscription]] = {}
        for sub in self.subs.values():
            by_tenant.setdefault(sub.tenant, []).append(sub)
        self._by_tenant = {t: tuple(s) for t, s in by_tenant.items()}

    # -- in the write transaction (writer thread) -----------------------------------------

    def listener(self, tenant: str, outcomes: list[WriteOutcome]) -> list[tuple[str, str, str, str]]:
        subs = self._by_tenant.get(tenant)
        if not subs:
            return []
        now = _now()
        rows = []
        for outcome in outcomes:
            for sub in subs:
                if not sub.is_live(now) or sub.time_interval is not None:
                    continue
                trigger = triggers_for(sub, outcome.before, outcome.after)
                if trigger is None or self._throttled(sub):
                    continue
                entity = outcome.after if outcome.after is not None else outcome.before
                assert entity is not None
                payload = {"trigger": trigger, "entity": entity, "previous": outcome.before, "at": now}
                rows.append((tenant, sub.id, entity["id"], orjson.dumps(payload).decode()))
        return rows

    def _throttled(self, sub: Subscription) -> bool:
        """throttling (clause 5.2.12): at most one notification per period; others dropped."""
        if sub.throttling is None:
            return False
        key, now = (sub.tenant, sub.id), time.monotonic()
        if now - self._last_sent.get(key, -1e18) < sub.throttling:
            return True
        self._last_sent[key] = now
        return False

    def kick(self) -> None:
        self._wake.set()

    # -- dispatch (event loop) ------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                rows = await self.store.pending_notifications(self._cursor, _BATCH)
                if not rows:
                    break
                for key, tenant, sub_id, entity_id, payload in rows:
                    self._cursor = key
                    await self._submit(key, tenant, sub_id, entity_id, payload)

    async def _submit(self, key: int, tenant: str, sub_id: str, entity_id: str, payload: Any) -> None:
        sub = self.subs.get((tenant, sub_id))
        if sub is None or self.deliverer is None:
            self._done.append(key)
            return
        body, headers = await self.render(sub, [payload], f"urn:ngsi-ld:Notification:{key}")
        self._fan_out(sub, body)
        endpoint = sub.body["notification"]["endpoint"]
        info = {i["key"]: str(i["value"]) for i in endpoint.get("notifierInfo", [])}
        self.deliverer.submit(Delivery(key, tenant, sub_id, entity_id, endpoint["uri"], headers, body, info))

    async def render(self, sub: Subscription, payloads: list[Any], notification_id: str) -> tuple[bytes, dict[str, str]]:
        """The Notification body and HTTP headers for some changes (clause 5.3.1)."""
        ctx = await self.contexts.compile(sub.context)
        notification = sub.body["notification"]
        opts = RenderOptions(
            format=_FORMATS.get(notification.get("format", "normalized"), notification.get("format", "normalized")),
            sys_attrs=bool(notification.get("sysAttrs", False)),
            lang=sub.body.get("lang"),
            attrs=sub.attributes,
        )
        data = [self._data(p, ctx, opts, bool(notification.get("showChanges"))) for p in payloads]
        accept = notification["endpoint"].get("accept", "application/json")
        body: dict[str, Any] = {
            "id": notification_id,
            "type": "Notification",
            "subscriptionId": sub.id,
            "notifiedAt": _now(),
            "data": data,
        }
        headers = {"Content-Type": "application/json" if accept == "application/geo+json" else accept}
        context_url = sub.context if isinstance(sub.context, str) else CORE_CONTEXT_URL
        if accept == "application/ld+json":
            body["@context"] = sub.context if sub.context is not None else CORE_CONTEXT_URL
        else:
            headers["Link"] = f'<{context_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        if sub.tenant:
            headers["NGSILD-Tenant"] = sub.tenant
        for item in notification["endpoint"].get("receiverInfo", []):
            headers[item["key"]] = str(item["value"])
        return orjson.dumps(body), headers

    def _data(self, payload: Any, ctx: Any, opts: RenderOptions, show_changes: bool) -> dict[str, Any]:
        entity = payload["entity"]
        if payload["trigger"] == "entityDeleted":
            types = [ctx.compact(t) for t in entity["type"]]
            return {"id": entity["id"], "type": types[0] if len(types) == 1 else types, "deletedAt": payload["at"]}
        out = render_entity(entity, ctx, opts)
        previous = payload.get("previous")
        if show_changes and previous and opts.format == "normalized":
            _add_previous(out, entity, previous, ctx)
        return out

    # -- results ------------------------------------------------------------------------

    def _on_attempt(self, attempt: Attempt) -> None:
        d = attempt.delivery
        sub = self.subs.get((d.tenant, d.subscription_id))
        if sub is not None:
            status = sub.status
            status["timesSent"] = status.get("timesSent", 0) + 1
            status["lastNotification"] = attempt.at
            if attempt.ok:
                status["lastSuccess"] = attempt.at
                status["status"] = "ok"
            else:
                status["timesFailed"] = status.get("timesFailed", 0) + 1
                status["lastFailure"] = attempt.at
                status["status"] = "failed"
                log.warning("Notification %s for %s failed: %s", d.key, d.subscription_id, attempt.error)
            self._dirty.add((d.tenant, d.subscription_id))
        if attempt.final and d.key > 0:
            self._done.append(d.key)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self._flush()

    async def _flush(self) -> None:
        done, self._done = self._done, []
        if done:
            await self.store.finish_notifications(done)
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            sub = self.subs.get(key)
            if sub is not None:
                await self.store.save_subscription(sub.tenant, sub.id, stored_form(sub))

    # -- live streams (Server-Sent Events) --------------------------------------------------

    def _fan_out(self, sub: Subscription, body: bytes) -> None:
        for queue in self._streams.get((sub.tenant, sub.id), ()):
            if queue.qsize() < 1000:
                queue.put_nowait(body)

    @contextlib.asynccontextmanager
    async def stream(self, tenant: str, sub_id: str) -> AsyncIterator[asyncio.Queue[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._streams.setdefault((tenant, sub_id), set()).add(queue)
        try:
            yield queue
        finally:
            self._streams[(tenant, sub_id)].discard(queue)


def stored_form(sub: Subscription) -> dict[str, Any]:
    return {"body": sub.body, "context": sub.context, "status": sub.status}


def _add_previous(out: dict[str, Any], entity: Any, previous: Any, ctx: Any) -> None:
    """showChanges (clause 5.2.12): the value before the change beside each changed one."""
    old_attrs = previous.get("attrs", {})
    for iri, instances in entity.get("attrs", {}).items():
        old = old_attrs.get(iri)
        key = ctx.compact(iri)
        if not old or key not in out or not isinstance(out[key], dict):
            continue
        member = _PREVIOUS.get(instances[0]["type"])
        if member and old[0].get("value") != instances[0].get("value"):
            out[key][member] = old[0]["value"]
