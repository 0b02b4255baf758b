"""Batch operations under /entityOperations (GS CIM 009 V1.8.1 clauses 5.6.7-5.6.10, 5.6.20, 6.14-6.18).

Every Entity of a batch is its own atomic change, all in one transaction: one Entity
failing never half-applies it, nor stops the others. Results follow clause 5.2.16
BatchOperationResult.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.api import distributed, http
from cityos.api.deps import now_iso, services
from cityos.api.params import parse_options, parse_paging
from cityos.api.problems import problem_body
from cityos.api.querying import (
    LocalQuery,
    ProjectionSpec,
    View,
    geo_from_body,
    local_window,
    parse_projection,
    render_entities,
    type_test,
)
from cityos.core import changes
from cityos.core.entities import check_uri, parse_entity
from cityos.core.federation import TypeTest
from cityos.core.geo import DEFAULT_GEOPROPERTY
from cityos.core.jsonld import CompiledContext
from cityos.core.model import StoredEntity
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types
from cityos.core.query.typeexpr import parse_types as parse_type_expression
from cityos.errors import BadRequestData, CityOSError, Forbidden, InvalidRequest, Unauthorized
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


Kept = frozenset[str] | None  # the Attributes left for the local store, None: all
Make = Callable[[Any, CompiledContext, Kept], tuple[str, Change]]
Describe = Callable[[Any, CompiledContext], distributed.BatchItem]
Items = tuple[list[Any], list[CompiledContext | CityOSError]]


def _cut_entity(entity: StoredEntity, kept: Kept) -> StoredEntity:
    if kept is None:
        return entity
    return {**entity, "attrs": {k: v for k, v in entity["attrs"].items() if k in kept}}


def _cut(fragment: changes.Fragment, kept: Kept) -> changes.Fragment:
    if kept is None:
        return fragment
    return replace(fragment, attrs={k: v for k, v in fragment.attrs.items() if k in kept})


def _describe_entity(item: Any, ctx: CompiledContext) -> distributed.BatchItem:
    entity = parse_entity(item, ctx, now_iso())
    return distributed.BatchItem(entity["id"], item, ctx, entity["type"], list(entity["attrs"]))


def _describe_fragment(item: Any, ctx: CompiledContext) -> distributed.BatchItem:
    fragment = changes.fragment_from_body(item, check_uri(item.get("id")), ctx, now_iso())
    types = fragment.types or None
    return distributed.BatchItem(fragment.entity_id, item, ctx, types, list(fragment.attrs))


async def _everywhere(
    request: Request, op: str, items: Items, make: Make, describe: Describe
) -> list[tuple[str, WriteOutcome | Exception]]:
    """The batch run locally and, for the Entities registered sources take, by those
    sources (clause 4.3.6.3): one request per source with the parts it takes."""
    body, contexts = items
    described = []
    for item, ctx in zip(body, contexts, strict=True):
        if isinstance(ctx, CityOSError):
            continue
        try:
            described.append(describe(item, ctx))
        except CityOSError:
            continue  # reported by the local run
    plan = await distributed.plan_batch(request, op, described) if described else None
    if plan is None:
        return await _run(request, _plan(body, contexts, make))
    local_items = [
        (item, ctx, plan.kept.get(d.entity_id))
        for d, (item, ctx) in zip(described, _valid(body, contexts), strict=True)
        if d.entity_id in plan.kept
    ]
    planned: list[Planned] = [make(item, ctx, kept) for item, ctx, kept in local_items]
    local, failures = await asyncio.gather(
        _run(request, planned), plan.forward("/entityOperations/" + op.removesuffix("Batch"))
    )
    results = {i: r for i, r in local}
    out: list[tuple[str, WriteOutcome | Exception]] = []
    for d in described:
        failed = failures.get(d.entity_id)
        outcome = results.get(d.entity_id, _FORWARDED)
        out.append((d.entity_id, distributed.SourceError(failed[0]) if failed else outcome))
    return out


_FORWARDED = WriteOutcome(None, None, "forwarded")


def _valid(body: list[Any], contexts: list[CompiledContext | CityOSError]) -> list[tuple[Any, Any]]:
    return [(i, c) for i, c in zip(body, contexts, strict=True) if not isinstance(c, CityOSError)]


def _plan(
    body: list[Any],
    contexts: list[CompiledContext | CityOSError],
    make: Make,
) -> list[Planned]:
    planned: list[Planned] = []
    for item, ctx in zip(body, contexts, strict=True):
        entity_id = str(item.get("id", "")) if isinstance(item, dict) else str(item)
        if isinstance(ctx, CityOSError):
            planned.append((entity_id, ctx))
            continue
        try:
            planned.append(make(item, ctx, None))
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

    def make(item: Any, ctx: CompiledContext, kept: Kept = None) -> tuple[str, Change]:
        entity = _cut_entity(parse_entity(item, ctx, now), kept)
        return entity["id"], changes.create(entity)

    results = await _everywhere(request, "createBatch", (body, contexts), make, _describe_entity)
    created = [i for i, r in results if not isinstance(r, Exception)]
    return _result(results, 201, created)


async def batch_upsert(request: Request) -> Response:
    body, contexts = await _batch_body(request)
    options = parse_options(request.query_params, frozenset({"replace", "update"}))
    if {"replace", "update"} <= options:
        raise BadRequestData("options=replace and options=update cannot be used together")
    now = now_iso()
    replace_all = "update" not in options

    def make(item: Any, ctx: CompiledContext, kept: Kept = None) -> tuple[str, Change]:
        entity = _cut_entity(parse_entity(item, ctx, now), kept)
        return entity["id"], changes.upsert(entity, replace_all)

    results = await _everywhere(request, "upsertBatch", (body, contexts), make, _describe_entity)
    created = [i for i, r in results if isinstance(r, WriteOutcome) and r.result == "created"]
    if any(isinstance(r, Exception) for _, r in results):
        return _result(results, 201, created)
    return _result(results, 201, created) if created else Response(status_code=204)


async def batch_update(request: Request) -> Response:
    """Batch update (clause 5.6.9): attributes are appended, kept under noOverwrite."""
    body, contexts = await _batch_body(request)
    no_overwrite = "noOverwrite" in parse_options(request.query_params, frozenset({"noOverwrite"}))
    now = now_iso()

    def make(item: Any, ctx: CompiledContext, kept: Kept = None) -> tuple[str, Change]:
        fragment = _cut(changes.fragment_from_body(item, check_uri(item.get("id")), ctx, now), kept)
        return fragment.entity_id, changes.append(fragment, no_overwrite)

    results = await _everywhere(request, "updateBatch", (body, contexts), make, _describe_fragment)
    return _result([(i, _partial_as_error(r)) for i, r in results], 204, None)


def _partial_as_error(outcome: WriteOutcome | Exception) -> WriteOutcome | Exception:
    """An Entity some of whose attributes were kept (noOverwrite) is reported among the
    errors of the 207, though what could be appended was (clause 5.6.9)."""
    if isinstance(outcome, WriteOutcome) and getattr(outcome.result, "not_updated", None):
        names = ", ".join(n for n, _ in outcome.result.not_updated)
        reason = outcome.result.not_updated[0][1]
        return BadRequestData(f"Attributes were not updated: {names} ({reason})")
    return outcome


async def batch_merge(request: Request) -> Response:
    body, contexts = await _batch_body(request)
    now = now_iso()

    def make(item: Any, ctx: CompiledContext, kept: Kept = None) -> tuple[str, Change]:
        fragment = _cut(changes.fragment_from_body(item, check_uri(item.get("id")), ctx, now), kept)
        return fragment.entity_id, changes.merge(fragment)

    results = await _everywhere(request, "mergeBatch", (body, contexts), make, _describe_fragment)
    return _result(results, 204, None)


async def batch_delete(request: Request) -> Response:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, list) or not body:
        raise BadRequestData("A batch delete needs a non-empty JSON array of Entity ids")

    def make(item: Any, ctx: CompiledContext, kept: Kept = None) -> tuple[str, Change]:
        entity_id = check_uri(item)
        return entity_id, changes.delete(entity_id)

    def describe(item: Any, ctx: CompiledContext) -> distributed.BatchItem:
        return distributed.BatchItem(check_uri(item), item, None, None, None)

    contexts: list[CompiledContext | CityOSError] = [svc.contexts.default] * len(body)
    results = await _everywhere(request, "deleteBatch", (body, contexts), make, describe)
    return _result(results, 204, None)


async def batch_query(request: Request) -> Response:
    """POST /entityOperations/query (clause 5.7.2 with a Query data type, clause 5.2.23)."""
    http.check_content_type(request)
    svc = services(request)
    accept = http.negotiate(request, allow_geo=True)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict) or body.get("type") != "Query":
        raise BadRequestData("The body must be a Query object with type Query")
    rctx = await http.request_context(
        request, svc.contexts, body, accept=accept, link_for_query=True
    )
    projection = parse_projection(
        {k: body[k] for k in ("attrs", "pick", "omit") if k in body}, rctx.compiled
    )
    tenant = http.tenant_of(request)
    paging = parse_paging(request.query_params, svc.settings.default_limit, svc.settings.max_limit)
    query = _query_from_body(body, rctx.compiled, tenant, projection, paging)
    params = {
        **request.query_params,
        **{k: str(body[k]) for k in ("join", "joinLevel", "lang") if k in body},
    }
    view = View(rctx, params, projection, svc.store, tenant)
    targets = await distributed.read_plan(
        request, ("queryBatch", "queryEntity"), None, _any_type(query), projection.attrs
    )
    if targets:  # clause 5.7.2.4, as for GET /entities
        sel = distributed.Selection(_as_params(body), projection.attrs, rctx)
        found, total, failed = await distributed.query_everywhere(
            request,
            targets,
            _local_pages(svc.store, query),
            sel,
            (paging.offset, paging.limit),
            True,
        )
        headers = distributed.warning_headers(failed)
        if paging.count:
            headers["NGSILD-Results-Count"] = str(total)
        return await render_entities(found, view, headers=headers)
    await http.require_tenant(request, await svc.store.tenant_exists(tenant))
    pages, refused = [], []
    for q in query:
        try:
            pages.append(await svc.store.query_entities(q))
        except (Forbidden, Unauthorized) as exc:
            # EntitySelectors are alternatives: one the caller may not read adds nothing,
            # but a query of nothing readable is refused as a GET would be.
            refused.append(exc)
    if refused and not pages:
        raise refused[0]
    entities = _merge_pages(pages, paging.offset, paging.limit)
    count = sum(p.count or 0 for p in pages)
    return await render_entities(
        entities, view, headers={"NGSILD-Results-Count": str(count)} if paging.count else None
    )


def _any_type(queries: list[EntityQuery]) -> TypeTest | None:
    """Whether a registered type is one some EntitySelector asks for (None: any type)."""
    tests = [type_test(q.types) for q in queries]
    if any(t is None for t in tests):
        return None
    return lambda name: any(t(name) for t in tests if t is not None)


def _as_params(body: dict[str, Any]) -> dict[str, str]:
    """A Query body (clause 5.2.23) as the GET parameters the sources are asked."""
    selectors = [s for s in body.get("entities") or [] if isinstance(s, dict)]
    params: dict[str, str] = {}
    for key in ("type", "id"):
        values = [str(s[key]) for s in selectors if key in s]
        if values and len(values) == len(selectors):
            params[key] = ",".join(dict.fromkeys(values))
    patterns = {str(s["idPattern"]) for s in selectors if "idPattern" in s}
    if len(patterns) == 1 and len(selectors) == 1:
        params["idPattern"] = patterns.pop()
    for key in ("q", "scopeQ"):
        if isinstance(body.get(key), str):
            params[key] = body[key]
    geo_q = body.get("geoQ")
    if isinstance(geo_q, dict):
        for key in ("georel", "geometry", "geoproperty"):
            if key in geo_q:
                params[key] = str(geo_q[key])
        if "coordinates" in geo_q:
            coords = geo_q["coordinates"]
            params["coordinates"] = (
                coords if isinstance(coords, str) else orjson.dumps(coords).decode()
            )
    return params


def _local_pages(store: Any, queries: list[EntityQuery]) -> LocalQuery:
    async def run(window: int) -> tuple[list[StoredEntity], int | None]:
        pages = [await local_window(store, q)(window) for q in queries]
        entities: dict[str, StoredEntity] = {}
        for found, _ in pages:
            for entity in found:
                entities.setdefault(entity["id"], entity)
        return list(entities.values())[:window], sum(count or 0 for _, count in pages)

    return run


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
