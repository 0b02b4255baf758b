"""Distributed temporal reads (GS CIM 009 V1.8.1 clauses 4.3.6, 5.7.3, 5.7.4): the history
a neighbour's City OS keeps of its own river gauges, joined with the local history.

Sources registered for ``retrieveTemporal`` / ``queryTemporal`` are asked, concurrently,
for the normalized temporal representation with the same time window, ``lastN`` and
Entity selection; their instances are parsed with the client's @context and merged with
the local ones per Attribute in time order (``core.federation.merge_temporal``), then
rendered in the representation the client asked for. ``aggregatedValues`` stays local:
aggregates computed by different sources over different periods cannot be joined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from cityos.api.distributed import (
    Selection,
    answered_objects,
    federation_of,
    forwarded_attrs,
    warning_headers,
)
from cityos.core.entities import parse_temporal_entity
from cityos.core.federation import Target, merge_temporal
from cityos.core.jsonld import CompiledContext
from cityos.core.model import now_iso
from cityos.core.temporal import TemporalEntity, TemporalQuery
from cityos.errors import CityOSError
from cityos.federation import Call, Reply

__all__ = ["TEMPORAL_PARAMS", "query_temporal_everywhere", "retrieve_temporal_everywhere"]

# The temporal parameters a source is asked again as the client gave them (clause 6.3.x).
TEMPORAL_PARAMS = ("timerel", "timeAt", "endTimeAt", "timeproperty", "lastN", "datasetId")
_KEPT_PER_INSTANCE = ("instanceId", "createdAt", "modifiedAt", "deletedAt")


def _temporal_params(sel: Selection) -> dict[str, str]:
    return {k: str(sel.params[k]) for k in TEMPORAL_PARAMS if k in sel.params}


def parse_temporal(reply: Reply, ctx: CompiledContext) -> list[TemporalEntity]:
    """The temporal Entities a source answered, with its instance ids and timestamps."""
    now = now_iso()
    out = []
    for plain in answered_objects(reply):
        try:
            stored = parse_temporal_entity(plain, ctx, now, require_type=False)
        except CityOSError:
            continue
        attrs = {}
        for name, value in plain.items():
            iri = ctx.expand(name)
            if iri not in stored["attrs"]:
                continue
            raw = value if isinstance(value, list) else [value]
            parsed = stored["attrs"][iri]
            for inst, given in zip(parsed, raw, strict=False):
                if isinstance(given, dict):
                    inst.update({k: given[k] for k in _KEPT_PER_INSTANCE if k in given})
            attrs[iri] = parsed
        out.append(
            TemporalEntity(stored["id"], stored["type"], stored.get("scope"), "", "", attrs=attrs)
        )
    return out


async def _gather(
    calls: Sequence[Awaitable[Reply]], ctx: CompiledContext
) -> tuple[list[TemporalEntity], list[Reply]]:
    found: list[TemporalEntity] = []
    failed: list[Reply] = []
    for reply in await asyncio.gather(*calls):
        if reply.ok and isinstance(reply.body, list | dict):
            found += parse_temporal(reply, ctx)
        elif reply.status != 404 or reply.invalid:
            failed.append(reply)
    return found, failed


def _call(request: Request, sel: Selection, path: str, params: dict[str, str]) -> Call:
    return Call("GET", path, params or None, incoming=request.headers, link=sel.link)


async def retrieve_temporal_everywhere(
    request: Request,
    targets: Sequence[Target],
    local: TemporalEntity | None,
    sel: Selection,
    tq: TemporalQuery,
) -> tuple[TemporalEntity | None, dict[str, str]]:
    """The temporal Entity from the local history and the sources', and the warnings."""
    fed = federation_of(request)
    entity_id = sel.params["id"]
    path = "/temporal/entities/" + quote(entity_id, safe=":")

    def ask(target: Target) -> Awaitable[Reply]:
        params = _temporal_params(sel)
        attrs = forwarded_attrs(target, sel.attrs)
        if attrs:
            params["attrs"] = ",".join(sel.rctx.compiled.compact(a) for a in attrs)
        return fed.call(target, _call(request, sel, path, params))

    found, failed = await _gather([ask(t) for t in targets], sel.rctx.compiled)
    mine = [e for e in found if e.id == entity_id]
    return merge_temporal(local, mine, tq), warning_headers(failed)


async def query_temporal_everywhere(
    request: Request,
    targets: Sequence[Target],
    local: list[TemporalEntity],
    sel: Selection,
    tq: TemporalQuery,
    window: int,
) -> tuple[list[TemporalEntity], dict[str, str]]:
    """The temporal Entities from the local history and the sources', local ones first,
    each merged by id; and the warnings."""
    fed = federation_of(request)

    def ask(target: Target) -> Awaitable[Reply]:
        params = {**sel.for_target(target, window), **_temporal_params(sel)}
        return fed.call(target, _call(request, sel, "/temporal/entities", params))

    found, failed = await _gather([ask(t) for t in targets], sel.rctx.compiled)
    by_id: dict[str, list[TemporalEntity]] = {}
    for entity in found:
        by_id.setdefault(entity.id, []).append(entity)
    out: list[TemporalEntity] = []
    for entity in local:
        merged = merge_temporal(entity, by_id.pop(entity.id, []), tq)
        if merged is not None:
            out.append(merged)
    for parts in by_id.values():
        merged = merge_temporal(None, parts, tq)
        if merged is not None:
            out.append(merged)
    return out, warning_headers(failed)


def forwarded(params: Any) -> bool:
    """Whether a temporal read may reach sources: not for aggregatedValues."""
    options = str(params.get("options", ""))
    return params.get("format") != "aggregatedValues" and "aggregatedValues" not in options
