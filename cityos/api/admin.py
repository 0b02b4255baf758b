"""City OS's own API under /cityos/v1: policies, API keys, consents, data subject rights
and the audit log. Not NGSI-LD (the specification has no such resources), so these
paths are City OS's; errors are ProblemDetails all the same.

Who may call what:

- ``/policy``, ``/apikeys``, ``/audit``: the tenant's administrators (role ``admin``).
- ``/consents``: a resident (or guardian) for the data subjects in their token's
  ``persons``; a service sees the consents given to it; administrators see all.
- ``/subjects/{subject}/data|erase|access-log``: the data subject (or guardian) and the
  administrators (Japan's APPI rights: disclosure, erasure, record of provision).

The tenant is the ``NGSILD-Tenant`` header, as for the rest of the API. Every change is
written to the audit log in the same transaction as the change itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import services
from cityos.api.guard import subject_term as _subject_term
from cityos.auth import apikeys
from cityos.core import changes
from cityos.core import consent as consents
from cityos.core.access import policy_document
from cityos.core.model import now_iso
from cityos.core.principal import ADMIN_ROLE, OPEN, Principal
from cityos.core.render import RenderOptions, render_entity
from cityos.core.temporal import TemporalQuery, render_temporal_entity
from cityos.errors import BadRequestData, Forbidden, ResourceNotFound, Unauthorized
from cityos.scope import principal_of
from cityos.storage.base import AuditEntry, EntityQuery
from cityos.trust import APIKEY, CONSENT, POLICY, Trust

__all__ = ["ROUTES"]

PREFIX = "/cityos/v1"


def _principal(request: Request) -> Principal:
    principal: Principal = principal_of(request) or OPEN
    return principal


def _store(request: Request) -> Any:
    """The store itself: these handlers make their own access decisions."""
    return request.app.state.services.store


def _trust(request: Request) -> Trust | None:
    trust: Trust | None = request.app.state.trust
    return trust


def _is_admin(principal: Principal, tenant: str) -> bool:
    return principal.kind == "open" or (
        principal.authenticated and ADMIN_ROLE in principal.roles and principal.member_of(tenant)
    )


def _require_admin(request: Request, tenant: str) -> Principal:
    principal = _principal(request)
    if not principal.authenticated and principal.kind != "open":
        raise Unauthorized("Authentication is required")
    if not _is_admin(principal, tenant):
        raise Forbidden("Only an administrator of this tenant may do this")
    return principal


def _entry(
    action: str, principal: Principal, tenant: str, target: str, **detail: Any
) -> AuditEntry:
    return AuditEntry(
        at=now_iso(),
        action=action,
        actor=principal.subject,
        tenant=tenant,
        target=target,
        detail=detail,
    )


def _forget(request: Request, kind: str, tenant: str = "", key_id: str = "") -> None:
    trust = _trust(request)
    if trust is not None:
        trust.forget(kind, tenant, key_id)


# -- tenants ---------------------------------------------------------------------------------


async def list_tenants(request: Request) -> Response:
    """The tenants the caller administers, each with whether it has a policy yet (a tenant
    comes into being with its first write, NGSI-LD clause 6.3.14, or its policy)."""
    principal = _principal(request)
    if not principal.authenticated and principal.kind != "open":
        raise Unauthorized("Authentication is required")
    store = _store(request)
    with_policy = {t for t, _, _ in await store.trust_list(POLICY)}
    names = sorted(set(await store.tenants()) | with_policy)
    return http.json_response(
        [
            {"tenant": name, "policy": name in with_policy}
            for name in names
            if _is_admin(principal, name)
        ],
        None,
    )


# -- policies -------------------------------------------------------------------------------


async def get_policy(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _require_admin(request, tenant)
    doc = await _store(request).trust_get(POLICY, tenant, "policy")
    if doc is None:
        raise ResourceNotFound(f"Tenant {tenant or '(default)'} has no policy")
    return http.json_response(doc["body"], None)


async def put_policy(request: Request) -> Response:
    http.check_content_type(request, (http.JSON, http.JSONLD))
    tenant = http.tenant_of(request)
    principal = _require_admin(request, tenant)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    doc = policy_document(body, tenant, rctx.compiled.expand)
    await _store(request).trust_put(
        POLICY, tenant, "policy", doc, audit=[_entry("policy.put", principal, tenant, "policy")]
    )
    _forget(request, POLICY, tenant)
    return Response(status_code=204)


# -- API keys ------------------------------------------------------------------------------------


async def create_api_key(request: Request) -> Response:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise BadRequestData("The body must be a JSON object")
    tenant = body.get("tenant", http.tenant_of(request))
    if not isinstance(tenant, str):
        raise BadRequestData("tenant must be a string")
    principal = _require_admin(request, tenant)
    name, roles = body.get("name"), body.get("roles", [])
    if not isinstance(name, str) or not name:
        raise BadRequestData("name (the client's name) is required")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise BadRequestData("roles must be a list of strings")
    if "admin" in roles and not _is_admin(principal, tenant):
        raise Forbidden("Only an administrator may create an administrator key")
    plain, key = apikeys.new_key(
        tenant=tenant,
        name=name,
        roles=frozenset(roles),
        expires_at=body.get("expiresAt"),
        now=now_iso(),
    )
    await _save_key(request, key, _entry("apikey.create", principal, tenant, key.id, name=name))
    return http.json_response(
        {**apikeys.render(key), "key": plain},
        None,
        status=201,
        headers={"Location": f"{PREFIX}/apikeys/{key.id}"},
    )


async def _save_key(request: Request, key: apikeys.ApiKey, entry: AuditEntry) -> None:
    await _store(request).trust_put(
        APIKEY, key.tenant, key.id, apikeys.to_doc(key), key=key.id, audit=[entry]
    )
    _forget(request, APIKEY, key_id=key.id)


async def _find_key(request: Request) -> tuple[apikeys.ApiKey, Principal]:
    key_id = request.path_params["key_id"]
    found = await _store(request).trust_list(APIKEY, None, key=key_id)
    if not found:
        raise ResourceNotFound(f"API key {key_id} does not exist")
    key = apikeys.from_doc(found[0][2])
    return key, _require_admin(request, key.tenant)


async def list_api_keys(request: Request) -> Response:
    tenant = http.tenant_of(request)
    principal = _require_admin(request, tenant)
    every = principal.member_of("*") and request.query_params.get("tenant") == "*"
    rows = await _store(request).trust_list(APIKEY, None if every else tenant)
    return http.json_response([apikeys.render(apikeys.from_doc(d)) for _, _, d in rows], None)


async def retrieve_api_key(request: Request) -> Response:
    key, _ = await _find_key(request)
    return http.json_response(apikeys.render(key), None)


async def rotate_api_key(request: Request) -> Response:
    key, principal = await _find_key(request)
    grace = request.query_params.get("graceUntil")
    plain, new, old = apikeys.rotate(key, now=now_iso(), grace_until=grace)
    await _save_key(request, old, _entry("apikey.rotate", principal, key.tenant, key.id, to=new.id))
    await _save_key(
        request, new, _entry("apikey.create", principal, key.tenant, new.id, name=new.name)
    )
    return http.json_response(
        {**apikeys.render(new), "key": plain},
        None,
        status=201,
        headers={"Location": f"{PREFIX}/apikeys/{new.id}"},
    )


async def revoke_api_key(request: Request) -> Response:
    key, principal = await _find_key(request)
    revoked = apikeys.revoke(key, now_iso())
    await _save_key(request, revoked, _entry("apikey.revoke", principal, key.tenant, key.id))
    return Response(status_code=204)


# -- consents ------------------------------------------------------------------------------------


def _may_manage(principal: Principal, tenant: str, subject: str) -> bool:
    return _is_admin(principal, tenant) or consents.may_manage(principal, subject)


async def grant_consent(request: Request) -> Response:
    http.check_content_type(request, (http.JSON, http.JSONLD))
    tenant = http.tenant_of(request)
    principal = _principal(request)
    if not principal.authenticated and principal.kind != "open":
        raise Unauthorized("Authentication is required to grant a consent")
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    rctx = await http.request_context(request, svc.contexts, body)
    consent = consents.parse_consent(
        body, tenant=tenant, by=principal.subject, now=now_iso(), expand=rctx.compiled.expand
    )
    if not _may_manage(principal, tenant, consent.subject):
        raise Forbidden(f"This caller may not give consents for {consent.subject}")
    entry = consents.audit_entry("consent.grant", consent, principal.subject, now_iso())
    await _store(request).trust_put(
        CONSENT, tenant, consent.id, consents.to_doc(consent), key=consent.recipient, audit=[entry]
    )
    return http.json_response(
        consents.render(consent, rctx.compiled.compact),
        None,
        status=201,
        headers={"Location": f"{PREFIX}/consents/{quote(consent.id, safe=':')}"},
    )


async def _find_consent(request: Request) -> tuple[consents.Consent, Principal, str]:
    tenant = http.tenant_of(request)
    consent_id = request.path_params["consent_id"]
    doc = await _store(request).trust_get(CONSENT, tenant, consent_id)
    principal = _principal(request)
    if doc is None:
        raise ResourceNotFound(f"Consent {consent_id} does not exist")
    consent = consents.from_doc(doc)
    if not (_may_manage(principal, tenant, consent.subject) or _recipient(principal, consent)):
        raise _refusal(principal, f"This caller may not see consent {consent_id}")
    return consent, principal, tenant


def _recipient(principal: Principal, consent: consents.Consent) -> bool:
    return principal.authenticated and consent.recipient in (principal.client, principal.subject)


async def retrieve_consent(request: Request) -> Response:
    consent, _, _ = await _find_consent(request)
    rctx = await http.request_context(request, services(request).contexts)
    return http.json_response(consents.render(consent, rctx.compiled.compact), None)


async def withdraw_consent(request: Request) -> Response:
    consent, principal, tenant = await _find_consent(request)
    if not _may_manage(principal, tenant, consent.subject):
        raise Forbidden("Only the data subject, a guardian or an administrator may withdraw it")
    withdrawn = consents.withdraw(consent, by=principal.subject, now=now_iso())
    entry = consents.audit_entry("consent.withdraw", withdrawn, principal.subject, now_iso())
    await _store(request).trust_put(
        CONSENT,
        tenant,
        consent.id,
        consents.to_doc(withdrawn),
        key=consent.recipient,
        audit=[entry],
    )
    return Response(status_code=204)


async def list_consents(request: Request) -> Response:
    tenant = http.tenant_of(request)
    principal = _principal(request)
    if not principal.authenticated and principal.kind != "open":
        raise Unauthorized("Authentication is required")
    rows = await _store(request).trust_list(CONSENT, tenant)
    subject = request.query_params.get("subject")
    seen = [
        c
        for c in (consents.from_doc(d) for _, _, d in rows)
        if (_may_manage(principal, tenant, c.subject) or _recipient(principal, c))
        and (subject is None or c.subject == subject)
    ]
    rctx = await http.request_context(request, services(request).contexts)
    return http.json_response([consents.render(c, rctx.compiled.compact) for c in seen], None)


# -- the audit log and a data subject's access log -------------------------------------------


async def read_audit(request: Request) -> Response:
    tenant = http.tenant_of(request)
    _require_admin(request, tenant)
    return await _audit_page(request, tenant=tenant, person=request.query_params.get("person"))


async def access_log(request: Request) -> Response:
    """Who accessed a data subject's personal data, and every consent change about them."""
    tenant, subject, _ = _subject_of(request)
    return await _audit_page(request, tenant=tenant, person=subject)


