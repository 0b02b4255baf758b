"""/v2/registrations: not served yet, answered honestly.

Orion forwards queries and updates of registered attributes to their providers in
NGSI-v2 (IoT Agents register their commands this way). City OS keeps NGSI-LD context
source registrations, whose forwarding speaks NGSI-LD, so a v2 registration cannot be
stored as one without being forwarded in the wrong protocol. Until v2 forwarding exists
there are no v2 registrations: the list is empty, one is never found, and creating one
is ``501 NotImplemented``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from cityos.errors import CityOSError, ResourceNotFound
from cityos.v2.http import accept, json, options_of

__all__ = ["create_registration", "list_registrations", "registration"]


class NotImplementedYet(CityOSError):
    title = "Not implemented"
    status = 501


async def list_registrations(request: Request) -> Response:
    accept(request)
    options = options_of(request, frozenset({"count"}))
    return json([], headers={"Fiware-Total-Count": "0"} if "count" in options else None)


async def registration(request: Request) -> Response:
    raise ResourceNotFound("The requested registration has not been found. Check id")


async def create_registration(request: Request) -> Response:
    raise NotImplementedYet(
        "NGSI-v2 registrations are not supported yet; use /ngsi-ld/v1/csourceRegistrations"
    )
