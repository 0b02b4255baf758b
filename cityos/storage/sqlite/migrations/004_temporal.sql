-- Temporal history (GS CIM 009 V1.8.1 clause 4.5.7, 5.6.11-5.6.16, 5.7.3-5.7.4).
-- Written in the same transaction as the change it records (storage/sqlite/history.py).

-- One row per temporal Entity; it outlives the Entity (deleted_at), until its temporal
-- representation is deleted.
CREATE TABLE temporal_entities (
    key INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,            -- JSON list of expanded types
    scope TEXT,                     -- JSON list or NULL
    created_at TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    deleted_at TEXT,
    UNIQUE (tenant, id)
);

CREATE TABLE temporal_types (
    tenant TEXT NOT NULL,
    type TEXT NOT NULL,
    entity INTEGER NOT NULL,
    PRIMARY KEY (tenant, type, entity)
) WITHOUT ROWID;
CREATE INDEX temporal_types_by_entity ON temporal_types (entity);

-- A series: one attribute of one temporal Entity with one datasetId ('' is the default).
CREATE TABLE temporal_series (
    key INTEGER PRIMARY KEY,
    entity INTEGER NOT NULL,
    attr TEXT NOT NULL,
    dataset TEXT NOT NULL,
    UNIQUE (entity, attr, dataset)
);

-- Attribute instances. Times are microseconds since the epoch (UTC):
--   ts          observedAt, or created_at for an instance without observedAt
--   created_at  when the instance was recorded; modified_at when it was last changed
-- num is the value when it is a number (what sum/avg/min/max/stddev/sumsq aggregate).
-- doc is the stored-form instance without its system timestamps.
CREATE TABLE temporal_instances (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: instanceIds stay unique
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    observed INTEGER NOT NULL,      -- 1 when ts is an observedAt
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    num REAL,
    doc TEXT NOT NULL
);
CREATE INDEX temporal_instances_by_ts ON temporal_instances (series, ts);
CREATE INDEX temporal_instances_by_created ON temporal_instances (series, created_at);

-- Hourly rollups of observed instances, kept with every write, so aggregation over long
-- windows reads one row per series and hour instead of every instance.
CREATE TABLE temporal_rollups (
    series INTEGER NOT NULL,
    hour INTEGER NOT NULL,          -- ts // 3,600,000,000
    n INTEGER NOT NULL,             -- instances (totalCount)
    nn INTEGER NOT NULL,            -- numeric instances
    sum REAL NOT NULL,
    sumsq REAL NOT NULL,
    min REAL,
    max REAL,
    PRIMARY KEY (series, hour)
) WITHOUT ROWID
