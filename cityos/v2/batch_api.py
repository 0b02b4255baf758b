"""Handlers of /v2/op/update, /v2/op/query and /v2/op/notify (FIWARE-NGSI v2, "Batch
Operations").

``op/update`` runs one change per Entity in one store job (``write_many``): each Entity
is written or refused on its own. Every Entity of the body is parsed before anything is
written, so a malformed body changes nothing. ``actionType``:

    append        create the Entity, or set its attributes (POST /attrs)
    appendStrict  the same, refusing attributes that exist (POST /attrs?options=append)
    update        set existing attributes of an existing Entity (PATCH /attrs)
    replace       replace all attributes of an existing Entity (PUT /attrs)
    delete        delete the attributes named, or the Entity when none is named

If every Entity fails, the first error is the answer; if some fail, 422 PartialUpdate
names them. ``op/notify`` takes a notification (``subscriptionId``, ``data``) and appends
its Entities, which is how Orion federates one broker to another.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityos.core.model import now_iso
from cityos.errors import BadRequestData
from cityos.storage.base import Change, WriteOutcome
from cityos.v2 import changes
from cityos.v2.entities import parse_attrs, parse_entity, render_entity
from cityos.v2.entities_api import view_of
from cityos.v2.errors import PartialUpdate, Unprocessable
from cityos.v2.fields import check_attr_name, check_field
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

__all__ = ["notify", "query", "update"]

ACTIONS = ("append", "appendStrict", "update", "delete", "replace")


def _item(item: Any) -> tuple[str, dict[str, Any]]:
    """The v2 id of a batch Entity, and its attributes."""
    if not isinstance(item, dict) or "id" not in item:
        raise BadRequestData("Each Entity of a batch must be an object with an id")
    attrs = {k: v for k, v in item.items() if k not in ("id", "type")}
    return check_field(item["id"], "Entity id"), attrs


class _Batch:
    """Builds the change of each Entity of an op/update body."""

    def __init__(self, request: Request, names: Names, key_values: bool) -> None:
        header = request.headers.get("fiware-servicepath")
        self.names, self.key_values, self.now = names, key_values, now_iso()
        self.scope, self.check_scope = write_scope(request), bool(header and header.strip())

    def target(self, v2_id: str, type_name: Any) -> changes.Target:
        types: tuple[str, ...] = ()
        if type_name is not None:
            types = (self.names.entity_type(check_field(type_name, "Entity type")),)
        return changes.Target(v2_id, types, self.scope, self.check_scope)

    def change(self, action: str, item: Any) -> tuple[str, Change]:
        v2_id, body = _item(item)
        ld_id = self.names.ids.to_ld(v2_id)
        if action in ("append", "appendStrict"):  # creates the Entity: its type is not a filter
            entity = parse_entity(item, self.names, self.now, self.scope, self.key_values)
            strict, add_type = action == "appendStrict", "type" in item
            target = self.target(v2_id, None)
            return ld_id, changes.upsert(entity, target, strict, self.names, add_type)
        target = self.target(v2_id, item.get("type"))
        if action == "delete":
            iris = [self.names.expand(check_attr_name(n)) for n in body]
            if iris:
                return ld_id, changes.delete_attributes(target, iris, self.now, self.names)
            return ld_id, changes.delete_entity(target)
        attrs = parse_attrs(body, self.names, self.now, self.key_values)
        if action == "update":
            write = changes.AttrWrite(attrs, self.now, must_exist=True)
            return ld_id, changes.set_attributes(target, write, self.names)
        return ld_id, changes.replace_all(target, attrs, self.now)


def _failure(outcome: WriteOutcome | Exception) -> Exception | None:
    if isinstance(outcome, Exception):
        return outcome
    if isinstance(outcome.result, changes.Refused):
        return Unprocessable(outcome.result.detail)
    return None


def _outcome(items: list[Any], outcomes: list[WriteOutcome | Exception]) -> Response:
    failed = [(item, _failure(o)) for item, o in zip(items, outcomes, strict=True)]
    failed = [(item, exc) for item, exc in failed if exc is not None]
    if not failed:
        return Response(status_code=204)
    if len(failed) == len(items):
        raise failed[0][1]  # type: ignore[misc]
    listed = ", ".join(f"{item.get('id')}: {exc}" for item, exc in failed)
    raise PartialUpdate(f"Some of the Entities were not updated: {listed}")


async def _apply(request: Request, action: str, items: Any, key_values: bool) -> Response:
    if not isinstance(items, list):
        raise BadRequestData("entities must be a JSON array")
    batch = _Batch(request, await names_of(request), key_values)
    jobs = [batch.change(action, item) for item in items]
    outcomes = await services(request).store.write_many(tenant_of(request), jobs)
    return _outcome(items, outcomes)


async def update(request: Request) -> Response:
    body = await read_body(request)
    options = options_of(request, frozenset({"keyValues"}))
    if not isinstance(body, dict) or body.get("actionType") not in ACTIONS:
        raise BadRequestData(f"actionType must be one of {', '.join(ACTIONS)}")
    return await _apply(request, body["actionType"], body.get("entities"), "keyValues" in options)


async def notify(request: Request) -> Response:
    body = await read_body(request)
    options = options_of(request, frozenset({"keyValues"}))
    if not isinstance(body, dict) or "data" not in body:
        raise BadRequestData("A notification needs subscriptionId and data")
    return await _apply(request, "append", body["data"], "keyValues" in options)


def _spec(item: Any) -> EntitySpec:
    if not isinstance(item, dict) or set(item) - {"id", "idPattern", "type", "typePattern"}:
        raise BadRequestData("Each entities item has only id or idPattern, type or typePattern")
    return EntitySpec(
        item.get("id"), item.get("idPattern"), item.get("type"), item.get("typePattern")
    )


def _filters(expression: Any) -> Filters:
    if not isinstance(expression, dict):
        raise BadRequestData("expression must be a JSON object")
    return Filters(*(expression.get(k) for k in ("q", "mq", "georel", "geometry", "coords")))


def _names_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequestData(f"{what} must be an array of strings")
    return value or None


async def query(request: Request) -> Response:
    accept(request)
    body = await read_body(request)
    if not isinstance(body, dict):
        raise BadRequestData("The query must be a JSON object")
    options = options_of(request, frozenset({"count", "keyValues", "values", "unique"}))
    names, svc, params = await names_of(request), services(request), request.query_params
    specs = [_spec(i) for i in body.get("entities") or []]
    paging = parse_paging(params.get("limit"), params.get("offset"), svc.settings.max_limit)
    order = parse_order_by(params.get("orderBy") or body.get("orderBy"), names)
    req = request_of(tenant_of(request), read_filter(request), order, paging, "count" in options)
    selection = await build_selection(
        svc.store, names, specs, _filters(body.get("expression", {})), req
    )
    page = await run_selection(svc.store, selection)
    view = view_of(
        names,
        options,
        _names_list(body.get("attrs"), "attrs"),
        _names_list(body.get("metadata"), "metadata"),
    )
    headers = None if page.count is None else {"Fiware-Total-Count": str(page.count)}
    return json([render_entity(e, view) for e in page.entities], headers=headers)
