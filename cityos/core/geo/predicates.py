"""Evaluate a geo-query against stored geometries (clause 4.10).

Each relation compares an Entity's geometry E with the query's reference geometry Q, in
the DE-9IM sense; the spec's wording is "matching Entities shall be those ... the
reference geometry"::

    near;maxDistance==d   distance(E, Q) <= d metres
    near;minDistance==d   distance(E, Q) >= d metres
    within                E within Q       evaluated as  Q contains E
    contains              E contains Q     evaluated as  Q within E
    intersects            E intersects Q
    equals                E equals Q (same point set)
    disjoint              E disjoint Q
    overlaps              E overlaps Q

The Q-first forms are the same DE-9IM predicates transposed; they let GEOS reuse the
query's prepared geometry for every row. An Entity matches when any instance (any
datasetId) of the GeoProperty matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import shapely

from cityos.core.geo.geojson import Bbox, geoproperty_values
from cityos.core.geo.query import GeoQuery
from cityos.core.geo.shapes import (
    EARTH_RADIUS_M,
    haversine_m,
    point_positions,
    project,
    to_shape,
)
from cityos.core.model import StoredEntity

__all__ = [
    "distance_m",
    "entity_distance_m",
    "matches",
    "matches_entity",
    "query_bbox",
]

_RELATIONS: dict[str, Callable[[shapely.Geometry, shapely.Geometry], Any]] = {
    "within": shapely.contains,
    "contains": shapely.within,
    "intersects": shapely.intersects,
    "equals": shapely.equals,
    "disjoint": shapely.disjoint,
    "overlaps": shapely.overlaps,
}
_WORLD: Bbox = (-180.0, -90.0, 180.0, 90.0)
# Absorbs floating-point rounding so the box never excludes a boundary match (~0.1 mm).
_MARGIN_DEGREES = 1e-9
_POLE_COS = 1e-12


def matches(gq: GeoQuery, geometry: dict[str, Any]) -> bool:
    """Whether a stored (validated) geometry satisfies the geo-query."""
    if gq.georel == "near":
        distance = distance_m(gq, geometry)
        if gq.max_distance is not None:
            return distance <= gq.max_distance
        return gq.min_distance is not None and distance >= gq.min_distance
    return bool(_RELATIONS[gq.georel](gq.shapes.shape, to_shape(geometry)))


def distance_m(gq: GeoQuery, geometry: dict[str, Any]) -> float:
    """Distance in metres from the query geometry to ``geometry``; 0 when they meet.

    Point to point is great-circle; anything else is measured in a local equirectangular
    projection centred on the query geometry.
    """
    shapes = gq.shapes
    if shapes.points is not None:
        points = point_positions(geometry)
        if points is not None:
            return min(haversine_m(q, p) for q in shapes.points for p in points)
    entity = project(to_shape(geometry), shapes.origin)
    return float(shapely.distance(shapes.projected, entity))


def matches_entity(gq: GeoQuery, entity: StoredEntity) -> bool:
    """Whether any instance of the Entity's GeoProperty ``gq.geoproperty`` matches.

    ``gq.geoproperty`` must already be an expanded IRI (see ``GeoQuery.with_property_iri``).
    """
    return any(matches(gq, value) for value in geoproperty_values(entity, gq.geoproperty))


def entity_distance_m(gq: GeoQuery, entity: StoredEntity) -> float | None:
    """The smallest distance over the GeoProperty's instances, to order near results."""
    values = geoproperty_values(entity, gq.geoproperty)
    return min((distance_m(gq, value) for value in values), default=None)


def query_bbox(gq: GeoQuery) -> Bbox | None:
    """A box that every matching geometry intersects; None when no box can tell.

    disjoint and near;minDistance match geometries anywhere, so they get None.
    """
    if gq.georel == "disjoint" or (gq.georel == "near" and gq.max_distance is None):
        return None
    if gq.max_distance is None:
        return gq.shapes.box
    return _expand(gq.shapes.box, gq.max_distance)


def _expand(box: Bbox, metres: float) -> Bbox:
    """Grow ``box`` by ``metres`` on the sphere, going round the globe when it must."""
    angle = metres / EARTH_RADIUS_M
    if angle >= math.pi:
        return _WORLD
    dlat = math.degrees(angle) + _MARGIN_DEGREES
    miny, maxy = max(-90.0, box[1] - dlat), min(90.0, box[3] + dlat)
    dlon = _longitude_reach(angle, miny, maxy)
    if dlon is None or box[0] - dlon < -180.0 or box[2] + dlon > 180.0:
        return (-180.0, miny, 180.0, maxy)
    return (box[0] - dlon, miny, box[2] + dlon, maxy)


def _longitude_reach(angle: float, miny: float, maxy: float) -> float | None:
    """Largest longitude gap, in degrees, between two points ``angle`` radians apart
    whose latitudes lie in [miny, maxy]; None when it may be a half turn or more.

    From the haversine formula, cos(lat1) cos(lat2) sin²(dlon / 2) <= sin²(angle / 2),
    and both cosines are at least the smaller cosine at the band's edges. This bound also
    covers the equirectangular distance, whose dlon is at most angle / cos(lat0).
    """
    cos_min = min(math.cos(math.radians(miny)), math.cos(math.radians(maxy)))
    if cos_min <= _POLE_COS:
        return None
    ratio = math.sin(angle / 2) / cos_min
    if ratio >= 1.0:
        return None
    return math.degrees(2 * math.asin(ratio)) + _MARGIN_DEGREES
