"""Distributed operations at the HTTP edge (GS CIM 009 V1.8.1 clauses 4.3.6, 5.6, 5.7):
the entity handlers ask here whether a request reaches registered Context Sources, and if
so hand over the local part of the work as a callback.

Reads gather the local Entities and the sources' fragments concurrently and merge them
(``core.federation.merge_entities``); a source that fails or times out is named in an
``NGSILD-Warning`` header and the answer carries what the others gave (clause 6.3.17).
Writes split the Attributes between the sources and the local store
(``core.federation.split_write``); when any part fails the answer is 207 with the
failures, each carrying the source's ProblemDetails and registration id.

``local=true`` keeps a request local; a request whose ``Via`` already names this City OS
is refused with 508 LoopDetected when it would be forwarded again (clause 6.3.18).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityos.api import http
from cityos.api.deps import services
from cityos.api.guard import GuardedStore
from cityos.api.params import parse_flag
from cityos.api.problems import problem_body
from cityos.api.querying import LocalQuery
from cityos.core.entities import ENTITY_MEMBERS, parse_entity
from cityos.core.federation import (
    Target,
    TypeTest,
    exclusive_attrs,
    merge_entities,
    read_targets,
    redirect_refusing,
    split_write,
    supported_operations,
    write_targets,
)
from cityos.core.jsonld import CompiledContext
from cityos.core.model import StoredEntity, now_iso
from cityos.core.query.q import expand_q, parse_q
from cityos.core.registration_matching import csf_matches
from cityos.core.registrations import Registration
from cityos.core.temporal import now_us
from cityos.errors import CityOSError, Conflict, LoopDetected
from cityos.federation import Call, Federation, Reply

__all__ = [
    "BatchItem",
    "BatchPlan",
    "Forward",
    "SourceError",
    "Selection",
    "WritePlan",
    "plan_batch",
    "plan_write",
    "query_everywhere",
    "read_plan",
    "retrieve_everywhere",
    "warning_headers",
]


def federation_of(request: Request) -> Federation:
    fed: Federation = request.app.state.federation
    return fed


def _check_loop(request: Request, fed: Federation) -> None:
    if fed.loop_detected(request.headers.get("via")):
        raise LoopDetected(
            f"This request already passed {fed.alias} (Via: {request.headers.get('via')})"
        )


async def _registrations(request: Request) -> tuple[Federation, list[Registration]] | None:
    """The tenant's registrations, or None when the request stays local (``local=true``,
    or nothing is registered)."""
    if parse_flag(request.query_params, "local"):
        return None
    fed = federation_of(request)
    regs = await fed.registrations(http.tenant_of(request))
    return (fed, regs) if regs else None


async def _targets(
    request: Request, pick: Callable[[list[Any], int], list[Target]]
) -> list[Target]:
    found = await _registrations(request)
    if found is None:
        return []
    fed, regs = found
    csf = request.query_params.get("csf")
    if csf:  # clause 5.7.2.4: only the sources whose registration satisfies csf
        ctx = (await http.request_context(request, services(request).contexts)).compiled
        node = expand_q(parse_q(csf), ctx.expand)
        regs = [r for r in regs if csf_matches(r, node)]
    targets = [t for t in pick(regs, now_us()) if not fed.cooling(t)]
    if targets:
        _check_loop(request, fed)
    return targets


# -- reads ------------------------------------------------------------------------------


async def read_plan(
    request: Request,
    ops: Sequence[str],
    entity_id: str | None,
    type_ok: TypeTest | None,
    attrs: Iterable[str] | None,
) -> list[Target]:
    """The sources a retrieval or query reaches; empty when it stays local."""
    asked = list(attrs) if attrs else None
    return await _targets(
        request, lambda regs, now: read_targets(regs, ops, entity_id, type_ok, asked, now)
    )


# The query parameters a source is asked again as the client gave them (clause 5.7.2);
# paging, representation and projection are this City OS's business.
_FORWARDED = ("type", "id", "idPattern", "q", "scopeQ", "georel", "geometry", "coordinates")
_FORWARDED_TOO = ("geoproperty", "datasetId")


@dataclass(frozen=True, slots=True)
class Selection:
    """A query as the sources are asked it: GET parameters in the client's terms, the
    expanded Attributes asked, and the client's @context to compact with."""

    params: dict[str, str]
    attrs: list[str] | None
    rctx: http.RequestContext

    @property
    def link(self) -> str | None:
        return self.rctx.link_header() if isinstance(self.rctx.value, str) else None

    def for_target(self, target: Target, window: int) -> dict[str, str]:
        ctx = self.rctx.compiled
        params = {k: self.params[k] for k in (*_FORWARDED, *_FORWARDED_TOO) if k in self.params}
        attrs = forwarded_attrs(target, self.attrs)
        if attrs:
            params["attrs"] = ",".join(ctx.compact(a) for a in attrs)
        if "type" not in params:
            types = registered_types(target, None)
            if types:
                params["type"] = ",".join(ctx.compact(t) for t in types)
        if "id" not in params and "idPattern" not in params:
            ids = registered_ids(target)
            if ids:
                params["id"] = ",".join(ids)
        params["limit"] = str(window)
        return params


