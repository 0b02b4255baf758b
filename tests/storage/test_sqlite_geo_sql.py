"""Tests for cityos.storage.sqlite.geo_sql against a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cityos.core.geo import GeoQuery, matches_entity, parse_geoq
from cityos.storage.sqlite.geo_sql import (
    GEO_SCHEMA,
    geo_delete_statements,
    geo_index_statements,
    geo_prefilter_sql,
    index_rows,
)

LOCATION = "https://uri.etsi.org/ngsi-ld/location"
AREA = "https://example.org/serviceArea"
TOKYO_STATION = [139.7671, 35.6812]


def _point(lon: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lon, lat]}


def _polygon(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _entity(entity_id: str, **attrs: list[dict[str, Any]]) -> dict[str, Any]:
    names = {"location": LOCATION, "area": AREA, "temperature": "https://example.org/t"}
    return {
        "id": entity_id,
        "type": ["https://example.org/Thing"],
        "attrs": {names[name]: instances for name, instances in attrs.items()},
    }


def _geo(value: dict[str, Any], **extra: str) -> dict[str, Any]:
    return {"type": "GeoProperty", "value": value, **extra}


ENTITIES = [
    _entity("urn:ngsi-ld:Thing:station", location=[_geo(_point(*TOKYO_STATION))]),
    _entity("urn:ngsi-ld:Thing:palace", location=[_geo(_point(139.7528, 35.6852))]),
    _entity("urn:ngsi-ld:Thing:shinjuku", location=[_geo(_point(139.7006, 35.6896))]),
    _entity("urn:ngsi-ld:Thing:osaka", location=[_geo(_point(135.4959, 34.7025))]),
    _entity(
        "urn:ngsi-ld:Thing:bus",
        location=[
            _geo(_point(135.0, 34.0)),
            _geo(_point(139.7672, 35.6813), datasetId="urn:ngsi-ld:Dataset:gps"),
        ],
    ),
    _entity(
        "urn:ngsi-ld:Thing:ward",
        area=[_geo(_polygon(139.74, 35.67, 139.78, 35.70))],
        temperature=[{"type": "Property", "value": 20}],
    ),
    _entity("urn:ngsi-ld:Thing:nowhere", temperature=[{"type": "Property", "value": 3}]),
]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "geo.db")
    conn.execute("CREATE TABLE entities(tenant TEXT, id TEXT, types TEXT, doc TEXT)")
    for statement in GEO_SCHEMA + GEO_SCHEMA:  # idempotent
        conn.execute(statement)
    for tenant in ("", "other"):
        for doc in ENTITIES:
            _write(conn, tenant, doc)
    conn.commit()
    yield conn
    conn.close()


def _write(conn: sqlite3.Connection, tenant: str, doc: dict[str, Any]) -> int:
    row = conn.execute(
        "SELECT rowid FROM entities WHERE tenant = ? AND id = ?", (tenant, doc["id"])
    )
    found = row.fetchone()
    if found is None:
        cursor = conn.execute(
            "INSERT INTO entities VALUES (?, ?, ?, ?)",
            (tenant, doc["id"], json.dumps(doc["type"]), json.dumps(doc)),
        )
        rowid = cursor.lastrowid
        assert rowid is not None
    else:
        rowid = found[0]
        conn.execute("UPDATE entities SET doc = ? WHERE rowid = ?", (json.dumps(doc), rowid))
    for sql, params in geo_index_statements(rowid, doc):
        conn.execute(sql, params)
    return rowid


def _query(conn: sqlite3.Connection, gq: GeoQuery, tenant: str = "") -> set[str]:
    where, params = geo_prefilter_sql(gq)
    rows = conn.execute(
        f"SELECT e.doc FROM entities e WHERE e.tenant = ? AND {where}", [tenant, *params]
    )
    docs = [json.loads(doc) for (doc,) in rows]
    return {doc["id"].rsplit(":", 1)[1] for doc in docs if matches_entity(gq, doc)}


def _gq(georel: str, geometry: str, coordinates: object, prop: str = LOCATION) -> GeoQuery:
    gq = parse_geoq(georel, geometry, coordinates, None)
    assert gq is not None
    return gq.with_property_iri(prop)


TOKYO_SQUARE = _polygon(139.70, 35.65, 139.80, 35.70)["coordinates"]

CASES = [
    (_gq("near;maxDistance==1400", "Point", TOKYO_STATION), {"station", "palace", "bus"}),
    (_gq("near;maxDistance==1300", "Point", TOKYO_STATION), {"station", "bus"}),
    (_gq("near;maxDistance==20", "Point", TOKYO_STATION), {"station", "bus"}),  # 14 m
    (_gq("near;maxDistance==5", "Point", TOKYO_STATION), {"station"}),
    (_gq("near;minDistance==1400", "Point", TOKYO_STATION), {"shinjuku", "osaka", "bus"}),
    (_gq("within", "Polygon", TOKYO_SQUARE), {"station", "palace", "shinjuku", "bus"}),
    (_gq("disjoint", "Polygon", TOKYO_SQUARE), {"osaka", "bus"}),
    (_gq("intersects", "Point", [135.0, 34.0]), {"bus"}),
    (_gq("contains", "Point", TOKYO_STATION, AREA), {"ward"}),
    (_gq("contains", "Point", [139.7006, 35.6896], AREA), set()),
    (_gq("near;maxDistance==2000", "Point", [139.7006, 35.6896], AREA), set()),
    (_gq("near;minDistance==0", "Point", [0, 0], AREA), {"ward"}),
]


@pytest.mark.parametrize(("gq", "expected"), CASES, ids=lambda c: getattr(c, "georel_text", ""))
def test_prefilter_then_matches_returns_exactly_the_matches(
    db: sqlite3.Connection, gq: GeoQuery, expected: set[str]
) -> None:
    assert _query(db, gq) == expected
    assert _query(db, gq, tenant="other") == expected


@pytest.mark.parametrize(("gq", "expected"), CASES, ids=lambda c: getattr(c, "georel_text", ""))
def test_prefilter_never_drops_a_match(
    db: sqlite3.Connection, gq: GeoQuery, expected: set[str]
) -> None:
    all_docs = [json.loads(doc) for (doc,) in db.execute("SELECT doc FROM entities")]
    brute_force = {doc["id"].rsplit(":", 1)[1] for doc in all_docs if matches_entity(gq, doc)}
    assert brute_force == expected


def test_prefilter_walks_the_rtree(db: sqlite3.Connection) -> None:
    where, params = geo_prefilter_sql(_gq("near;maxDistance==100", "Point", TOKYO_STATION))
    plan = db.execute(f"EXPLAIN QUERY PLAN SELECT e.rowid FROM entities e WHERE {where}", params)
    details = " | ".join(row[-1] for row in plan)
    assert "SCAN r VIRTUAL TABLE INDEX" in details  # r is geo_rtree


def test_moving_and_deleting_an_entity_updates_the_index(db: sqlite3.Connection) -> None:
    near_osaka = _gq("near;maxDistance==1000", "Point", [135.4959, 34.7025])
    moved = _entity("urn:ngsi-ld:Thing:station", location=[_geo(_point(135.496, 34.7025))])
    rowid = _write(db, "", moved)
    assert _query(db, near_osaka) == {"osaka", "station"}
    assert "station" not in _query(db, _gq("near;maxDistance==10", "Point", TOKYO_STATION))
    for sql, params in geo_delete_statements(rowid):
        db.execute(sql, params)
    assert _query(db, near_osaka) == {"osaka"}
    counts = db.execute("SELECT (SELECT count(*) FROM geo_index), (SELECT count(*) FROM geo_rtree)")
    assert counts.fetchone() == (13, 13)  # 7 GeoProperty instances a tenant, less one


def test_index_rows_lists_every_geoproperty_instance() -> None:
    bus, ward, nowhere = ENTITIES[4], ENTITIES[5], ENTITIES[6]
    assert index_rows(1, bus) == [
        (LOCATION, (135.0, 34.0, 135.0, 34.0)),
        (LOCATION, (139.7672, 35.6813, 139.7672, 35.6813)),
    ]
    assert index_rows(2, ward) == [(AREA, (139.74, 35.67, 139.78, 35.70))]
    assert index_rows(3, nowhere) == []


def test_prefilter_without_box_requires_the_geoproperty() -> None:
    gq = _gq("disjoint", "Point", [0, 0], AREA)
    assert geo_prefilter_sql(gq) == (
        "e.rowid IN (SELECT entity_rowid FROM geo_index WHERE attr = ?)",
        [AREA],
    )
    assert geo_prefilter_sql(gq, LOCATION)[1] == [LOCATION]
