"""Geo-queries: parse ``georel``, ``geometry``, ``coordinates`` and ``geoproperty``.

Grammar of clause 4.10 (ETSI GS CIM 009 V1.8.1)::

    georel      = nearRel / "within" / "contains" / "intersects" / "equals"
                / "disjoint" / "overlaps"
    nearRel     = "near" ";" distance "==" PositiveNumber     ; metres
    distance    = "maxDistance" / "minDistance"
    geometry    = "Point" / "MultiPoint" / "LineString" / "MultiLineString"
                / "Polygon" / "MultiPolygon"
    coordinates = JSON array fitting geometry (IETF RFC 7946)
    geoproperty = attribute name, default "location"

A query string gives the four as separate parameters (clause 6.4.3.2); a POST
``/entityOperations/query`` body or a Subscription gives them as a GeoQuery object
(clause 5.2.13) whose ``coordinates`` may be an array or a JSON-encoded string. Only one
distance modifier is allowed, as the grammar says.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, cast

from cityos.core.geo.geojson import GEOMETRY_TYPES, short_json, validate_coordinates
from cityos.core.geo.shapes import QueryShapes, build_query_shapes
from cityos.errors import BadRequestData

__all__ = [
    "DEFAULT_GEOPROPERTY",
    "GEORELS",
    "GeoQuery",
    "parse_geoq",
    "parse_geoq_object",
]

DEFAULT_GEOPROPERTY = "location"
GEORELS: tuple[str, ...] = (
    "near",
    "within",
    "contains",
    "intersects",
    "equals",
    "disjoint",
    "overlaps",
)
_NEAR = re.compile(r"near;(maxDistance|minDistance)==([0-9]+(?:\.[0-9]+)?)")
_GEOREL_HINT = (
    "expected near;maxDistance==<metres>, near;minDistance==<metres>, within, contains, "
    "intersects, equals, disjoint or overlaps"
)


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query. Build it with :func:`parse_geoq` or :func:`parse_geoq_object`."""

    georel: str
    """The relation keyword, one of :data:`GEORELS` (without the distance modifier)."""
    geometry: str
    coordinates: tuple[Any, ...]
    """The coordinates as nested tuples, so the query stays immutable and hashable."""
    geoproperty: str = DEFAULT_GEOPROPERTY
    """A raw attribute name until the caller expands it: see :meth:`with_property_iri`."""
    max_distance: float | None = None
    min_distance: float | None = None

    @property
    def geojson(self) -> dict[str, Any]:
        """The reference geometry as a GeoJSON geometry object."""
        return {"type": self.geometry, "coordinates": _thaw(self.coordinates)}

    @property
    def georel_text(self) -> str:
        """``georel`` as written in a query, e.g. ``near;maxDistance==1000``."""
        if self.max_distance is not None:
            return f"near;maxDistance=={_number(self.max_distance)}"
        if self.min_distance is not None:
            return f"near;minDistance=={_number(self.min_distance)}"
        return self.georel

    @cached_property
    def shapes(self) -> QueryShapes:
        """Prepared shapes of the reference geometry, built on first use."""
        return build_query_shapes(self.geojson)

    def with_property_iri(self, iri: str) -> GeoQuery:
        """This query with ``geoproperty`` expanded (through the request's @context)."""
        return replace(self, geoproperty=iri)

    def to_object(self) -> dict[str, Any]:
        """The GeoQuery JSON form (clause 5.2.13), e.g. to render a Subscription."""
        return {
            "geometry": self.geometry,
            "coordinates": _thaw(self.coordinates),
            "georel": self.georel_text,
            "geoproperty": self.geoproperty,
        }


def parse_geoq(
    georel: object,
    geometry: object,
    coordinates: object,
    geoproperty: object,
) -> GeoQuery | None:
    """Parse the geo-query members; None if none of georel, geometry, coordinates is given.

    ``coordinates`` is a JSON string (query string) or already-parsed JSON. Raises
    BadRequestData for a partial or invalid geo-query (clause 6.4.3.2). A lone
    ``geoproperty`` selects nothing and is ignored.
    """
    if georel is None:
        if geometry is None and coordinates is None:
            return None
        raise BadRequestData("Geo-query needs georel when geometry or coordinates are given")
    if geometry is None or coordinates is None:
        raise BadRequestData("Geo-query needs geometry and coordinates when georel is given")
    relation, max_distance, min_distance = _parse_georel(georel)
    geometry_type = _parse_geometry(geometry)
    return GeoQuery(
        georel=relation,
        geometry=geometry_type,
        coordinates=_parse_coordinates(geometry_type, coordinates),
        geoproperty=_parse_geoproperty(geoproperty),
        max_distance=max_distance,
        min_distance=min_distance,
    )


def parse_geoq_object(obj: object) -> GeoQuery:
    """Parse a GeoQuery object (clause 5.2.13): georel, geometry, coordinates required."""
    if not isinstance(obj, dict):
        raise BadRequestData(f"Invalid geoQ {short_json(obj)}: expected a JSON object")
    parsed = parse_geoq(
        obj.get("georel"), obj.get("geometry"), obj.get("coordinates"), obj.get("geoproperty")
    )
    if parsed is None:
        raise BadRequestData("Invalid geoQ: georel, geometry and coordinates are missing")
    return parsed


def _parse_georel(text: object) -> tuple[str, float | None, float | None]:
    if not isinstance(text, str):
        raise BadRequestData(f"Invalid georel {short_json(text)}: expected a string")
    if text in GEORELS and text != "near":
        return text, None, None
    match = _NEAR.fullmatch(text)
    if match is None:
        raise BadRequestData(f"Invalid georel {short_json(text)}: {_GEOREL_HINT}")
    distance = float(match[2])
    if not math.isfinite(distance):
        raise BadRequestData(f"Invalid georel {short_json(text)}: the distance is too large")
    if match[1] == "maxDistance":
        return "near", distance, None
    return "near", None, distance


def _parse_geometry(value: object) -> str:
    if not isinstance(value, str) or value not in GEOMETRY_TYPES:
        raise BadRequestData(
            f"Invalid geometry {short_json(value)}: expected one of {', '.join(GEOMETRY_TYPES)}"
        )
    return value


def _parse_coordinates(geometry: str, value: object) -> tuple[Any, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise BadRequestData(
                f"Invalid coordinates {short_json(value)}: expected a JSON array"
            ) from None
    validate_coordinates(geometry, value)
    return cast(tuple[Any, ...], _freeze(value))


def _parse_geoproperty(value: object) -> str:
    if value is None:
        return DEFAULT_GEOPROPERTY
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise BadRequestData(f"Invalid geoproperty {short_json(value)}: expected an attribute name")
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value
