"""build_app(settings): wires storage, the @context registry and the HTTP routes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cityos import __version__, storage, v2
from cityos.api import (
    batch,
    contexts,
    csource_subscriptions,
    entities,
    registrations,
    subscriptions,
    temporal,
    types,
)
from cityos.api.deps import Services
from cityos.api.problems import render_exception
from cityos.config import Settings
from cityos.core.contexts import CORE_CONTEXT_URL, ContextRegistry
from cityos.core.retention import parse_retention
from cityos.core.subscriptions import Subscription, parse_subscription
from cityos.core.temporal import now_us
from cityos.csource_notifier import CSourceNotifier, restore_csource_subscriptions
from cityos.errors import InvalidRequest, LdContextNotAvailable
from cityos.federation import Federation
from cityos.notifier import restore_subscriptions as restore_stored
from cityos.retention import RetentionJob
from cityos.storage.base import Store

__all__ = ["build_app", "open_store"]

log = logging.getLogger("cityos")
Endpoint = Callable[[Request], Awaitable[Response]]
PREFIX = "/ngsi-ld/v1"


def open_store(settings: Settings) -> Store:
    """SQLite or PostgreSQL, from ``settings.database_url`` (see cityos/storage/__init__.py)."""
    return storage.open_store(settings)


def make_fetcher(settings: Settings) -> Any:
    async def fetch(url: str) -> bytes:
        try:
            async with httpx.AsyncClient(
                timeout=settings.context_fetch_timeout, follow_redirects=True
            ) as client:
                response = await client.get(
                    url, headers={"Accept": "application/ld+json, application/json"}
                )
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise LdContextNotAvailable(
                f"@context {url} cannot be fetched: {exc.__class__.__name__}"
            ) from exc
        if response.status_code != 200:
            raise LdContextNotAvailable(f"@context {url} answered HTTP {response.status_code}")
        return response.content

    return fetch


def _guard(endpoint: Endpoint, params: frozenset[str] | None) -> Endpoint:
    """Checks the query parameters (an unknown one is InvalidRequest, clause 6.3.20) and
    turns every error of the handler into ProblemDetails, in the handler's own frame:
    cheaper than exception middleware, and nothing escapes to the server."""

    async def guarded(request: Request) -> Response:
        try:
            unknown = [k for k in request.query_params if params is not None and k not in params]
            if unknown:
                raise InvalidRequest(
                    f"Unknown query parameter {unknown[0]!r} for {request.method} {request.url.path}"
                )
            return await endpoint(request)
        except Exception as exc:  # rendered (and logged when unexpected) by api.problems
            return await render_exception(request, exc)

    guarded.__name__ = endpoint.__name__
    return guarded


def _admin_routes() -> list[BaseRoute]:
    """City OS's own API of the trust layer (/cityos/v1), served with authentication on."""
    from cityos.api import admin

    return [
        Route(admin.PREFIX + path, _guard(endpoint, params), methods=methods)
        for path, endpoint, methods, params in admin.ROUTES
    ]


def _trust(settings: Settings, store: Store, registry: ContextRegistry) -> Any:
    from cityos.trust import Trust  # the trust layer loads only when it is switched on

    return Trust.create(settings, store, registry.default.expand)


def _routes() -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    modules = (entities, batch, types, contexts, subscriptions, temporal, registrations)
    for module in (*modules, csource_subscriptions):
        for path, endpoint, methods, params in module.ROUTES:
            routes.append(Route(PREFIX + path, _guard(endpoint, params), methods=methods))
    routes += v2.routes()  # NGSI-v2, Orion compatible, over the same store
    routes.append(Route("/version", version, methods=["GET"]))
    return routes


async def version(request: Request) -> Response:
    return JSONResponse(
        {
            "cityos": __version__,
            "ngsi-ld": "1.8.1",
            "coreContext": CORE_CONTEXT_URL,
            "orion": v2.orion_version(),  # NGSI-v2 clients check Orion's version
        }
    )


class TrailingSlash:
    """Serves ``/ngsi-ld/v1/entities/`` as ``/ngsi-ld/v1/entities``: clients (the ETSI
    suite among them) join base URL and path with a trailing slash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


async def restore_subscriptions(store: Any, registry: ContextRegistry) -> list[Subscription]:
    """The Subscriptions kept in the store, with their state, as they were at the stop."""
    return await restore_stored(await store.load_subscriptions(), registry, parse_subscription)


def build_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The ASGI app. The store opens in the lifespan (tests without lifespan open it themselves)."""
    store = store or open_store(settings)
    registry = ContextRegistry(store, make_fetcher(settings), settings.base_url)
    notifier = v2.Notifier(store, registry)  # renders v2 Subscriptions' notifications too
    csource_notifier = CSourceNotifier.create(store, registry)
    federation = Federation(settings, store)
    trust = _trust(settings, store, registry) if settings.auth else None
    if trust is not None:
        notifier.admit = trust.admit
    retention = RetentionJob(
        store, parse_retention(settings.retention), settings.retention_interval, now_us
    )

    async def startup() -> None:
        await store.open()
        await registry.load()
        if trust is not None:
            await trust.start()
        await notifier.start(await restore_subscriptions(store, registry))
        await csource_notifier.start(await restore_csource_subscriptions(store, registry))
        retention.start()
        log.info("City OS %s serving NGSI-LD at %s%s", __version__, settings.base_url, PREFIX)

    async def shutdown() -> None:
        await retention.stop()
        await notifier.stop()
        await csource_notifier.stop()
        await federation.close()
        if trust is not None:
            await trust.close()
        await store.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await startup()
        try:
            yield
        finally:
            await shutdown()

    services = Services(settings=settings, store=store, contexts=registry, notifier=notifier)
    middleware = [Middleware(TrailingSlash)]
    routes = _routes()
    if trust is not None:  # every request authenticated, every store access guarded
        from cityos.api.authn import AuthGate

        middleware.append(Middleware(AuthGate, trust=trust, services=services))
        routes += _admin_routes()
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: render_exception, 405: render_exception},
        middleware=middleware,
    )
    # Tests drive the app without a lifespan (httpx.ASGITransport) and call these.
    app.state.startup, app.state.shutdown = startup, shutdown
    app.state.retention = retention
    app.state.csource_notifier = csource_notifier
    app.state.federation = federation
    app.state.trust = trust
    app.state.services = services
    return app
