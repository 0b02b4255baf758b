"""What the temporal history of every store shares (GS CIM 009 V1.8.1 clause 4.5.7):
the kinds of instances, which series a query reads, and the SQL conditions of a time
window, whose only difference between SQLite and PostgreSQL is the placeholder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cityos.core.temporal import TemporalQuery

__all__ = [
    "DELETED",
    "OBSERVED",
    "Series",
    "kind_sql",
    "page_rows",
    "selected_series",
    "window_sql",
]

# temporal_instances.observed: 0 an instance without observedAt, 1 with, 2 a deletion.
OBSERVED, DELETED = 1, 2


@dataclass(frozen=True, slots=True)
class Series:
    """One attribute's history (one datasetId): ``key`` in temporal_series."""

    key: int
    attr: str
    dataset: str | None


def selected_series(found: list[Series], tq: TemporalQuery | None) -> list[Series]:
    """The series a query reads: those of its ``attrs`` and ``datasetId``, if given."""
    if tq is None:
        return found
    return [
        s
        for s in found
        if (not tq.attrs or s.attr in tq.attrs)
        and (tq.dataset_ids is None or s.dataset in tq.dataset_ids)
    ]


def kind_sql(tq: TemporalQuery, window: bool) -> str:
    """Which instances a time property ranges over: deletions only for deletedAt; observed
    ones for a window on observedAt; every other non-deletion otherwise."""
    if tq.timeproperty == "deletedAt":
        return f" AND observed = {DELETED}"
    if tq.timeproperty == "observedAt" and window:
        return f" AND observed = {OBSERVED}"
    return f" AND observed < {DELETED}"


def window_sql(tq: TemporalQuery, column: str, placeholder: str) -> tuple[str, list[Any]]:
    """The conditions and parameters of the query's time window on ``column``."""
    start, end = tq.window()
    params: list[Any] = []
    sql = kind_sql(tq, tq.timerel is not None)
    if start is not None:
        sql += f" AND {column} >= {placeholder}"
        params.append(start)
    if end is not None:
        sql += f" AND {column} < {placeholder}"
        params.append(end)
    return sql, params


Row = TypeVar("Row", bound=Sequence[Any])


def page_rows(
    rows: list[Row], limit: int, tq: TemporalQuery, newest: bool
) -> tuple[list[Row], int | None]:
    """The instance rows of one series that fit the response (``limit + 1`` were read,
    ``row[1]`` is the time), in time order, and where the range was cut (clause 6.3.10),
    if it was: at the last instance sent; when the first one left out has the same time,
    just before that time, so a next page starting there repeats nothing."""
    cut: int | None = None
    if len(rows) > limit and limit == tq.instance_limit and limit != tq.last_n:
        cut = rows[limit - 1][1]
        if rows[limit][1] == cut and rows[0][1] != cut:
            cut += 1 if newest else -1
    kept = rows[:limit]
    if newest:
        kept.reverse()
    return kept, cut
