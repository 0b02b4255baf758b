"""NGSI-v2 Entity selections as NGSI-LD Entity queries, and running them.

``GET /v2/entities`` and ``POST /v2/op/query`` select Entities by id or ``idPattern``,
type or ``typePattern``, ``q``, ``mq``, a geo-query and the service path. Everything the
store can answer (ids, the id regex, types, q/mq, the geo-query, scopes) becomes one
:class:`~cityos.storage.base.EntityQuery`. Two things it cannot express are checked here,
Entity by Entity, over the store's answer in pages: "no scope" (the service path ``/``
among the paths read), and several ``entities`` items of ``op/query`` with different
types. ``typePattern`` is matched against the tenant's type names, which become a type
selection.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from cityos.core.model import StoredEntity
from cityos.core.query.ast import AttrPath, QNode, TypeName, TypeNode, TypeOr
from cityos.core.query.orderby import OrderKey
from cityos.errors import BadRequestData
from cityos.storage.base import EntityQuery, Page, Store
from cityos.v2.geo import GEO_ATTRIBUTE, parse_geo_query
from cityos.v2.names import Names
from cityos.v2.servicepath import PathFilter
from cityos.v2.simpleq import and_all, parse_simple_query

__all__ = [
    "EntitySpec",
    "Filters",
    "ReadRequest",
    "Selection",
    "build_selection",
    "parse_order_by",
    "parse_paging",
    "request_of",
    "run_selection",
    "scan",
]

_SCAN_PAGE = 1000
_ORDER_MEMBERS = {
    "id": "id",
    "type": "type",
    "dateCreated": "createdAt",
    "dateModified": "modifiedAt",
}


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One ``entities`` item: an id or idPattern, a type or typePattern (v2 names)."""

    id: str | None = None
    id_pattern: str | None = None
    type: str | None = None
    type_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """The conditions of a selection besides the Entities: q, mq, geo-query (raw text)."""

    q: str | None = None
    mq: str | None = None
    georel: str | None = None
    geometry: str | None = None
    coords: str | None = None


@dataclass(frozen=True, slots=True)
class Selection:
    query: EntityQuery
    check: Callable[[StoredEntity], bool] | None = None
    empty: bool = False  # a typePattern no type matches


def parse_paging(limit: str | None, offset: str | None, max_limit: int) -> tuple[int, int]:
    """Orion's limit (1 to the maximum, default 20) and offset (default 0)."""
    lim = _integer(limit, "limit", 20)
    off = _integer(offset, "offset", 0)
    if lim < 1 or lim > max_limit:
        raise BadRequestData(f"Bad pagination limit: /{lim}/ [max: {max_limit}, min: 1]")
    return lim, off


