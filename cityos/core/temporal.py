"""The temporal representation of Entities: temporal queries, aggregation and rendering.

GS CIM 009 V1.8.1 clauses 4.5.7 (temporal representation), 4.5.9 (simplified temporal
representation, ``options=temporalValues``), 4.5.19 (aggregated temporal representation,
``options=aggregatedValues``), 4.11 (temporal query: ``timerel``, ``timeAt``,
``endTimeAt``, ``timeproperty``) and 5.7.3/5.7.4 (retrieve and query).

Times are handled as integers: microseconds since the Unix epoch, UTC. Storage keeps them
that way so windows and periods are integer comparisons on an index.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cityos.core.jsonld import CompiledContext
from cityos.core.model import VALUE_MEMBER, StoredAttribute
from cityos.core.render import RenderOptions, render_instance
from cityos.errors import BadRequestData, InvalidRequest

__all__ = [
    "AGGREGATION_METHODS",
    "Aggregated",
    "aggregated_values",
    "Duration",
    "Stats",
    "TemporalEntity",
    "TemporalQuery",
    "format_time",
    "now_us",
    "parse_duration",
    "parse_temporal_query",
    "parse_time",
    "periods",
    "render_temporal_entity",
]

US = 1_000_000
HOUR_US = 3600 * US
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
AGGREGATION_METHODS = (
    "totalCount",
    "distinctCount",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "sumsq",
)
TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")
MAX_PERIODS = 100_000

# Clause 4.5.9: the member holding the [value, time] pairs of each attribute type.
VALUES_MEMBER: dict[str, str] = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "JsonProperty": "jsons",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
    "VocabProperty": "vocabs",
}


# -- times and durations ---------------------------------------------------------------


def parse_time(text: object, what: str = "timeAt") -> int:
    """An ISO 8601 DateTime as microseconds since the epoch; a missing zone means UTC."""
    if not isinstance(text, str) or len(text) < 16 or text[10] != "T":
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime, not {text!r}")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestData(f"{what} must be an ISO 8601 DateTime, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    # Exact: seconds since 1970 times 10**6 stay far below 2**53 until the year 2255.
    return (
        round(moment.timestamp() * US)
        if moment.year < 2200
        else ((moment - _EPOCH) // dt.timedelta(microseconds=1))
    )


def now_us() -> int:
    return (dt.datetime.now(dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)


@functools.lru_cache(maxsize=65536)  # aggregation repeats the same period bounds per Entity
def format_time(us: int) -> str:
    """UTC, with a fraction only when there is one: ``2020-08-01T12:03:00Z``."""
    moment = _EPOCH + dt.timedelta(microseconds=us)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Duration:
    """An ISO 8601 duration: calendar months plus a fixed number of microseconds."""

    months: int = 0
    micros: int = 0

    @property
    def is_zero(self) -> bool:
        return self.months == 0 and self.micros == 0

    def add_to(self, us: int) -> int:
        if self.months:
            moment = _EPOCH + dt.timedelta(microseconds=us)
            month0 = moment.year * 12 + moment.month - 1 + self.months
            year, month = divmod(month0, 12)
            day = min(moment.day, _days_in_month(year, month + 1))
            moment = moment.replace(year=year, month=month + 1, day=day)
            us = (moment - _EPOCH) // dt.timedelta(microseconds=1)
        return us + self.micros


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (dt.date(year, month + 1, 1) - dt.date(year, month, 1)).days


_DURATION = re.compile(
    r"^P(?:(?P<Y>\d+(?:\.\d+)?)Y)?(?:(?P<Mo>\d+(?:\.\d+)?)M)?(?:(?P<W>\d+(?:\.\d+)?)W)?"
    r"(?:(?P<D>\d+(?:\.\d+)?)D)?(?:T(?:(?P<H>\d+(?:\.\d+)?)H)?(?:(?P<Mi>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<S>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> Duration:
    """``aggrPeriodDuration`` (clause 4.5.19): P[n]Y[n]M[n]DT[n]H[n]M[n]S or P[n]W."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise BadRequestData(f"aggrPeriodDuration must be an ISO 8601 duration, not {text!r}")
    part = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    months = part.get("Y", 0) * 12 + part.get("Mo", 0)
    if months != int(months):
        raise BadRequestData("aggrPeriodDuration: years and months must be whole numbers")
    seconds = (
        part.get("W", 0) * 7 * 86400
        + part.get("D", 0) * 86400
        + part.get("H", 0) * 3600
        + part.get("Mi", 0) * 60
        + part.get("S", 0)
    )
    return Duration(int(months), round(seconds * US))