def query_body(params: dict[str, str]) -> dict[str, Any]:
    """The POST /entityOperations/query form of GET query parameters (clause 5.2.23)."""
    selector = {k: params[k] for k in ("id", "idPattern") if k in params and "," not in params[k]}
    types = params["type"].split(",") if "type" in params else [None]
    body: dict[str, Any] = {
        "type": "Query",
        "entities": [{**selector, **({"type": t} if t else {})} for t in types],
    }
    if "attrs" in params:
        body["attrs"] = params["attrs"].split(",")
    for key in ("q", "scopeQ"):
        if key in params:
            body[key] = params[key]
    if "georel" in params:
        body["geoQ"] = {
            "georel": params["georel"],
            "geometry": params.get("geometry"),
            "coordinates": orjson.loads(params.get("coordinates", "null")),
            **({"geoproperty": params["geoproperty"]} if "geoproperty" in params else {}),
        }
    return body


def query_call(
    fed: Federation, request: Request, target: Target, sel: Selection, window: int, post: bool
) -> Awaitable[Reply]:
    """One source asked a query: by GET /entities when it supports queryEntity (and the
    client did not POST one it also takes), else by POST /entityOperations/query."""
    ops = supported_operations(target.reg)
    params = sel.for_target(target, window)
    incoming = request.headers
    if "queryBatch" in ops and (post or "queryEntity" not in ops):
        limit = {"limit": params.pop("limit")}
        call = Call(
            "POST",
            "/entityOperations/query",
            limit,
            query_body(params),
            incoming=incoming,
            link=sel.link,
        )
        return fed.call(target, call)
    return fed.call(target, Call("GET", "/entities", params, incoming=incoming, link=sel.link))


def retrieve_call(
    fed: Federation, request: Request, target: Target, entity_id: str, sel: Selection
) -> Awaitable[Reply]:
    """One source asked for an Entity: by retrieveEntity if it supports it, else by query."""
    if "retrieveEntity" not in supported_operations(target.reg):
        return query_call(fed, request, target, sel, 1, post=False)
    attrs = forwarded_attrs(target, sel.attrs)
    params = {"attrs": ",".join(sel.rctx.compiled.compact(a) for a in attrs)} if attrs else None
    path = "/entities/" + quote(entity_id, safe=":")
    return fed.call(target, Call("GET", path, params, incoming=request.headers, link=sel.link))


async def retrieve_everywhere(
    request: Request, targets: Sequence[Target], local: StoredEntity | None, sel: Selection
) -> tuple[StoredEntity | None, list[Reply]]:
    """The Entity merged from the local store and the sources, and the sources that failed."""
    fed = federation_of(request)
    entity_id = sel.params["id"]
    calls = [retrieve_call(fed, request, t, entity_id, sel) for t in targets]
    fragments, failed = await gather_fragments(calls, sel.rctx.compiled)
    fragments = await _released(request, fragments)
    mine = [(t, e) for t, e in fragments if e["id"] == entity_id]
    return merge_entities(local, mine, exclusive_attrs(targets, entity_id)), failed