def _integer(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise BadRequestData(f"Bad pagination {name}: /{raw}/ [a non-negative integer is needed]")
    return int(raw)


def parse_order_by(text: str | None, names: Names) -> tuple[OrderKey, ...]:
    """``orderBy=temperature,!humidity`` (v2 "Ordering Results"); ``geo:distance`` keeps the
    store's order."""
    if not text:
        return ()
    keys = []
    for raw in text.split(","):
        item = raw.strip()
        descending = item.startswith("!")
        name = item[1:] if descending else item
        if not name:
            raise BadRequestData(f"orderBy {text!r} has an empty item")
        if name == "geo:distance":
            continue
        if name in _ORDER_MEMBERS:
            keys.append(OrderKey(member=_ORDER_MEMBERS[name], descending=descending))
        else:
            keys.append(OrderKey(path=AttrPath(names.expand(name)), descending=descending))
    return tuple(keys)


async def _type_iris(store: Store, tenant: str, pattern: str, names: Names) -> list[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise BadRequestData(f"Invalid typePattern {pattern!r}: {exc}") from None
    counts = await store.type_counts(tenant)
    return sorted(iri for iri in counts if regex.search(names.compact(iri)))


def _type_node(iris: Sequence[str]) -> TypeNode | None:
    if not iris:
        return None
    nodes = tuple(TypeName(i) for i in dict.fromkeys(iris))
    return nodes[0] if len(nodes) == 1 else TypeOr(nodes)


async def _spec_types(
    store: Store, tenant: str, spec: EntitySpec, names: Names
) -> list[str] | None:
    """The type IRIs an item allows; None for any type."""
    if spec.type is not None and spec.type_pattern is not None:
        raise BadRequestData("type and typePattern cannot be used together")
    if spec.type is not None:
        return [names.entity_type(t.strip()) for t in spec.type.split(",")]
    if spec.type_pattern is not None:
        return await _type_iris(store, tenant, spec.type_pattern, names)
    return None


def _id_condition(specs: Sequence[EntitySpec], names: Names) -> tuple[list[str], str | None]:
    """Stored ids, or one stored-id regex, selecting the union of the items' ids."""
    for spec in specs:
        if spec.id is not None and spec.id_pattern is not None:
            raise BadRequestData("id and idPattern cannot be used together")
        if spec.id_pattern is not None:
            _check_regex(spec.id_pattern)
    if any(s.id is None and s.id_pattern is None for s in specs):
        return [], None
    if all(s.id is not None for s in specs):
        return [names.ids.to_ld(i.strip()) for s in specs for i in (s.id or "").split(",")], None
    patterns = [names.ids.pattern(_exact(s.id) if s.id else s.id_pattern or "") for s in specs]
    return [], "|".join(f"(?:{p})" for p in patterns)


def _exact(ids: str) -> str:
    """A regex matching exactly the ids of a comma-separated list."""
    return "^(?:" + "|".join(re.escape(i.strip()) for i in ids.split(",")) + ")$"


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise BadRequestData(f"Invalid idPattern {pattern!r}: {exc}") from None


def _conditions(filters: Filters, names: Names) -> QNode | None:
    nodes = parse_simple_query(filters.q, names) if filters.q else []
    if filters.mq:
        nodes += parse_simple_query(filters.mq, names, metadata=True)
    return and_all(nodes)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """What a read asks besides the selection: tenant, service paths, order and paging."""

    tenant: str
    paths: PathFilter
    order_by: tuple[OrderKey, ...]
    limit: int
    offset: int
    count: bool


async def build_selection(
    store: Store,
    names: Names,
    specs: Sequence[EntitySpec],
    filters: Filters,
    req: ReadRequest,
) -> Selection:
    types = [await _spec_types(store, req.tenant, s, names) for s in specs] or [None]
    empty = all(t is not None and not t for t in types)
    ids, pattern = _id_condition(specs, names)
    geo = parse_geo_query(filters.georel, filters.geometry, filters.coords)
    union = None if any(t is None for t in types) else [i for t in types for i in t or []]
    query = EntityQuery(
        tenant=req.tenant,
        ids=ids,
        id_pattern=pattern,
        types=_type_node(union or []) if union is not None else None,
        q=_conditions(filters, names),
        scope_q=req.paths.scope_q,
        geo=geo,
        geoproperty=names.expand(GEO_ATTRIBUTE) if geo else None,
        order_by=req.order_by,
        limit=req.limit,
        offset=req.offset,
        count=req.count,
    )
    return Selection(query, _check(specs, types, req.paths, names), empty)


def _check(
    specs: Sequence[EntitySpec],
    types: list[list[str] | None],
    paths: PathFilter,
    names: Names,
) -> Callable[[StoredEntity], bool] | None:
    per_item = len(specs) > 1 and len({tuple(t) if t is not None else None for t in types}) > 1
    if not per_item and not paths.needs_check:
        return None
    matchers = list(zip(specs, types, strict=True))

    def keep(entity: StoredEntity) -> bool:
        if not paths.matches(entity):
            return False
        return not per_item or any(_item_matches(entity, s, t, names) for s, t in matchers)

    return keep


def _item_matches(
    entity: StoredEntity, spec: EntitySpec, types: list[str] | None, names: Names
) -> bool:
    if types is not None and not set(types) & set(entity["type"]):
        return False
    v2_id = names.ids.from_ld(entity["id"])
    if spec.id is not None:
        return v2_id in [i.strip() for i in spec.id.split(",")]
    return spec.id_pattern is None or re.search(spec.id_pattern, v2_id) is not None


def request_of(
    tenant: str,
    paths: PathFilter,
    order_by: tuple[OrderKey, ...],
    paging: tuple[int, int],
    count: bool,
) -> ReadRequest:
    return ReadRequest(tenant, paths, order_by, paging[0], paging[1], count)


async def scan(
    store: Store, query: EntityQuery, check: Callable[[StoredEntity], bool] | None = None
) -> AsyncIterator[list[StoredEntity]]:
    """Every Entity ``query`` selects (ignoring its paging), page by page, that ``check`` keeps."""
    offset = 0
    while True:
        page = await store.query_entities(
            replace(query, offset=offset, limit=_SCAN_PAGE, count=False)
        )
        yield [e for e in page.entities if check is None or check(e)]
        offset += len(page.entities)
        if len(page.entities) < _SCAN_PAGE:
            return


async def run_selection(store: Store, selection: Selection) -> Page:
    query = selection.query
    if selection.empty:
        return Page([], 0 if query.count else None)
    if selection.check is None:
        return await store.query_entities(query)
    kept: list[StoredEntity] = []
    wanted = query.offset + query.limit
    async for entities in scan(store, query, selection.check):
        kept += entities
        if not query.count and len(kept) >= wanted:
            break
    return Page(kept[query.offset : wanted], len(kept) if query.count else None)
