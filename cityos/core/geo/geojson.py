"""GeoJSON geometries, the values of GeoProperties (clause 4.7, IETF RFC 7946).

Validation is strict about shape and lenient about style: positions hold 2 or 3 finite
numbers (RFC 7946 clause 3.1.1), longitude in [-180, 180] and latitude in [-90, 90]
(clause 4), LineStrings hold 2 or more positions and linear rings are closed with 4 or
more (clause 3.1.6). Ring orientation (a SHOULD in RFC 7946) is not enforced. Empty
coordinate arrays, which RFC 7946 lets processors treat as null, are refused so that
every stored geometry has a bounding box.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from cityos.core.model import StoredEntity
from cityos.errors import BadRequestData

__all__ = [
    "GEOMETRY_TYPES",
    "Bbox",
    "bbox",
    "geoproperty_values",
    "iter_geoproperties",
    "short_json",
    "validate_coordinates",
    "validate_geometry",
]

Bbox = tuple[float, float, float, float]
"""(minx, miny, maxx, maxy) in degrees: (min lon, min lat, max lon, max lat)."""

# How many array levels wrap the positions of each geometry type's "coordinates".
_DEPTH: dict[str, int] = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}
GEOMETRY_TYPES: tuple[str, ...] = tuple(_DEPTH)
"""The six geometry types a geo-query may use (clause 4.10)."""

_COLLECTION = "GeometryCollection"
# Beyond 2**53 a JSON integer is no longer exact as a float; nothing on Earth is that far.
_MAX_INT = 2**53


def validate_geometry(value: object) -> dict[str, Any]:
    """Return ``value`` unchanged if it is a GeoJSON geometry object, else raise.

    Accepts the six types of :data:`GEOMETRY_TYPES` and a GeometryCollection of them
    (not nested: RFC 7946 clause 3.1.8 advises against it).
    """
    value = _require_object(value)
    gtype = _geometry_type(value)
    if gtype == _COLLECTION:
        _check_collection(value)
    elif "coordinates" not in value:
        raise BadRequestData(f"Invalid GeoJSON geometry {gtype}: coordinates are missing")
    else:
        validate_coordinates(gtype, value["coordinates"])
    return value


def validate_coordinates(geometry: str, coordinates: object) -> None:
    """Raise BadRequestData unless ``coordinates`` fit the geometry type ``geometry``."""
    _CHECKS[geometry](geometry, coordinates)


def bbox(geometry: dict[str, Any]) -> Bbox:
    """The bounding box of a validated geometry, ignoring altitude."""
    positions = list(_iter_positions(geometry))
    lons = [float(p[0]) for p in positions]
    lats = [float(p[1]) for p in positions]
    return (min(lons), min(lats), max(lons), max(lats))


def iter_geoproperties(entity: StoredEntity) -> Iterator[tuple[str, dict[str, Any]]]:
    """(attribute IRI, geometry) for every GeoProperty instance of a stored Entity."""
    for attr_iri, instances in entity.get("attrs", {}).items():
        for instance in instances:
            if instance.get("type") == "GeoProperty" and isinstance(instance.get("value"), dict):
                yield attr_iri, instance["value"]


def geoproperty_values(entity: StoredEntity, attr_iri: str) -> list[dict[str, Any]]:
    """The geometries of every instance (any datasetId) of GeoProperty ``attr_iri``."""
    return [value for iri, value in iter_geoproperties(entity) if iri == attr_iri]


def _require_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequestData("Invalid GeoJSON geometry: expected a JSON object with a type")
    return value


def _geometry_type(value: dict[str, Any]) -> str:
    gtype = value.get("type")
    if not isinstance(gtype, str) or (gtype != _COLLECTION and gtype not in GEOMETRY_TYPES):
        raise BadRequestData(
            f"Invalid GeoJSON geometry type {short_json(gtype)}: expected one of "
            f"{', '.join(GEOMETRY_TYPES)} or {_COLLECTION}"
        )
    return gtype


def _check_collection(value: dict[str, Any]) -> None:
    members = value.get("geometries")
    if not isinstance(members, list) or not members:
        raise BadRequestData(
            f"Invalid GeoJSON geometry {_COLLECTION}: expected geometries, "
            "a non-empty array of geometry objects"
        )
    for member in members:
        if _geometry_type(_require_object(member)) == _COLLECTION:
            raise BadRequestData(
                f"Invalid GeoJSON geometry {_COLLECTION}: nested collections are not supported"
            )
        validate_geometry(member)


def _iter_positions(geometry: dict[str, Any]) -> Iterator[Any]:
    if geometry["type"] == _COLLECTION:
        for member in geometry["geometries"]:
            yield from _iter_positions(member)
        return
    level = [geometry["coordinates"]]
    for _ in range(_DEPTH[geometry["type"]]):
        level = [item for array in level for item in array]
    yield from level


# --- coordinates checks, one per geometry type (RFC 7946 clauses 3.1.2-3.1.7) ---


def _bad(geometry: str, reason: str) -> BadRequestData:
    return BadRequestData(f"Invalid coordinates for geometry {geometry}: {reason}")


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -_MAX_INT <= value <= _MAX_INT
    return isinstance(value, float) and math.isfinite(value)


def _position(geometry: str, value: object) -> None:
    if not (
        isinstance(value, list | tuple)
        and len(value) in (2, 3)
        and all(_is_number(c) for c in value)
    ):
        raise _bad(geometry, f"expected [lon, lat], got {short_json(value)}")
    if not (-180 <= value[0] <= 180 and -90 <= value[1] <= 90):
        raise _bad(
            geometry,
            f"{short_json(value)} is outside longitude [-180, 180] or latitude [-90, 90]",
        )


def _array(geometry: str, value: object, expected: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _bad(geometry, f"expected {expected}")
    return value


def _positions(geometry: str, value: object, minimum: int, what: str) -> None:
    array = _array(geometry, value, "an array of [lon, lat] positions")
    if len(array) < minimum:
        raise _bad(geometry, f"{what} needs {minimum} or more positions")
    for position in array:
        _position(geometry, position)


def _line(geometry: str, value: object) -> None:
    _positions(geometry, value, 2, "a LineString")


def _polygon(geometry: str, value: object) -> None:
    for ring in _array(geometry, value, "an array of linear rings"):
        _positions(geometry, ring, 4, "a linear ring")
        if list(ring[0]) != list(ring[-1]):
            raise _bad(geometry, "a linear ring must end with its first position")


def _check_point(geometry: str, value: object) -> None:
    _position(geometry, value)


def _check_multipoint(geometry: str, value: object) -> None:
    _positions(geometry, value, 1, "a MultiPoint")


def _check_multiline(geometry: str, value: object) -> None:
    for line in _array(geometry, value, "an array of LineString coordinates"):
        _line(geometry, line)


def _check_multipolygon(geometry: str, value: object) -> None:
    for polygon in _array(geometry, value, "an array of Polygon coordinates"):
        _polygon(geometry, polygon)


_CHECKS: dict[str, Callable[[str, object], None]] = {
    "Point": _check_point,
    "MultiPoint": _check_multipoint,
    "LineString": _line,
    "MultiLineString": _check_multiline,
    "Polygon": _polygon,
    "MultiPolygon": _check_multipolygon,
}


def short_json(value: object, limit: int = 60) -> str:
    """A short JSON rendering of a client's value for an error detail."""
    try:
        text = json.dumps(value, separators=(", ", ": "), default=repr)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
