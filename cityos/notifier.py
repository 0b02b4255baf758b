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
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from cityos.core.contexts import CORE_CONTEXT_URL, ContextRegistry
from cityos.core.linked import (
    Join,
    TreeRenderer,
    apply_shape,
    collect_linked,
    parse_join,
    render_tree,
)
from cityos.core.model import VALUE_MEMBER, now_iso
from cityos.core.render import RenderOptions, render_entity
from cityos.core.subscriptions import Subscription, triggers_for
from cityos.notify.delivery import Attempt, Deliverer, Delivery
from cityos.storage.base import EntityQuery, WriteOutcome

__all__ = ["Notifier", "restore_subscriptions", "serialize_notification", "stored_form"]

log = logging.getLogger(__name__)
_BATCH = 500
_PERIODIC_BASE = 1 << 62  # keys of timeInterval notifications, which have no outbox row
_FORMATS = {"simplified": "keyValues"}
Parser = Callable[..., Subscription]  # parse_subscription and its kin


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
    _next_due: dict[tuple[str, str], float] = field(default_factory=dict)
    _periodic_key: int = _PERIODIC_BASE
    # Set when authentication is on (cityos.trust.Trust.admit): filters the changes a
    # notification carries through its Subscription owner's access and consents.
    admit: Callable[[Subscription, list[Any]], Awaitable[list[Any]]] | None = None

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
        self._tasks = [
            asyncio.create_task(self._dispatch()),
            asyncio.create_task(self._housekeeping()),
            asyncio.create_task(self._periodic()),
        ]
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
        """After the Subscription and its outbox rows are deleted: nothing more is sent."""
        self.subs.pop((tenant, sub_id), None)
        self._publish()
        if self.deliverer is not None:
            self.deliverer.cancel(tenant, sub_id)

    def _publish(self) -> None:
        # The writer thread reads these tuples; each is replaced whole, never mutated.
        by_tenant: dict[str, list[Subscription]] = {}
        for sub in self.subs.values():
            by_tenant.setdefault(sub.tenant, []).append(sub)
        self._by_tenant = {t: tuple(s) for t, s in by_tenant.items()}

    # -- in the write transaction (writer thread) -----------------------------------------

    def listener(
        self, tenant: str, outcomes: list[WriteOutcome]
    ) -> list[tuple[str, str, str, str]]:
        subs = self._by_tenant.get(tenant)
        if not subs:
            return []
        now = now_iso()
        rows = []
        for outcome in outcomes:
            for sub in subs:
                if not sub.is_live(now) or sub.time_interval is not None:
                    continue
                trigger = triggers_for(sub, outcome.before, outcome.after)
                if trigger is None or self._throttled(sub):
                    continue
                payload = _payload(trigger, outcome, now)
                entity = payload["entity"]
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
        """Never stops: a row that cannot be rendered is logged and reported as a failed
        notification of its Subscription, and the loop goes on with the next."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
            except Exception:  # the outbox read failed; try again shortly
                log.exception("Reading the notification outbox failed; retrying")
                await asyncio.sleep(1)
                self._wake.set()

    async def _drain(self) -> None:
        while True:
            rows = await self.store.pending_notifications(self._cursor, _BATCH)
            if not rows:
                return
            for key, tenant, sub_id, entity_id, payload in rows:
                self._cursor = key
                try:
                    await self._submit(key, tenant, sub_id, entity_id, payload)
                except Exception as exc:  # logged with its traceback, counted, and skipped
                    log.exception("Notification %s for %s could not be prepared", key, sub_id)
                    self._failed_before_sending(key, tenant, sub_id, exc)

    def _failed_before_sending(self, key: int, tenant: str, sub_id: str, exc: Exception) -> None:
        sub = self.subs.get((tenant, sub_id))
        if sub is not None:
            sub.status["timesFailed"] = sub.status.get("timesFailed", 0) + 1
            sub.status["lastFailure"] = now_iso()
            sub.status["status"] = "failed"
            self._dirty.add((tenant, sub_id))
        self._done.append(key)

    async def _submit(
        self, key: int, tenant: str, sub_id: str, entity_id: str, payload: Any
    ) -> None:
        sub = self.subs.get((tenant, sub_id))
        if sub is None or self.deliverer is None:
            self._done.append(key)
            return
        await self._send(sub, key, entity_id, [payload], f"urn:ngsi-ld:Notification:{key}")

    async def _send(
        self, sub: Subscription, key: int, entity_id: str, payloads: list[Any], notification_id: str
    ) -> None:
        """Renders one Notification, streams it to SSE listeners and hands it to delivery."""
        assert self.deliverer is not None
        if self.admit is not None:  # the owner's access rules and consents, as they are now
            payloads = await self.admit(sub, payloads)
            if not payloads:
                self._done.append(key)
                return
        body, headers = await self.render(sub, payloads, notification_id)
        # Counted when handed to delivery, not when acknowledged: a receiver that reads
        # the Subscription as soon as the notification arrives sees it counted.
        status = sub.status
        status["timesSent"] = status.get("timesSent", 0) + 1
        status["lastNotification"] = now_iso()  # each attempt updates it
        self._dirty.add((sub.tenant, sub.id))
        self._fan_out(sub, body)
        endpoint = sub.body["notification"]["endpoint"]
        info = {i["key"]: str(i["value"]) for i in endpoint.get("notifierInfo", [])}
        delivery = Delivery(
            key,
            sub.tenant,
            sub.id,
            entity_id,
            endpoint["uri"],
            headers,
            body,
            info,
            raw=self.raw_payload(sub),
        )
        self.deliverer.submit(delivery)

    def raw_payload(self, sub: Subscription) -> bool:
        """Whether an MQTT notification goes without the clause 7.2 envelope."""
        return False

    async def render(
        self, sub: Subscription, payloads: list[Any], notification_id: str
    ) -> tuple[bytes, dict[str, str]]:
        """The Notification body and HTTP headers for some changes (clause 5.3.1)."""
        ctx = await self.contexts.compile(sub.context)
        notification = sub.body["notification"]
        opts = RenderOptions(
            format=_FORMATS.get(
                notification.get("format", "normalized"), notification.get("format", "normalized")
            ),
            sys_attrs=bool(notification.get("sysAttrs", False)),
            lang=sub.body.get("lang"),
            attrs=sub.attributes,
            dataset_ids=sub.dataset_ids,
        )
        join = parse_join(notification)
        if join is None:
            data = [apply_shape(self._data(p, sub, ctx, opts), sub.shape) for p in payloads]
        else:  # Linked Entity Retrieval in notifications (clause 5.2.14)
            data = await self._joined(sub, payloads, ctx, opts, join)
        body: dict[str, Any] = {
            "id": notification_id,
            "type": "Notification",
            "subscriptionId": sub.id,
            "notifiedAt": now_iso(),
            "data": data,
        }
        return serialize_notification(sub, body)

    async def _joined(
        self, sub: Subscription, payloads: list[Any], ctx: Any, opts: RenderOptions, join: Join
    ) -> list[dict[str, Any]]:
        roots = [p["entity"] for p in payloads if not _is_deletion(p)]
        linked = await collect_linked(self.store, sub.tenant, roots, join.level)
        # notification.attributes selects the Attributes of the notified Entities only;
        # the Entities they link to are shown whole (clause 4.5.23).
        renderer = TreeRenderer(ctx, opts, linked, join, replace(opts, attrs=None))
        return render_tree(roots, renderer, sub.shape)

    def _data(
        self, payload: Any, sub: Subscription, ctx: Any, opts: RenderOptions
    ) -> dict[str, Any]:
        entity, previous = payload["entity"], payload.get("previous")
        show_changes = bool(sub.body["notification"].get("showChanges"))
        if _is_deletion(payload):
            out = _deleted_entity(entity, ctx, opts, payload["at"])
            nulls = _Nulls(ctx, opts, show_changes, payload["at"])
            if payload["trigger"] == "attributeDeleted":  # only its watched Attributes
                nulls.add(out, entity, {}, sub.watched)
            elif show_changes:
                nulls.add(out, entity, {})
            return out
        out = render_entity(entity, ctx, opts)
        if previous:
            # clause 5.2.12: a deleted attribute is notified as the NGSI-LD Null
            nulls = _Nulls(ctx, opts, show_changes, payload["at"])
            nulls.add(out, previous, entity.get("attrs", {}))
            if show_changes and opts.format == "normalized":
                _add_previous(out, entity, previous, ctx)
        return out

    # -- results ------------------------------------------------------------------------

    def _on_attempt(self, attempt: Attempt) -> None:
        d = attempt.delivery
        sub = self.subs.get((d.tenant, d.subscription_id))
        if sub is not None:
            status = sub.status
            status["lastNotification"] = attempt.at
            if attempt.ok:
                status["lastSuccess"] = attempt.at
                status["status"] = "ok"
            else:
                status["timesFailed"] = status.get("timesFailed", 0) + 1
                status["lastFailure"] = attempt.at
                status["status"] = "failed"
                log.warning(
                    "Notification %s for %s failed: %s", d.key, d.subscription_id, attempt.error
                )
            self._dirty.add((d.tenant, d.subscription_id))
        if attempt.final and d.key < _PERIODIC_BASE:
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

    # -- periodic notifications (timeInterval, clause 5.2.12) -----------------------------

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now, clock = now_iso(), time.monotonic()
            for key, sub in list(self.subs.items()):
                if sub.time_interval is None or not sub.is_live(now):
                    self._next_due.pop(key, None)
                    continue
                due = self._next_due.setdefault(key, clock)  # the first one at once
                if due <= clock:
                    self._next_due[key] = clock + sub.time_interval
                    await self._send_current(sub, now)

    async def _send_current(self, sub: Subscription, now: str) -> None:
        """One notification with every Entity the Subscription selects, as it is now."""
        entities: dict[str, Any] = {}
        for query in _queries(sub):
            for entity in (await self.store.query_entities(query)).entities:
                entities.setdefault(entity["id"], entity)
        if not entities or self.deliverer is None:
            return
        payloads = [
            {"trigger": "timeInterval", "entity": e, "previous": None, "at": now}
            for e in entities.values()
        ]
        self._periodic_key += 1
        key = self._periodic_key
        await self._send(sub, key, "", payloads, f"urn:ngsi-ld:Notification:p{key}")

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


def _payload(trigger: str, outcome: WriteOutcome, now: str) -> dict[str, Any]:
    """What an outbox row keeps of a change: the Entity after it (before it, when it was
    deleted) and, for an update, the Entity before it."""
    if outcome.after is None:
        assert outcome.before is not None
        return {"trigger": trigger, "entity": outcome.before, "deleted": True, "at": now}
    return {"trigger": trigger, "entity": outcome.after, "previous": outcome.before, "at": now}


def _is_deletion(payload: Any) -> bool:
    # Rows written before "deleted" existed marked a deletion only by their trigger.
    return bool(payload.get("deleted")) or payload["trigger"] == "entityDeleted"


def _queries(sub: Subscription) -> list[EntityQuery]:
    base = EntityQuery(tenant=sub.tenant, q=sub.q, scope_q=sub.scope_q, limit=1000)
    if sub.geo_q is not None:
        base = replace(base, geo=sub.geo_q, geoproperty=sub.geo_q.geoproperty)
    if not sub.entities:
        return [replace(base, attrs=sorted(sub.watched or ()))]
    return [
        replace(base, ids=[s.id] if s.id else [], id_pattern=s.id_pattern, types=s.type)
        for s in sub.entities
    ]


def stored_form(sub: Subscription) -> dict[str, Any]:
    return {"body": sub.body, "context": sub.context, "status": sub.status}


async def restore_subscriptions(
    rows: list[tuple[str, str, Any]], registry: ContextRegistry, parse: Parser
) -> list[Subscription]:
    """The subscriptions of ``rows`` (tenant, id, :func:`stored_form`) parsed again by
    ``parse``, with their state, as they were at the stop."""
    out = []
    for tenant, _, doc in rows:
        ctx = await registry.compile(doc["context"])
        sub = parse(doc["body"], ctx, tenant, doc["context"], now="")
        sub.status = doc.get("status", {})
        out.append(sub)
    return out


def serialize_notification(sub: Subscription, body: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body of a Notification (clause 5.3.1) or CsourceNotification (clause 5.3.2) as
    sent to the subscription's endpoint, and its HTTP headers: the @context as a Link, or
    in the body and each item of ``data`` for JSON-LD; the tenant, and receiverInfo."""
    endpoint = sub.body["notification"]["endpoint"]
    accept = endpoint.get("accept", "application/json")
    headers = {"Content-Type": "application/json" if accept == "application/geo+json" else accept}
    context_url = sub.context if isinstance(sub.context, str) else CORE_CONTEXT_URL
    if accept == "application/ld+json":  # each item carries its @context (clause 5.3.1)
        ld_context = sub.context if sub.context is not None else CORE_CONTEXT_URL
        body["@context"] = ld_context
        for item in body["data"]:
            item["@context"] = ld_context
    else:
        headers["Link"] = (
            f'<{context_url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
        )
    if sub.tenant:
        headers["NGSILD-Tenant"] = sub.tenant
    for item in endpoint.get("receiverInfo", []):
        headers[item["key"]] = str(item["value"])
    return orjson.dumps(body), headers


