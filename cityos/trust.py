"""The trust service: authentication, the tenants' policies, consents and the audit log.

One :class:`Trust` per City OS process, built by ``app.build_app`` when the ``auth``
setting is on. It turns a request's credentials into a
:class:`~cityos.core.principal.Principal` (OIDC bearer tokens through
``cityos.auth.tokens``, API keys through ``cityos.auth.apikeys``), hands out the
:class:`~cityos.core.access.Access` of a principal in a tenant, and writes the audit log.

Caches and coherence: a tenant's policy and an API key are cached for at most
``_TTL`` seconds and dropped at once when this process changes them, so a change made by
another worker takes effect within that time. Consents are never cached across requests:
a withdrawal takes effect on the very next request, in every worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cityos.auth import apikeys
from cityos.config import Settings
from cityos.core.access import Access, Policy, empty_policy, policy_from_doc
from cityos.core.consent import ConsentIndex, from_doc
from cityos.core.model import StoredEntity, now_iso
from cityos.core.principal import ANONYMOUS, Principal
from cityos.errors import Unauthorized
from cityos.storage.base import AuditEntry, Store

__all__ = ["Trust"]

log = logging.getLogger("cityos.trust")
_TTL = 1.0
_ACCESS_CACHE = 4096
POLICY, APIKEY, CONSENT, SUBOWNER = "policy", "apikey", "consent", "subscription-owner"


@dataclass
class Trust:
    settings: Settings
    store: Store
    expand: Callable[[str], str]  # the core @context's term expansion, for empty policies
    verifier: Any = None  # cityos.auth.tokens.TokenVerifier, when issuers are configured
    clock: Callable[[], float] = time.monotonic
    _policies: dict[str, tuple[float, Policy]] = field(default_factory=dict)
    _keys: dict[str, tuple[float, apikeys.ApiKey | None]] = field(default_factory=dict)
    # presented key -> (until, key id, principal): a key checked once is not hashed and
    # checked again on every request of the next second (the keys' own cache time)
    _verified: dict[str, tuple[float, str, Principal]] = field(default_factory=dict)
    _access: dict[tuple[str, Principal], tuple[float, Access]] = field(default_factory=dict)
    owners: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, store: Store, expand: Callable[[str], str]) -> Trust:
        verifier = None
        if settings.auth_issuers:
            from cityos.auth.tokens import TokenVerifier, load_issuers

            verifier = TokenVerifier(load_issuers(Path(settings.auth_issuers)))
        return cls(settings, store, expand, verifier)

    async def start(self) -> None:
        """Loads who owns which Subscription (notifications are filtered for the owner)."""
        for tenant, sub_id, doc in await self.store.trust_list(SUBOWNER):
            self.owners[(tenant, sub_id)] = doc

    async def close(self) -> None:
        if self.verifier is not None:
            await self.verifier.close()

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The principal of a request's ``Authorization`` / ``X-API-Key`` headers; ANONYMOUS
        without credentials. Raises Unauthorized (and audits it) for bad credentials."""
        try:
            if api_key:
                return await self._api_key(api_key.strip())
            if not authorization:
                return ANONYMOUS
            scheme, _, credentials = authorization.strip().partition(" ")
            credentials = credentials.strip()
            if scheme.lower() == "apikey" or (
                scheme.lower() == "bearer" and credentials.startswith(apikeys.PREFIX)
            ):
                return await self._api_key(credentials)
            if scheme.lower() != "bearer" or not credentials:
                raise Unauthorized("Authorization must be 'Bearer <token>' or 'ApiKey <key>'")
            if self.verifier is None:
                raise Unauthorized("No token issuer is configured; use an API key")
            principal: Principal = await self.verifier.verify(credentials)
            return principal
        except Unauthorized as exc:
            await self.audit(
                [
                    AuditEntry(
                        at=now_iso(), action="auth.failed", actor="", detail={"reason": exc.detail}
                    )
                ]
            )
            raise

    async def _api_key(self, presented: str) -> Principal:
        now = self.clock()
        hit = self._verified.get(presented)
        if hit is not None and hit[0] > now:
            return hit[2]
        try:
            key_id, secret = apikeys.parse_presented(presented)
        except ValueError:
            raise Unauthorized("The API key is malformed") from None
        key = await self.api_key(key_id)
        if key is None or not apikeys.check(key, secret, now_iso()):
            raise Unauthorized("The API key is unknown, revoked or expired")
        principal = apikeys.principal(key)
        if len(self._verified) > 10_000:
            self._verified.clear()
        # an expiry within the second is checked on the next request, like a revocation
        self._verified[presented] = (now + _TTL, key.id, principal)
        return principal

    async def api_key(self, key_id: str) -> apikeys.ApiKey | None:
        hit = self._keys.get(key_id)
        now = self.clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.store.trust_list(APIKEY, None, key=key_id)
        key = apikeys.from_doc(found[0][2]) if found else None
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[key_id] = (now + _TTL, key)
        return key

    # -- policies ------------------------------------------------------------------------------

    async def policy(self, tenant: str) -> Policy:
        hit = self._policies.get(tenant)
        now = self.clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        doc = await self.store.trust_get(POLICY, tenant, "policy")
        policy = empty_policy(tenant, self.expand) if doc is None else policy_from_doc(doc, tenant)
        self._policies[tenant] = (now + _TTL, policy)
        return policy

    async def access(self, tenant: str, principal: Principal) -> Access:
        now = self.clock()
        hit = self._access.get((tenant, principal))
        policy = await self.policy(tenant)
        if hit is not None and hit[0] > now and hit[1].policy is policy:
            return hit[1]
        access = Access.of(policy, principal)
        if len(self._access) >= _ACCESS_CACHE:
            self._access.clear()
        self._access[(tenant, principal)] = (now + _TTL, access)
        return access

    def forget(self, kind: str, tenant: str = "", key_id: str = "") -> None:
        """Drops what this process cached of a document it just changed."""
        if kind == POLICY:
            self._policies.pop(tenant, None)
            self._access.clear()
        elif kind == APIKEY:
            self._keys.pop(key_id, None)
            for presented in [p for p, hit in self._verified.items() if hit[1] == key_id]:
                del self._verified[presented]

    # -- consents ------------------------------------------------------------------------------

    async def consents(self, tenant: str, recipient: str) -> ConsentIndex:
        """The consents given to ``recipient`` in ``tenant``, read now (never cached)."""
        rows = await self.store.trust_list(CONSENT, tenant, key=recipient) if recipient else []
        return ConsentIndex([from_doc(doc) for _, _, doc in rows])

    # -- audit ---------------------------------------------------------------------------------

    async def audit(self, entries: Sequence[AuditEntry]) -> None:
        if entries:
            await self.store.audit_append(entries)

    # -- Subscriptions: notifications are filtered for their owner -------------------------------

    async def own_subscription(self, tenant: str, sub_id: str, principal: Principal) -> None:
        doc = principal_doc(principal)
        await self.store.trust_put(SUBOWNER, tenant, sub_id, doc)
        self.owners[(tenant, sub_id)] = doc

    async def disown_subscription(self, tenant: str, sub_id: str) -> None:
        await self.store.trust_delete(SUBOWNER, tenant, sub_id)
        self.owners.pop((tenant, sub_id), None)

    def owner(self, tenant: str, sub_id: str) -> Principal:
        """Who a Subscription notifies; one made before authentication was switched on
        is treated as the tenant administrator's (no personal data without consent)."""
        doc = self.owners.get((tenant, sub_id))
        if doc is None:
            return Principal(
                subject="unowned-subscription",
                kind="apikey",
                tenants=frozenset({tenant}),
                roles=frozenset({"admin"}),
            )
        return principal_from_doc(doc)

    def sees_subscription(self, tenant: str, sub_id: str, principal: Principal) -> bool:
        """A Subscription is seen (and changed) by its owner and the tenant's admins."""
        if principal.kind == "open" or (
            principal.authenticated and "admin" in principal.roles and principal.member_of(tenant)
        ):
            return True
        doc = self.owners.get((tenant, sub_id))
        return doc is not None and doc.get("subject") == principal.subject

    async def admit(self, sub: Any, payloads: list[Any]) -> list[Any]:
        """The changes of a notification as the Subscription's owner may see them now:
        unreadable Entities dropped, hidden attributes removed, personal data only under
        a consent valid now (a withdrawal stops the next notification)."""
        owner = self.owner(sub.tenant, sub.id)
        if owner.kind == "apikey" and owner.subject.startswith("apikey:"):
            key = await self.api_key(owner.subject.removeprefix("apikey:"))
            if key is None or not apikeys.check_alive(key, now_iso()):
                return []
        viewer = Viewer(self, owner)
        access = await self.access(sub.tenant, owner)
        entities = [p["entity"] for p in payloads]
        previous = [p.get("previous") or None for p in payloads]
        seen = await viewer.view(sub.tenant, access, entities)
        before = await viewer.view(
            sub.tenant, access, [p for p in previous if p is not None], audit=False
        )  # one notification, one audited release
        earlier = iter(before)
        out = []
        for payload, now, prev in zip(payloads, seen, previous, strict=True):
            was = next(earlier) if prev is not None else None
            if now is None:
                continue
            if access.personal_in(now) and payload.get("at"):
                # personal data changed before a consent was given (or after it ended) is
                # never sent, even when the notification leaves after the consent
                then = Viewer(self, owner, at=payload["at"])
                (at_change,) = await then.view(sub.tenant, access, [now], audit=False)
                if at_change is None:
                    continue
                now = at_change
            out.append({**payload, "entity": now, "previous": was})
        return out


