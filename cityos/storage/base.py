"""The storage protocol: what ``core`` and ``api`` need from a backend, and nothing more.

Every write is a *change*: a pure function from the Entity as stored (or None) to the
Entity to store (or None to delete it) plus a result for the caller. A backend runs each
change atomically inside its write transaction, so update semantics live in
``cityos.core.operations`` once, and two writers on one Entity never lose an update.
A change raising :class:`~cityos.errors.CityOSError` leaves that Entity untouched.

An acknowledged write is durable: a backend returns from ``write`` only after its commit
reached stable storage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cityos.core.model import StoredAttribute, StoredEntity

if TYPE_CHECKING:
    from cityos.core.contexts import ContextEntry
    from cityos.core.geo import GeoQuery
    from cityos.core.query.ast import QNode, ScopeNode, TypeNode
    from cityos.core.query.orderby import OrderKey
    from cityos.core.retention import RetentionTarget
    from cityos.core.temporal import TemporalEntity, TemporalQuery

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "AttributeSummaryRow",
    "Change",
    "EntityQuery",
    "Page",
    "RegistrationOutbox",
    "Store",
    "WriteOutcome",
]

Change = Callable[[StoredEntity | None], tuple[StoredEntity | None, Any]]
# (registration before, after) -> csource notification rows (tenant, subscription id,
# registration id, payload) to add in the same transaction.
RegistrationOutbox = Callable[[Any, Any], Sequence[tuple[str, str, str, str]]]


@dataclass(frozen=True, slots=True)
class EntityQuery:
    """A parsed Entity query (GS CIM 009 V1.8.1 clause 5.7.2) with every name expanded."""

    tenant: str
    ids: Sequence[str] = ()
    id_pattern: str | None = None
    types: TypeNode | None = None
    q: QNode | None = None
    scope_q: ScopeNode | None = None
    geo: GeoQuery | None = None
    geoproperty: str | None = None  # expanded name of the GeoProperty geoQ applies to
    attrs: Sequence[str] = ()  # matched Entities have at least one of these
    order_by: Sequence[OrderKey] = ()
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass(slots=True)
class Page:
    entities: list[StoredEntity] = field(default_factory=list)
    count: int | None = None


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a change did: the Entity before and after (None for absent) and its result."""

    before: StoredEntity | None
    after: StoredEntity | None
    result: Any


