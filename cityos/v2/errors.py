"""Errors of the NGSI-v2 API in Orion's format (FIWARE-NGSI v2 spec, "Error Responses").

The body is ``{"error": <name>, "description": <text>}``. ``core`` and ``storage`` raise the
typed NGSI-LD exceptions of :mod:`cityos.errors`; :func:`orion_error` maps each to Orion's
status and name, so a v2 client never sees a ProblemDetails body::

    CityOSError (cityos.errors)       -> Orion
     ├── InvalidRequest, BadRequestData   400 BadRequest
     │    └── ParseError                  400 ParseError (the body is not JSON)
     ├── ResourceNotFound                 404 NotFound
     ├── AlreadyExists                    422 Unprocessable ("Already Exists")
     ├── Unprocessable                    422 Unprocessable
     │    └── PartialUpdate               422 PartialUpdate (a batch written in part)
     ├── Ambiguous                        409 TooManyResults
     ├── TooManyResults (limit too big)   400 BadRequest
     ├── MethodNotAllowed                 405 MethodNotAllowed
     ├── NotAcceptable                    406 NotAcceptable
     ├── LengthRequired                   411 ContentLengthRequired
     ├── PayloadTooLarge                  413 RequestEntityTooLarge
     ├── UnsupportedMediaType             415 UnsupportedMediaType
     ├── Unauthorized                     401 Unauthorized (authentication on)
     ├── Forbidden                        403 Forbidden (a policy denies it)
     ├── NotImplementedYet                501 NotImplemented
     └── anything else                    500 InternalServerError
"""

from __future__ import annotations

import logging

import orjson
from starlette.responses import Response

from cityos.errors import (
    AlreadyExists,
    CityOSError,
    Forbidden,
    InvalidRequest,
    LengthRequired,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    ResourceNotFound,
    TooManyResults,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = [
    "Ambiguous",
    "ParseError",
    "PartialUpdate",
    "Unprocessable",
    "orion_error",
    "orion_response",
]

log = logging.getLogger("cityos.v2")


class ParseError(InvalidRequest):
    """The request body is not valid JSON (Orion's ``ParseError``, 400)."""


class Unprocessable(CityOSError):
    """The request is valid but conflicts with the current state (Orion's 422)."""

    title = "Unprocessable"
    status = 422


class PartialUpdate(Unprocessable):
    """Some Entities of a batch were written and some were not (Orion's 422 PartialUpdate)."""


class Ambiguous(CityOSError):
    """The request may refer to several resources (Orion's 409 ``TooManyResults``)."""

    title = "Too many results"
    status = 409


_BY_CLASS: list[tuple[type[CityOSError], int, str]] = [
    (ParseError, 400, "ParseError"),
    (ResourceNotFound, 404, "NotFound"),
    (AlreadyExists, 422, "Unprocessable"),
    (PartialUpdate, 422, "PartialUpdate"),
    (Unprocessable, 422, "Unprocessable"),
    (Ambiguous, 409, "TooManyResults"),
    (TooManyResults, 400, "BadRequest"),
    (MethodNotAllowed, 405, "MethodNotAllowed"),
    (NotAcceptable, 406, "NotAcceptable"),
    (LengthRequired, 411, "ContentLengthRequired"),
    (PayloadTooLarge, 413, "RequestEntityTooLarge"),
    (UnsupportedMediaType, 415, "UnsupportedMediaType"),
    (Unauthorized, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
]


def orion_error(exc: Exception) -> tuple[int, str, str]:
    """(status, error, description) of an exception, as Orion reports it."""
    if not isinstance(exc, CityOSError):
        return 500, "InternalServerError", "An internal error occurred; the server log has details"
    for cls, status, name in _BY_CLASS:
        if isinstance(exc, cls):
            description = "Already Exists" if isinstance(exc, AlreadyExists) else exc.detail
            return status, name, description
    if exc.status == 400:
        return 400, "BadRequest", exc.detail
    if exc.status == 501:
        return 501, "NotImplemented", exc.detail
    return exc.status, "InternalServerError" if exc.status >= 500 else "BadRequest", exc.detail


def orion_response(exc: Exception, method: str = "", path: str = "") -> Response:
    if not isinstance(exc, CityOSError):
        log.exception("Unhandled error on %s %s", method, path, exc_info=exc)
    status, name, description = orion_error(exc)
    body = orjson.dumps({"error": name, "description": description})
    return Response(body, status_code=status, media_type="application/json")