# -- the temporal query ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemporalQuery:
    """Clause 4.11 plus the representation options; attribute names expanded."""

    timerel: str | None = None  # before | after | between
    time_at: int | None = None
    end_time_at: int | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    attrs: tuple[str, ...] = ()  # expanded; empty means every attribute
    aggr_methods: tuple[str, ...] = ()
    aggr_period: Duration | None = None
    instance_limit: int = 10_000  # instances per attribute in one response (Content-Range)
    dataset_ids: frozenset[str | None] | None = None  # series to keep; None is the default

    @property
    def aggregated(self) -> bool:
        return bool(self.aggr_methods)

    def window(self) -> tuple[int | None, int | None]:
        """[start, end) in microseconds; None where the window is open."""
        if self.timerel == "before":
            return None, self.time_at
        if self.timerel == "after":
            return self.time_at, None
        if self.timerel == "between":
            return self.time_at, self.end_time_at
        return None, None


def parse_temporal_query(
    params: Mapping[str, Any],
    expand: Callable[[str], str],
    aggregated: bool,
    require_timerel: bool = False,
    instance_limit: int = 10_000,
) -> TemporalQuery:
    """Query parameters (or the members of a POST query's ``temporalQ``) to a TemporalQuery."""
    timerel = params.get("timerel")
    time_at = params.get("timeAt")
    end_time_at = params.get("endTimeAt")
    if timerel is None and require_timerel:
        raise BadRequestData("A temporal query needs timerel and timeAt")
    if timerel is not None and timerel not in ("before", "after", "between"):
        raise BadRequestData(f"timerel must be before, after or between, not {timerel!r}")
    if timerel is not None and time_at is None:
        raise BadRequestData("timerel needs timeAt")
    if timerel is None and time_at is not None:
        raise BadRequestData("timeAt needs timerel")
    if timerel == "between" and end_time_at is None:
        raise BadRequestData("timerel=between needs endTimeAt")
    start = parse_time(time_at) if time_at is not None else None
    end = parse_time(end_time_at, "endTimeAt") if end_time_at is not None else None
    if timerel == "between" and start is not None and end is not None and end <= start:
        raise BadRequestData("endTimeAt must be later than timeAt")
    timeproperty = params.get("timeproperty", "observedAt")
    if timeproperty not in TIME_PROPERTIES:
        raise BadRequestData(
            "timeproperty must be observedAt, createdAt, modifiedAt or deletedAt, "
            f"not {timeproperty!r}"
        )
    last_n = _last_n(params.get("lastN"))
    methods: tuple[str, ...] = ()
    period: Duration | None = None
    if aggregated:
        methods = _methods(params.get("aggrMethods"))
        duration = params.get("aggrPeriodDuration")
        period = parse_duration(duration) if duration else Duration()
    attrs = params.get("attrs")
    names = attrs.split(",") if isinstance(attrs, str) else list(attrs or [])
    datasets = params.get("datasetId")
    dataset_ids = None
    if isinstance(datasets, str):
        dataset_ids = frozenset(None if d == "@none" else d for d in datasets.split(",") if d)
    return TemporalQuery(
        dataset_ids=dataset_ids,
        timerel=timerel,
        time_at=start,
        end_time_at=end if timerel == "between" else None,
        timeproperty=timeproperty,
        last_n=last_n,
        attrs=tuple(expand(n) for n in names if n),
        aggr_methods=methods,
        aggr_period=period,
        instance_limit=instance_limit,
    )