async def query_everywhere(
    request: Request,
    targets: Sequence[Target],
    local: LocalQuery,
    sel: Selection,
    page: tuple[int, int],
    post: bool = False,
) -> tuple[list[StoredEntity], int, list[Reply]]:
    """One page of the Entities merged from the local store and the sources, the count of
    all of them, and the sources that failed. Each side is asked for the first
    ``offset + limit`` Entities, so the page is exact; the count adds what each side
    reported beyond what it returned (an upper bound when sides share Entities)."""
    offset, limit = page
    window = offset + limit
    fed = federation_of(request)
    calls = [query_call(fed, request, t, sel, window, post) for t in targets]
    (local_entities, local_count), (fragments, failed) = await asyncio.gather(
        local(window), gather_fragments(calls, sel.rctx.compiled)
    )
    merged = merge_by_id(local_entities, await _released(request, fragments), targets)
    beyond = max(0, (local_count or 0) - len(local_entities))
    return merged[offset:window], len(merged) + beyond, failed


def forwarded_attrs(target: Target, asked: Sequence[str] | None) -> list[str] | None:
    """The Attributes to ask a source for: those asked that it registered."""
    if target.attrs is None:
        return list(asked) if asked else None
    if not asked:
        return sorted(target.attrs)
    return [a for a in asked if a in target.attrs]


def registered_types(target: Target, types: Sequence[str] | None) -> list[str]:
    """The Entity types to ask a source for: those asked, else those it registered."""
    if types:
        return list(types)
    found: list[str] = []
    for info in target.reg.information:
        for e in info.entities or ():
            if e.type not in found:
                found.append(e.type)
    return found


def registered_ids(target: Target) -> list[str]:
    return [
        e.id for info in target.reg.information for e in info.entities or () if e.id is not None
    ]


def answered_objects(reply: Reply) -> list[dict[str, Any]]:
    """The JSON objects a source answered (one, or an array of them), without the members
    that are this City OS's to set: ``@context`` (the request's is used) and the system
    timestamps of the Entity."""
    items = reply.body if isinstance(reply.body, list) else [reply.body]
    skip = ("@context", "createdAt", "modifiedAt")
    return [
        {k: v for k, v in item.items() if k not in skip} for item in items if isinstance(item, dict)
    ]


def parse_fragments(reply: Reply, ctx: CompiledContext) -> list[StoredEntity]:
    """The Entities a source answered, expanded with the request's @context (the one the
    source was asked to compact with). Anything that is not an Entity is skipped."""
    now = now_iso()
    out = []
    for item in answered_objects(reply):
        try:
            out.append(parse_entity(item, ctx, now, require_type=False))
        except CityOSError:
            continue
    return out


async def gather_fragments(
    calls: Sequence[Awaitable[Reply]], ctx: CompiledContext
) -> tuple[list[tuple[Target, StoredEntity]], list[Reply]]:
    """Runs the calls concurrently: the fragments of those that answered, and the failures."""
    fragments: list[tuple[Target, StoredEntity]] = []
    failed: list[Reply] = []
    for reply in await asyncio.gather(*calls):
        if reply.ok and not isinstance(reply.body, list | dict):
            reply = replace(reply, error="answered no Entities", invalid=True)
        if reply.ok:
            fragments += [(reply.target, e) for e in parse_fragments(reply, ctx)]
        elif reply.status != 404 or reply.invalid:  # a source without the Entity is fine
            failed.append(reply)
    return fragments, failed


def warning_headers(
    failed: Sequence[Reply], headers: dict[str, str] | None = None
) -> dict[str, str]:
    out = dict(headers or {})
    if failed:
        out["NGSILD-Warning"] = ", ".join(r.warning() for r in failed)
    return out


