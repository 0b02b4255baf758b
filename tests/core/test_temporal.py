"""Pure functions of cityos/core/temporal.py (times, durations, periods, the temporal query,
Stats) and cityos/core/retention.py (retention rules and their plan)."""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cityos.config import SETTINGS_HELP, Settings
from cityos.core.retention import (
    DEFAULT_VOCAB,
    RetentionRule,
    RetentionTarget,
    parse_retention,
    plan,
)
from cityos.core.temporal import (
    HOUR_US,
    MAX_PERIODS,
    US,
    Duration,
    Stats,
    TemporalQuery,
    check_representation,
    format_time,
    parse_duration,
    parse_temporal_query,
    parse_time,
    periods,
)
from cityos.errors import BadRequestData, InvalidRequest

DAY_US = 24 * HOUR_US
# 2026-01-01T00:00:00Z in microseconds since the epoch.
NEW_YEAR = (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // (
    dt.timedelta(microseconds=1)
)


def _expand(name: str) -> str:
    return "https://example.org/" + name


# -- times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "us"),
    [
        ("2026-01-01T00:00:00Z", NEW_YEAR),
        ("2026-01-01T09:00:00+09:00", NEW_YEAR),
        ("2026-01-01T00:00:00", NEW_YEAR),  # no zone: UTC
        ("2026-01-01T00:00", NEW_YEAR),
        ("2026-01-01T00:00:00.000001Z", NEW_YEAR + 1),
        ("2026-01-01T01:00:00.5Z", NEW_YEAR + HOUR_US + US // 2),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_parse_time(text: str, us: int) -> None:
    assert parse_time(text) == us


@pytest.mark.parametrize(
    "text",
    ["2026-01-01", "yesterday", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "", 12, None],
)
def test_parse_time_rejects_what_is_no_date_time(text: object) -> None:
    with pytest.raises(BadRequestData, match="endTimeAt"):
        parse_time(text, "endTimeAt")


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (NEW_YEAR, "2026-01-01T00:00:00Z"),
        (NEW_YEAR + 1, "2026-01-01T00:00:00.000001Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_format_time_adds_a_fraction_only_when_there_is_one(us: int, text: str) -> None:
    assert format_time(us) == text


@given(st.integers(min_value=0, max_value=4102444800 * US))
def test_format_then_parse_time_round_trips(us: int) -> None:
    assert parse_time(format_time(us)) == us


# -- durations and periods -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "months", "micros"),
    [
        ("PT0S", 0, 0),
        ("PT1H", 0, HOUR_US),
        ("PT90M", 0, 90 * 60 * US),
        ("PT1.5S", 0, 3 * US // 2),
        ("P1D", 0, DAY_US),
        ("P2W", 0, 14 * DAY_US),
        ("P1DT12H", 0, DAY_US + 12 * HOUR_US),
        ("P1M", 1, 0),
        ("P1Y2M", 14, 0),
        ("P1YT1S", 12, US),
    ],
)
def test_parse_duration(text: str, months: int, micros: int) -> None:
    assert parse_duration(text) == Duration(months, micros)


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "1D", "PT1D", "P0.5M", "P1H", "-PT1H"])
def test_parse_duration_rejects_what_is_no_iso_8601_duration(text: str) -> None:
    with pytest.raises(BadRequestData):
        parse_duration(text)


@pytest.mark.parametrize(
    ("start", "duration", "end"),
    [
        ("2026-01-31T10:00:00Z", Duration(1), "2026-02-28T10:00:00Z"),  # clamped to the month's end
        ("2028-01-31T00:00:00Z", Duration(1), "2028-02-29T00:00:00Z"),  # leap year
        ("2026-12-15T00:00:00Z", Duration(1), "2027-01-15T00:00:00Z"),
        ("2026-03-31T00:00:00Z", Duration(-1), "2026-02-28T00:00:00Z"),
        ("2026-01-01T00:00:00Z", Duration(12, HOUR_US), "2027-01-01T01:00:00Z"),
        ("2026-01-01T00:00:00Z", Duration(0, -DAY_US), "2025-12-31T00:00:00Z"),
    ],
)
def test_duration_add_to_follows_the_calendar(start: str, duration: Duration, end: str) -> None:
    assert duration.add_to(parse_time(start)) == parse_time(end)


@pytest.mark.parametrize(
    ("start", "end", "duration", "lengths"),
    [
        (NEW_YEAR, NEW_YEAR + 99, Duration(), [99]),  # zero: one period over the whole range
        (NEW_YEAR, NEW_YEAR + 3 * HOUR_US, Duration(0, HOUR_US), [HOUR_US] * 3),
        (
            NEW_YEAR,
            parse_time("2026-04-01T00:00:00Z"),
            Duration(1),
            [31 * DAY_US, 28 * DAY_US, 31 * DAY_US],
        ),
    ],
    ids=["zero", "hours", "calendar-months"],
)
def test_periods_are_consecutive_from_the_start(
    start: int, end: int, duration: Duration, lengths: list[int]
) -> None:
    spans = periods(start, end, duration)
    assert spans[0][0] == start
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert [hi - lo for lo, hi in spans] == lengths


def test_the_last_period_is_cut_at_the_end() -> None:
    # As periods() documents: "the last one cut at end".
    spans = periods(0, 5 * HOUR_US, parse_duration("PT2H"))
    assert spans == [(0, 2 * HOUR_US), (2 * HOUR_US, 4 * HOUR_US), (4 * HOUR_US, 5 * HOUR_US)]


def test_too_many_periods_is_bad_request_data() -> None:
    with pytest.raises(BadRequestData, match="periods"):
        periods(0, (MAX_PERIODS + 1) * US, Duration(0, US))


# -- the temporal query -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "window"),
    [
        ({"timerel": "before", "timeAt": "2026-01-01T00:00:00Z"}, (None, NEW_YEAR)),
        ({"timerel": "after", "timeAt": "2026-01-01T00:00:00Z"}, (NEW_YEAR, None)),
        (
            {
                "timerel": "between",
                "timeAt": "2026-01-01T00:00:00Z",
                "endTimeAt": "2026-01-02T00:00:00Z",
            },
            (NEW_YEAR, NEW_YEAR + DAY_US),
        ),
        ({}, (None, None)),
        # endTimeAt counts only for between
        (
            {
                "timerel": "after",
                "timeAt": "2026-01-01T00:00:00Z",
                "endTimeAt": "2027-01-01T00:00:00Z",
            },
            (NEW_YEAR, None),
        ),
    ],
)
def test_temporal_query_window(
    params: dict[str, str], window: tuple[int | None, int | None]
) -> None:
    assert parse_temporal_query(params, _expand, aggregated=False).window() == window


