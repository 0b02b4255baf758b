"""The NGSI-v2 routes (FIWARE-NGSI v2 release 2.1, as Orion 3.x serves it) and ``/version``.

Every row of :data:`ROUTES` is ``(path, endpoint, methods)``; :func:`routes` wraps each
endpoint in Orion's error rendering, answers the other methods of a path with 405
``MethodNotAllowed`` and any other ``/v2`` path with Orion's 400 "Service not found".
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from cityos import __version__
from cityos.errors import BadRequestData, MethodNotAllowed
from cityos.v2 import (
    attrs_api,
    batch_api,
    entities_api,
    registrations_api,
    subscriptions_api,
    types_api,
)
from cityos.v2.http import Endpoint, guard, json

__all__ = ["ORION_VERSION", "ROUTES", "orion_version", "routes"]

ORION_VERSION = "3.12.0"  # the Orion release whose NGSI-v2 behaviour City OS follows
_STARTED = time.monotonic()
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_ENTITY = "/v2/entities/{entity_id}"
_ATTR = _ENTITY + "/attrs/{attr}"


async def entry_point(request: Request) -> Response:
    return json(
        {
            "entities_url": "/v2/entities",
            "types_url": "/v2/types",
            "subscriptions_url": "/v2/subscriptions",
            "registrations_url": "/v2/registrations",
        }
    )


async def statistics(request: Request) -> Response:
    """Orion's management ``GET /statistics``, which clients call to check the broker."""
    uptime = int(time.monotonic() - _STARTED)
    return json({"uptime_in_secs": uptime, "measuring_interval_in_secs": uptime})


ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    ("/v2", entry_point, ["GET"]),
    ("/statistics", statistics, ["GET"]),
    ("/v2/entities", entities_api.list_entities, ["GET"]),
    ("/v2/entities", entities_api.create_entity, ["POST"]),
    (_ENTITY, entities_api.retrieve_entity, ["GET"]),
    (_ENTITY, entities_api.delete_entity, ["DELETE"]),
    (_ENTITY + "/attrs", entities_api.retrieve_attrs, ["GET"]),
    (_ENTITY + "/attrs", entities_api.append_attrs, ["POST"]),
    (_ENTITY + "/attrs", entities_api.update_attrs, ["PATCH"]),
    (_ENTITY + "/attrs", entities_api.replace_attrs, ["PUT"]),
    (_ATTR, attrs_api.retrieve_attribute, ["GET"]),
    (_ATTR, attrs_api.replace_attribute, ["PUT"]),
    (_ATTR, attrs_api.delete_attribute, ["DELETE"]),
    (_ATTR + "/value", attrs_api.retrieve_value, ["GET"]),
    (_ATTR + "/value", attrs_api.update_value, ["PUT"]),
    ("/v2/types", types_api.list_types, ["GET"]),
    ("/v2/types/{entity_type}", types_api.retrieve_type, ["GET"]),
    ("/v2/op/update", batch_api.update, ["POST"]),
    ("/v2/op/query", batch_api.query, ["POST"]),
    ("/v2/op/notify", batch_api.notify, ["POST"]),
    ("/v2/subscriptions", subscriptions_api.list_subscriptions, ["GET"]),
    ("/v2/subscriptions", subscriptions_api.create_subscription, ["POST"]),
    ("/v2/subscriptions/{sub_id}", subscriptions_api.retrieve_subscription, ["GET"]),
    ("/v2/subscriptions/{sub_id}", subscriptions_api.update_subscription, ["PATCH"]),
    ("/v2/subscriptions/{sub_id}", subscriptions_api.delete_subscription, ["DELETE"]),
    ("/v2/registrations", registrations_api.list_registrations, ["GET"]),
    ("/v2/registrations", registrations_api.create_registration, ["POST"]),
    ("/v2/registrations/{reg_id}", registrations_api.registration, ["GET", "PATCH", "DELETE"]),
]


def _not_allowed(allowed: list[str]) -> Endpoint:
    async def method_not_allowed(request: Request) -> Response:
        raise MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        )

    return method_not_allowed


async def unknown_path(request: Request) -> Response:
    raise BadRequestData("Service not found. Check your URL as probably it is wrong.")


def routes() -> list[BaseRoute]:
    out: list[BaseRoute] = [Route(p, guard(e), methods=m) for p, e, m in ROUTES]
    allowed: dict[str, list[str]] = {}
    for path, _, methods in ROUTES:
        allowed.setdefault(path, []).extend(methods)
    for path, methods in allowed.items():
        others = [m for m in _METHODS if m not in methods]
        if others:
            out.append(Route(path, guard(_not_allowed(methods)), methods=others))
    out.append(Route("/v2/{rest:path}", guard(unknown_path), methods=list(_METHODS)))
    return out


def _uptime() -> str:
    seconds = int(time.monotonic() - _STARTED)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d, {hours} h, {rest // 60} m, {rest % 60} s"


def orion_version() -> dict[str, Any]:
    """The ``orion`` member of ``GET /version``, shaped like Orion's, for clients that check it."""
    return {
        "version": ORION_VERSION,
        "uptime": _uptime(),
        "git_hash": "nogitversion",
        "compile_time": "nodate",
        "compiled_by": "cityos",
        "compiled_in": "cityos",
        "release_date": "nodate",
        "machine": "python",
        "doc": "https://fiware-orion.rtfd.io/en/3.12.0/",
        "libversions": {"cityos": __version__},
    }
