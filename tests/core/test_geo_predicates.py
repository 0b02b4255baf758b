"""Tests for cityos.core.geo predicates: near distances, relations, the prefilter box."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cityos.core.geo as geo
from cityos.core.geo import (
    GeoQuery,
    bbox,
    distance_m,
    entity_distance_m,
    matches,
    matches_entity,
    parse_geoq,
    query_bbox,
)

TOKYO_STATION = [139.7671, 35.6812]
IMPERIAL_PALACE = [139.7528, 35.6852]
LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[list[float]]]:
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def _polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": _square(x0, y0, x1, y1)}


def _great_circle_m(a: list[float], b: list[float]) -> float:
    """Reference distance by the atan2 (Vincenty, sphere) formula, not haversine."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    dlon = lon2 - lon1
    y = math.hypot(
        math.cos(lat2) * math.sin(dlon),
        math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(dlon),
    )
    x = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(dlon)
    return geo.EARTH_RADIUS_M * math.atan2(y, x)


# --- near: distances in metres ---


def test_near_tokyo_station_to_imperial_palace() -> None:
    gq = parse_geoq("near;maxDistance==1400", "Point", json.dumps(TOKYO_STATION), None)
    assert gq is not None
    palace = {"type": "Point", "coordinates": IMPERIAL_PALACE}
    reference = _great_circle_m(TOKYO_STATION, IMPERIAL_PALACE)
    assert 1350 < reference < 1380
    assert distance_m(gq, palace) == pytest.approx(reference, rel=1e-9)
    assert matches(gq, palace)


@pytest.mark.parametrize(
    ("georel", "expected"),
    [
        ("near;maxDistance==1400", True),
        ("near;maxDistance==1300", False),
        ("near;minDistance==1300", True),
        ("near;minDistance==1400", False),
    ],
)
def test_near_max_and_min_distance(georel: str, expected: bool) -> None:
    gq = parse_geoq(georel, "Point", TOKYO_STATION, None)
    assert gq is not None
    assert matches(gq, {"type": "Point", "coordinates": IMPERIAL_PALACE}) is expected


def test_one_degree_along_the_equator() -> None:
    gq = parse_geoq("near;maxDistance==111200", "Point", "[0,0]", None)
    assert gq is not None
    assert distance_m(gq, _point(1, 0)) == pytest.approx(111_195, abs=1)
    assert distance_m(gq, {"type": "MultiPoint", "coordinates": [[5, 5], [0, 1]]}) == (
        pytest.approx(111_195, abs=1)
    )


def test_near_to_and_from_other_geometries() -> None:
    square = parse_geoq("near;maxDistance==1000", "Polygon", _square(0, 0, 0.01, 0.01), None)
    assert square is not None
    east = _point(0.015, 0.005)  # 0.005 degrees east of the square's edge, about 556 m
    assert distance_m(square, east) == pytest.approx(556, rel=1e-3)
    assert distance_m(square, _point(0.005, 0.005)) == 0
    point = parse_geoq("near;maxDistance==1000", "Point", "[0.015,0.005]", None)
    assert point is not None
    assert distance_m(point, _polygon(0, 0, 0.01, 0.01)) == pytest.approx(556, rel=1e-3)


# --- topological relations: entity geometry against the query geometry ---

_ENTITIES: dict[str, dict[str, Any]] = {
    "inside": _point(5, 5),
    "outside": _point(15, 5),
    "on_edge": _point(10, 5),
    "small": _polygon(2, 2, 4, 4),
    "overlapping": _polygon(8, 8, 12, 12),
    "bigger": _polygon(-1, -1, 11, 11),
    "same": {"type": "Polygon", "coordinates": [[[10, 0], [10, 10], [0, 10], [0, 0], [10, 0]]]},
    "crossing": {"type": "LineString", "coordinates": [[-5, 5], [15, 5]]},
    "far": _polygon(20, 20, 30, 30),
}
_RELATION_CASES = {
    "within": {"inside", "small", "same"},
    "contains": {"bigger", "same"},
    "intersects": {"inside", "on_edge", "small", "overlapping", "bigger", "same", "crossing"},
    "disjoint": {"outside", "far"},
    "equals": {"same"},
    "overlaps": {"overlapping"},
}


@pytest.mark.parametrize(("georel", "expected"), sorted(_RELATION_CASES.items()))
def test_relation_against_a_square(georel: str, expected: set[str]) -> None:
    gq = parse_geoq(georel, "Polygon", _square(0, 0, 10, 10), None)
    assert gq is not None
    assert {name for name, g in _ENTITIES.items() if matches(gq, g)} == expected


def test_contains_means_entity_contains_query_point() -> None:
    gq = parse_geoq("contains", "Point", "[5,5]", None)
    assert gq is not None
    assert matches(gq, _polygon(0, 0, 10, 10))
    assert not matches(gq, _polygon(6, 6, 10, 10))
    assert not matches(gq, _point(5, 6))


