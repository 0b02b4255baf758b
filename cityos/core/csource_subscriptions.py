"""Context source registration subscriptions (GS CIM 009 V1.8.1 clauses 5.2.12, 5.11, 5.3.2).

A subscription to context source registrations is a Subscription (clause 5.2.12) whose
members select registrations instead of Entities, exactly as a discovery query does
(clause 5.10.2): it is parsed by ``core.subscriptions`` and matched here, purely, with
``core.registration_matching``::

    entities           -> the Entity selection a RegistrationInfo must cover (clause 5.12)
    watchedAttributes  -> the Attributes it must provide
    q                  -> registration properties (csf semantics)
    scopeQ, geoQ       -> scope; location, observationSpace or operationSpace
    temporalQ          -> observationInterval (observedAt) or managementInterval

Whether a registration change is notified, and why, is :func:`trigger_reason`
(clause 5.11.7): ``newlyMatching``, ``updated`` or ``noLongerMatching``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cityos.core.jsonld import CompiledContext
from cityos.core.registration_matching import RegistrationQuery, matches
from cityos.core.registrations import GEO_MEMBERS, Registration
from cityos.core.subscriptions import Subscription, apply_fragment, parse_subscription
from cityos.core.temporal import parse_temporal_query
from cityos.errors import BadRequestData

__all__ = [
    "NOTIFICATION_TYPE",
    "apply_csource_fragment",
    "parse_csource_subscription",
    "registration_queries",
    "relevant_registration",
    "selects",
    "trigger_reason",
]

NOTIFICATION_TYPE = "ContextSourceNotification"  # clause 5.3.2
_CORE = "https://uri.etsi.org/ngsi-ld/"  # the core @context always wins (clause 5.5.7)


def parse_csource_subscription(
    body: Any, ctx: CompiledContext, tenant: str, context: Any, now: str
) -> Subscription:
    """Validates a context source registration subscription (clauses 5.2.12, 5.11.2)."""
    sub = parse_subscription(body, ctx, tenant, context, now)
    _check_temporal_q(sub.body.get("temporalQ"))
    return sub


def apply_csource_fragment(
    sub: Subscription, body: Any, ctx: CompiledContext, now: str
) -> Subscription:
    """The subscription with the members of a PATCH fragment applied (clause 5.11.3)."""
    updated = apply_fragment(sub, body, ctx, now)
    _check_temporal_q(updated.body.get("temporalQ"))
    return updated


def _check_temporal_q(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadRequestData("temporalQ must be a JSON object")
    _temporal(value)


def _temporal(value: dict[str, Any]) -> dict[str, Any]:
    """The members of a RegistrationQuery that a temporalQ (clause 5.2.12) sets."""
    tq = parse_temporal_query(value, str, aggregated=False, require_timerel=True)
    return {
        "timerel": tq.timerel,
        "time_at": tq.time_at or 0,
        "end_time_at": tq.end_time_at or 0,
        "timeproperty": tq.timeproperty,
    }


def registration_queries(sub: Subscription) -> tuple[RegistrationQuery, ...]:
    """The discovery queries (clause 5.10.2) equivalent to the subscription, one per item
    of ``entities``: a registration matches the subscription when it matches any."""
    temporal = sub.body.get("temporalQ")
    base = RegistrationQuery(
        attrs=sub.watched or frozenset(),
        csf=sub.q,
        scope_q=sub.scope_q,
        geo=sub.geo_q,
        geo_member=_geo_member(sub),
        **(_temporal(temporal) if temporal is not None else {}),
    )
    if not sub.entities:
        return (base,)
    return tuple(
        replace(base, types=s.type, ids=(s.id,) if s.id else (), id_pattern=s.id_pattern)
        for s in sub.entities
    )


def _geo_member(sub: Subscription) -> str | None:
    """Which registration member the geoQ's geoproperty (expanded) names; ``location``
    when it names none (clause 5.2.13)."""
    if sub.geo_q is None:
        return None
    wanted = sub.geo_q.geoproperty
    return next((m for m in GEO_MEMBERS if wanted in (m, _CORE + m)), None)


def selects(queries: tuple[RegistrationQuery, ...], reg: Registration, now_us: int) -> bool:
    """Whether the registration is one the subscription watches. An expired registration
    is invalid (clause 5.2.9) and matches nothing."""
    return not reg.expired(now_us) and any(matches(reg, q) for q in queries)


def trigger_reason(
    queries: tuple[RegistrationQuery, ...],
    before: Registration | None,
    after: Registration | None,
    now_us: int,
) -> str | None:
    """Why a change of a registration is notified (clause 5.11.7), or None: it matches now
    and did not before, it matches before and after, or it matched and no longer does
    (including its deletion)."""
    was = before is not None and selects(queries, before, now_us)
    now = after is not None and selects(queries, after, now_us)
    if now:
        return "updated" if was else "newlyMatching"
    return "noLongerMatching" if was else None


def relevant_registration(
    queries: tuple[RegistrationQuery, ...], reg: Registration
) -> Registration:
    """The registration with only the RegistrationInfo items that match the subscription
    (clause 5.11.7: implementations should notify the information relevant to it); whole
    when none does, as for a registration that no longer matches."""
    items = reg.members["information"]
    kept = [
        item
        for item in items
        if any(matches(replace(reg, members={**reg.members, "information": [item]}), q)
               for q in queries)
    ]  # fmt: skip
    return replace(reg, members={**reg.members, "information": kept or items})
