"""Who is asking: the authenticated caller every access decision is made for.

Authentication (``cityos.auth``: OIDC bearer tokens, API keys) turns a request's
credentials into a :class:`Principal`; the access rules of ``cityos.core.access`` and the
consent rules of ``cityos.core.consent`` decide from it alone. No HTTP here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ADMIN_ROLE", "ANONYMOUS", "ANY_TENANT", "OPEN", "Principal", "PrincipalKind"]

PrincipalKind = Literal["anonymous", "token", "apikey", "open"]

ADMIN_ROLE = "admin"  # the role that administers a tenant (core/access.py)
ANY_TENANT = "*"
"""In :attr:`Principal.tenants`: every tenant (a platform operator of a prefecture)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request.

    - ``subject``: who, unique per issuer: a token's ``sub``, ``apikey:<key id>``, or
      ``anonymous``.
    - ``tenants``: the tenants the caller belongs to (``"*"``: all of them). The default
      tenant is the empty string ``""``.
    - ``roles`` and ``scopes``: what the tenant's policies grant operations to.
    - ``client``: the service (API client) acting, the *recipient* of consents: a token's
      ``azp``/``client_id``, an API key's client name. Empty when unknown.
    - ``persons``: the data subjects (residents, as Entity ids) this caller may act for:
      themselves, and e.g. their children as a guardian. Residents manage the consents of
      these subjects and read their access log.
    - ``issuer``: the token issuer, or ``cityos`` for API keys.
    """

    subject: str
    kind: PrincipalKind
    tenants: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    client: str = ""
    persons: frozenset[str] = frozenset()
    issuer: str = ""
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def member_of(self, tenant: str) -> bool:
        return ANY_TENANT in self.tenants or tenant in self.tenants

    @property
    def authenticated(self) -> bool:
        return self.kind in ("token", "apikey")


ANONYMOUS = Principal(subject="anonymous", kind="anonymous")
"""A request without credentials, on a City OS with authentication switched on."""

OPEN = Principal(
    subject="development", kind="open", tenants=frozenset({ANY_TENANT}), roles=frozenset({"admin"})
)
"""Every request when authentication is switched off (the local development default):
allowed everything, as before authentication existed."""