def _last_n(raw: object) -> int | None:
    if raw is None:
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise BadRequestData(f"lastN must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise BadRequestData(f"lastN must be a positive integer, not {raw!r}")
    return value


def _methods(raw: object) -> tuple[str, ...]:
    if not raw:
        raise BadRequestData("options=aggregatedValues needs aggrMethods")
    names = raw.split(",") if isinstance(raw, str) else [str(m) for m in raw]  # type: ignore[attr-defined]
    for name in names:
        if name not in AGGREGATION_METHODS:
            raise BadRequestData(
                f"Unknown aggregation method {name!r}; use {', '.join(AGGREGATION_METHODS)}"
            )
    return tuple(dict.fromkeys(names))


def periods(start: int, end: int, duration: Duration) -> list[tuple[int, int]]:
    """The aggregation periods of [start, end): consecutive, each ``duration`` long, the
    last one cut at ``end``; a zero duration is one period over the whole range."""
    return list(_periods(start, end, duration))


@functools.lru_cache(maxsize=256)  # a query computes the same periods for every Entity
def _periods(start: int, end: int, duration: Duration) -> tuple[tuple[int, int], ...]:
    if duration.is_zero or end <= start:
        return ((start, end),)
    out: list[tuple[int, int]] = []
    at = start
    while at < end:
        nxt = duration.add_to(at)
        if nxt <= at:
            raise BadRequestData("aggrPeriodDuration must be longer than zero")
        out.append((at, min(nxt, end)))
        at = nxt
        if len(out) > MAX_PERIODS:
            raise BadRequestData(
                f"aggrPeriodDuration gives more than {MAX_PERIODS} periods over this range"
            )
    return tuple(out)


@dataclass(slots=True)
class Stats:
    """What one period of one series adds up to; combinable (the hourly rollups are these)."""

    n: int = 0
    nn: int = 0
    sum: float = 0.0
    sumsq: float = 0.0
    min: float | None = None
    max: float | None = None
    distinct: int | None = None

    def add(self, n: int, nn: int, s: float, ss: float, lo: float | None, hi: float | None) -> None:
        self.n += n
        self.nn += nn
        self.sum += s
        self.sumsq += ss
        if lo is not None:
            self.min = lo if self.min is None else min(self.min, lo)
        if hi is not None:
            self.max = hi if self.max is None else max(self.max, hi)

    def merge(self, other: Stats) -> None:
        self.add(other.n, other.nn, other.sum, other.sumsq, other.min, other.max)

    def value(self, method: str) -> Any:
        if method == "totalCount":
            return self.n
        if method == "distinctCount":
            return self.distinct if self.distinct is not None else 0
        if method == "sum":
            return float(self.sum)
        if method == "sumsq":
            return float(self.sumsq)
        if method in ("min", "max"):
            v = self.min if method == "min" else self.max
            return None if v is None else float(v)
        if self.nn == 0:
            return None
        mean = self.sum / self.nn
        if method == "avg":
            return mean
        # stddev: population standard deviation of the numeric values of the period
        return math.sqrt(max(self.sumsq / self.nn - mean * mean, 0.0))


# -- what storage returns ------------------------------------------------------------------


def aggregated_values(
    buckets: Sequence[tuple[int, int, Stats]], methods: Sequence[str]
) -> dict[str, list[list[Any]]]:
    """Per method, the ``[value, periodStart, periodEnd]`` triples of the buckets."""
    bounds = [(format_time(start), format_time(end)) for start, end, _ in buckets]
    return {
        method: [
            [stats.value(method), *bound]
            for (_, _, stats), bound in zip(buckets, bounds, strict=True)
        ]
        for method in methods
    }


@dataclass(slots=True)
class Aggregated:
    """One attribute and datasetId aggregated (clause 4.5.19): per method, the
    ``[value, periodStart, periodEnd]`` triples of the non-empty periods, in time order."""

    attr_type: str
    dataset_id: str | None
    values: dict[str, list[list[Any]]]


@dataclass
class TemporalEntity:
    """A temporal Entity as read from the store, with expanded names.

    ``attrs`` maps an attribute to its instances in time order; each instance is the stored
    form plus ``instanceId`` and its ``createdAt``/``modifiedAt``. ``aggregates`` maps an
    attribute to one :class:`Aggregated` per datasetId.
    ``content_range`` is the time range returned when instances were cut at the query's
    instance limit: (from, to, size) of the Content-Range header (clause 6.3.10).
    """

    id: str
    types: list[str]
    scope: list[str] | None
    created_at: str
    modified_at: str
    deleted_at: str | None = None
    attrs: dict[str, list[StoredAttribute]] = field(default_factory=dict)
    aggregates: dict[str, list[Aggregated]] = field(default_factory=dict)
    content_range: tuple[str, str, str] | None = None  # when cut at the instance limit


# -- rendering -------------------------------------------------------------------------


def render_temporal_entity(
    entity: TemporalEntity,
    ctx: CompiledContext,
    representation: str,
    sys_attrs: bool,
    tq: TemporalQuery,
    lang: str | None = None,
) -> dict[str, Any]:
    """``representation``: normalized, temporalValues or aggregatedValues."""
    out: dict[str, Any] = {"id": entity.id}
    types = [ctx.compact(t) for t in entity.types]
    out["type"] = types[0] if len(types) == 1 else types
    if entity.scope:
        out["scope"] = entity.scope[0] if len(entity.scope) == 1 else entity.scope
    if sys_attrs:
        out["createdAt"] = entity.created_at
        out["modifiedAt"] = entity.modified_at
        if entity.deleted_at:
            out["deletedAt"] = entity.deleted_at
    if representation == "aggregatedValues":
        for iri, groups in entity.aggregates.items():
            out[ctx.compact(iri)] = _render_aggregates(groups, tq.aggr_methods)
        return out
    opts = RenderOptions(sys_attrs=sys_attrs, lang=lang)
    for iri, instances in entity.attrs.items():
        if representation == "temporalValues":
            out[ctx.compact(iri)] = _render_values(instances, ctx, tq)
        else:
            out[ctx.compact(iri)] = [_render_temporal_instance(i, ctx, opts) for i in instances]
    return out


def _render_temporal_instance(
    inst: StoredAttribute, ctx: CompiledContext, opts: RenderOptions
) -> dict[str, Any]:
    rendered: dict[str, Any] = render_instance(inst, ctx, opts)
    if "deletedAt" in inst:
        rendered["deletedAt"] = inst["deletedAt"]
    rendered["instanceId"] = inst["instanceId"]
    return rendered


def _instance_time(inst: StoredAttribute, timeproperty: str) -> str:
    value = inst.get(timeproperty) or inst.get("createdAt")
    return str(value)


def _render_values(
    instances: Sequence[StoredAttribute], ctx: CompiledContext, tq: TemporalQuery
) -> Any:
    """Clause 4.5.9: ``{"type": ..., "values": [[value, time], ...]}`` per datasetId."""
    groups: dict[str | None, list[StoredAttribute]] = {}
    for inst in instances:
        groups.setdefault(inst.get("datasetId"), []).append(inst)
    rendered = []
    for dataset_id, members in groups.items():
        attr_type = members[-1]["type"]
        entry: dict[str, Any] = {"type": attr_type}
        if dataset_id is not None:
            entry["datasetId"] = dataset_id
        entry[VALUES_MEMBER.get(attr_type, "values")] = [
            [_plain_value(i, ctx), _instance_time(i, tq.timeproperty)] for i in members
        ]
        rendered.append(entry)
    if not rendered:  # emptied by the range of a paginated response (clause 6.3.10)
        return {"type": "Property", "values": []}
    return rendered[0] if len(rendered) == 1 else rendered


_WRAPPED = frozenset(
    {"LanguageProperty", "JsonProperty", "VocabProperty", "ListProperty", "ListRelationship"}
)


def _plain_value(inst: StoredAttribute, ctx: CompiledContext) -> Any:
    """The value of a [value, time] pair; for the types of clause 4.5.9 whose member is not
    ``value``/``object``, wrapped in that member: ``{"languageMap": {...}}``."""
    member = VALUE_MEMBER.get(inst["type"], "value")
    rendered = render_instance(inst, ctx, RenderOptions())
    value = rendered.get(member)
    if inst["type"] in _WRAPPED:
        return {member: value}
    return value


def _render_aggregates(groups: Sequence[Aggregated], methods: Sequence[str]) -> Any:
    rendered = []
    for group in groups:
        entry: dict[str, Any] = {"type": group.attr_type}
        if group.dataset_id is not None:
            entry["datasetId"] = group.dataset_id
        for method in methods:
            entry[method] = group.values.get(method, [])
        rendered.append(entry)
    return rendered[0] if len(rendered) == 1 else rendered


def check_representation(options: set[str]) -> str:
    chosen = [o for o in ("temporalValues", "aggregatedValues") if o in options]
    if len(chosen) > 1:
        raise InvalidRequest("options=temporalValues and aggregatedValues exclude each other")
    return chosen[0] if chosen else "normalized"


# -- fitting instances to one response range (clause 6.3.10), for every store ----------

Found = list[tuple[str, list[tuple[int, StoredAttribute]]]]
"""Per temporal Entity: (attribute, [(time in µs, instance), ...]) for each series read."""


def fit_to_range(
    entities: list[TemporalEntity], found: list[Found], cuts: list[int], tq: TemporalQuery
) -> list[TemporalEntity]:
    """Puts the instances read for each Entity into it, cut to one time range that every
    attribute of every Entity fills completely: it ends where the first cut attribute was
    cut (``cuts``: the time each cut series stopped at, going back in time for lastN);
    the response then says which range it covers (``content_range``)."""
    limit_at = (max(cuts) if tq.last_n is not None else min(cuts)) if cuts else None
    times: list[int] = []
    for entity, per_entity in zip(entities, found, strict=True):
        _keep(entity, per_entity, tq, limit_at, times)
    if limit_at is not None:
        for entity in entities:
            entity.content_range = _content_range(tq, times, limit_at)
    return entities


def _keep(
    entity: TemporalEntity, found: Found, tq: TemporalQuery, limit_at: int | None, times: list[int]
) -> None:
    """Puts the instances inside the response's range into ``entity``, in time order."""
    backwards = tq.last_n is not None
    by_attr: dict[str, list[tuple[int, StoredAttribute]]] = {}
    for attr, instances in found:
        kept = [
            (at, inst)
            for at, inst in instances
            if limit_at is None or (at >= limit_at if backwards else at <= limit_at)
        ]
        by_attr.setdefault(attr, []).extend(kept)
        times.extend(at for at, _ in kept)
    for attr, pairs in by_attr.items():
        # An attribute emptied by the range stays, empty, so the client sees it was cut.
        if pairs or limit_at is not None:
            pairs.sort(key=lambda pair: pair[0])  # datasets of one attribute interleave
            entity.attrs[attr] = [inst for _, inst in pairs]


def _content_range(tq: TemporalQuery, times: list[int], limit_at: int) -> tuple[str, str, str]:
    """``date-time <from>-<to>/<size>``: from the window's edge the request started at
    (or the first instance sent) to where it was cut; size is lastN, else unknown."""
    start, end = tq.window()
    if tq.last_n is not None:
        first = end if end is not None else max(times, default=limit_at)
        return format_time(first), format_time(limit_at), str(tq.last_n)
    first = start if start is not None else min(times, default=limit_at)
    return format_time(first), format_time(limit_at), "*"


def whole_hours(
    tq: TemporalQuery, spans: Sequence[tuple[int, int]], methods: Container[str]
) -> bool:
    """Whether an aggregation can be read from hourly rollups: observedAt periods of one
    hour that start and end on an hour, with methods the rollups keep (``methods``)."""
    duration = tq.aggr_period
    start, end = spans[0][0], spans[-1][1]
    return not (
        tq.timeproperty != "observedAt"
        or duration is None
        or duration.months
        or duration.micros != HOUR_US
        or start % HOUR_US
        or end % HOUR_US
        or not all(m in methods for m in tq.aggr_methods)
    )


@dataclass(frozen=True, slots=True)
class AggregationPlan:
    """How the periods of an aggregation are computed: ``start``-``end`` cut in periods of
    ``length`` µs when ``fixed`` (no months), else each span on its own; from the hourly
    rollups when ``rollups`` (whole hours on the observedAt axis, no distinctCount)."""

    start: int
    end: int
    length: int
    fixed: bool
    rollups: bool


def aggregation_plan(tq: TemporalQuery, spans: Sequence[tuple[int, int]]) -> AggregationPlan:
    duration = tq.aggr_period
    assert duration is not None
    start, end = spans[0][0], spans[-1][1]
    fixed = duration.months == 0 and not duration.is_zero
    length = duration.micros if fixed else end - start
    rollups = (
        tq.timeproperty == "observedAt"
        and "distinctCount" not in tq.aggr_methods
        and (fixed or duration.is_zero)
        and length % HOUR_US == 0
        and start % HOUR_US == 0
    )
    return AggregationPlan(start, end, length, fixed, rollups)
