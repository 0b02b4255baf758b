"""Consents to the provision of personal data (the Trust issue; Japan's APPI, art. 27):
a resident, or a guardian for a child, decides which service sees which of their data.

A :class:`Consent` lets one *recipient* (a service: the ``client`` of a
:class:`~cityos.core.principal.Principal`) see *categories* (Entity type or attribute
IRIs) of one *data subject* (a resident's Entity id), for a stated purpose and within a
validity window. Withdrawing keeps the record and its history: the record of provision is
itself something APPI asks to keep.

Times are ISO 8601 strings, kept in one canonical UTC form
(``2026-01-01T00:00:00.000000Z``, the form of :func:`~cityos.core.model.now_iso`) so that
comparing two of them is comparing strings. :class:`ConsentIndex` answers the question
asked for every personal attribute released: "does this subject let this recipient see
this category now?", with dictionary lookups.

No HTTP, no storage here: the caller reads the consents and writes the audit entries.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cityos.core.entities import check_uri
from cityos.core.principal import ADMIN_ROLE, Principal
from cityos.errors import BadRequestData
from cityos.storage.base import AuditEntry

__all__ = [
    "Consent",
    "ConsentIndex",
    "ConsentStatus",
    "audit_entry",
    "covers",
    "from_doc",
    "is_valid",
    "may_manage",
    "parse_consent",
    "render",
    "to_doc",
    "withdraw",
]

ConsentStatus = Literal["granted", "withdrawn"]
MAX_PURPOSE = 500
MAX_RECIPIENT = 256
MAX_CATEGORIES = 100
_MEMBERS = frozenset(
    {"@context", "subject", "recipient", "purpose", "categories", "validFrom", "validUntil"}
)
_REQUIRED = ("subject", "recipient", "purpose", "categories")


def _new_id() -> str:
    return f"urn:ngsi-ld:Consent:{uuid.uuid4()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Consent:
    """One consent record; every time in canonical UTC form, every category expanded."""

    tenant: str
    subject: str
    recipient: str
    purpose: str
    categories: tuple[str, ...]
    valid_from: str
    valid_until: str | None = None
    status: ConsentStatus = "granted"
    granted_by: str = ""
    history: tuple[dict[str, str], ...] = ()
    id: str = field(default_factory=_new_id)


# -- times -------------------------------------------------------------------------------------


def _canonical(moment: dt.datetime) -> str:
    if moment.tzinfo is None:  # as in core.temporal.parse_time: a missing zone means UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime string, not {value!r}")
    if len(value) < 16 or value[10] != "T":
        raise BadRequestData(f"{what} {value!r} is not an ISO 8601 DateTime")
    try:
        return _canonical(dt.datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        raise BadRequestData(f"{what} {value!r} is not an ISO 8601 DateTime") from None


def _is_canonical(text: str) -> bool:
    return len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z"


@functools.lru_cache(maxsize=1024)
def _normalize(text: str) -> str:
    return _canonical(dt.datetime.fromisoformat(text))


def instant(now: str) -> str:
    """``now`` in canonical form (free for :func:`~cityos.core.model.now_iso`'s output).
    Raises ValueError for a string that is no DateTime: callers pass trusted times."""
    return now if _is_canonical(now) else _normalize(now)


# -- parsing -----------------------------------------------------------------------------------


def parse_consent(
    body: object,
    *,
    tenant: str,
    by: str,
    now: str,
    expand: Callable[[str], str],
) -> Consent:
    """A new consent from a request body ``{"subject", "recipient", "purpose",
    "categories", "validFrom"?, "validUntil"?}`` (and an optional ``@context``), granted
    ``by`` the given principal subject at ``now``. Raises BadRequestData for every problem
    of the data, unknown members included (so a typo such as ``validUtil`` never silently
    makes a consent open-ended)."""
    if not isinstance(body, Mapping):
        raise BadRequestData("A consent must be a JSON object")
    unknown = sorted(set(body) - _MEMBERS)
    if unknown:
        raise BadRequestData(f"A consent has no member {unknown[0]!r}")
    for name in _REQUIRED:
        if name not in body:
            raise BadRequestData(f"A consent needs the member {name!r}")
    now = instant(now)
    valid_from, valid_until = _parse_window(body, now)
    return Consent(
        tenant=tenant,
        subject=check_uri(body["subject"], "subject"),
        recipient=_parse_recipient(body["recipient"]),
        purpose=_parse_purpose(body["purpose"]),
        categories=_parse_categories(body["categories"], expand),
        valid_from=valid_from,
        valid_until=valid_until,
        granted_by=by,
        history=({"at": now, "status": "granted", "by": by},),
    )


def _parse_recipient(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequestData(f"recipient must be a non-empty string (a client id), not {value!r}")
    if len(value) > MAX_RECIPIENT or value != value.strip():
        raise BadRequestData(
            f"recipient must be at most {MAX_RECIPIENT} characters, without surrounding spaces"
        )
    return value


def _parse_purpose(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequestData("purpose must be a non-empty string")
    if len(value) > MAX_PURPOSE:
        raise BadRequestData(f"purpose must be at most {MAX_PURPOSE} characters, not {len(value)}")
    return value


def _parse_categories(value: object, expand: Callable[[str], str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadRequestData(f"categories must be a list of type or attribute names, not {value!r}")
    if not value:
        raise BadRequestData("categories must name at least one type or attribute")
    if len(value) > MAX_CATEGORIES:
        raise BadRequestData(f"categories must name at most {MAX_CATEGORIES} types or attributes")
    for name in value:
        if not isinstance(name, str) or not name or name.startswith("@"):
            raise BadRequestData(f"Category {name!r} is not a type or attribute name")
    return tuple(dict.fromkeys(expand(name) for name in value))


def _parse_window(body: Mapping[str, Any], now: str) -> tuple[str, str | None]:
    valid_from = now
    if body.get("validFrom") is not None:
        valid_from = _parse_time(body["validFrom"], "validFrom")
    if body.get("validUntil") is None:
        return valid_from, None
    valid_until = _parse_time(body["validUntil"], "validUntil")
    if valid_until <= valid_from:
        raise BadRequestData(f"validUntil {body['validUntil']} must be later than validFrom")
    if valid_until <= now:
        raise BadRequestData(f"validUntil {body['validUntil']} is not in the future")
    return valid_from, valid_until


# -- lifecycle -----------------------------------------------------------------------------------


def withdraw(consent: Consent, *, by: str, now: str) -> Consent:
    """The consent withdrawn ``by`` a principal subject. Idempotent: withdrawing a withdrawn
    consent returns it unchanged, so a retried DELETE adds no history row."""
    if consent.status == "withdrawn":
        return consent
    row = {"at": instant(now), "status": "withdrawn", "by": by}
    return replace(consent, status="withdrawn", history=(*consent.history, row))


def is_valid(consent: Consent, now: str) -> bool:
    """Granted, and ``now`` within ``[validFrom, validUntil)``."""
    now = instant(now)
    return (
        consent.status == "granted"
        and consent.valid_from <= now
        and (consent.valid_until is None or now < consent.valid_until)
    )


def covers(consent: Consent, *, recipient: str, category: str, now: str) -> bool:
    return (
        consent.recipient == recipient and category in consent.categories and is_valid(consent, now)
    )


def may_manage(principal: Principal, subject: str, tenant: str | None = None) -> bool:
    """Whether ``principal`` may give and withdraw consents of ``subject``: the resident
    themselves or a guardian (``subject`` in ``persons``), or, when ``tenant`` is given, an
    administrator of that tenant."""
    if subject in principal.persons:
        return True
    return tenant is not None and ADMIN_ROLE in principal.roles and principal.member_of(tenant)


def audit_entry(action: str, consent: Consent, actor: str, at: str) -> AuditEntry:
    """The audit log's record of a grant or withdrawal (``consent.grant``,
    ``consent.withdraw``): ids, the recipient and the terms, never personal values."""
    return AuditEntry(
        at=at,
        action=action,
        actor=actor,
        tenant=consent.tenant,
        target=consent.id,
        person=consent.subject,
        detail={
            "recipient": consent.recipient,
            "purpose": consent.purpose,
            "categories": list(consent.categories),
            "validUntil": consent.valid_until,
        },
    )


# -- documents -----------------------------------------------------------------------------------


def to_doc(consent: Consent) -> dict[str, Any]:
    """The stored JSON form: the members of the request body plus the record's own."""
    doc: dict[str, Any] = {
        "id": consent.id,
        "tenant": consent.tenant,
        "subject": consent.subject,
        "recipient": consent.recipient,
        "purpose": consent.purpose,
        "categories": list(consent.categories),
        "validFrom": consent.valid_from,
        "status": consent.status,
        "grantedBy": consent.granted_by,
        "history": [dict(row) for row in consent.history],
    }
    if consent.valid_until is not None:
        doc["validUntil"] = consent.valid_until
    return doc