def test_temporal_query_members() -> None:
    tq = parse_temporal_query(
        {
            "timeproperty": "modifiedAt",
            "lastN": "3",
            "attrs": "speed,heading",
            "datasetId": "@none,urn:ngsi-ld:Dataset:gps",
            "aggrMethods": "sum,max,sum",
            "aggrPeriodDuration": "PT1H",
        },
        _expand,
        aggregated=True,
        instance_limit=7,
    )
    assert tq == TemporalQuery(
        timeproperty="modifiedAt",
        last_n=3,
        attrs=(_expand("speed"), _expand("heading")),
        dataset_ids=frozenset({None, "urn:ngsi-ld:Dataset:gps"}),
        aggr_methods=("sum", "max"),
        aggr_period=Duration(0, HOUR_US),
        instance_limit=7,
    )
    assert tq.aggregated


def test_aggregation_parameters() -> None:
    tq = parse_temporal_query({"aggrMethods": "avg"}, _expand, aggregated=True)
    assert tq.aggr_period is not None and tq.aggr_period.is_zero  # no period: the whole range
    ignored = parse_temporal_query({"aggrMethods": "nonsense"}, _expand, aggregated=False)
    assert not ignored.aggregated  # aggrMethods count only with aggregatedValues


@pytest.mark.parametrize(
    "params",
    [
        {"timerel": "after"},
        {"timeAt": "2026-01-01T00:00:00Z"},
        {"timerel": "between", "timeAt": "2026-01-01T00:00:00Z"},
        {
            "timerel": "between",
            "timeAt": "2026-01-02T00:00:00Z",
            "endTimeAt": "2026-01-01T00:00:00Z",
        },
        {
            "timerel": "between",
            "timeAt": "2026-01-01T00:00:00Z",
            "endTimeAt": "2026-01-01T00:00:00Z",
        },
        {"timerel": "within", "timeAt": "2026-01-01T00:00:00Z"},
        {"timeproperty": "observed"},
        {"lastN": "0"},
        {"lastN": "-1"},
        {"lastN": "2.5"},
        {"aggrMethods": ""},
        {"aggrMethods": "sum,mean"},
    ],
)
def test_bad_temporal_query_is_bad_request_data(params: dict[str, str]) -> None:
    with pytest.raises(BadRequestData):
        parse_temporal_query(params, _expand, aggregated="aggrMethods" in params)


def test_a_required_timerel_must_be_given() -> None:
    with pytest.raises(BadRequestData):
        parse_temporal_query({}, _expand, aggregated=False, require_timerel=True)


@pytest.mark.parametrize(
    ("options", "representation"),
    [
        (set(), "normalized"),
        ({"sysAttrs"}, "normalized"),
        ({"temporalValues"}, "temporalValues"),
        ({"aggregatedValues", "sysAttrs"}, "aggregatedValues"),
    ],
)
def test_check_representation(options: set[str], representation: str) -> None:
    assert check_representation(options) == representation
    with pytest.raises(InvalidRequest):
        check_representation(options | {"temporalValues", "aggregatedValues"})


# -- Stats ----------------------------------------------------------------------------------


def _stats(values: list[float | str]) -> Stats:
    stats = Stats()
    for v in values:
        if isinstance(v, str):
            stats.add(1, 0, 0.0, 0.0, None, None)
        else:
            stats.add(1, 1, v, v * v, v, v)
    return stats