_PREVIOUS_MEMBER = {
    "Property": "previousValue",
    "GeoProperty": "previousValue",
    "Relationship": "previousObject",
    "LanguageProperty": "previousLanguageMap",
    "JsonProperty": "previousJson",
    "VocabProperty": "previousVocab",
    "ListProperty": "previousValueList",
    "ListRelationship": "previousObjectList",
}
_NULL = "urn:ngsi-ld:null"


def _previous_value(inst: dict[str, Any], ctx: Any) -> Any:
    value = inst.get("value")
    if inst["type"] == "VocabProperty":
        return [ctx.compact(v) for v in value] if isinstance(value, list) else ctx.compact(value)
    return value


def _add_previous(out: dict[str, Any], entity: Any, previous: Any, ctx: Any) -> None:
    """showChanges (clause 5.2.12): the value before the change beside each changed one."""
    old_attrs = previous.get("attrs", {})
    for iri, instances in entity.get("attrs", {}).items():
        old = old_attrs.get(iri)
        key = ctx.compact(iri)
        if not old or key not in out or not isinstance(out[key], dict):
            continue
        member = _PREVIOUS_MEMBER.get(instances[0]["type"])
        if member and old[0].get("value") != instances[0].get("value"):
            out[key][member] = _previous_value(old[0], ctx)