def from_doc(doc: Mapping[str, Any]) -> Consent:
    """The inverse of :func:`to_doc` (times are normalized again, to be safe)."""
    until = doc.get("validUntil")
    status = doc.get("status", "granted")
    return Consent(
        id=doc["id"],
        tenant=doc.get("tenant", ""),
        subject=doc["subject"],
        recipient=doc["recipient"],
        purpose=doc.get("purpose", ""),
        categories=tuple(doc["categories"]),
        valid_from=instant(doc["validFrom"]),
        valid_until=None if until is None else instant(until),
        status="withdrawn" if status == "withdrawn" else "granted",
        granted_by=doc.get("grantedBy", ""),
        history=tuple(dict(row) for row in doc.get("history", ())),
    )


def render(consent: Consent, compact: Callable[[str], str]) -> dict[str, Any]:
    """The response body: :func:`to_doc` with categories compacted through the request's
    @context, without the tenant (the request's ``NGSILD-Tenant`` names it)."""
    doc = to_doc(consent)
    del doc["tenant"]
    doc["categories"] = [compact(c) for c in consent.categories]
    return doc


# -- the index -------------------------------------------------------------------------------------

_Window = tuple[str, str | None]


def _within(windows: Iterable[_Window], now: str) -> bool:
    return any(start <= now and (end is None or now < end) for start, end in windows)


