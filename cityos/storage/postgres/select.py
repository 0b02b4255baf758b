"""Turns an :class:`~cityos.storage.base.EntityQuery` into PostgreSQL SELECTs.

Each filter contributes an AND-ed fragment (``query_sql``, and the PostGIS prefilter
here); PostgreSQL's planner, which keeps statistics, picks the driving index. Results
are ordered by the orderBy keys, then by insertion (``key``), which keeps
``limit``/``offset`` pagination stable while Entities are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cityos.core import geo
from cityos.core.geo import GeoQuery
from cityos.core.query.orderby import OrderKey
from cityos.storage.base import EntityQuery
from cityos.storage.postgres import query_sql

__all__ = ["Select", "build_select", "geo_prefilter_sql"]


@dataclass(frozen=True, slots=True)
class Select:
    where: str
    params: list[Any]
    order: str

    def page(self, columns: str = "e.doc") -> str:
        return (
            f"SELECT {columns} FROM entities e WHERE {self.where} "
            f"ORDER BY {self.order} LIMIT %s OFFSET %s"
        )

    def ranked(self, columns: str) -> str:
        return f"SELECT {columns} FROM entities e WHERE {self.where} ORDER BY {self.order}"

    @property
    def count(self) -> str:
        return f"SELECT count(*) FROM entities e WHERE {self.where}"


def build_select(query: EntityQuery) -> Select:
    where: list[str] = ["e.tenant = %s"]
    params: list[Any] = [query.tenant]

    def add(fragment: tuple[str, list[Any]]) -> None:
        where.append(fragment[0])
        params.extend(fragment[1])

    if query.ids:
        add(("e.id = ANY(%s::text[])", [list(query.ids)]))
    if query.id_pattern is not None:
        add(("e.id ~ %s", [query.id_pattern]))
    if query.types is not None:
        add(query_sql.types_to_sql(query.types))
    if query.q is not None:
        add(query_sql.q_to_sql(query.q))
    if query.scope_q is not None:
        add(query_sql.scope_to_sql(query.scope_q))
    if query.attrs:
        add(query_sql.attrs_to_sql(query.attrs))
    if query.geo is not None and query.geoproperty is not None:
        add(geo_prefilter_sql(query.geo, query.geoproperty, query.tenant))
    return Select(" AND ".join(where), params, _order_by(query.order_by))


def geo_prefilter_sql(gq: GeoQuery, attr: str, tenant: str) -> tuple[str, list[Any]]:
    """Entities with a GeoProperty ``attr`` whose geometry's box meets ``query_bbox``
    (the GiST index of ``entity_geo``), or that merely hold ``attr`` when no box can tell
    (disjoint, near;minDistance). The exact relation is tested in Python afterwards."""
    box = geo.query_bbox(gq)
    if box is None:
        return "(e.doc -> 'attrs') ? %s", [attr]
    sql = (
        "e.key IN (SELECT g.entity FROM entity_geo g WHERE g.tenant = %s "
        "AND g.attr = %s AND g.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326))"
    )
    return sql, [tenant, attr, *box]


_MEMBER_SQL = {
    "id": 'e.id COLLATE "C"',
    "type": 'e.types[1] COLLATE "C"',
    "createdAt": "(e.doc ->> 'createdAt') COLLATE \"C\"",
    "modifiedAt": "(e.doc ->> 'modifiedAt') COLLATE \"C\"",
}


def _order_by(keys: Sequence[OrderKey]) -> str:
    """orderBy keys (clause 4.23) with ``sort_entities``' rules: Entities without the key
    last in both directions; numbers, then strings, then booleans, then other values."""
    terms = []
    for key in keys:
        way = "DESC" if key.descending else "ASC"
        if key.member:
            expr = _MEMBER_SQL[key.member]
            terms += [f"({expr} IS NULL)", f"{expr} {way}"]
            continue
        assert key.path is not None  # a key is a member or a path
        x = query_sql.value_expr(key.path)
        kind = f"jsonb_typeof({x})"
        terms += [
            f"({x} IS NULL OR {kind} = 'null')",
            f"(CASE {kind} WHEN 'number' THEN 0 WHEN 'string' THEN 1 "
            f"WHEN 'boolean' THEN 2 ELSE 3 END) {way}",
            f"(CASE {kind} WHEN 'string' THEN {x} #>> '{{}}' END) COLLATE \"C\" {way}",
            f"{x} {way}",
        ]
    terms.append("e.key")
    return ", ".join(terms)