@dataclass(frozen=True, slots=True)
class _Nulls:
    """Renders what a change deleted as the NGSI-LD Null (clause 5.2.12): whole
    Attributes, and single instances of a multi-attribute (clause 4.5.5)."""

    ctx: Any
    opts: RenderOptions
    show_changes: bool
    at: str  # when the change was made: the deletedAt of what it deleted

    def add(
        self,
        out: dict[str, Any],
        previous: Any,
        now_attrs: dict[str, Any],
        only: frozenset[str] | None = None,
    ) -> None:
        keep = self.opts.attrs
        for iri, was in previous.get("attrs", {}).items():
            if (keep is not None and iri not in keep) or (only is not None and iri not in only):
                continue
            now = now_attrs.get(iri)
            if now is None:
                gone = self._selected(was)
                if gone:
                    out[self.ctx.compact(iri)] = self.instance(gone[0])
            elif len(was) > 1 or was[0].get("datasetId") != now[0].get("datasetId"):
                kept = {i.get("datasetId") for i in now}
                gone = [i for i in self._selected(was) if i.get("datasetId") not in kept]
                if gone:
                    self._add_instances(out, self.ctx.compact(iri), self._selected(now), gone)

    def _selected(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        wanted = self.opts.dataset_ids
        return (
            instances if wanted is None else [i for i in instances if i.get("datasetId") in wanted]
        )

    def _add_instances(
        self, out: dict[str, Any], key: str, shown: list[dict[str, Any]], gone: list[dict[str, Any]]
    ) -> None:
        """Beside the instances still there (as rendered), the deleted ones as Null."""
        current: Any = out.get(key)
        if self.opts.format == "keyValues":
            dataset: dict[str, Any] = {}
            if len(shown) == 1:
                dataset[shown[0].get("datasetId", "@none")] = current
            elif shown:
                dataset.update(current["dataset"])
            dataset.update({i.get("datasetId", "@none"): _NULL for i in gone})
            out[key] = {"dataset": dataset}
            return
        items = [] if not shown else current if isinstance(current, list) else [current]
        items = items + [self.instance(i) for i in gone]
        out[key] = items[0] if len(items) == 1 else items

    def instance(self, inst: dict[str, Any]) -> Any:
        if self.opts.format == "keyValues":
            return _NULL
        attr_type = inst["type"]
        member = VALUE_MEMBER[attr_type]
        out: dict[str, Any] = {
            "type": attr_type,
            member: {"@none": _NULL} if member == "languageMap" else _NULL,
        }
        if "datasetId" in inst:
            out["datasetId"] = inst["datasetId"]
        if self.opts.sys_attrs:
            out.update({k: inst[k] for k in ("createdAt", "modifiedAt") if k in inst})
            out["deletedAt"] = self.at
        if self.show_changes:
            out[_PREVIOUS_MEMBER[attr_type]] = _previous_value(inst, self.ctx)
        return out


def _deleted_entity(entity: Any, ctx: Any, opts: RenderOptions, at: str) -> dict[str, Any]:
    types = [ctx.compact(t) for t in entity["type"]]
    out = {"id": entity["id"], "type": types[0] if len(types) == 1 else types}
    if opts.sys_attrs:
        out["createdAt"] = entity["createdAt"]
        out["modifiedAt"] = entity["modifiedAt"]
    out["deletedAt"] = at
    return out
