-- Temporal history (GS CIM 009 V1.8.1 clause 4.5.7, 5.6.11-5.6.16, 5.7.3-5.7.4), the same
-- tables as SQLite's 004_temporal.sql. Written in the same transaction as the change it
-- records (storage/postgres/history_write.py). Times are microseconds since the epoch, UTC.

-- One row per temporal Entity; it outlives the Entity (deleted_at), until its temporal
-- representation is deleted.
CREATE TABLE temporal_entities (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    id text NOT NULL,
    types jsonb NOT NULL,           -- list of expanded types
    scope jsonb,                    -- list or NULL
    created_at text NOT NULL,
    modified_at text NOT NULL,
    deleted_at text,
    UNIQUE (tenant, id)
);

CREATE TABLE temporal_types (
    tenant text NOT NULL,
    type text NOT NULL,
    entity bigint NOT NULL,
    PRIMARY KEY (tenant, type, entity)
);
CREATE INDEX temporal_types_by_entity ON temporal_types (entity);

-- A series: one attribute of one temporal Entity with one datasetId ('' is the default).
CREATE TABLE temporal_series (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity bigint NOT NULL,
    attr text NOT NULL,
    dataset text NOT NULL,
    UNIQUE (entity, attr, dataset)
);

-- Attribute instances: ts is the observedAt, or created_at for an instance without one;
-- observed is 0 (no observedAt), 1 (observedAt) or 2 (a deletion); num is the value when
-- it is a number; doc is the instance without its system timestamps. key is the
-- instanceId, never reused.
CREATE TABLE temporal_instances (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series bigint NOT NULL,
    ts bigint NOT NULL,
    observed smallint NOT NULL,
    created_at bigint NOT NULL,
    modified_at bigint NOT NULL,
    num double precision,
    doc jsonb NOT NULL
);
CREATE INDEX temporal_instances_by_ts ON temporal_instances (series, ts);
CREATE INDEX temporal_instances_by_created ON temporal_instances (series, created_at);

-- Hourly rollups of observed instances, kept with every write.
CREATE TABLE temporal_rollups (
    series bigint NOT NULL,
    hour bigint NOT NULL,           -- ts / 3,600,000,000
    n bigint NOT NULL,
    nn bigint NOT NULL,
    sum double precision NOT NULL,
    sumsq double precision NOT NULL,
    min double precision,
    max double precision,
    PRIMARY KEY (series, hour)
);
