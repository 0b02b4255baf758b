"""Entity queries from request parameters, and rendering of Entity lists (clause 5.7, 6.3.15).

Used by ``GET /entities``, ``GET /entities/{id}`` and ``POST /entityOperations/query``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson
from starlette.responses import Response

from cityos.api import http
from cityos.api.params import parse_csv, parse_ids, parse_paging, render_options
from cityos.config import Settings
from cityos.core.entities import check_name
from cityos.core.federation import TypeTest
from cityos.core.geo import DEFAULT_GEOPROPERTY, GeoQuery, parse_geoq, parse_geoq_object
from cityos.core.jsonld import CompiledContext
from cityos.core.linked import (
    Shape,
    TreeRenderer,
    collect_linked,
    parse_join,
    parse_shape,
    render_tree,
)
from cityos.core.model import StoredEntity
from cityos.core.query.ast import TypeNode
from cityos.core.query.evaluate import match_types
from cityos.core.query.orderby import expand_order, parse_order_by
from cityos.core.query.q import expand_q, parse_q
from cityos.core.query.scope import parse_scope_q
from cityos.core.query.typeexpr import expand_types
from cityos.core.query.typeexpr import parse_types as parse_type_expression
from cityos.errors import BadRequestData
from cityos.storage.base import EntityQuery, Store

LocalQuery = Callable[[int], Awaitable[tuple[list[StoredEntity], int | None]]]

__all__ = [
    "ProjectionSpec",
    "View",
    "entity_query",
    "entity_query_from",
    "local_window",
    "parse_projection",
    "render_entities",
    "type_test",
]

_ENTITY_MEMBERS = frozenset({"id", "type", "scope", "@context", "createdAt", "modifiedAt"})


@dataclass(frozen=True, slots=True)
class ProjectionSpec:
    """What to keep of each Entity: ``attrs`` (expanded) and ``pick``/``omit`` (clause 4.21)."""

    attrs: list[str] | None = None
    shape: Shape = Shape()


def parse_projection(params: Mapping[str, Any], ctx: CompiledContext) -> ProjectionSpec:
    attrs = _names(params.get("attrs"))
    if attrs is not None and any(a in _ENTITY_MEMBERS for a in attrs):
        raise BadRequestData("attrs lists Attributes; id, type and scope are not Attributes")
    shape = parse_shape(params)
    expanded = [ctx.expand(a) for a in attrs] if attrs is not None else None
    return ProjectionSpec(attrs=expanded, shape=shape)


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else parse_csv(value)
    if not items or not all(isinstance(i, str) and i for i in items):
        raise BadRequestData(f"Invalid attribute list {value!r}")
    return [check_name(i) for i in items]


def entity_query(
    params: Mapping[str, str], ctx: CompiledContext, tenant: str, settings: Settings
) -> tuple[EntityQuery, ProjectionSpec]:
    """A GET /entities query (clause 6.4.3.2). One of type, attrs, q or geoQ is needed."""
    projection = parse_projection(params, ctx)
    # clause 6.4.3.2: type, attrs, q or geoQ must narrow the query; id alone does not.
    if not any(k in params for k in ("type", "attrs", "q", "georel", "local")):
        raise BadRequestData("A query needs at least one of type, attrs, q, a geoQ or local=true")
    geo = parse_geoq(
        params.get("georel"),
        params.get("geometry"),
        params.get("coordinates"),
        params.get("geoproperty"),
    )
    paging = parse_paging(params, settings.default_limit, settings.max_limit)
    return _build(params, ctx, tenant, geo, projection, paging), projection


def entity_query_from(
    params: Mapping[str, Any],
    ctx: CompiledContext,
    tenant: str,
    geo: GeoQuery | None,
    paging: Any,
) -> EntityQuery:
    """The Entity selection of a temporal query: the same parameters, no projection."""
    return _build(params, ctx, tenant, geo, ProjectionSpec(), paging)


def _build(
    params: Mapping[str, Any],
    ctx: CompiledContext,
    tenant: str,
    geo: GeoQuery | None,
    projection: ProjectionSpec,
    paging: Any,
) -> EntityQuery:
    id_pattern = params.get("idPattern")
    if id_pattern is not None:
        _check_regex(id_pattern)
    types = params.get("type")
    q = params.get("q")
    scope_q = params.get("scopeQ")
    return EntityQuery(
        tenant=tenant,
        ids=parse_ids(params)
        if isinstance(params.get("id"), str)
        else list(params.get("id") or []),
        id_pattern=id_pattern,
        types=expand_types(parse_type_expression(types), ctx.expand) if types else None,
        q=expand_q(parse_q(q), ctx.expand) if q else None,
        scope_q=parse_scope_q(scope_q) if scope_q else None,
        geo=geo,
        geoproperty=ctx.expand(geo.geoproperty or DEFAULT_GEOPROPERTY) if geo else None,
        attrs=projection.attrs or [],
        order_by=expand_order(parse_order_by(params["orderBy"]), ctx.expand)
        if params.get("orderBy")
        else (),
        limit=paging.limit,
        offset=paging.offset,
        count=paging.count,
    )


def type_test(types: TypeNode | None) -> TypeTest | None:
    """Whether a registered Entity type is one a query asks for (None: any type)."""
    if types is None:
        return None
    return lambda t: match_types({"type": [t]}, types)


def local_window(store: Store, query: EntityQuery) -> LocalQuery:
    """The local side of a distributed query: its first ``window`` Entities and count."""

    async def run(window: int) -> tuple[list[StoredEntity], int | None]:
        if not await store.tenant_exists(query.tenant):
            return [], 0
        page = await store.query_entities(replace(query, offset=0, limit=window, count=True))
        return page.entities, page.count

    return run


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BadRequestData(
            f"idPattern {pattern!r} is not a valid regular expression: {exc}"
        ) from exc


def geo_from_body(body: Mapping[str, Any]) -> GeoQuery | None:
    geo_q = body.get("geoQ")
    if geo_q is None:
        return None
    return parse_geoq_object(geo_q)


@dataclass(frozen=True, slots=True)
class View:
    """How a request wants Entities shown: its @context, parameters and projection."""

    rctx: http.RequestContext
    params: Mapping[str, str]
    projection: ProjectionSpec
    store: Store
    tenant: str


async def render_entities(
    entities: list[StoredEntity],
    view: View,
    single: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """Renders Entities with their representation, projection and linked Entities."""
    rctx, params, projection = view.rctx, view.params, view.projection
    opts = render_options(params, projection.attrs)
    join = None if rctx.accept == http.GEOJSON else parse_join(params)
    linked: dict[str, StoredEntity] = {}
    if join is not None:
        linked = await collect_linked(view.store, view.tenant, entities, join.level)
    renderer = TreeRenderer(rctx.compiled, opts, linked, join)
    rendered = render_tree(entities, renderer, projection.shape)
    if not single:  # pick/omit may leave nothing of an Entity; it is then not a result
        rendered = [r for r in rendered if r]
    if rctx.accept == http.GEOJSON:
        return _geojson(entities, rendered, rctx, params, single, headers)
    body: Any = rendered[0] if single and len(rendered) == 1 else rendered
    return http.json_response(body, rctx, headers=headers)


def _geojson(
    entities: list[StoredEntity],
    rendered: list[dict[str, Any]],
    rctx: http.RequestContext,
    params: Mapping[str, str],
    single: bool,
    headers: dict[str, str] | None,
) -> Response:
    """GeoJSON representation (clause 4.5.16): one Feature per Entity."""
    geometry_term = params.get("geometryProperty", DEFAULT_GEOPROPERTY)
    geometry_iri = rctx.compiled.expand(geometry_term)
    features = [_feature(e, r, geometry_iri) for e, r in zip(entities, rendered, strict=True)]
    body: Any = features[0] if single else {"type": "FeatureCollection", "features": features}
    body["@context"] = rctx.body_context()
    out_headers = dict(headers or {})
    return Response(orjson.dumps(body), media_type=http.GEOJSON, headers=out_headers)


def _feature(entity: StoredEntity, rendered: dict[str, Any], geometry_iri: str) -> dict[str, Any]:
    instances = entity.get("attrs", {}).get(geometry_iri) or []
    geometry = next((i["value"] for i in instances if i.get("type") == "GeoProperty"), None)
    properties = {k: v for k, v in rendered.items() if k != "id"}
    return {"id": entity["id"], "type": "Feature", "geometry": geometry, "properties": properties}
