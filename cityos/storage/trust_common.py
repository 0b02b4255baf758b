"""What both stores share of the trust layer's storage (``sqlite/trust.py``,
``postgres/trust.py``): the Store methods that delegate to a backend's trust object, and
the filters of its reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from cityos.storage.base import AuditEntry, AuditRecord

__all__ = ["DelegatesTrust", "TrustBackend", "equal_filters"]


def equal_filters(columns: Sequence[tuple[str, Any]], mark: str) -> tuple[str, list[Any]]:
    """``" AND a = ? AND b = ?"`` (``mark`` the placeholder) and the parameters, for the
    columns whose value is not None."""
    given = [(c, v) for c, v in columns if v is not None]
    return "".join(f" AND {c} = {mark}" for c, _ in given), [v for _, v in given]


class TrustBackend(Protocol):
    async def trust_get(self, kind: str, tenant: str, doc_id: str) -> Any | None: ...
    async def trust_list(
        self, kind: str, tenant: str | None, key: str | None
    ) -> list[tuple[str, str, Any]]: ...
    async def trust_put(  # noqa: PLR0913 - the Store protocol's signature
        self, kind: str, tenant: str, doc_id: str, doc: Any, key: str, audit: Sequence[AuditEntry]
    ) -> None: ...
    async def trust_delete(
        self, kind: str, tenant: str, doc_id: str, audit: Sequence[AuditEntry]
    ) -> bool: ...
    async def audit_append(self, entries: Sequence[AuditEntry]) -> None: ...
    async def audit_read(
        self, after: int, limit: int, person: str | None, tenant: str | None
    ) -> list[AuditRecord]: ...


class DelegatesTrust:
    """The trust methods of the Store protocol, answered by the store's ``trust``."""

    trust: TrustBackend

    async def trust_get(self, kind: str, tenant: str, doc_id: str) -> Any | None:
        return await self.trust.trust_get(kind, tenant, doc_id)

    async def trust_list(
        self, kind: str, tenant: str | None = None, key: str | None = None
    ) -> list[tuple[str, str, Any]]:
        return await self.trust.trust_list(kind, tenant, key)

    async def trust_put(  # noqa: PLR0913 - the Store protocol's signature
        self,
        kind: str,
        tenant: str,
        doc_id: str,
        doc: Any,
        key: str = "",
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        await self.trust.trust_put(kind, tenant, doc_id, doc, key, audit)

    async def trust_delete(
        self, kind: str, tenant: str, doc_id: str, audit: Sequence[AuditEntry] = ()
    ) -> bool:
        return await self.trust.trust_delete(kind, tenant, doc_id, audit)

    async def audit_append(self, entries: Sequence[AuditEntry]) -> None:
        await self.trust.audit_append(entries)

    async def audit_read(
        self,
        after: int = 0,
        limit: int = 1000,
        person: str | None = None,
        tenant: str | None = None,
    ) -> list[AuditRecord]:
        return await self.trust.audit_read(after, limit, person, tenant)