def merge_by_id(
    local: Sequence[StoredEntity],
    fragments: Sequence[tuple[Target, StoredEntity]],
    targets: Sequence[Target],
) -> list[StoredEntity]:
    """Local Entities first, in their order, then those only sources know, each merged."""
    by_id: dict[str, list[tuple[Target, StoredEntity]]] = {}
    for target, entity in fragments:
        by_id.setdefault(entity["id"], []).append((target, entity))
    out: list[StoredEntity] = []
    for entity in local:
        hidden = exclusive_attrs(targets, entity["id"])
        merged = merge_entities(entity, by_id.pop(entity["id"], []), hidden)
        if merged is not None:
            out.append(merged)
    for parts in by_id.values():
        merged = merge_entities(None, parts)
        if merged is not None:
            out.append(merged)
    return out


# -- writes -----------------------------------------------------------------------------


def subset(body: Any, taken: frozenset[str], ctx: CompiledContext) -> Any:
    """The part of a request body a source takes: the Entity members and the Attributes
    whose expanded names it registered, in the client's own terms."""
    if not isinstance(body, dict):
        return body
    return {k: v for k, v in body.items() if k in ENTITY_MEMBERS or ctx.expand(k) in taken}


LocalWrite = Callable[[frozenset[str] | None], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Forward:
    """The request a write sends its sources; with ``ctx`` the body is cut down to the
    Attributes each source takes."""

    method: str
    path: str
    body: Any = None
    ctx: CompiledContext | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class WritePlan:
    """Where one write goes: the sources with the Attributes each takes, and what is left
    for the local store (``local`` False: nothing is done locally)."""

    request: Request
    entity_id: str
    sends: list[tuple[Target, frozenset[str]]]
    kept: frozenset[str]
    local: bool

    @classmethod
    def whole(cls, request: Request, entity_id: str, targets: Sequence[Target]) -> WritePlan:
        """A write on whole Entities reaching these targets (a purge)."""
        sends, kept = split_write((), targets)
        local = not any(t.mode in ("exclusive", "redirect") and t.attrs is None for t in targets)
        return cls(request, entity_id, sends, kept, local)

    async def run(self, local: LocalWrite, forward: Forward, created: bool = False) -> Response:
        """Runs the local part and the forwards concurrently and answers for all of them."""
        fed = federation_of(self.request)
        jsonld = _is_jsonld(self.request)
        base = Call(
            forward.method,
            forward.path,
            forward.params,
            content_type=http.JSONLD if jsonld else http.JSON,
            incoming=self.request.headers,
            link=None if jsonld else self.request.headers.get("link"),
        )

        def send(target: Target, taken: frozenset[str]) -> Awaitable[Reply]:
            body = forward.body
            if forward.ctx is not None and taken:
                body = subset(body, taken, forward.ctx)
            return fed.call(target, replace(base, body=body))

        mine = _capture(local(self.kept)) if self.local else _nothing()
        outcome, replies = await asyncio.gather(
            mine, asyncio.gather(*(send(t, a) for t, a in self.sends))
        )
        return self._answer(outcome, list(replies), created)

    def _answer(
        self, outcome: Response | CityOSError | None, replies: list[Reply], created: bool
    ) -> Response:
        errors = []
        if isinstance(outcome, CityOSError):
            errors.append({"entityId": self.entity_id, "error": problem_body(outcome)})
        elif outcome is not None and outcome.status_code == 207:
            errors.append({"entityId": self.entity_id, "error": _partial(outcome)})
        for reply in replies:
            if not reply.ok or reply.status == 207:
                errors.append(
                    {
                        "entityId": self.entity_id,
                        "registrationId": reply.target.reg.id,
                        "error": reply.problem() if not reply.ok else _remote_partial(reply),
                    }
                )
        if not errors:
            if isinstance(outcome, Response):
                return outcome
            if created:
                return http.created("entities", self.entity_id, http.tenant_of(self.request))
            return Response(status_code=204)
        local_ok = isinstance(outcome, Response) and outcome.status_code < 300
        any_ok = local_ok or any(r.ok and r.status != 207 for r in replies)
        body = {"success": [self.entity_id] if any_ok else [], "errors": errors}
        return http.json_response(body, None, status=207)


def _is_jsonld(request: Request) -> bool:
    return (request.headers.get("content-type") or "").split(";")[0].strip() == http.JSONLD


async def _nothing() -> None:
    return None


async def _capture(awaitable: Awaitable[Response]) -> Response | CityOSError:
    try:
        return await awaitable
    except CityOSError as exc:
        return exc


def _partial(response: Response) -> dict[str, Any]:
    detail = bytes(response.body).decode() if response.body else "partially applied"
    return {
        "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
        "title": "Partially applied",
        "status": 207,
        "detail": detail,
    }


def _remote_partial(reply: Reply) -> dict[str, Any]:
    return {
        "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
        "title": "Partially applied by the context source",
        "status": 207,
        "detail": orjson.dumps(reply.body).decode() if reply.body is not None else "",
    }


async def _released(
    request: Request, fragments: list[tuple[Target, StoredEntity]]
) -> list[tuple[Target, StoredEntity]]:
    """What the sources answered, as this City OS's policy lets the caller see it: a
    source answers for this City OS (by the registration's credentials), the caller gets
    only what it may read here, like local data."""
    store = services(request).store
    if not isinstance(store, GuardedStore) or not fragments:
        return fragments
    tenant = http.tenant_of(request)
    seen = await store.view(tenant, await store.access(tenant), [e for _, e in fragments])
    return [(t, e) for (t, _), e in zip(fragments, seen, strict=True) if e is not None]


async def _authorize_forward(
    request: Request,
    op: str,
    entity_id: str,
    types: Sequence[str] | None,
    attrs: Iterable[str] | None,
) -> None:
    """A write forwarded to a context source is authorized here first, like a local one
    (the source then authorizes this City OS by the registration's credentials)."""
    store = services(request).store
    if not isinstance(store, GuardedStore):
        return
    access = await store.access(http.tenant_of(request))
    kind = "delete" if op.startswith("delete") else "write"
    if not access.may_write_attrs(kind, types or (), entity_id, set(attrs or ())):
        raise store.deny(f"this caller may not {kind} Entity {entity_id}")


async def plan_write(
    request: Request,
    op: str,
    entity_id: str,
    types: Sequence[str] | None,
    attrs: Iterable[str] | None,
) -> WritePlan | None:
    """Where a write ``op`` on the Entity goes, or None when it stays wholly local.
    ``attrs`` are the expanded Attributes it writes; None for the whole Entity. Without
    ``types`` the Entity's stored types decide which registrations cover it."""
    found = await _registrations(request)
    if found is None:
        return None
    fed, regs = found
    if types is None:
        types = await _local_types(request, entity_id)
    now = now_us()
    targets = [t for t in write_targets(regs, op, entity_id, types, now) if not fed.cooling(t)]
    refusing = redirect_refusing(regs, op, entity_id, types, attrs, now)
    if refusing is not None and not any(t.mode == "redirect" for t in targets):
        raise Conflict(
            f"Entity {entity_id} is redirected to {refusing.members['endpoint']} by registration"
            f" {refusing.id}, which does not support {op}"
        )
    if not targets:
        return None
    _check_loop(request, fed)
    await _authorize_forward(request, op, entity_id, types, attrs)
    if attrs is None:
        return WritePlan.whole(request, entity_id, targets)
    names = list(attrs)
    sends, kept = split_write(names, targets)
    if not sends:
        return None
    return WritePlan(request, entity_id, sends, kept, bool(kept) or not names)


async def _local_types(request: Request, entity_id: str) -> list[str] | None:
    svc = services(request)
    try:
        entity = await svc.store.get_entity(http.tenant_of(request), entity_id)
    except CityOSError:
        return None
    return list(entity.get("type", []))


# -- batches ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One Entity of a batch as the sources see it: the client's JSON (an Entity, a
    fragment or, for deletes, the id), its @context, and the expanded types and
    Attributes it writes (None: the whole Entity)."""

    entity_id: str
    item: Any
    ctx: CompiledContext | None
    types: list[str] | None
    attrs: list[str] | None


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Where each Entity of a batch goes: per source the parts it takes, and per Entity
    what stays local (absent: nothing does)."""

    request: Request
    sends: dict[str, tuple[Target, list[tuple[str, Any]]]]
    kept: dict[str, frozenset[str]]

    async def forward(self, path: str) -> dict[str, list[dict[str, Any]]]:
        """Sends each source its part of the batch; the failures by Entity id."""
        fed = federation_of(self.request)
        jsonld = _is_jsonld(self.request)
        params = {k: v for k, v in self.request.query_params.items() if k != "local"}
        base = Call(
            "POST",
            path,
            params or None,
            content_type=http.JSONLD if jsonld else http.JSON,
            incoming=self.request.headers,
            link=None if jsonld else self.request.headers.get("link"),
        )
        calls = [
            fed.call(target, replace(base, body=[part for _, part in parts]))
            for target, parts in self.sends.values()
        ]
        failures: dict[str, list[dict[str, Any]]] = {}
        for reply, (_, parts) in zip(
            await asyncio.gather(*calls), self.sends.values(), strict=True
        ):
            for entity_id, problem in _batch_failures(reply, [i for i, _ in parts]):
                failures.setdefault(entity_id, []).append(problem)
        return failures


