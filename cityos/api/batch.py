"""Batch operations under /entityOperations (GS CIM 009 V1.8.1 clauses 5.6.7-5.6.10, 5.6.20, 6.14-6.18).

Every Entity of a batch is its own atomic change, all in one transaction: one Entity
failing never half-applies it, nor stops the others. Results follow clause 5.2.16
BatchOperationResult.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import now_iso, services
from cityos.api.params import parse_options, parse_paging
from cityos.api.problems import problem_body
from cityos.api.querying import (
    ProjectionSpec,
    View,
    geo_from_body,
    parse_projection,
    render_entities,
)
from cityos.core import changes
from cityos.core.entities import check_uri, parse_entity
from cityos.core.geo import DEFAULT_GEOPROPERTY
from cityos.core.jsonld import CompiledContext
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types
from cityos.core.query.typeexpr import parse_types as parse_type_expression
from cityos.errors import BadRequestData, CityOSError, InvalidRequest
from cityos.storage.base import Change, EntityQuery, WriteOutcome

__all__ = ["ROUTES"]

Planned = tuple[str, Change | CityOSError]


async def _batch_body(request: Request) -> tuple[list[Any], list[CompiledContext | CityOSError]]:
    """The batch's items, each with its own compiled @context or the error that context raised
    (clause 6.14.3.1: an Entity with a bad @context fails alone, with a 207)."""
    media = http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, list):
        raise InvalidRequest("A batch operation needs a JSON array")
    if not body:
        raise BadRequestData("A batch operation needs at least one item")
    link = http.link_context(request)
    if media == http.JSONLD and link is not None:
        raise BadRequestData(
            "A Link header @context is not allowed with Content-Type application/ld+json"
        )
    contexts = [await _item_context(svc.contexts, item, media, link) for item in body]
    return body, contexts


async def _item_context(
    registry: Any, item: Any, media: str, link: str | None
) -> CompiledContext | CityOSError:
    try:
        if not isinstance(item, dict):
            raise BadRequestData("Each item of the batch must be a JSON object")
        if media == http.JSONLD:
            if "@context" not in item:
                raise BadRequestData(
                    "Content-Type application/ld+json needs an @context member in each Entity"
                )
            compiled: CompiledContext = await registry.compile(item["@context"])
            return compiled
        if "@context" in item:
            raise BadRequestData("@context in the body needs Content-Type application/ld+json")
        compiled = await registry.compile(link)
        return compiled
    except CityOSError as exc:
        return exc


def _plan(
    body: list[Any],
    contexts: list[CompiledContext | CityOSError],
    make: Callable[[Any, CompiledContext], tuple[str, Change]],
) -> list[Planned]:
    planned: list[Planned] = []
    for item, ctx in zip(body, contexts, strict=True):
        entity_id = str(item.get("id", "")) if isinstance(item, dict) else str(item)
        if isinstance(ctx, CityOSError):
            planned.append((entity_id, ctx))
            continue
        try:
            planned.append(make(item, ctx))
        except CityOSError as exc:
            planned.append((entity_id, exc))
    return planned


async def _run(
    request: Request, planned: list[Planned]
) -> list[tuple[str, WriteOutcome | Exception]]:
    runnable = [(i, c) for i, c in planned if not isinstance(c, CityOSError)]
    outcomes = iter(
        await services(request).store.write_many(http.tenant_of(request), runnable)
        if runnable
        else []
    )
    return [(i, c if isinstance(c, CityOSError) else next(outcomes)) for i, c in planned]


def _result(
    results: list[tuple[str, WriteOutcome | Exception]], ok_status: int, ok_body: list[str] | None
) -> Response:
    errors = [(i, r) for i, r in results if isinstance(r, Exception)]
    if not errors:
        if ok_body is None:
            return Response(status_code=ok_status)
        return http.json_response(ok_body, None, status=ok_status)
    success = [i for i, r in results if not isinstance(r, Exception)]
    body = {
        "success": success,
        "errors": [{"entityId": i, "error": _problem(e)} for i, e in errors],
    }
    return http.json_response(body, None, status=207)


def _problem(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, CityOSError):
        return problem_body(exc)
    return {
        "type": "https://uri.etsi.org/ngsi-ld/errors/InternalError",
        "title": "Internal error",
        "status": 500,
        "detail": "The change could not be applied",
    }


async def batch_create(request: Request) -> Response:
    body, contexts = await _batch_body(request)
    now = now_iso()

    def make(item: Any, ctx: CompiledContext) -> tuple[str, Change]:
        entity = parse_entity(item, ctx, now)
        return entity["id"], changes.create(entity)

    results = await _run(request, _plan(body, contexts, make))
    created = [i for i, r in results if not isinstance(r, Exception)]
    return _result(results, 201, created)


async def batch_upsert(request: Request) -> Response:
    body, contexts = await _batch_body(request)
    options = parse_options(request.query_params, frozenset({"replace", "update"}))
    if {"replace", "update"} <= options:
        raise BadRequestData("options=replace and options=update cannot be used together")
    now = now_iso()
    replace_all = "update" not in options

    def make(item: Any, ctx: CompiledContext) -> tuple[str, Change]:
        entity = parse_entity(item, ctx, now)
        return entity["id"], changes.upsert(entity, replace_all)

    results = await _run(request, _plan(body, contexts, make))
    created = [i for i, r in results if isinstance(r, WriteOutcome) and r.result == "created"]
    if any(isinstance(r, Exception) for _, r in results):
        return _result(results, 201, created)
    return _result(results, 201, created) if created else Response(status_code=204)


async def batch_update(request: Request) -> Response:
    """Batch update (clause 5.6.9): attributes are appended, kept under noOverwrite."""
    body, contexts = await _batch_body(request)
    no_overwrite = "noOverwrite" in parse_options(request.query_params, frozenset({"noOverwrite"}))
    now = now_iso()

    def make(item: Any, ctx: CompiledContext) -> tuple[str, Change]:
        fragment = changes.fragment_from_body(item, check_uri(item.get("id")), ctx, now)
        return fragment.entity_id, changes.append(fragment, no_overwrite)

    results = await _run(request, _plan(body, contexts, make))
    return _result([(i, _partial_as_error(r)) for i, r in results], 204, None)


def _partial_as_error(outcome: WriteOutcome | Exception) -> WriteOutcome | Exception:
    """An Entity some of whose attributes were kept (noOverwrite) is reported among the
    errors of the 207, though what could be appended was (clause 5.6.9)."""
    if isinstance(outcome, WriteOutcome) and outcome.result.not_updated:
        names = ", ".join(n for n, _ in outcome.result.not_updated)
        reason = outcome.result.not_updated[0][1]
        return BadRequestData(f"Attributes were not updated: {names} ({reason})")
    return outcome


async def batch_merge(request: Request) -> Response:
    body, contexts = await _batch_body(request)
    now = now_iso()

    def make(item: Any, ctx: CompiledContext) -> tuple[str, Change]:
        fragment = changes.fragment_from_body(item, check_uri(item.get("id")), ctx, now)
        return fragment.entity_id, changes.merge(fragment)

    results = await _run(request, _plan(body, contexts, make))
    return _result(results, 204, None)


async def batch_delete(request: Request) -> Response:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, list) or not body:
        raise BadRequestData("A batch delete needs a non-empty JSON array of Entity ids")

    def make(item: Any, ctx: CompiledContext) -> tuple[str, Change]:
        entity_id = check_uri(item)
        return entity_id, changes.delete(entity_id)

    results = await _run(request, _plan(body, [svc.contexts.default] * len(body), make))
    return _result(results, 204, None)


async def batch_query(request: Request) -> Response:
    """POST /entityOperations/query (clause 5.7.2 with a Query data type, clause 5.2.23)."""
    http.check_content_type(request)
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData("The body must be a Query object with type Query")
    rctx = await http.request_context(request, svc.contexts, body, accept=accept)
    projection = parse_projection(
        {k: body[k] for k in ("attrs", "pick", "omit") if k in body}, rctx.compiled
    )
    tenant = http.tenant_of(request)
    paging = parse_paging(request.query_params, svc.settings.default_limit, svc.settings.max_limit)
    query = _query_from_body(body, rctx.compiled, tenant, projection, paging)
    await http.require_tenant(request, await svc.store.tenant_exists(tenant))
    pages = [await svc.store.query_entities(q) for q in query]
    entities = _merge_pages(pages, paging.offset, paging.limit)
    count = sum(p.count or 0 for p in pages)
    headers = {"NGSILD-Results-Count": str(count)} if paging.count else None
    params = {
        **request.query_params,
        **{k: str(body[k]) for k in ("join", "joinLevel", "lang") if k in body},
    }
    view = View(rctx, params, projection, svc.store, tenant)
    return await render_entities(entities, view, headers=headers)


def _merge_pages(pages: list[Any], offset: int, limit: int) -> list[Any]:
    if len(pages) == 1:
        return list(pages[0].entities)
    seen: dict[str, Any] = {}
    for page in pages:
        for entity in page.entities:
            seen.setdefault(entity["id"], entity)
    return list(seen.values())[offset : offset + limit]


def _query_from_body(
    body: dict[str, Any], ctx: CompiledContext, tenant: str, projection: ProjectionSpec, paging: Any
) -> list[EntityQuery]:
    selectors = body.get("entities") or [{}]
    if not isinstance(selectors, list) or not all(isinstance(s, dict) for s in selectors):
        raise BadRequestData("entities must be an array of EntitySelector objects")
    if not body.get("entities") and not any(k in body for k in ("attrs", "q", "geoQ", "pick")):
        raise BadRequestData("A query needs entities, attrs, q or geoQ")
    geo = geo_from_body(body)
    common = {
        "tenant": tenant,
        "q": expand_q(parse_q(body["q"]), ctx.expand) if body.get("q") else None,
        "scope_q": parse_scope_q(body["scopeQ"]) if body.get("scopeQ") else None,
        "geo": geo,
        "geoproperty": ctx.expand(geo.geoproperty or DEFAULT_GEOPROPERTY) if geo else None,
        "attrs": projection.attrs if body.get("attrs") else [],
        "count": paging.count,
    }
    many = len(selectors) > 1
    return [
        EntityQuery(
            ids=[check_uri(s["id"])] if "id" in s else [],
            id_pattern=s.get("idPattern"),
            types=expand_types(parse_type_expression(s["type"]), ctx.expand)
            if "type" in s
            else None,
            limit=paging.offset + paging.limit if many else paging.limit,
            offset=0 if many else paging.offset,
            **common,
        )
        for s in selectors
    ]


_WRITE = frozenset({"options", "local"})
ROUTES: list[tuple[str, Any, list[str], frozenset[str]]] = [
    ("/entityOperations/create", batch_create, ["POST"], _WRITE),
    ("/entityOperations/upsert", batch_upsert, ["POST"], _WRITE),
    ("/entityOperations/update", batch_update, ["POST"], _WRITE),
    ("/entityOperations/delete", batch_delete, ["POST"], _WRITE),
    ("/entityOperations/merge", batch_merge, ["POST"], _WRITE),
    (
        "/entityOperations/query",
        batch_query,
        ["POST"],
        frozenset(
            {"limit", "offset", "count", "options", "format", "lang", "local", "geometryProperty"}
        ),
    ),
]
