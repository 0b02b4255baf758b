"""The one place errors become HTTP responses: RFC 9457 ProblemDetails (GS CIM 009 clause 5.5.2).

Any exception that is not a :class:`~cityos.errors.CityOSError` becomes a 500 InternalError
with a safe message; its traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cityos.errors import (
    CityOSError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ResourceNotFound,
)

__all__ = ["problem_body", "problem_response", "render_exception"]

log = logging.getLogger("cityos.api")


def problem_body(exc: CityOSError) -> dict[str, Any]:
    return {
        "type": exc.problem_type,
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
    }


def problem_response(exc: CityOSError, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(problem_body(exc)),
        status_code=exc.status,
        media_type="application/json",
        headers=headers,
    )


async def render_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CityOSError):
        return problem_response(exc)
    if isinstance(exc, HTTPException):
        return problem_response(_from_http(request, exc))
    log.exception("Unhandled error on %s %s", request.method, request.url.path)
    return problem_response(
        InternalError("An internal error occurred; the server log has the details")
    )


def _from_http(request: Request, exc: HTTPException) -> CityOSError:
    if exc.status_code == 404:
        return ResourceNotFound(f"No resource is at {request.url.path}")
    if exc.status_code == 405:
        return MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    return InvalidRequest(str(exc.detail))
