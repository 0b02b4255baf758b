"""Handlers of /v2/entities/{id}/attrs/{attr} and /v2/entities/{id}/attrs/{attr}/value.

``PUT .../value`` takes ``application/json`` (any JSON value) or ``text/plain``, read as
Orion reads it: ``"quoted"`` is a string, ``true``/``false`` a boolean, ``null`` null,
anything else must be a number. The attribute keeps its v2 type and its metadata.
``GET .../value`` answers an object or array as JSON, and a string, number, boolean or
null as ``text/plain`` (a string in quotes) or, if the client accepts only JSON, as JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.core.model import StoredAttribute, now_iso
from cityos.errors import BadRequestData, ResourceNotFound
from cityos.v2 import changes
from cityos.v2.attributes import parse_attribute, parse_value, render_attribute, v2_type_and_value
from cityos.v2.entities import default_instance
from cityos.v2.entities_api import read_entity, target_of
from cityos.v2.fields import check_field
from cityos.v2.http import accept, json, names_of, read_body, services, tenant_of
from cityos.v2.names import Names

__all__ = [
    "delete_attribute",
    "replace_attribute",
    "retrieve_attribute",
    "retrieve_value",
    "update_value",
]

_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?$")
_NO_ATTRIBUTE = "The entity does not have such attribute"


def _attr_iri(request: Request, names: Names) -> str:
    return names.expand(check_field(request.path_params["attr"], "Attribute name"))


async def _instance(request: Request, names: Names) -> StoredAttribute:
    entity = await read_entity(request, names)
    inst = default_instance(entity.get("attrs", {}).get(_attr_iri(request, names), []))
    if inst is None:
        raise ResourceNotFound(_NO_ATTRIBUTE)
    return inst


def _metadata_param(request: Request) -> list[str] | None:
    raw = request.query_params.get("metadata")
    return None if raw is None else [m.strip() for m in raw.split(",") if m.strip()]


async def retrieve_attribute(request: Request) -> Response:
    accept(request)
    names = await names_of(request)
    inst = await _instance(request, names)
    return json(render_attribute(inst, names, _metadata_param(request)))


async def _write(request: Request, names: Names, change: Any) -> Response:
    target = target_of(request, names)
    await services(request).store.write(tenant_of(request), names.ids.to_ld(target.v2_id), change)
    return Response(status_code=204)


async def replace_attribute(request: Request) -> Response:
    body = await read_body(request)
    names = await names_of(request)
    now = now_iso()
    inst = parse_attribute(request.path_params["attr"], body, names, now)
    change = changes.replace_attribute(
        target_of(request, names), _attr_iri(request, names), inst, now
    )
    return await _write(request, names, change)


async def delete_attribute(request: Request) -> Response:
    names = await names_of(request)
    change = changes.delete_attribute(
        target_of(request, names), _attr_iri(request, names), now_iso()
    )
    return await _write(request, names, change)


async def retrieve_value(request: Request) -> Response:
    names = await names_of(request)
    inst = await _instance(request, names)
    _, value = v2_type_and_value(inst, names)
    media = accept(request, ("application/json", "text/plain"))
    if not isinstance(value, dict | list):
        media = accept(request, ("text/plain", "application/json"))
    return Response(orjson.dumps(value), media_type=media)


def text_value(text: str) -> Any:
    """A text/plain attribute value, as Orion reads it."""
    stripped = text.strip()
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        return stripped[1:-1]
    if stripped in ("true", "false"):
        return stripped == "true"
    if stripped == "null":
        return None
    if _NUMBER.match(stripped):
        number = float(stripped)
        return int(number) if number.is_integer() and "." not in stripped else number
    raise BadRequestData(
        f"Value {stripped[:60]!r} is not a quoted string, a number, true, false or null"
    )


async def update_value(request: Request) -> Response:
    body = await read_body(request, ("application/json", "text/plain"))
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    value = text_value(body) if media == "text/plain" else body
    names = await names_of(request)
    now = now_iso()

    def make(old: StoredAttribute) -> StoredAttribute:
        v2_type, _ = v2_type_and_value(old, names)
        return parse_value(v2_type, value, names, now)

    change = changes.set_value(target_of(request, names), _attr_iri(request, names), make, now)
    return await _write(request, names, change)