async def _audit_page(request: Request, tenant: str, person: str | None) -> Response:
    try:
        after = int(request.query_params.get("after", "0"))
        limit = min(int(request.query_params.get("limit", "100")), 1000)
    except ValueError:
        raise BadRequestData("after and limit must be integers") from None
    records = await _store(request).audit_read(
        after=after, limit=limit, person=person, tenant=tenant
    )
    return http.json_response(
        [
            {
                "seq": r.seq,
                "at": r.entry.at,
                "action": r.entry.action,
                "actor": r.entry.actor,
                "target": r.entry.target,
                "person": r.entry.person,
                "detail": r.entry.detail,
                "hash": r.hash,
            }
            for r in records
        ],
        None,
    )


# -- data subject rights (APPI: disclosure and erasure) -------------------------------------


def _subject_of(request: Request) -> tuple[str, str, Principal]:
    """The tenant, the data subject of the path, and the caller, who must be the subject,
    a guardian or an administrator."""
    tenant = http.tenant_of(request)
    subject = request.path_params["subject"]
    principal = _principal(request)
    if not _may_manage(principal, tenant, subject):
        raise _refusal(principal, f"Only {subject}, a guardian or an administrator may do this")
    return tenant, subject, principal


def _refusal(principal: Principal, detail: str) -> Exception:
    return (Forbidden if principal.authenticated else Unauthorized)(detail)