@dataclass(frozen=True, slots=True)
class AttributeSummaryRow:
    type: str
    attribute: str
    attribute_type: str
    entities: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One event of the audit log (see ``cityos.core.audit``). Never holds personal values:
    only ids, names and outcomes.

    - ``action``: dotted verb, e.g. ``personal.read``, ``consent.grant``, ``policy.put``,
      ``apikey.create``, ``auth.failed``.
    - ``actor``: the Principal's subject (``issuer|sub`` for tokens, ``apikey:<id>``).
    - ``person``: the data subject concerned (for a resident's own access log), or "".
    """

    at: str
    action: str
    actor: str
    tenant: str = ""
    target: str = ""
    person: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An AuditEntry as stored: its place in the chain and the hashes linking it."""

    seq: int
    entry: AuditEntry
    prev: str
    hash: str


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # Raises ResourceNotFound; never returns None.
    async def get_entity(self, tenant: str, entity_id: str) -> StoredEntity: ...

    async def query_entities(self, query: EntityQuery) -> Page: ...

    # One atomic change; raises what the change raised.
    async def write(self, tenant: str, entity_id: str, change: Change) -> WriteOutcome: ...

    # Several changes in one transaction, each atomic on its own: an outcome or the error.
    async def write_many(
        self, tenant: str, changes: Sequence[tuple[str, Change]]
    ) -> list[WriteOutcome | Exception]: ...

    async def tenant_exists(self, tenant: str) -> bool: ...
    async def tenants(self) -> list[str]: ...
    async def type_counts(self, tenant: str) -> dict[str, int]: ...
    async def attribute_summary(self, tenant: str) -> list[AttributeSummaryRow]: ...

    # Subscriptions as the notifier keeps them, and the outbox of pending notifications
    # (rows are added in the write transaction through the store's listener).
    async def save_subscription(self, tenant: str, sub_id: str, doc: Any) -> None: ...
    async def delete_subscription(self, tenant: str, sub_id: str) -> None: ...
    async def load_subscriptions(self) -> list[tuple[str, str, Any]]: ...
    async def pending_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]: ...
    async def finish_notifications(self, keys: Sequence[int]) -> None: ...

    # Temporal history (clause 4.5.7). Every write above also records the instances it
    # created or changed, in the same transaction. These write the history alone.
    # Adds the instances of ``entity`` to the history and runs ``change`` (the current
    # state's side of it) in the same transaction; True when the temporal Entity is new.
    async def temporal_add(
        self, tenant: str, entity: StoredEntity, change: Change, must_exist: bool
    ) -> bool: ...
    async def temporal_delete_entity(self, tenant: str, entity_id: str, change: Change) -> None: ...
    async def temporal_delete_attribute(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        dataset_id: str | None,
        delete_all: bool,
        now: str,
    ) -> None: ...
    async def temporal_delete_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> None: ...
    async def temporal_modify_instance(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        instance_id: str,
        fragment: StoredAttribute,
        now: str,
    ) -> None: ...
    # Raises ResourceNotFound; never returns None.
    async def temporal_entity(
        self, tenant: str, entity_id: str, tq: TemporalQuery
    ) -> TemporalEntity: ...
    async def query_temporal(
        self, query: EntityQuery, tq: TemporalQuery, alternatives: Sequence[EntityQuery] = ()
    ) -> tuple[list[TemporalEntity], int | None]: ...
    # One bounded retention step: removes up to ``batch`` instances older than the cutoff.
    async def expire_history(
        self, tenant: str, rule: RetentionTarget, cutoff_us: int, batch: int = 5000
    ) -> int: ...

    async def save_context(self, entry: ContextEntry) -> None: ...
    async def delete_context(self, url: str) -> None: ...
    async def load_contexts(self) -> list[ContextEntry]: ...

    # Context source registrations (clause 5.9), as the documents of
    # ``cityos.core.registrations.Registration.to_doc``, keyed by tenant and id. Each
    # write calls ``outbox(before, after)`` (documents, None for absent) in its
    # transaction and adds the csource notification rows it returns in that transaction,
    # so a registration change and the notifications it triggers commit together.
    # Raises AlreadyExists when the id is taken.
    async def create_registration(
        self, tenant: str, reg_id: str, doc: Any, outbox: RegistrationOutbox | None = None
    ) -> None: ...
    # Runs ``change`` (stored document -> new document) in the write transaction, so a
    # concurrent delete is never undone. Raises ResourceNotFound, or what ``change`` raised.
    async def update_registration(
        self,
        tenant: str,
        reg_id: str,
        change: Callable[[Any], Any],
        outbox: RegistrationOutbox | None = None,
    ) -> None: ...
    # Raises ResourceNotFound.
    async def delete_registration(
        self, tenant: str, reg_id: str, outbox: RegistrationOutbox | None = None
    ) -> None: ...
    # Raises ResourceNotFound; never returns None.
    async def get_registration(self, tenant: str, reg_id: str) -> Any: ...
    # The tenant's registrations, ordered by id.
    async def registrations(self, tenant: str) -> list[Any]: ...

    # Context source registration subscriptions (clause 5.11), kept like Subscriptions above,
    # and the outbox of their notifications: rows of (tenant, subscription id, registration
    # id, payload), read back with an increasing key. Deleting one deletes its outbox rows.
    async def save_csource_subscription(self, tenant: str, sub_id: str, doc: Any) -> None: ...
    async def delete_csource_subscription(self, tenant: str, sub_id: str) -> None: ...
    async def load_csource_subscriptions(self) -> list[tuple[str, str, Any]]: ...
    async def add_csource_notifications(
        self, rows: Sequence[tuple[str, str, str, str]]
    ) -> None: ...
    async def pending_csource_notifications(
        self, after_key: int, limit: int
    ) -> list[tuple[int, str, str, str, Any]]: ...
    async def finish_csource_notifications(self, keys: Sequence[int]) -> None: ...

    # The trust layer (``cityos.auth``, ``cityos.core.access``, ``cityos.core.consent``):
    # JSON documents by kind ("apikey", "policy", "consent", ...), tenant and id, with an
    # optional lookup ``key`` (e.g. a consent's recipient). Each write appends its audit
    # entries to the hash-chained audit log in the same transaction.
    async def trust_get(self, kind: str, tenant: str, doc_id: str) -> Any | None: ...
    # (tenant, id, document) ordered by tenant then id; ``tenant=None``: every tenant.
    async def trust_list(
        self, kind: str, tenant: str | None = None, key: str | None = None
    ) -> list[tuple[str, str, Any]]: ...
    async def trust_put(
        self,
        kind: str,
        tenant: str,
        doc_id: str,
        doc: Any,
        key: str = "",
        audit: Sequence[AuditEntry] = (),
    ) -> None: ...
    # True when the document existed.
    async def trust_delete(
        self, kind: str, tenant: str, doc_id: str, audit: Sequence[AuditEntry] = ()
    ) -> bool: ...

    # The audit log: append-only, each record chained to the previous one by its hash
    # (``cityos.core.audit.chain_hash``); appended in one transaction, in order.
    async def audit_append(self, entries: Sequence[AuditEntry]) -> None: ...
    # Records with seq > ``after``, oldest first, optionally only those about ``person``
    # or of ``tenant``.
    async def audit_read(
        self,
        after: int = 0,
        limit: int = 1000,
        person: str | None = None,
        tenant: str | None = None,
    ) -> list[AuditRecord]: ...

    # After an erasure (data subject rights): make deleted values unrecoverable from the
    # database files as far as the engine allows (SQLite: VACUUM and a truncated
    # write-ahead log; PostgreSQL: VACUUM of the tables that held them). O(database size).
    async def scrub(self) -> None: ...
