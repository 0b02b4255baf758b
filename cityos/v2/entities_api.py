"""Handlers of /v2/entities, /v2/entities/{id} and /v2/entities/{id}/attrs.

Each parses the request, builds a change (``cityos.v2.changes``) or a selection
(``cityos.v2.query``), runs it on the store and renders (``cityos.v2.entities``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from cityos.core import changes as ld_changes
from cityos.core.model import StoredEntity, now_iso
from cityos.errors import ResourceNotFound
from cityos.v2 import changes
from cityos.v2.entities import MODES, View, parse_attrs, parse_entity, render_entity, v2_type
from cityos.v2.errors import Unprocessable
from cityos.v2.fields import check_field
from cityos.v2.http import (
    accept,
    json,
    names_of,
    options_of,
    read_body,
    read_filter,
    services,
    tenant_of,
    write_scope,
)
from cityos.v2.names import Names
from cityos.v2.query import (
    EntitySpec,
    Filters,
    build_selection,
    parse_order_by,
    parse_paging,
    request_of,
    run_selection,
)

__all__ = [
    "append_attrs",
    "create_entity",
    "delete_entity",
    "list_entities",
    "read_entity",
    "replace_attrs",
    "retrieve_attrs",
    "retrieve_entity",
    "target_of",
    "update_attrs",
    "view_of",
]

_OVERRIDE = "overrideMetadata"
_READ_OPTIONS = frozenset({"keyValues", "values", "unique", "skipForwarding"})


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def view_of(
    names: Names, options: set[str], attrs: Any, metadata: Any, with_id: bool = True
) -> View:
    mode = next((m for m in MODES[1:] if m in options), "normalized")
    return View(names, mode, attrs, metadata, with_id)


def _id_and_types(request: Request, names: Names, entity_id: str | None) -> changes.Target:
    v2_id = check_field(entity_id or request.path_params["entity_id"], "Entity id")
    type_param = request.query_params.get("type")
    types = (names.entity_type(check_field(type_param, "Entity type")),) if type_param else ()
    return changes.Target(v2_id, types)


def target_of(request: Request, names: Names, entity_id: str | None = None) -> changes.Target:
    """The Entity a write addresses: the id, ``type`` and the service path given."""
    target = _id_and_types(request, names, entity_id)
    header = request.headers.get("fiware-servicepath")
    return replace(target, scope=write_scope(request), check_scope=bool(header and header.strip()))


async def read_entity(request: Request, names: Names) -> StoredEntity:
    """The Entity a read addresses, if it is of ``type`` and in the service paths read."""
    target = _id_and_types(request, names, None)
    paths = read_filter(request)
    try:
        entity = await services(request).store.get_entity(
            tenant_of(request), names.ids.to_ld(target.v2_id)
        )
    except ResourceNotFound:
        raise ResourceNotFound(changes.NOT_FOUND) from None
    if not target.matches(entity) or not paths.matches(entity):
        raise ResourceNotFound(changes.NOT_FOUND)
    return entity


async def list_entities(request: Request) -> Response:
    accept(request)
    params, svc = request.query_params, services(request)
    names = await names_of(request)
    options = options_of(request, _READ_OPTIONS | {"count"})
    spec = EntitySpec(
        params.get("id"), params.get("idPattern"), params.get("type"), params.get("typePattern")
    )
    filters = Filters(
        params.get("q"),
        params.get("mq"),
        params.get("georel"),
        params.get("geometry"),
        params.get("coords"),
    )
    paging = parse_paging(params.get("limit"), params.get("offset"), svc.settings.max_limit)
    req = request_of(
        tenant_of(request),
        read_filter(request),
        parse_order_by(params.get("orderBy"), names),
        paging,
        "count" in options,
    )
    selection = await build_selection(svc.store, names, [spec], filters, req)
    page = await run_selection(svc.store, selection)
    view = view_of(names, options, _csv(params.get("attrs")), _csv(params.get("metadata")))
    headers = None if page.count is None else {"Fiware-Total-Count": str(page.count)}
    return json([render_entity(e, view) for e in page.entities], headers=headers)


def _location(entity_id: str, entity_type: str) -> dict[str, str]:
    return {
        "Location": f"/v2/entities/{quote(entity_id, safe=':')}?type={quote(entity_type, safe=':')}"
    }


async def create_entity(request: Request) -> Response:
    body = await read_body(request)
    options = options_of(request, frozenset({"keyValues", "upsert"}))
    names = await names_of(request)
    entity = parse_entity(body, names, now_iso(), write_scope(request), "keyValues" in options)
    v2_id, headers = body["id"], _location(body["id"], v2_type(entity, names))
    store, tenant = services(request).store, tenant_of(request)
    if "upsert" not in options:
        await store.write(tenant, entity["id"], ld_changes.create(entity))
        return Response(status_code=201, headers=headers)
    target = target_of(request, names, v2_id)
    change = changes.upsert(entity, target, False, names, add_type="type" in body)
    outcome = await store.write(tenant, entity["id"], change)
    return Response(status_code=201 if outcome.result == "created" else 204, headers=headers)


async def retrieve_entity(request: Request) -> Response:
    return await _retrieve(request, with_id=True)


async def retrieve_attrs(request: Request) -> Response:
    return await _retrieve(request, with_id=False)


async def _retrieve(request: Request, with_id: bool) -> Response:
    accept(request)
    names = await names_of(request)
    options = options_of(request, _READ_OPTIONS)
    entity = await read_entity(request, names)
    params = request.query_params
    view = view_of(names, options, _csv(params.get("attrs")), _csv(params.get("metadata")), with_id)
    return json(render_entity(entity, view))


async def delete_entity(request: Request) -> Response:
    names = await names_of(request)
    target = target_of(request, names)
    change = changes.delete_entity(target)
    await services(request).store.write(tenant_of(request), names.ids.to_ld(target.v2_id), change)
    return Response(status_code=204)


async def _write_attrs(
    request: Request, allowed: frozenset[str]
) -> tuple[Any, Names, changes.Target, set[str]]:
    body = await read_body(request)
    options = options_of(request, allowed | {"keyValues"})
    names = await names_of(request)
    return body, names, target_of(request, names), options


async def _run(request: Request, names: Names, target: changes.Target, change: Any) -> Response:
    outcome = await services(request).store.write(
        tenant_of(request), names.ids.to_ld(target.v2_id), change
    )
    refused(outcome.result)
    return Response(status_code=204)


def refused(result: Any) -> None:
    """Orion's 422 for what a write left out, once the rest is written."""
    if isinstance(result, changes.Refused):
        raise Unprocessable(result.detail)


async def _set_attributes(request: Request, must_exist: bool) -> Response:
    allowed = frozenset({_OVERRIDE} if must_exist else {_OVERRIDE, "append"})
    body, names, target, options = await _write_attrs(request, allowed)
    now = now_iso()
    attrs = parse_attrs(body, names, now, "keyValues" in options)
    write = changes.AttrWrite(attrs, now, "append" in options, must_exist, _OVERRIDE in options)
    return await _run(request, names, target, changes.set_attributes(target, write, names))


async def append_attrs(request: Request) -> Response:
    return await _set_attributes(request, must_exist=False)


async def update_attrs(request: Request) -> Response:
    return await _set_attributes(request, must_exist=True)


async def replace_attrs(request: Request) -> Response:
    body, names, target, options = await _write_attrs(request, frozenset())
    now = now_iso()
    attrs = parse_attrs(body, names, now, "keyValues" in options)
    return await _run(request, names, target, changes.replace_all(target, attrs, now))
