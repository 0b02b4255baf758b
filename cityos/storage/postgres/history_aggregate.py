"""Temporal aggregation on PostgreSQL (clause 4.5.19), in SQL, as on SQLite.

Periods of whole hours that start on an hour, on ``observedAt``, without
``distinctCount``, are added up from the hourly rollups; any other period is one
``GROUP BY`` over the instances of the range, keyed by the period number; calendar
months and years take one such query per period. Plain SQL on plain columns: no stored
function, no trigger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cityos.core.temporal import (
    HOUR_US,
    Aggregated,
    Stats,
    TemporalEntity,
    TemporalQuery,
    aggregated_values,
    aggregation_plan,
    format_time,
    periods,
    whole_hours,
)
from cityos.storage.postgres.history_read import (
    TIME_COLUMN,
    Series,
    entity_row,
    kind_sql,
    series_of,
)
from cityos.storage.postgres.history_write import STATS_SQL
from cityos.storage.postgres.writes import Cursor

__all__ = ["aggregate_entities"]

_DISTINCT_SQL = "count(DISTINCT doc -> 'value')"
# What each method is over one hourly rollup row, in SQL (the hourly fast path).
_HOURLY_SQL = {
    "totalCount": "n",
    "sum": "sum",
    "sumsq": "sumsq",
    "min": "min",
    "max": "max",
    "avg": "sum / NULLIF(nn, 0)",  # NULL when no value of the hour is a number
}


async def aggregate_entities(
    cur: Cursor, rows: Sequence[Sequence[Any]], tq: TemporalQuery
) -> list[TemporalEntity]:
    entities = [entity_row(row) for row in rows]
    for row, entity in zip(rows, entities, strict=True):
        await _aggregate_entity(cur, entity, await series_of(cur, row[0], tq), tq)
    return entities


async def _spans(
    cur: Cursor, series: list[Series], tq: TemporalQuery
) -> list[tuple[int, int]] | None:
    """The periods to aggregate over: the window's, or the instances' when it is open."""
    start, end = tq.window()
    column = TIME_COLUMN[tq.timeproperty]
    open_end = False
    if start is None or end is None:
        await cur.execute(
            f"SELECT min({column}), max({column}) FROM temporal_instances "
            f"WHERE series = ANY(%s::bigint[]){kind_sql(tq, True)}",
            ([s.key for s in series],),
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        start = row[0] if start is None else start
        open_end = end is None
        end = row[1] + 1 if end is None else end
    assert tq.aggr_period is not None and start is not None and end is not None
    spans = periods(start, end, tq.aggr_period)
    if open_end and not tq.aggr_period.is_zero and spans:
        spans[-1] = (spans[-1][0], tq.aggr_period.add_to(spans[-1][0]))
    return spans


async def _aggregate_entity(
    cur: Cursor, entity: TemporalEntity, series: list[Series], tq: TemporalQuery
) -> None:
    if not series:
        return
    spans = await _spans(cur, series, tq)
    if not spans:
        return
    for s in series:
        values = await _hourly(cur, s.key, spans, tq)
        if values is None:
            buckets = await _aggregate_series(cur, s.key, spans, tq)
            if buckets:
                values = aggregated_values(buckets, tq.aggr_methods)
        if not values or not next(iter(values.values())):
            continue
        await cur.execute(
            "SELECT doc ->> 'type' FROM temporal_instances WHERE series = %s "
            "ORDER BY ts DESC LIMIT 1",
            (s.key,),
        )
        attr_type = (await cur.fetchall())[0][0]
        entity.aggregates.setdefault(s.attr, []).append(Aggregated(attr_type, s.dataset, values))


async def _hourly(
    cur: Cursor, series: int, spans: list[tuple[int, int]], tq: TemporalQuery
) -> dict[str, list[list[Any]]] | None:
    """Hourly periods starting on an hour and ending on one: each period is one rollup row,
    so SQL computes the requested values. None when the query is not of that shape."""
    if not whole_hours(tq, spans, _HOURLY_SQL):
        return None
    start, end = spans[0][0], spans[-1][1]
    columns = ", ".join(_HOURLY_SQL[m] for m in tq.aggr_methods)
    await cur.execute(
        f"SELECT hour, {columns} FROM temporal_rollups WHERE series = %s AND hour >= %s "
        "AND hour < %s AND n > 0 ORDER BY hour",
        (series, start // HOUR_US, end // HOUR_US),
    )
    rows = await cur.fetchall()
    bounds = [(format_time(r[0] * HOUR_US), format_time((r[0] + 1) * HOUR_US)) for r in rows]
    out: dict[str, list[list[Any]]] = {}
    for n, method in enumerate(tq.aggr_methods, start=1):
        out[method] = [[row[n], *bound] for row, bound in zip(rows, bounds, strict=True)]
    return out


async def _aggregate_series(
    cur: Cursor, series: int, spans: list[tuple[int, int]], tq: TemporalQuery
) -> list[tuple[int, int, Stats]]:
    """Stats per period: from the hourly rollups where the periods are whole hours on the
    observedAt axis, else by grouping the instances themselves."""
    plan = aggregation_plan(tq, spans)
    start, end, length, fixed = plan.start, plan.end, plan.length, plan.fixed
    out: dict[int, Stats] = {}
    column = TIME_COLUMN[tq.timeproperty]
    if plan.rollups:
        await _from_rollups(cur, series, (start, end, length), out)
    elif fixed:
        await _from_instances(cur, series, column, (start, end, length), tq, out)
    else:
        for n, (lo, hi) in enumerate(spans):
            part: dict[int, Stats] = {}
            await _from_instances(cur, series, column, (lo, hi, hi - lo), tq, part)
            if 0 in part:
                out[n] = part[0]
    return [(spans[n][0], spans[n][1], stats) for n, stats in sorted(out.items()) if stats.n]


async def _from_rollups(
    cur: Cursor, series: int, span: tuple[int, int, int], out: dict[int, Stats]
) -> None:
    """Folds the hourly rollups of the range into periods of ``length``; the last, partial
    hour comes from the instances themselves."""
    start, end, length = span
    h0, hours = start // HOUR_US, length // HOUR_US
    full_end = end // HOUR_US
    await cur.execute(
        "SELECT hour, n, nn, sum, sumsq, min, max FROM temporal_rollups "
        "WHERE series = %s AND hour >= %s AND hour < %s ORDER BY hour",
        (series, h0, full_end),
    )
    for hour, n, nn, total, squares, lo, hi in await cur.fetchall():
        p = (hour - h0) // hours
        stats = out.get(p)
        if stats is None:
            out[p] = Stats(n, nn, total, squares, lo, hi)
        else:
            stats.add(n, nn, total, squares, lo, hi)
    if end % HOUR_US:
        tail: dict[int, Stats] = {}
        plain = TemporalQuery(timerel="between")
        await _from_instances(cur, series, "ts", (full_end * HOUR_US, end, end), plain, tail)
        if 0 in tail:
            out.setdefault((full_end * HOUR_US - start) // length, Stats()).merge(tail[0])


async def _from_instances(
    cur: Cursor,
    series: int,
    column: str,
    span: tuple[int, int, int],
    tq: TemporalQuery,
    out: dict[int, Stats],
) -> None:
    """Stats per period of ``span`` (start, end, period length), grouped in SQL."""
    start, end, length = span
    distinct = "distinctCount" in tq.aggr_methods
    # bigint / bigint truncates, as SQLite's integer division does.
    await cur.execute(
        f"SELECT ({column} - %s::bigint) / %s::bigint, {STATS_SQL}, "
        f"{_DISTINCT_SQL if distinct else '0'} FROM temporal_instances "
        f"WHERE series = %s AND {column} >= %s AND {column} < %s{kind_sql(tq, True)} GROUP BY 1",
        (start, max(length, 1), series, start, end),
    )
    for p, n, nn, s, ss, lo, hi, d in await cur.fetchall():
        stats = out.setdefault(p, Stats())
        stats.add(n, nn, s, ss, lo, hi)
        if distinct:
            stats.distinct = (stats.distinct or 0) + d
