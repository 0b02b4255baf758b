"""Geo-query prefilter for SQLite: an R*Tree of GeoProperty bounding boxes.

Each GeoProperty instance of an Entity has one ``geo_index`` row (which Entity, which
attribute) and one ``geo_rtree`` row with the same id holding its bounding box. A
geo-query first narrows the Entities to those whose box meets ``query_bbox`` (clause 4.10
relations never match outside it), then the store keeps the rows for which
``cityos.core.geo.matches_entity`` holds. The R*Tree stores 32-bit floats rounded
outwards, so the prefilter never drops a match.
"""

from __future__ import annotations

from cityos.core.geo import Bbox, GeoQuery, bbox, iter_geoproperties, query_bbox
from cityos.core.model import StoredEntity

__all__ = [
    "GEO_SCHEMA",
    "geo_delete_statements",
    "geo_index_statements",
    "geo_prefilter_sql",
    "index_rows",
]

GEO_SCHEMA: list[str] = [
    "CREATE TABLE IF NOT EXISTS geo_index ("
    "id INTEGER PRIMARY KEY, entity_rowid INTEGER NOT NULL, attr TEXT NOT NULL)",
    "CREATE VIRTUAL TABLE IF NOT EXISTS geo_rtree USING rtree(id, minx, maxx, miny, maxy)",
    "CREATE INDEX IF NOT EXISTS geo_index_entity ON geo_index (entity_rowid)",
    "CREATE INDEX IF NOT EXISTS geo_index_attr ON geo_index (attr, entity_rowid)",
]

# CROSS JOIN fixes the join order in SQLite: walk the R*Tree first, then look rows up.
_BBOX_FILTER = (
    "e.rowid IN (SELECT g.entity_rowid FROM geo_rtree r CROSS JOIN geo_index g "
    "ON g.id = r.id WHERE g.attr = ? "
    "AND r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?)"
)
_ATTR_FILTER = "e.rowid IN (SELECT entity_rowid FROM geo_index WHERE attr = ?)"

_DELETE_RTREE = (
    "DELETE FROM geo_rtree WHERE id IN (SELECT id FROM geo_index WHERE entity_rowid = ?)"
)
_DELETE_INDEX = "DELETE FROM geo_index WHERE entity_rowid = ?"
_INSERT_INDEX = "INSERT INTO geo_index (entity_rowid, attr) VALUES (?, ?)"
_INSERT_RTREE = (
    "INSERT INTO geo_rtree (id, minx, maxx, miny, maxy) VALUES (last_insert_rowid(), ?, ?, ?, ?)"
)

Statement = tuple[str, tuple[object, ...]]


def geo_prefilter_sql(gq: GeoQuery, attr_iri: str | None = None) -> tuple[str, list[object]]:
    """A WHERE fragment over ``entities e`` and its parameters.

    ``attr_iri`` is the expanded GeoProperty (default ``gq.geoproperty``). The Entity
    must have that GeoProperty; when ``query_bbox`` gives a box, one of its instances'
    boxes must also meet it.
    """
    attr = gq.geoproperty if attr_iri is None else attr_iri
    box = query_bbox(gq)
    if box is None:
        return _ATTR_FILTER, [attr]
    minx, miny, maxx, maxy = box
    return _BBOX_FILTER, [attr, minx, maxx, miny, maxy]


def index_rows(entity_rowid: int, doc: StoredEntity) -> list[tuple[str, Bbox]]:
    """(attribute IRI, bounding box) for every GeoProperty instance of a stored Entity.

    ``entity_rowid`` is the row these belong to; it does not change the result.
    """
    return [(attr, bbox(geometry)) for attr, geometry in iter_geoproperties(doc)]


def geo_index_statements(entity_rowid: int, doc: StoredEntity) -> list[Statement]:
    """Statements that replace the Entity's geo_index and geo_rtree rows, in order.

    Run them in the write's transaction, on one connection (they use last_insert_rowid()).
    """
    statements = geo_delete_statements(entity_rowid)
    for attr, (minx, miny, maxx, maxy) in index_rows(entity_rowid, doc):
        statements.append((_INSERT_INDEX, (entity_rowid, attr)))
        statements.append((_INSERT_RTREE, (minx, maxx, miny, maxy)))
    return statements


def geo_delete_statements(entity_rowid: int) -> list[Statement]:
    """Statements that remove the Entity's geo_index and geo_rtree rows, in order."""
    return [(_DELETE_RTREE, (entity_rowid,)), (_DELETE_INDEX, (entity_rowid,))]
