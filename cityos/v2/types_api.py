"""Handlers of /v2/types and /v2/types/{type} (FIWARE-NGSI v2, "Types").

Each type lists its attributes with the v2 types they take, and its Entity count, over
the Entities of the service paths read. The v2 types of attributes are those a v2 read
shows, so they are computed from the Entities themselves (one pass over the tenant's
Entities, in pages); ``options=noAttrDetail`` leaves the attribute types out.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.core.query.ast import TypeName
from cityos.errors import ResourceNotFound
from cityos.storage.base import EntityQuery
from cityos.v2.attributes import v2_type_and_value
from cityos.v2.entities import default_instance, v2_type
from cityos.v2.fields import check_field
from cityos.v2.http import accept, json, names_of, options_of, read_filter, services, tenant_of
from cityos.v2.names import Names
from cityos.v2.query import parse_paging, scan

__all__ = ["list_types", "retrieve_type"]

Summary = dict[str, dict[str, Any]]


async def _summaries(request: Request, names: Names, type_iri: str | None) -> Summary:
    """{v2 type: {"attrs": {name: {"types": set}}, "count": n}} over the Entities read."""
    query = EntityQuery(tenant=tenant_of(request), types=TypeName(type_iri) if type_iri else None)
    paths = read_filter(request)
    out: Summary = {}
    async for entities in scan(services(request).store, query, paths.matches):
        for entity in entities:
            summary = out.setdefault(v2_type(entity, names), {"attrs": {}, "count": 0})
            summary["count"] += 1
            for iri, instances in entity.get("attrs", {}).items():
                inst = default_instance(instances)
                types = summary["attrs"].setdefault(names.compact(iri), {"types": set()})["types"]
                if inst is not None:
                    types.add(v2_type_and_value(inst, names)[0])
    return out


def _render(summary: dict[str, Any], detail: bool) -> dict[str, Any]:
    attrs = {
        name: {"types": sorted(info["types"]) if detail else []}
        for name, info in sorted(summary["attrs"].items())
    }
    return {"attrs": attrs, "count": summary["count"]}


async def list_types(request: Request) -> Response:
    accept(request)
    options = options_of(request, frozenset({"count", "values", "noAttrDetail"}))
    names = await names_of(request)
    limit, offset = parse_paging(
        request.query_params.get("limit"),
        request.query_params.get("offset"),
        services(request).settings.max_limit,
    )
    summaries = await _summaries(request, names, None)
    page = sorted(summaries)[offset : offset + limit]
    headers = {"Fiware-Total-Count": str(len(summaries))} if "count" in options else None
    if "values" in options:
        return json(page, headers=headers)
    detail = "noAttrDetail" not in options
    body = [{"type": t, **_render(summaries[t], detail)} for t in page]
    return json(body, headers=headers)


async def retrieve_type(request: Request) -> Response:
    accept(request)
    options = options_of(request, frozenset({"noAttrDetail"}))
    names = await names_of(request)
    name = check_field(request.path_params["entity_type"], "Entity type")
    summaries = await _summaries(request, names, names.entity_type(name))
    if name not in summaries:
        raise ResourceNotFound("Entity type not found")
    return json(_render(summaries[name], "noAttrDetail" not in options))
