"""Tests for cityos.core.geo: GeoJSON validation and geo-query parsing (clauses 4.7, 4.10)."""

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
    matches,
    parse_geoq,
    parse_geoq_object,
    validate_geometry,
)
from cityos.errors import BadRequestData

LOCATION = "https://uri.etsi.org/ngsi-ld/location"


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[list[float]]]:
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def _polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": _square(x0, y0, x1, y1)}


# --- validate_geometry ---

VALID_GEOMETRIES = [
    _point(139.7671, 35.6812),
    {"type": "Point", "coordinates": [139.7671, 35.6812, 40]},
    _point(180, 90),
    _point(-180, -90),
    {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
    {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
    {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3, 1]]]},
    _polygon(0, 0, 1, 1),
    {"type": "Polygon", "coordinates": _square(0, 0, 4, 4) + _square(1, 1, 2, 2)},
    {"type": "MultiPolygon", "coordinates": [_square(0, 0, 1, 1), _square(2, 2, 3, 3)]},
    {"type": "GeometryCollection", "geometries": [_point(1, 2), _polygon(0, 0, 1, 1)]},
]


@pytest.mark.parametrize("geometry", VALID_GEOMETRIES, ids=lambda g: g["type"])
def test_valid_geometry_is_returned_unchanged(geometry: dict[str, Any]) -> None:
    assert validate_geometry(geometry) is geometry


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("POINT(1 2)", "Invalid GeoJSON geometry: expected a JSON object"),
        ({"coordinates": [1, 2]}, "Invalid GeoJSON geometry type null"),
        ({"type": "Circle", "coordinates": [1, 2]}, 'Invalid GeoJSON geometry type "Circle"'),
        ({"type": ["Point"], "coordinates": [1, 2]}, "Invalid GeoJSON geometry type"),
        ({"type": "Point"}, "Invalid GeoJSON geometry Point: coordinates are missing"),
        (_point(1, 2) | {"coordinates": [1]}, "geometry Point: expected [lon, lat], got [1]"),
        (_point(1, 2) | {"coordinates": [1, 2, 3, 4]}, "geometry Point: expected [lon, lat]"),
        (_point(1, 2) | {"coordinates": ["1", 2]}, "geometry Point: expected [lon, lat]"),
        (_point(1, 2) | {"coordinates": [True, 2]}, "geometry Point: expected [lon, lat]"),
        (_point(1, 2) | {"coordinates": [math.nan, 2]}, "geometry Point: expected [lon, lat]"),
        (_point(1, 2) | {"coordinates": [10**400, 2]}, "geometry Point: expected [lon, lat]"),
        (_point(1, 2) | {"coordinates": {"lon": 1}}, "geometry Point: expected [lon, lat]"),
        (_point(181, 0), "Point: [181, 0] is outside longitude [-180, 180]"),
        (_point(0, -90.5), "Point: [0, -90.5] is outside longitude"),
        ({"type": "MultiPoint", "coordinates": []}, "MultiPoint: expected an array of"),
        ({"type": "LineString", "coordinates": [[0, 0]]}, "a LineString needs 2 or more"),
        ({"type": "LineString", "coordinates": [0, 0]}, "LineString: expected [lon, lat]"),
        ({"type": "MultiLineString", "coordinates": [[0, 0], [1, 1]]}, "MultiLineString"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
            "Polygon: a linear ring must end with its first position",
        ),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
            "Polygon: a linear ring needs 4 or more positions",
        ),
        ({"type": "Polygon", "coordinates": [[0, 0], [1, 0]]}, "geometry Polygon"),
        ({"type": "MultiPolygon", "coordinates": _square(0, 0, 1, 1)}, "MultiPolygon"),
        ({"type": "GeometryCollection", "geometries": []}, "a non-empty array"),
        (
            {"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection"}]},
            "nested collections are not supported",
        ),
        ({"type": "GeometryCollection", "geometries": [_point(0, 99)]}, "outside longitude"),
    ],
)
def test_invalid_geometry_raises_bad_request_data(value: object, detail: str) -> None:
    with pytest.raises(BadRequestData) as raised:
        validate_geometry(value)
    assert detail in raised.value.detail


@pytest.mark.parametrize(
    ("geometry", "expected"),
    [
        (_point(139.7, 35.6), (139.7, 35.6, 139.7, 35.6)),
        ({"type": "LineString", "coordinates": [[3, -1, 9], [-2, 4]]}, (-2, -1, 3, 4)),
        (
            {"type": "MultiPolygon", "coordinates": [_square(0, 0, 1, 1), _square(5, -5, 6, -4)]},
            (0, -5, 6, 1),
        ),
        (
            {"type": "GeometryCollection", "geometries": [_point(-10, 3), _polygon(0, 0, 1, 1)]},
            (-10, 0, 1, 3),
        ),
    ],
)
def test_bbox_of_stored_geometry(geometry: dict[str, Any], expected: tuple[float, ...]) -> None:
    assert bbox(geometry) == expected


# --- parse_geoq ---


@pytest.mark.parametrize(
    ("georel", "relation", "max_distance", "min_distance"),
    [
        ("near;maxDistance==1000", "near", 1000.0, None),
        ("near;minDistance==2.5", "near", None, 2.5),
        ("near;maxDistance==0", "near", 0.0, None),
        ("within", "within", None, None),
        ("contains", "contains", None, None),
        ("intersects", "intersects", None, None),
        ("equals", "equals", None, None),
        ("disjoint", "disjoint", None, None),
        ("overlaps", "overlaps", None, None),
    ],
)
def test_parse_georel(
    georel: str, relation: str, max_distance: float | None, min_distance: float | None
) -> None:
    gq = parse_geoq(georel, "Point", "[139.76,35.68]", None)
    assert gq is not None
    assert (gq.georel, gq.max_distance, gq.min_distance) == (relation, max_distance, min_distance)
    assert gq.georel_text == georel
    assert (gq.geometry, gq.coordinates, gq.geoproperty) == ("Point", (139.76, 35.68), "location")


