"""Discovery of Entity types and Attributes (GS CIM 009 V1.8.1 clauses 5.7.5-5.7.10, 6.25-6.28)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import distributed, http
from cityos.api.deps import existing_tenant, services
from cityos.api.params import parse_flag
from cityos.errors import ResourceNotFound
from cityos.storage.base import AttributeSummaryRow

__all__ = ["ROUTES"]

Headers = dict[str, str]


async def _summary(
    request: Request,
) -> tuple[http.RequestContext, dict[str, int], list[AttributeSummaryRow]]:
    svc = services(request)
    accept = http.negotiate(request)
    tenant = await existing_tenant(request)
    rctx = await http.request_context(request, svc.contexts, accept=accept)
    return rctx, await svc.store.type_counts(tenant), await svc.store.attribute_summary(tenant)


async def _everywhere(
    request: Request, op: str, path: str
) -> tuple[http.RequestContext, dict[str, int], list[AttributeSummaryRow], list[Any], Headers]:
    """The local summary and what the registered sources supporting ``op`` answered to
    ``path`` (clause 4.3.6.2: discovery is a distributed operation too)."""
    targets = await distributed.read_plan(request, (op,), None, None, None)
    if not targets:
        return (*await _summary(request), [], {})
    svc = services(request)
    rctx = await http.request_context(request, svc.contexts, accept=http.negotiate(request))
    answers, failed = await distributed.discover(request, targets, path, rctx)
    tenant = http.tenant_of(request)
    counts, rows = {}, []
    if await svc.store.tenant_exists(tenant):
        counts = await svc.store.type_counts(tenant)
        rows = await svc.store.attribute_summary(tenant)
    return rctx, counts, rows, answers, distributed.warning_headers(failed)


def _remote_items(answers: list[Any], member: str | None) -> list[Any]:
    """The list items of the sources' answers: ``member`` of each list object, else each
    element of a details array."""
    out: list[Any] = []
    for answer in answers:
        if member is not None and isinstance(answer, dict):
            out += [i for i in answer.get(member, []) if isinstance(i, str)]
        elif member is None and isinstance(answer, list):
            out += [i for i in answer if isinstance(i, dict)]
    return out


def _merge_details(
    local: list[dict[str, Any]], remote: list[dict[str, Any]], key: str, names: str
) -> list[dict[str, Any]]:
    """Details entries by ``key``, their ``names`` lists joined."""
    merged = {e[key]: dict(e) for e in local}
    for item in remote:
        name = item.get(key)
        if not isinstance(name, str):
            continue
        entry = merged.setdefault(name, {**item, names: []})
        entry[names] = sorted(set(entry.get(names, [])) | set(item.get(names) or []))
    return [merged[k] for k in sorted(merged)]


def _list_id(kind: str) -> str:
    return f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex}"


async def list_types(request: Request) -> Response:
    rctx, counts, rows, answers, headers = await _everywhere(
        request, "retrieveEntityTypes", "/types"
    )
    c = rctx.compiled.compact
    if not parse_flag(request.query_params, "details"):
        names = {c(t) for t in counts} | set(_remote_items(answers, "typeList"))
        body: Any = {
            "id": _list_id("EntityTypeList"),
            "type": "EntityTypeList",
            "typeList": sorted(names),
        }
        return http.json_response(body, rctx, headers=headers)
    attrs: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        attrs[row.type].add(row.attribute)
    body = [
        {
            "id": t,
            "type": "EntityType",
            "typeName": c(t),
            "attributeNames": sorted(c(a) for a in attrs[t]),
        }
        for t in sorted(counts)
    ]
    if answers:
        body = _merge_details(body, _remote_items(answers, None), "typeName", "attributeNames")
    return http.json_response(body, rctx, headers=headers)


async def retrieve_type(request: Request) -> Response:
    rctx, counts, rows = await _summary(request)
    c = rctx.compiled.compact
    type_iri = rctx.compiled.expand(request.path_params["type"])
    if type_iri not in counts:
        raise ResourceNotFound(f"Entity type {request.path_params['type']} does not exist")
    details: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.type == type_iri:
            details[row.attribute].add(row.attribute_type)
    body = {
        "id": type_iri,
        "type": "EntityTypeInfo",
        "typeName": c(type_iri),
        "entityCount": counts[type_iri],
        "attributeDetails": [
            {
                "id": a,
                "type": "Attribute",
                "attributeName": c(a),
                "attributeTypes": sorted(details[a]),
            }
            for a in sorted(details)
        ],
    }
    return http.json_response(body, rctx)


def _by_attribute(rows: list[AttributeSummaryRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = out.setdefault(
            row.attribute, {"count": 0, "types": set(), "attribute_types": set()}
        )
        entry["count"] += row.entities
        entry["types"].add(row.type)
        entry["attribute_types"].add(row.attribute_type)
    return out


async def list_attributes(request: Request) -> Response:
    rctx, _, rows, answers, headers = await _everywhere(request, "retrieveAttrTypes", "/attributes")
    c = rctx.compiled.compact
    attrs = _by_attribute(rows)
    if not parse_flag(request.query_params, "details"):
        names = {c(a) for a in attrs} | set(_remote_items(answers, "attributeList"))
        body: Any = {
            "id": _list_id("AttributeList"),
            "type": "AttributeList",
            "attributeList": sorted(names),
        }
        return http.json_response(body, rctx, headers=headers)
    body = [
        {
            "id": a,
            "type": "Attribute",
            "attributeName": c(a),
            "typeNames": sorted(c(t) for t in info["types"]),
        }
        for a, info in sorted(attrs.items())
    ]
    if answers:
        body = _merge_details(body, _remote_items(answers, None), "attributeName", "typeNames")
    return http.json_response(body, rctx, headers=headers)


async def retrieve_attribute(request: Request) -> Response:
    rctx, _, rows = await _summary(request)
    c = rctx.compiled.compact
    attr_iri = rctx.compiled.expand(request.path_params["attr"])
    info = _by_attribute(rows).get(attr_iri)
    if info is None:
        raise ResourceNotFound(f"Attribute {request.path_params['attr']} does not exist")
    body = {
        "id": attr_iri,
        "type": "Attribute",
        "attributeName": c(attr_iri),
        "attributeCount": info["count"],
        "attributeTypes": sorted(info["attribute_types"]),
        "typeNames": sorted(c(t) for t in info["types"]),
    }
    return http.json_response(body, rctx)


_DETAILS = frozenset({"details", "local", "limit", "offset"})
ROUTES: list[tuple[str, Any, list[str], frozenset[str]]] = [
    ("/types", list_types, ["GET"], _DETAILS),
    ("/types/{type:path}", retrieve_type, ["GET"], _DETAILS),
    ("/attributes", list_attributes, ["GET"], _DETAILS),
    ("/attributes/{attr:path}", retrieve_attribute, ["GET"], _DETAILS),
]
