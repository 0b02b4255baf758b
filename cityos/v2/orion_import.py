"""``cityos import --from-orion``: copy a town's Entities out of a running FIWARE Orion
(or any NGSI-v2 broker) into this City OS's store, over Orion's own API.

Pages through ``GET /v2/entities`` (``limit``/``offset``, ``options=count`` for the total
behind the progress bar) with the town's ``Fiware-Service`` and ``Fiware-ServicePath``,
turns each v2 Entity into the stored form by the same mapping the ``/v2`` API uses
(``cityos.v2.entities.parse_entity``: ids, names through ``v2_context``, attribute types
and metadata) and writes each page with one ``write_many`` upsert. Running it again
updates what is there; an Entity Orion's data cannot be mapped is reported, not dropped
silently, and the others are imported.

Orion does not say which service path an Entity lives in: import each path on its own
(``--service-path /takamatsu/river``) to keep it as the Entity's ``scope``; ``/#`` imports
everything of the service at the root.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from cityos.core import changes
from cityos.core.model import now_iso
from cityos.errors import CityOSError
from cityos.storage.base import Change, Store
from cityos.v2.entities import parse_entity
from cityos.v2.names import Names
from cityos.v2.servicepath import write_path

__all__ = ["ImportReport", "OrionSource", "import_entities"]

PAGE = 500  # Orion's largest page is 1000


@dataclass(frozen=True, slots=True)
class OrionSource:
    """Where to read: Orion's base URL, the service and path, and extra headers (for an
    Orion behind a PEP proxy, e.g. ``X-Auth-Token``)."""

    url: str
    service: str = ""
    service_path: str = "/#"
    headers: Mapping[str, str] = field(default_factory=dict)

    def request_headers(self) -> dict[str, str]:
        out = {"Accept": "application/json", **self.headers}
        if self.service:
            out["Fiware-Service"] = self.service
        out["Fiware-ServicePath"] = self.service_path
        return out

    @property
    def scope(self) -> str | None:
        """The scope imported Entities get: the path when it names one place."""
        if self.service_path.endswith("#") or "," in self.service_path:
            return None
        return write_path(self.service_path)


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (v2 id, reason)


async def import_entities(
    source: OrionSource,
    store: Store,
    tenant: str,
    names: Names,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ImportReport:
    """Copies every Entity of the source into ``tenant``; ``progress(done, total)``
    after each page."""
    report = ImportReport()
    offset = 0
    async with httpx.AsyncClient(base_url=source.url.rstrip("/"), timeout=60) as client:
        while True:
            page, total = await _page(client, source, offset)
            report.total = total
            if not page:
                break
            await _write(page, store, tenant, names, source.scope, report)
            offset += len(page)
            progress(offset, total)
            if offset >= total:
                break
    return report


async def _page(
    client: httpx.AsyncClient, source: OrionSource, offset: int
) -> tuple[list[Any], int]:
    params = {"limit": str(PAGE), "offset": str(offset), "options": "count"}
    response = await client.get("/v2/entities", params=params, headers=source.request_headers())
    if response.status_code != 200:
        raise CityOSError(
            f"{source.url} answered HTTP {response.status_code} to GET /v2/entities: "
            f"{response.text[:200]}"
        )
    body = response.json()
    if not isinstance(body, list):
        raise CityOSError(f"{source.url} did not answer an Entity list")
    total = int(response.headers.get("Fiware-Total-Count", offset + len(body)))
    return body, total


async def _write(
    page: list[Any],
    store: Store,
    tenant: str,
    names: Names,
    scope: str | None,
    report: ImportReport,
) -> None:
    now = now_iso()
    planned: list[tuple[str, Change]] = []
    for item in page:
        v2_id = str(item.get("id", "?")) if isinstance(item, dict) else "?"
        try:
            entity = parse_entity(item, names, now, scope)
        except CityOSError as exc:
            report.failed.append((v2_id, exc.detail))
            continue
        planned.append((entity["id"], changes.upsert(entity, replace_all=True)))
    if not planned:
        return
    outcomes = await store.write_many(tenant, planned)
    for (entity_id, _), outcome in zip(planned, outcomes, strict=True):
        if isinstance(outcome, Exception):
            report.failed.append((names.ids.from_ld(entity_id), str(outcome)))
        else:
            report.imported += 1
