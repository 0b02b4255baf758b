"""Shapely forms of geometries and distances in metres on the WGS84 sphere.

Topological relations are evaluated on longitude/latitude as planar coordinates, which is
how RFC 7946 clause 3.1.1 reads a line between two positions. Distances use the mean
Earth radius: great-circle (haversine) between points, and for other geometries a local
equirectangular projection centred on the query geometry, whose error stays well under
1 % at city scale. Neither wraps around the antimeridian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import shape

from cityos.core.geo.geojson import Bbox, bbox

__all__ = [
    "EARTH_RADIUS_M",
    "QueryShapes",
    "build_query_shapes",
    "haversine_m",
    "point_positions",
    "project",
    "to_shape",
]

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG), in metres."""

_M_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180
_POINT_TYPES = frozenset({"Point", "MultiPoint"})

Position = tuple[float, float]


@dataclass(frozen=True)
class QueryShapes:
    """A geo-query geometry prepared once, then tested against many Entities."""

    shape: shapely.Geometry
    """Longitude/latitude shape, prepared for repeated predicates."""
    box: Bbox
    origin: Position
    """(lon, lat) centre of the projection used for distances."""
    projected: shapely.Geometry
    """The shape in local equirectangular metres around ``origin``."""
    points: tuple[Position, ...] | None
    """The positions of a Point or MultiPoint query, for great-circle distances."""


def build_query_shapes(geojson: dict[str, Any]) -> QueryShapes:
    """Build and prepare the shapes of a validated query geometry."""
    geom = to_shape(geojson)
    box = bbox(geojson)
    origin = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    projected = project(geom, origin)
    shapely.prepare(geom)
    shapely.prepare(projected)
    points = point_positions(geojson)
    return QueryShapes(geom, box, origin, projected, None if points is None else tuple(points))


def to_shape(geojson: dict[str, Any]) -> shapely.Geometry:
    """The shapely geometry of a validated GeoJSON geometry."""
    return shape(geojson)


def project(geom: shapely.Geometry, origin: Position) -> shapely.Geometry:
    """``geom`` in metres east/north of ``origin`` (local equirectangular projection)."""
    scale = np.array([_M_PER_DEGREE * math.cos(math.radians(origin[1])), _M_PER_DEGREE])
    offset = np.array(origin)

    def to_metres(coords: NDArray[np.float64]) -> NDArray[np.float64]:
        metres: NDArray[np.float64] = (coords - offset) * scale
        return metres

    return shapely.transform(geom, to_metres)


def point_positions(geojson: dict[str, Any]) -> list[Position] | None:
    """The (lon, lat) positions of a Point or MultiPoint; None for other types."""
    if geojson.get("type") not in _POINT_TYPES:
        return None
    coords = geojson["coordinates"]
    positions = [coords] if geojson["type"] == "Point" else coords
    return [(float(p[0]), float(p[1])) for p in positions]


def haversine_m(a: Position, b: Position) -> float:
    """Great-circle distance in metres between two (lon, lat) positions."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, h)))
