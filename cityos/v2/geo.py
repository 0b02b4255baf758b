"""NGSI-v2 locations and geo-queries, as NGSI-LD GeoJSON (FIWARE-NGSI v2 spec, "Geospatial
properties of entities" and "Geographical Queries").

The Simple Location Format writes latitude first (``"41.37, 2.18"``), GeoJSON longitude
first. ``geo:point``, ``geo:line``, ``geo:polygon`` and ``geo:box`` become a GeoJSON Point,
LineString or Polygon (a box is its rectangle), stored as an NGSI-LD GeoProperty, so
NGSI-LD geo-queries see them; ``geo:json`` is stored as it is.

A v2 geo-query becomes an NGSI-LD one on the attribute ``location``::

    georel   near;maxDistance:D | near;minDistance:D  ->  near;maxDistance==D ...
             coveredBy -> within; intersects, equals, disjoint as they are
    geometry point | line | polygon | box             ->  Point | LineString | Polygon
    coords   "lat,lon;lat,lon;..."                    ->  [[lon, lat], ...]
"""

from __future__ import annotations

import math
import re
from typing import Any

from cityos.core.geo import GeoQuery, parse_geoq
from cityos.errors import BadRequestData

__all__ = ["SIMPLE_TYPES", "parse_geo_query", "simple_to_geojson", "geojson_to_simple"]

SIMPLE_TYPES = frozenset({"geo:point", "geo:line", "geo:polygon", "geo:box"})
GEO_ATTRIBUTE = "location"
_NEAR = re.compile(r"^near;(maxDistance|minDistance)(?::|==)(\d+(?:\.\d+)?)$")
_GEORELS = {
    "coveredBy": "within",
    "intersects": "intersects",
    "equals": "equals",
    "disjoint": "disjoint",
}


def _pair(text: object) -> list[float]:
    """``"lat, lon"`` as GeoJSON ``[lon, lat]``."""
    if not isinstance(text, str):
        raise BadRequestData(f"Coordinates {text!r} are not a 'latitude, longitude' string")
    parts = text.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise BadRequestData(f"Coordinates {text!r} are not a 'latitude, longitude' pair") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not math.isfinite(lat + lon):
        raise BadRequestData(f"Coordinates {text!r} are out of range")
    return [_number(lon), _number(lat)]


def _number(x: float) -> float | int:
    return int(x) if x.is_integer() else x


def _pairs(value: object, minimum: int, what: str) -> list[list[float]]:
    if not isinstance(value, list) or len(value) < minimum:
        raise BadRequestData(f"A {what} needs an array of at least {minimum} coordinate pairs")
    return [_pair(item) for item in value]


def _box(corners: list[list[float]]) -> dict[str, Any]:
    (x1, y1), (x2, y2) = corners
    ring = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    return {"type": "Polygon", "coordinates": [ring]}


def simple_to_geojson(v2_type: str, value: object) -> dict[str, Any]:
    """The GeoJSON geometry of a Simple Location Format value; BadRequestData if invalid."""
    if v2_type == "geo:point":
        return {"type": "Point", "coordinates": _pair(value)}
    if v2_type == "geo:line":
        return {"type": "LineString", "coordinates": _pairs(value, 2, "geo:line")}
    if v2_type == "geo:box":
        corners = _pairs(value, 2, "geo:box")
        if len(corners) != 2:
            raise BadRequestData("A geo:box needs exactly two coordinate pairs")
        return _box(corners)
    ring = _pairs(value, 4, "geo:polygon")
    if ring[0] != ring[-1]:
        raise BadRequestData("A geo:polygon must end with its first coordinate pair")
    return {"type": "Polygon", "coordinates": [ring]}


def _text(position: list[Any]) -> str:
    return f"{position[1]}, {position[0]}"


def geojson_to_simple(v2_type: str, geometry: Any) -> Any:
    """A GeoJSON geometry in the Simple Location Format of ``v2_type``; None if it does not fit."""
    if not isinstance(geometry, dict):
        return None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if not isinstance(coords, list):
        return None
    if v2_type == "geo:point" and kind == "Point":
        return _text(coords)
    if v2_type == "geo:line" and kind == "LineString":
        return [_text(p) for p in coords]
    if v2_type == "geo:polygon" and kind == "Polygon":
        return [_text(p) for p in coords[0]]
    if v2_type == "geo:box" and kind == "Polygon":
        xs = [p[0] for p in coords[0]]
        ys = [p[1] for p in coords[0]]
        return [_text([min(xs), min(ys)]), _text([max(xs), max(ys)])]
    return None


def _georel(text: str) -> str:
    match = _NEAR.match(text)
    if match:
        return f"near;{match[1]}=={match[2]}"
    if text in _GEORELS:
        return _GEORELS[text]
    raise BadRequestData(
        f"Invalid georel {text!r}: use near, coveredBy, intersects, equals or disjoint"
    )


def _reference(geometry: str, coords: str) -> tuple[str, list[Any]]:
    pairs = [_pair(p) for p in coords.split(";")]
    if geometry == "point":
        if len(pairs) != 1:
            raise BadRequestData("geometry=point needs exactly one coordinate pair")
        return "Point", pairs[0]
    if geometry == "line":
        return "LineString", pairs
    if geometry == "box":
        if len(pairs) != 2:
            raise BadRequestData("geometry=box needs exactly two coordinate pairs")
        return "Polygon", _box(pairs)["coordinates"]
    if geometry == "polygon":
        return "Polygon", [pairs]
    raise BadRequestData(f"Invalid geometry {geometry!r}: use point, line, polygon or box")


def parse_geo_query(
    georel: str | None, geometry: str | None, coords: str | None
) -> GeoQuery | None:
    """The NGSI-LD GeoQuery of v2's georel, geometry and coords; None when none is given."""
    if georel is None and geometry is None and coords is None:
        return None
    if georel is None or geometry is None or coords is None:
        raise BadRequestData("A geo-query needs georel, geometry and coords together")
    relation = _georel(georel)
    if relation.startswith("near") and geometry != "point":
        raise BadRequestData("georel=near needs geometry=point")
    ld_geometry, coordinates = _reference(geometry, coords)
    return parse_geoq(relation, ld_geometry, coordinates, GEO_ATTRIBUTE)
