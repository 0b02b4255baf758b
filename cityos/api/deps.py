"""What every handler reaches through ``request.app.state.services``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from cityos.api.http import require_tenant, tenant_of
from cityos.config import Settings
from cityos.core.contexts import ContextRegistry
from cityos.core.model import now_iso
from cityos.notifier import Notifier
from cityos.storage.base import Store

__all__ = ["Services", "existing_tenant", "now_iso", "services"]


@dataclass
class Services:
    settings: Settings
    store: Store
    contexts: ContextRegistry
    notifier: Notifier


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def existing_tenant(request: Request) -> str:
    """The request's tenant, NonexistentTenant if it names one that does not exist."""
    tenant = tenant_of(request)
    return await require_tenant(request, await services(request).store.tenant_exists(tenant))
