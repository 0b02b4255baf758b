"""What every handler reaches through ``request.app.state.services``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from starlette.requests import Request

from cityos.config import Settings
from cityos.core.contexts import ContextRegistry
from cityos.notifier import Notifier
from cityos.storage.base import Store

__all__ = ["Services", "now_iso", "services"]


@dataclass
class Services:
    settings: Settings
    store: Store
    contexts: ContextRegistry
    notifier: Notifier


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def now_iso() -> str:
    """System timestamps (createdAt, modifiedAt): UTC with microseconds, as GS CIM 009 DateTime."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
