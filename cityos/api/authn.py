"""Authentication at the edge: every request's credentials become a Principal.

:class:`AuthGate` (ASGI middleware, installed when the ``auth`` setting is on) reads
``Authorization: Bearer <JWT>``, ``Authorization: ApiKey <key>`` or ``X-API-Key``, asks
:class:`cityos.trust.Trust` who that is, and gives the request its own
:class:`~cityos.api.deps.Services` whose store is a :class:`~cityos.api.guard.GuardedStore`
for that principal. Bad credentials answer 401 with ``WWW-Authenticate`` before any
handler runs; a request without credentials goes on as ANONYMOUS, which reaches only what
a tenant publishes as open data.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cityos.api.guard import GuardedStore
from cityos.api.problems import problem_response
from cityos.core.principal import Principal
from cityos.errors import CityOSError, Forbidden, Unauthorized
from cityos.scope import PRINCIPAL, SERVICES
from cityos.trust import Trust

__all__ = ["PRINCIPAL", "SERVICES", "AuthGate"]

# Readable by anyone: the version (clients check it) and the @contexts City OS serves.
_OPEN_PATHS = ("/version", "/ngsi-ld/v1/jsonldContexts")


class AuthGate:
    def __init__(self, app: ASGIApp, trust: Trust, services: Any) -> None:
        self.app = app
        self.trust = trust
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if scope["method"] == "GET" and path.startswith(_OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"] if k.lower() in _AUTH_HEADERS}
        try:
            principal = await self.trust.authenticate(
                _text(headers.get(b"authorization")), _text(headers.get(b"x-api-key"))
            )
        except Unauthorized as exc:
            await _refuse(scope, receive, send, exc)
            return
        if path.startswith(_OPEN_PATHS[1]) and not _administers(principal):
            # the @context registry is shared by every tenant: only administrators change it
            await _refuse(scope, receive, send, _denied(principal))
            return
        svc = self.services
        scope[PRINCIPAL] = principal
        scope[SERVICES] = type(svc)(
            svc.settings, GuardedStore(svc.store, self.trust, principal), svc.contexts, svc.notifier
        )
        await self.app(scope, receive, send)


_AUTH_HEADERS = (b"authorization", b"x-api-key")


def _administers(principal: Principal) -> bool:
    return principal.kind == "open" or (principal.authenticated and "admin" in principal.roles)


def _denied(principal: Principal) -> CityOSError:
    if principal.authenticated:
        return Forbidden("Only an administrator may change the @context registry")
    return Unauthorized("Authentication is required")


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: CityOSError) -> None:
    if scope.get("path", "").startswith("/v2"):
        from cityos.v2.errors import orion_response

        response = orion_response(exc)
    else:
        response = problem_response(exc)
    # RFC 6750 section 3: the scheme to use, and why the credentials were refused
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token", ApiKey'
    await response(scope, receive, send)


def principal_of(request: Request) -> Any:
    return request.scope.get(PRINCIPAL)
