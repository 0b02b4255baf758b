"""Turns an :class:`~cityos.storage.base.EntityQuery` into one SQLite SELECT.

Each filter contributes an AND-ed fragment. Results are ordered by insertion (rowid), which
keeps ``limit``/``offset`` pagination stable while Entities are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cityos.storage.base import EntityQuery
from cityos.storage.sqlite import geo_sql, query_sql

__all__ = ["Select", "build_select"]


@dataclass(frozen=True, slots=True)
class Select:
    sql: str
    count_sql: str
    params: list[Any]


def build_select(query: EntityQuery) -> Select:
    where = ["e.tenant = ?"]
    params: list[Any] = [query.tenant]

    def add(fragment: tuple[str, list[Any]]) -> None:
        where.append(fragment[0])
        params.extend(fragment[1])

    if query.ids:
        add((f"e.id IN ({', '.join('?' * len(query.ids))})", list(query.ids)))
    if query.id_pattern is not None:
        add(("regexp(?, e.id)", [query.id_pattern]))
    if query.types is not None:
        add(query_sql.types_to_sql(query.types, query.tenant))
    if query.q is not None:
        add(query_sql.q_to_sql(query.q))
    if query.scope_q is not None:
        add(query_sql.scope_to_sql(query.scope_q))
    if query.attrs:
        add(_has_any_attr(query.attrs))
    if query.geo is not None and query.geoproperty is not None:
        add(geo_sql.geo_prefilter_sql(query.geo, query.geoproperty))
    clause = " AND ".join(where)
    return Select(
        sql=f"SELECT e.doc FROM entities e WHERE {clause} ORDER BY {_order_by(query)}",
        count_sql=f"SELECT count(*) FROM entities e WHERE {clause}",
        params=params,
    )


_MEMBER_SQL = {
    "id": "e.id",
    "type": "json_extract(e.types, '$[0]')",
    "createdAt": "json_extract(e.doc, '$.createdAt')",
    "modifiedAt": "json_extract(e.doc, '$.modifiedAt')",
}


def _order_by(query: EntityQuery) -> str:
    """orderBy keys (clause 4.23), then insertion order so pages stay stable."""
    terms = []
    for key in query.order_by:
        expr = _MEMBER_SQL[key.member] if key.member else query_sql.value_expr(key.path)  # type: ignore[arg-type]
        # Entities without the key sort last in both directions.
        terms.append(f"({expr} IS NULL), {expr} {'DESC' if key.descending else 'ASC'}")
    terms.append("e.rowid")
    return ", ".join(terms)


def _has_any_attr(attrs: Any) -> tuple[str, list[Any]]:
    # clause 5.7.2: with attrs, only Entities holding at least one of them match.
    tests = ["json_type(e.doc, ?) IS NOT NULL" for _ in attrs]
    return "(" + " OR ".join(tests) + ")", [_json_path_key(a) for a in attrs]


def _json_path_key(attr: str) -> str:
    # A bound parameter: no index is wanted here, and no quoting can go wrong.
    return '$.attrs."' + attr.replace('"', '\\"') + '"'
