"""The @context registry API, /jsonldContexts (GS CIM 009 V1.8.1 clauses 5.13, 6.29-6.30)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import services
from cityos.api.params import parse_flag
from cityos.errors import BadRequestData, InvalidRequest

__all__ = ["ROUTES"]

_KINDS = ("Hosted", "Cached", "ImplicitlyCreated")


async def list_contexts(request: Request) -> Response:
    http.negotiate(request)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in _KINDS:
        raise BadRequestData(f"kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    entries = services(request).contexts.entries(kind)
    if parse_flag(request.query_params, "details"):
        return http.json_response([e.details() for e in entries], None)
    return http.json_response([e.url for e in entries], None)


async def add_context(request: Request) -> Response:
    http.check_content_type(request)
    svc = services(request)
    body = await http.read_json(request, svc.settings.max_body_bytes)
    if not isinstance(body, dict) or "@context" not in body:
        raise InvalidRequest("The body must be a JSON object with an @context member")
    document = body["@context"]
    if not isinstance(document, dict | list):
        raise BadRequestData("The @context to host must be an object or an array")
    entry = await svc.contexts.add_hosted(document)
    return Response(
        status_code=201, headers={"Location": f"/ngsi-ld/v1/jsonldContexts/{entry.local_id}"}
    )


async def retrieve_context(request: Request) -> Response:
    accept = http.negotiate(request)
    registry = services(request).contexts
    entry = registry.find(unquote(request.path_params["context_id"]))
    if parse_flag(request.query_params, "details"):
        return http.json_response(entry.details(), None)
    return Response(_dump({"@context": registry.builtin_document(entry)}), media_type=accept)


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


async def delete_context(request: Request) -> Response:
    reload = parse_flag(request.query_params, "reload")
    await services(request).contexts.delete(unquote(request.path_params["context_id"]), reload)
    return Response(status_code=204)


ROUTES: list[tuple[str, Any, list[str], frozenset[str]]] = [
    ("/jsonldContexts", list_contexts, ["GET"], frozenset({"details", "kind"})),
    ("/jsonldContexts", add_context, ["POST"], frozenset()),
    ("/jsonldContexts/{context_id:path}", retrieve_context, ["GET"], frozenset({"details"})),
    ("/jsonldContexts/{context_id:path}", delete_context, ["DELETE"], frozenset({"reload"})),
]
