"""What every handler reaches through ``request.app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cityos.api.http import require_tenant, tenant_of
from cityos.config import Settings
from cityos.core.contexts import ContextRegistry
from cityos.core.model import now_iso
from cityos.notifier import Notifier
from cityos.scope import sees_subscription, services_of
from cityos.storage.base import Store

__all__ = ["Services", "existing_tenant", "now_iso", "sees_subscription", "services"]


@dataclass
class Services:
    settings: Settings
    store: Store
    contexts: ContextRegistry
    notifier: Notifier


def services(request: Request) -> Services:
    """The request's services: with authentication on, its store is the GuardedStore of
    the request's principal (set by ``api.authn.AuthGate``)."""
    svc: Services = services_of(request)
    return svc


async def existing_tenant(request: Request) -> str:
    """The request's tenant, NonexistentTenant if it names one that does not exist."""
    tenant = tenant_of(request)
    return await require_tenant(request, await services(request).store.tenant_exists(tenant))