async def _subject_request(request: Request) -> tuple[str, str, Principal, Any]:
    tenant, subject, principal = _subject_of(request)
    trust = _trust(request)
    if trust is None:
        raise Forbidden("Data subject rights need authentication switched on")
    return tenant, subject, principal, await trust.policy(tenant)


async def _subject_entities(store: Any, policy: Any, tenant: str, subject: str) -> list[Any]:
    """Every Entity about ``subject``: the subject's own Entity and those linked to it."""
    found: dict[str, Any] = {}
    try:
        own = await store.get_entity(tenant, subject)
        found[own["id"]] = own
    except ResourceNotFound:
        pass
    term = _subject_term(policy.subject_attr, [subject])
    offset = 0
    while True:
        page = await store.query_entities(EntityQuery(tenant, q=term, limit=500, offset=offset))
        for entity in page.entities:
            found.setdefault(entity["id"], entity)
        if len(page.entities) < 500:
            return list(found.values())
        offset += 500


async def export_subject(request: Request) -> Response:
    """All data about a data subject as JSON: Entities, their history, consents, accesses."""
    tenant, subject, principal, policy = await _subject_request(request)
    store = _store(request)
    ctx = services(request).contexts.default
    entities = await _subject_entities(store, policy, tenant, subject)
    history = []
    for entity in entities:
        with contextlib.suppress(ResourceNotFound):
            found = await store.temporal_entity(tenant, entity["id"], TemporalQuery())
            history.append(render_temporal_entity(found, ctx, "normalized", True, TemporalQuery()))
    given = [
        consents.to_doc(consents.from_doc(d))
        for _, _, d in await store.trust_list(CONSENT, tenant)
        if d.get("subject") == subject
    ]
    accesses = await store.audit_read(after=0, limit=100_000, person=subject, tenant=tenant)
    entry = _entry("subject.export", principal, tenant, subject)
    await store.audit_append([dataclasses.replace(entry, person=subject)])
    body = {
        "subject": subject,
        "tenant": tenant,
        "exportedAt": now_iso(),
        "entities": [render_entity(e, ctx, RenderOptions(sys_attrs=True)) for e in entities],
        "history": history,
        "consents": given,
        "accessLog": [
            {
                "at": r.entry.at,
                "action": r.entry.action,
                "actor": r.entry.actor,
                "target": r.entry.target,
            }
            for r in accesses
        ],
    }
    return http.json_response(body, None)


