"""Typed exceptions, one per NGSI-LD problem type (ETSI GS CIM 009, clause 5.5.2).

``core`` and ``storage`` raise these; only ``cityos.api.problems`` renders them as
RFC 9457 ProblemDetails. The hierarchy::

    CityOSError
     ├── InvalidRequest          400  the request itself is malformed (JSON, syntax, headers)
     ├── BadRequestData          400  well-formed request whose data is not acceptable
     ├── ResourceNotFound        404
     │    └── NonexistentTenant  404
     ├── AlreadyExists           409
     ├── Conflict                409
     ├── OperationNotSupported   422
     ├── TooComplexQuery         403
     ├── TooManyResults          403
     ├── LdContextNotAvailable   503
     ├── NoMultiTenantSupport    501
     ├── Unauthorized            401  no valid credentials (City OS's own type: NGSI-LD has none)
     ├── Forbidden               403  authenticated, but the tenant's policies do not allow it
     ├── InternalError           500
     └── HTTP-level errors that have no NGSI-LD problem type of their own:
          MethodNotAllowed 405, NotAcceptable 406, LengthRequired 411,
          PayloadTooLarge 413, UnsupportedMediaType 415
"""

from __future__ import annotations

__all__ = [
    "LoopDetected",
    "AlreadyExists",
    "BadRequestData",
    "CityOSError",
    "Conflict",
    "InternalError",
    "InvalidRequest",
    "LdContextNotAvailable",
    "LengthRequired",
    "MethodNotAllowed",
    "NoMultiTenantSupport",
    "NonexistentTenant",
    "NotAcceptable",
    "OperationNotSupported",
    "PayloadTooLarge",
    "ResourceNotFound",
    "TooComplexQuery",
    "TooManyResults",
    "UnsupportedMediaType",
    "Forbidden",
    "Unauthorized",
]

_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class CityOSError(Exception):
    """Base of every error City OS reports to a client."""

    problem_type: str = _ERRORS + "InternalError"
    title: str = "Internal error"
    status: int = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(CityOSError):
    problem_type = _ERRORS + "InvalidRequest"
    title = "Invalid request"
    status = 400


class BadRequestData(CityOSError):
    problem_type = _ERRORS + "BadRequestData"
    title = "Bad request data"
    status = 400


class ResourceNotFound(CityOSError):
    problem_type = _ERRORS + "ResourceNotFound"
    title = "Resource not found"
    status = 404


class NonexistentTenant(ResourceNotFound):
    problem_type = _ERRORS + "NonexistentTenant"
    title = "Nonexistent tenant"


class AlreadyExists(CityOSError):
    problem_type = _ERRORS + "AlreadyExists"
    title = "Already exists"
    status = 409


class Conflict(CityOSError):
    problem_type = _ERRORS + "Conflict"
    title = "Conflict"
    status = 409


class OperationNotSupported(CityOSError):
    problem_type = _ERRORS + "OperationNotSupported"
    title = "Operation not supported"
    status = 422


class TooComplexQuery(CityOSError):
    problem_type = _ERRORS + "TooComplexQuery"
    title = "Too complex query"
    status = 403


class TooManyResults(CityOSError):
    problem_type = _ERRORS + "TooManyResults"
    title = "Too many results"
    status = 403


class LdContextNotAvailable(CityOSError):
    # GS CIM 009 V1.3 gave 503; later versions say 504. The ETSI suite's baseline expects 503.
    problem_type = _ERRORS + "LdContextNotAvailable"
    title = "@context not available"
    status = 503


class NoMultiTenantSupport(CityOSError):
    problem_type = _ERRORS + "NoMultiTenantSupport"
    title = "No multi-tenant support"
    status = 501


class LoopDetected(CityOSError):
    """Clause 6.3.18: the request already passed this broker (its alias is in ``Via``)."""

    problem_type = _ERRORS + "LoopDetected"
    title = "Loop detected"
    status = 508


_CITYOS_ERRORS = "urn:cityos:errors:"


class Unauthorized(CityOSError):
    """Missing, malformed, expired or unknown credentials (RFC 6750 ``invalid_token``).
    NGSI-LD defines no problem type for this, so the type is City OS's own."""

    problem_type = _CITYOS_ERRORS + "Unauthorized"
    title = "Unauthorized"
    status = 401


class Forbidden(CityOSError):
    """The caller is known, but no policy of the tenant grants what it asks for."""

    problem_type = _CITYOS_ERRORS + "Forbidden"
    title = "Forbidden"
    status = 403


class InternalError(CityOSError):
    pass


class MethodNotAllowed(CityOSError):
    problem_type = "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest"
    title = "Method not allowed"
    status = 405


class NotAcceptable(CityOSError):
    problem_type = _ERRORS + "InvalidRequest"
    title = "Not acceptable"
    status = 406


class LengthRequired(CityOSError):
    problem_type = _ERRORS + "InvalidRequest"
    title = "Length required"
    status = 411


class PayloadTooLarge(CityOSError):
    problem_type = _ERRORS + "InvalidRequest"
    title = "Payload too large"
    status = 413


class UnsupportedMediaType(CityOSError):
    problem_type = _ERRORS + "InvalidRequest"
    title = "Unsupported media type"
    status = 415