def _batch_failures(reply: Reply, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """The Entities a source's batch answer says failed: all of them when it failed as a
    whole, those in the errors of its 207 BatchOperationResult (clause 5.2.16)."""
    if not reply.ok:
        return [(i, reply.problem()) for i in ids]
    if reply.status != 207 or not isinstance(reply.body, dict):
        return []
    out = []
    for error in reply.body.get("errors", []):
        if isinstance(error, dict) and error.get("entityId") in ids:
            problem = error.get("error")
            problem = problem if isinstance(problem, dict) else {}
            out.append((str(error["entityId"]), {**problem, "registrationId": reply.target.reg.id}))
    return out


async def plan_batch(request: Request, op: str, items: Sequence[BatchItem]) -> BatchPlan | None:
    """Where the Entities of a batch ``op`` go, or None when the batch stays local."""
    found = await _registrations(request)
    if found is None:
        return None
    fed, regs = found
    sends: dict[str, tuple[Target, list[tuple[str, Any]]]] = {}
    kept: dict[str, frozenset[str]] = {}
    now = now_us()
    for item in items:
        types = item.types or await _local_types(request, item.entity_id)
        targets = [
            t for t in write_targets(regs, op, item.entity_id, types, now) if not fed.cooling(t)
        ]
        split, kept_attrs = split_write(item.attrs or (), targets)
        for target, taken in split:
            part = item.item
            if item.ctx is not None and taken:
                part = subset(item.item, taken, item.ctx)
            sends.setdefault(target.reg.id, (target, []))[1].append((item.entity_id, part))
        whole_taken = item.attrs is None and any(
            t.mode in ("exclusive", "redirect") and t.attrs is None for t, _ in split
        )
        if not split or (not whole_taken and (kept_attrs or not item.attrs)):
            kept[item.entity_id] = kept_attrs if split else frozenset(item.attrs or ())
    if not sends:
        return None
    _check_loop(request, fed)
    return BatchPlan(request, sends, kept)


class SourceError(CityOSError):
    """A Context Source's failure for one Entity of a batch, as the source described it."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail") or problem.get("title") or "failed"))
        self.problem_type = str(problem.get("type", self.problem_type))
        self.title = str(problem.get("title", "Context source failed"))
        status = problem.get("status")
        self.status = status if isinstance(status, int) else 500


async def discover(
    request: Request, targets: Sequence[Target], path: str, rctx: http.RequestContext
) -> tuple[list[Any], list[Reply]]:
    """Asks the sources a discovery question (``/types``, ``/attributes``, clause 5.7.5
    ff.) with the client's @context: the answers that came, and the sources that failed."""
    fed = federation_of(request)
    link = rctx.link_header() if isinstance(rctx.value, str) else None
    params = {k: v for k, v in request.query_params.items() if k == "details"} or None
    call = Call("GET", path, params, incoming=request.headers, link=link)
    replies = await asyncio.gather(*(fed.call(t, call) for t in targets))
    answers = [r.body for r in replies if r.ok and isinstance(r.body, dict | list)]
    failed = [r for r in replies if not r.ok and (r.status != 404 or r.invalid)]
    return answers, failed