def test_entity_matches_when_any_geoproperty_instance_matches() -> None:
    entity = {
        "id": "urn:ngsi-ld:Bus:1",
        "attrs": {
            LOCATION: [
                {"type": "GeoProperty", "value": _point(50, 50)},
                {"type": "GeoProperty", "value": _point(5, 5), "datasetId": "urn:ngsi-ld:D:gps"},
            ],
            "https://example.org/area": [{"type": "Property", "value": _point(5, 5)}],
        },
    }
    gq = parse_geoq("within", "Polygon", _square(0, 0, 10, 10), None)
    assert gq is not None
    assert not matches_entity(gq, entity)  # "location" not expanded yet
    assert matches_entity(gq.with_property_iri(LOCATION), entity)
    assert not matches_entity(gq.with_property_iri("https://example.org/area"), entity)
    near = parse_geoq("near;maxDistance==1", "Point", "[5,5]", LOCATION)
    assert near is not None
    assert entity_distance_m(near, entity) == 0
    assert entity_distance_m(near.with_property_iri("https://example.org/x"), entity) is None


# --- query_bbox: the index prefilter ---


@pytest.mark.parametrize(
    "georel", ["disjoint", "near;minDistance==10"], ids=["disjoint", "minDistance"]
)
def test_no_prefilter_box(georel: str) -> None:
    gq = parse_geoq(georel, "Point", "[1,2]", None)
    assert gq is not None and query_bbox(gq) is None


def test_prefilter_box_is_query_box_for_relations() -> None:
    gq = parse_geoq("within", "Polygon", _square(0, 1, 10, 11), None)
    assert gq is not None and query_bbox(gq) == (0, 1, 10, 11)


def test_near_box_grows_more_in_longitude_at_high_latitude() -> None:
    gq = parse_geoq("near;maxDistance==10000", "Point", "[10,60]", None)
    assert gq is not None
    minx, miny, maxx, maxy = query_bbox(gq) or (0, 0, 0, 0)
    assert (maxy - miny) / 2 == pytest.approx(10000 / 111_195, rel=1e-6)
    assert (maxx - minx) / (maxy - miny) == pytest.approx(2, rel=0.01)  # 1 / cos(60°)


@pytest.mark.parametrize(
    ("coordinates", "distance", "expected"),
    [
        ("[179.99,0]", 10000, (-180, None, 180, None)),  # would cross the antimeridian
        ("[0,89.99]", 10000, (-180, None, 180, 90)),  # reaches the pole
        ("[0,0]", 3e7, (-180, -90, 180, 90)),  # half the globe away
    ],
)
def test_near_box_goes_round_the_globe(
    coordinates: str, distance: float, expected: tuple[float | None, ...]
) -> None:
    gq = parse_geoq(f"near;maxDistance=={distance:.0f}", "Point", coordinates, None)
    assert gq is not None
    box = query_bbox(gq)
    assert box is not None
    assert all(e is None or b == e for b, e in zip(box, expected, strict=True))


_LON = st.floats(-180, 180) | st.sampled_from([-180.0, 180.0, 0.0])
_LAT = st.floats(-90, 90) | st.sampled_from([-90.0, 90.0, 89.999])
_SIZE = st.floats(0.001, 2)


def _clip(lon: float, lat: float) -> list[float]:
    return [min(180.0, max(-180.0, lon)), min(90.0, max(-90.0, lat))]


@st.composite
def _geometries(draw: st.DrawFn, lon: float, lat: float) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Point", "MultiPoint", "Polygon", "LineString"]))
    dx, dy = draw(st.floats(-2, 2)), draw(st.floats(-2, 2))
    x, y = _clip(lon + dx, lat + dy)
    if kind == "Point":
        return _point(x, y)
    w, h = draw(_SIZE), draw(_SIZE)
    x0, y0 = _clip(x - w, y - h)
    x1, y1 = _clip(x + w, y + h)
    if kind == "MultiPoint":
        return {"type": "MultiPoint", "coordinates": [[x0, y0], [x1, y1]]}
    if kind == "LineString":
        return {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]}
    if x0 == x1 or y0 == y1:
        return _point(x, y)
    return _polygon(x0, y0, x1, y1)


@st.composite
def _query_and_entity(draw: st.DrawFn) -> tuple[GeoQuery, dict[str, Any]]:
    lon, lat = draw(_LON), draw(_LAT)
    query_geometry = draw(_geometries(lon, lat))
    entity = draw(st.just(query_geometry) | _geometries(lon, lat))
    relation = draw(st.sampled_from(["near", *_RELATION_CASES]))
    if relation == "near":
        relation = f"near;maxDistance=={draw(st.integers(0, 400_000))}"
    gq = parse_geoq(relation, query_geometry["type"], query_geometry["coordinates"], None)
    assert gq is not None
    return gq, entity


@given(_query_and_entity())
def test_every_match_intersects_the_query_box(case: tuple[GeoQuery, dict[str, Any]]) -> None:
    gq, entity = case
    box = query_bbox(gq)
    if box is None or not matches(gq, entity):
        return
    minx, miny, maxx, maxy = bbox(entity)
    assert maxx >= box[0] and minx <= box[2] and maxy >= box[1] and miny <= box[3]
