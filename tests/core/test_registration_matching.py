"""Matching context source registrations (clauses 5.10.2 and 5.12) at the edges of its
rules: interval endpoints, areas that may contain matches, id patterns."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import pytest

from cityos.core import geo
from cityos.core.jsonld import compile_context
from cityos.core.query.ast import TypeName
from cityos.core.query.q import parse_q
from cityos.core.registration_matching import RegistrationQuery, matches, q_attributes
from cityos.core.registrations import Registration, parse_registration
from cityos.core.temporal import parse_time

_CORE_FILE = "contexts/uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE = compile_context(
    [], orjson.loads((resources.files("cityos") / _CORE_FILE).read_bytes())["@context"]
)


def _reg(**members: Any) -> Registration:
    body = {
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "WaterLevel"}]}],
        "endpoint": "http://town-b.example",
        **members,
    }
    return parse_registration(body, CORE, "2026-01-01T00:00:00.000000Z")


def test_q_attributes_collects_every_term() -> None:
    assert q_attributes(parse_q("a>1;(b==2|c.d==3);!e")) == {"a", "b", "c", "e"}


INTERVAL = {"startAt": "2020-01-01T00:00:00Z", "endAt": "2021-01-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("timerel", "time_at", "end_time_at", "expected"),
    [
        ("before", "2020-01-01T00:00:00Z", None, True),  # an endpoint of the interval
        ("before", "2019-12-31T23:59:59Z", None, False),
        ("after", "2021-01-01T00:00:00Z", None, True),
        ("after", "2021-01-01T00:00:01Z", None, False),
        ("between", "2019-01-01T00:00:00Z", "2020-01-01T00:00:00Z", True),
        ("between", "2021-01-02T00:00:00Z", "2022-01-01T00:00:00Z", False),
    ],
)
def test_time_intervals_match_with_their_endpoints(
    timerel: str, time_at: str, end_time_at: str | None, expected: bool
) -> None:
    query = RegistrationQuery(
        timerel=timerel,
        time_at=parse_time(time_at),
        end_time_at=parse_time(end_time_at) if end_time_at else 0,
    )
    assert matches(_reg(observationInterval=INTERVAL), query) is expected


@pytest.mark.parametrize(
    ("georel", "coordinates", "expected"),
    [
        ("disjoint", [[[0, 0], [1, 0], [1, 1], [0, 0]]], True),
        ("disjoint", [[[130, 30], [140, 30], [140, 40], [130, 40], [130, 30]]], False),
        ("equals", [[[134.0, 34.0], [134.01, 34.0], [134.01, 34.01], [134.0, 34.0]]], True),
    ],
)
def test_areas_match_what_they_may_contain(georel: str, coordinates: Any, expected: bool) -> None:
    area = {
        "type": "Polygon",
        "coordinates": [
            [[133.9, 33.9], [134.1, 33.9], [134.1, 34.1], [133.9, 34.1], [133.9, 33.9]]
        ],
    }
    gq = geo.parse_geoq(georel, "Polygon", coordinates, None)
    query = RegistrationQuery(geo=gq, geo_member="location")
    assert matches(_reg(location=area), query) is expected


def test_an_id_pattern_is_tested_on_registered_ids_only() -> None:
    reg = _reg(
        information=[
            {"entities": [{"type": "WaterLevel", "id": "urn:ngsi-ld:WaterLevel:b1"}]},
            {"entities": [{"type": "Rain", "idPattern": "^urn:ngsi-ld:Rain:b"}]},
        ]
    )
    water = CORE.expand("WaterLevel")
    rain = CORE.expand("Rain")
    assert matches(reg, RegistrationQuery(types=TypeName(water), id_pattern=":b"))
    assert not matches(reg, RegistrationQuery(types=TypeName(water), id_pattern=":c"))
    assert matches(reg, RegistrationQuery(types=TypeName(rain), id_pattern=":c"))