def test_stats_values() -> None:
    stats = _stats([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0, "x"])
    numbers = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    assert stats.value("totalCount") == 9
    assert stats.value("sum") == sum(numbers)
    assert stats.value("sumsq") == sum(x * x for x in numbers)
    assert stats.value("min") == 2.0 and stats.value("max") == 9.0
    assert stats.value("avg") == sum(numbers) / len(numbers)
    assert stats.value("stddev") == 2.0  # population standard deviation of this textbook set
    assert stats.value("distinctCount") == 0  # only counted from the instances themselves
    words = _stats(["a", "b"])
    assert [words.value(m) for m in ("totalCount", "sum", "min", "max", "avg", "stddev")] == [
        2,
        0.0,
        None,
        None,
        None,
        None,
    ]


numbers = st.lists(st.integers(min_value=-1000, max_value=1000).map(float), max_size=20)


@given(numbers, numbers)
def test_stats_combine_like_the_hourly_rollups(left: list[float], right: list[float]) -> None:
    combined = _stats(left)
    part = _stats(right)
    combined.add(part.n, part.nn, part.sum, part.sumsq, part.min, part.max)
    whole = _stats(left + right)
    for method in ("totalCount", "sum", "sumsq", "min", "max", "avg"):
        assert combined.value(method) == whole.value(method)
    if whole.nn:
        assert math.isclose(combined.value("stddev"), whole.value("stddev"), abs_tol=1e-6)


# -- retention rules (cityos/core/retention.py) ---------------------------------------------

VEHICLE = DEFAULT_VOCAB + "Vehicle"
ROOM = DEFAULT_VOCAB + "Room"


@pytest.mark.parametrize(
    ("text", "rules"),
    [
        ("", []),
        ("P90D", [RetentionRule(None, None, Duration(0, 90 * DAY_US))]),
        ("@city=P1Y", [RetentionRule("city", None, Duration(12))]),
        ("@=PT12H", [RetentionRule("", None, Duration(0, 12 * HOUR_US))]),
        ("Vehicle=P30D", [RetentionRule(None, VEHICLE, Duration(0, 30 * DAY_US))]),
        ("Vehicle@city=P7D", [RetentionRule("city", VEHICLE, Duration(0, 7 * DAY_US))]),
        (
            "https://smartdatamodels.org/dataModel.Parking/ParkingSpot=P1D",
            [
                RetentionRule(
                    None,
                    "https://smartdatamodels.org/dataModel.Parking/ParkingSpot",
                    Duration(0, DAY_US),
                )
            ],
        ),
        (
            " P90D , Vehicle=P30D,",
            [
                RetentionRule(None, None, Duration(0, 90 * DAY_US)),
                RetentionRule(None, VEHICLE, Duration(0, 30 * DAY_US)),
            ],
        ),
    ],
)
def test_parse_retention(text: str, rules: list[RetentionRule]) -> None:
    assert parse_retention(text) == rules


@pytest.mark.parametrize(
    "text", ["90 days", "Vehicle=30D", "Vehicle=P", "PT0S", "Vehicle=P0D", "P1.5M"]
)
def test_bad_retention_rules_are_refused_at_startup(text: str) -> None:
    with pytest.raises(ValueError, match="retention rule"):
        parse_retention(text)
    with pytest.raises(ValueError, match="retention rule"):
        Settings(retention=text)


def test_the_retention_example_in_the_settings_help_is_accepted() -> None:
    help_text = SETTINGS_HELP["retention"]
    example = re.search(r"e\.g\. '([^']+)'", help_text)
    assert example is not None, help_text
    assert parse_retention(example.group(1))


RULES = parse_retention("P90D, @city=P365D, Vehicle=P30D, Vehicle@city=P7D, Room@town=P1D")


@pytest.mark.parametrize(
    ("tenant", "targets"),
    [
        (
            "",
            [
                RetentionTarget((VEHICLE,), (), Duration(0, 30 * DAY_US)),
                RetentionTarget(None, (VEHICLE,), Duration(0, 90 * DAY_US)),
            ],
        ),
        (
            "city",
            [
                RetentionTarget((VEHICLE,), (), Duration(0, 7 * DAY_US)),
                RetentionTarget(None, (VEHICLE,), Duration(0, 365 * DAY_US)),
            ],
        ),
        (
            "town",
            [
                RetentionTarget((VEHICLE,), (), Duration(0, 30 * DAY_US)),
                RetentionTarget((ROOM,), (), Duration(0, DAY_US)),
                RetentionTarget(None, (VEHICLE, ROOM), Duration(0, 90 * DAY_US)),
            ],
        ),
    ],
)
def test_plan_uses_the_most_specific_rule(tenant: str, targets: list[RetentionTarget]) -> None:
    assert plan(RULES, tenant) == targets


def test_plan_without_a_general_rule_touches_only_typed_entities() -> None:
    assert plan(parse_retention("Room=P1D"), "any") == [
        RetentionTarget((ROOM,), (), Duration(0, DAY_US))
    ]
    assert plan(parse_retention("@city=P1D"), "elsewhere") == []