async def erase_subject(request: Request) -> Response:
    """Erases a data subject's data: the Entities about them with their whole history, and
    the personal attributes (current and past) of Entities that merely link to them."""
    tenant, subject, principal, policy = await _subject_request(request)
    store = _store(request)
    erased, pruned = [], []
    now = now_iso()
    for entity in await _subject_entities(store, policy, tenant, subject):
        entity_id, types = entity["id"], entity.get("type", [])
        if entity_id == subject or policy.type_level(types) == "personal":
            await store.temporal_delete_entity(
                tenant, entity_id, changes.delete_if_present(entity_id)
            )
            erased.append(entity_id)
            continue
        personal = [a for a in entity.get("attrs", {}) if policy.attr_level(types, a) == "personal"]
        personal.append(policy.subject_attr)
        for attr in personal:
            with contextlib.suppress(ResourceNotFound):
                await store.temporal_delete_attribute(tenant, entity_id, attr, None, True, now)
        await store.write(tenant, entity_id, changes.prune(entity_id, personal, None, now))
        pruned.append(entity_id)
    await store.scrub()  # deleted values leave no trace in free pages or the write-ahead log
    entry = _entry("subject.erase", principal, tenant, subject, erased=erased, pruned=pruned)
    await store.audit_append([dataclasses.replace(entry, person=subject)])
    return http.json_response({"erased": erased, "pruned": pruned}, None)


ROUTES: list[tuple[str, Any, list[str], frozenset[str]]] = [
    ("/tenants", list_tenants, ["GET"], frozenset()),
    ("/policy", get_policy, ["GET"], frozenset()),
    ("/policy", put_policy, ["PUT"], frozenset()),
    ("/apikeys", list_api_keys, ["GET"], frozenset({"tenant"})),
    ("/apikeys", create_api_key, ["POST"], frozenset()),
    ("/apikeys/{key_id}", retrieve_api_key, ["GET"], frozenset()),
    ("/apikeys/{key_id}", revoke_api_key, ["DELETE"], frozenset()),
    ("/apikeys/{key_id}/rotate", rotate_api_key, ["POST"], frozenset({"graceUntil"})),
    ("/consents", list_consents, ["GET"], frozenset({"subject"})),
    ("/consents", grant_consent, ["POST"], frozenset()),
    ("/consents/{consent_id}", retrieve_consent, ["GET"], frozenset()),
    ("/consents/{consent_id}", withdraw_consent, ["DELETE"], frozenset()),
    ("/audit", read_audit, ["GET"], frozenset({"after", "limit", "person"})),
    ("/subjects/{subject}/access-log", access_log, ["GET"], frozenset({"after", "limit"})),
    ("/subjects/{subject}/data", export_subject, ["GET"], frozenset()),
    ("/subjects/{subject}/erase", erase_subject, ["POST"], frozenset()),
]
