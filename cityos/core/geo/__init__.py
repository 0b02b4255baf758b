"""GeoProperty values and the NGSI-LD Geo-query Language (clauses 4.7 and 4.10).

No SQL here: a backend narrows candidates with :func:`query_bbox` (an index prefilter)
and keeps the rows for which :func:`matches` (exact, with shapely) holds::

    geojson.py     validate_geometry, bbox, GeoProperty values of a stored Entity
    query.py       GeoQuery, parse_geoq, parse_geoq_object
    shapes.py      shapely forms, haversine and local projection distances
    predicates.py  matches, distance_m, query_bbox
"""

from cityos.core.geo.geojson import (
    GEOMETRY_TYPES,
    Bbox,
    bbox,
    geoproperty_values,
    iter_geoproperties,
    validate_geometry,
)
from cityos.core.geo.predicates import (
    distance_m,
    entity_distance_m,
    matches,
    matches_entity,
    query_bbox,
)
from cityos.core.geo.query import (
    DEFAULT_GEOPROPERTY,
    GEORELS,
    GeoQuery,
    parse_geoq,
    parse_geoq_object,
)
from cityos.core.geo.shapes import EARTH_RADIUS_M, haversine_m

__all__ = [
    "DEFAULT_GEOPROPERTY",
    "EARTH_RADIUS_M",
    "GEOMETRY_TYPES",
    "GEORELS",
    "Bbox",
    "GeoQuery",
    "bbox",
    "distance_m",
    "entity_distance_m",
    "geoproperty_values",
    "haversine_m",
    "iter_geoproperties",
    "matches",
    "matches_entity",
    "parse_geoq",
    "parse_geoq_object",
    "query_bbox",
    "validate_geometry",
]