class ConsentIndex:
    """The granted consents of a set (typically: those given to one recipient in one
    tenant), indexed for the questions asked while releasing personal data. Withdrawn
    consents are left out: they never release anything again."""

    __slots__ = ("_by_key", "_by_use", "_bounds")

    def __init__(self, consents: Iterable[Consent]) -> None:
        self._by_key: dict[tuple[str, str, str], list[_Window]] = {}
        self._by_use: dict[tuple[str, str], dict[str, list[_Window]]] = {}
        bounds: set[str] = set()
        for c in consents:
            if c.status != "granted":
                continue
            window = (c.valid_from, c.valid_until)
            bounds.add(c.valid_from)
            if c.valid_until is not None:
                bounds.add(c.valid_until)
            for category in c.categories:
                self._by_key.setdefault((c.subject, c.recipient, category), []).append(window)
                use = self._by_use.setdefault((c.recipient, category), {})
                use.setdefault(c.subject, []).append(window)
        self._bounds = sorted(bounds)

    def __len__(self) -> int:
        return len(self._by_key)

    def allowed(self, subject: str, recipient: str, category: str, now: str) -> bool:
        windows = self._by_key.get((subject, recipient, category))
        return windows is not None and _within(windows, instant(now))

    def subjects_for(self, recipient: str, category: str, now: str) -> frozenset[str]:
        """Every data subject that lets ``recipient`` see ``category`` now: what a query
        restricts personal Entities to."""
        use = self._by_use.get((recipient, category))
        if not use:
            return frozenset()
        now = instant(now)
        return frozenset(subject for subject, windows in use.items() if _within(windows, now))

    def next_change(self, now: str) -> str | None:
        """The earliest validFrom or validUntil after ``now``: until then every answer of
        this index stays the same (None: it never changes by itself)."""
        at = bisect.bisect_right(self._bounds, instant(now))
        return self._bounds[at] if at < len(self._bounds) else None