@pytest.mark.parametrize(
    "georel",
    [
        "",
        "near",
        "near;",
        "near;maxDistance=1000",
        "near;maxDistance:1000",
        "near;maxDistance==",
        "near;maxDistance==-1",
        "near;maxDistance==abc",
        "near;maxDistance==1e3",
        "near;maxDistance==\u0661\u0662",
        "near;maxDistance==" + "9" * 400,
        "near;maxDistance==1;minDistance==2",
        "near;distance==3",
        "Within",
        "within ",
        "coveredBy",
    ],
)
def test_invalid_georel(georel: str) -> None:
    with pytest.raises(BadRequestData, match="Invalid georel"):
        parse_geoq(georel, "Point", "[1,2]", None)


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        (("within", None, "[1,2]", None), "needs geometry and coordinates when georel"),
        (("within", "Point", None, None), "needs geometry and coordinates when georel"),
        ((None, "Point", "[1,2]", None), "needs georel when geometry or coordinates"),
        ((None, None, "[1,2]", "location"), "needs georel"),
        (("within", "Circle", "[1,2]", None), 'Invalid geometry "Circle"'),
        (("within", "point", "[1,2]", None), 'Invalid geometry "point"'),
        (("within", "GeometryCollection", "[1,2]", None), "Invalid geometry"),
        (("within", "Point", "[1,2", None), 'Invalid coordinates "[1,2": expected a JSON'),
        (("within", "Point", "1,2", None), 'Invalid coordinates "1,2"'),
        (("within", "Point", "[[1,2]]", None), "Invalid coordinates for geometry Point"),
        (("within", "Polygon", "[1,2]", None), "Invalid coordinates for geometry Polygon"),
        (("within", "Point", "[NaN,2]", None), "Invalid coordinates for geometry Point"),
        (("within", "Point", "[1,2]", ""), "Invalid geoproperty"),
        (("within", "Point", "[1,2]", "a b"), "Invalid geoproperty"),
        ((7, "Point", "[1,2]", None), "Invalid georel 7: expected a string"),
    ],
)
def test_partial_or_invalid_geo_query(args: tuple[Any, ...], detail: str) -> None:
    with pytest.raises(BadRequestData) as raised:
        parse_geoq(*args)
    assert detail in raised.value.detail


def test_absent_geo_query_is_none() -> None:
    assert parse_geoq(None, None, None, None) is None
    assert parse_geoq(None, None, None, "location") is None


def test_coordinates_may_be_parsed_json_and_geoproperty_given() -> None:
    from_text = parse_geoq("within", "Polygon", json.dumps(_square(0, 0, 1, 1)), "area")
    from_json = parse_geoq("within", "Polygon", _square(0, 0, 1, 1), "area")
    assert from_text == from_json
    assert from_json is not None and from_json.geoproperty == "area"
    assert hash(from_text) == hash(from_json)
    assert from_json.geojson == _polygon(0, 0, 1, 1)


def test_parse_geoq_object_round_trips_to_object() -> None:
    gq = parse_geoq_object(
        {"geometry": "Point", "coordinates": "[8.68, 49.4]", "georel": "near;minDistance==10"}
    )
    assert gq.to_object() == {
        "geometry": "Point",
        "coordinates": [8.68, 49.4],
        "georel": "near;minDistance==10",
        "geoproperty": "location",
    }
    assert parse_geoq_object(gq.to_object()) == gq


@pytest.mark.parametrize(
    ("obj", "detail"),
    [
        ([], "Invalid geoQ []: expected a JSON object"),
        ({}, "Invalid geoQ: georel, geometry and coordinates are missing"),
        ({"georel": "within", "geometry": "Point"}, "needs geometry and coordinates"),
    ],
)
def test_invalid_geoq_object(obj: object, detail: str) -> None:
    with pytest.raises(BadRequestData) as raised:
        parse_geoq_object(obj)
    assert detail in raised.value.detail


def test_with_property_iri_keeps_everything_else() -> None:
    gq = parse_geoq("near;maxDistance==5", "Point", "[1,2]", None)
    assert gq is not None
    expanded = gq.with_property_iri(LOCATION)
    assert expanded.geoproperty == LOCATION
    assert expanded == GeoQuery("near", "Point", (1, 2), LOCATION, max_distance=5.0)


_TEXT = st.none() | st.text(max_size=40)
_GEORELS = st.sampled_from(["near;maxDistance==", "near;minDistance==", "within", "near"])
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@given(_TEXT, _TEXT, _TEXT, _TEXT)
def test_any_text_parses_or_raises_bad_request_data(
    georel: str | None, geometry: str | None, coordinates: str | None, prop: str | None
) -> None:
    try:
        parse_geoq(georel, geometry, coordinates, prop)
    except BadRequestData:
        pass


@given(
    _GEORELS.flatmap(lambda g: st.builds(lambda s: g + s, st.text(max_size=8))),
    st.sampled_from(geo.GEOMETRY_TYPES),
    _JSONISH,
    st.booleans(),
)
def test_near_valid_input_parses_or_raises_bad_request_data(
    georel: str, geometry: str, coordinates: object, as_text: bool
) -> None:
    text = json.dumps(coordinates) if as_text else coordinates
    try:
        gq = parse_geoq(georel, geometry, text, None)
    except BadRequestData:
        return
    assert gq is not None
    assert matches(gq, _point(0, 0)) in (True, False)
