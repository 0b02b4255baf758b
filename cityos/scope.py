"""What the authentication gate (``cityos.api.authn.AuthGate``) leaves in a request's
ASGI scope, read the same way by the NGSI-LD handlers (``cityos.api``) and the NGSI-v2
ones (``cityos.v2``), which may not import each other."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from cityos.core.principal import Principal

__all__ = ["PRINCIPAL", "SERVICES", "principal_of", "sees_subscription", "services_of"]

PRINCIPAL = "cityos.principal"  # the request's Principal
SERVICES = "cityos.services"  # its services, the store being the principal's GuardedStore


def services_of(request: Request) -> Any:
    """The request's services: with authentication on, the principal's; else the app's."""
    return request.scope.get(SERVICES) or request.app.state.services


def principal_of(request: Request) -> Principal | None:
    """The request's principal; None when authentication is off."""
    principal: Principal | None = request.scope.get(PRINCIPAL)
    return principal


def sees_subscription(request: Request, tenant: str, sub_id: str) -> bool:
    """Whether the request's principal may see (and change) a Subscription: its owner and
    the tenant's administrators, when authentication is on; anyone otherwise."""
    principal = principal_of(request)
    if principal is None:
        return True
    seen: bool = request.app.state.trust.sees_subscription(tenant, sub_id, principal)
    return seen