class Viewer:
    """Entities as one principal may see them, for one request or one notification:
    consents are read once, on first need, and every release of personal data is audited."""

    def __init__(self, trust: Trust, principal: Principal, at: str | None = None) -> None:
        self.trust = trust
        self.principal = principal
        self.recipient = principal.client or principal.subject
        self._at = at  # the moment consents must be valid at (default: first asked, now)
        self._consents: dict[str, ConsentIndex] = {}

    @property
    def now(self) -> str:
        if self._at is None:
            self._at = now_iso()
        return self._at

    async def consents(self, tenant: str) -> ConsentIndex:
        index = self._consents.get(tenant)
        if index is None:
            index = await self.trust.consents(tenant, self.recipient)
            self._consents[tenant] = index
        return index

    async def subjects(self, tenant: str, categories: Iterable[str]) -> set[str]:
        """The data subjects whose data of these categories this principal may see now."""
        index = await self.consents(tenant)
        subjects = set(self.principal.persons)
        for category in categories:
            subjects |= index.subjects_for(self.recipient, category, self.now)
        return subjects

    async def view(
        self, tenant: str, access: Access, entities: list[StoredEntity], audit: bool = True
    ) -> list[StoredEntity | None]:
        """Each Entity as the principal may see it (None where it may not see it); each
        release of personal data audited unless ``audit`` is False (a second look)."""
        if access.principal.kind == "open":
            return list(entities)
        policy = access.policy
        released = _nothing
        if access.personal_possible:
            index = await self.consents(tenant)
            recipient, now = self.recipient, self.now

            def released(subject: str, category: str) -> bool:
                return bool(index.allowed(subject, recipient, category, now))

        out = [access.view(e, released) for e in entities]
        if not audit or not access.personal_possible:
            return out
        await self.trust.audit(
            [
                AuditEntry(
                    at=self.now,
                    action="personal.read",
                    actor=self.principal.subject,
                    tenant=tenant,
                    target=v["id"],
                    person=policy.data_subject(v) or "",
                    detail={"client": self.principal.client, "attrs": sorted(v.get("attrs", {}))},
                )
                for v in out
                if v is not None and access.personal_in(v)
            ]
        )
        return out


def _nothing(subject: str, category: str) -> bool:
    return False


def principal_doc(principal: Principal) -> dict[str, Any]:
    return {
        "subject": principal.subject,
        "kind": principal.kind,
        "tenants": sorted(principal.tenants),
        "roles": sorted(principal.roles),
        "scopes": sorted(principal.scopes),
        "client": principal.client,
        "persons": sorted(principal.persons),
        "issuer": principal.issuer,
    }


def principal_from_doc(doc: dict[str, Any]) -> Principal:
    return Principal(
        subject=doc["subject"],
        kind=doc["kind"],
        tenants=frozenset(doc.get("tenants", ())),
        roles=frozenset(doc.get("roles", ())),
        scopes=frozenset(doc.get("scopes", ())),
        client=doc.get("client", ""),
        persons=frozenset(doc.get("persons", ())),
        issuer=doc.get("issuer", ""),
    )
