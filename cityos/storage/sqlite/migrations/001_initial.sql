-- City OS SQLite schema, version 1. Plain SQL, no domain logic (see docs/architecture.md).
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);

-- One row per Entity; doc is the stored form of cityos/core/model.py as JSON.
CREATE TABLE entities (
    rowid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (tenant, id)
);

CREATE TABLE entity_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    entity_rowid INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, entity_rowid)
) WITHOUT ROWID;
CREATE INDEX entity_types_by_entity ON entity_types (entity_rowid);

-- GeoProperty bounding boxes for geoQ prefiltering; the exact test runs in core/geo.py.
CREATE TABLE geo_index (
    id INTEGER PRIMARY KEY,
    entity_rowid INTEGER NOT NULL,
    attr TEXT NOT NULL
);
CREATE INDEX geo_index_by_entity ON geo_index (entity_rowid);
CREATE INDEX geo_index_by_attr ON geo_index (attr, entity_rowid);
CREATE VIRTUAL TABLE geo_rtree USING rtree (id, minx, maxx, miny, maxy);

CREATE TABLE jsonld_contexts (
    url TEXT PRIMARY KEY,
    local_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- Attributes the store has built expression indexes for (see storage/sqlite/indexes.py).
CREATE TABLE attribute_indexes (
    attr TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
