-- City OS PostgreSQL schema, version 1. Plain SQL, no functions, no triggers: the domain
-- lives in cityos/core (see docs/architecture.md). Applied by storage/postgres/migrate.py.
CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE tenants (
    name text PRIMARY KEY,
    created_at text NOT NULL
);

-- One row per Entity; doc is the stored form of cityos/core/model.py. key is the
-- insertion order, the last sort key of every query, so pages stay stable.
CREATE TABLE entities (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    id text NOT NULL,
    types text[] NOT NULL,
    doc jsonb NOT NULL,
    UNIQUE (tenant, id)
);
-- Type selections (types @> ARRAY[...]) and == in q (doc @> {...}, see query_sql.py).
CREATE INDEX entities_types ON entities USING gin (types);
CREATE INDEX entities_doc ON entities USING gin (doc jsonb_path_ops);

-- One row per GeoProperty instance: its geometry, for the geoQ prefilter (&& on GiST).
-- The exact relation is decided by cityos/core/geo, as on SQLite.
CREATE TABLE entity_geo (
    entity bigint NOT NULL REFERENCES entities (key) ON DELETE CASCADE,
    tenant text NOT NULL,
    attr text NOT NULL,
    geom geometry (Geometry, 4326) NOT NULL
);
CREATE INDEX entity_geo_geom ON entity_geo USING gist (geom);
CREATE INDEX entity_geo_entity ON entity_geo (entity);

CREATE TABLE jsonld_contexts (
    url text PRIMARY KEY,
    local_id text NOT NULL,
    kind text NOT NULL,
    document json NOT NULL,
    created_at text NOT NULL
);

-- Subscriptions as the notifier keeps them, and the outbox of notifications written in
-- the same transaction as the change they report.
CREATE TABLE subscriptions (
    tenant text NOT NULL,
    id text NOT NULL,
    doc json NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE notification_outbox (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    subscription_id text NOT NULL,
    entity_id text NOT NULL,
    payload json NOT NULL
);
CREATE INDEX notification_outbox_subscription ON notification_outbox (tenant, subscription_id);

-- Context source registrations (clause 5.2.9): Registration.to_doc of core/registrations.py.
CREATE TABLE csource_registrations (
    tenant text NOT NULL,
    id text NOT NULL,
    doc json NOT NULL,
    PRIMARY KEY (tenant, id)
);

-- Attributes that have an expression index on their value (storage/postgres/indexes.py).
CREATE TABLE attribute_indexes (
    attr text PRIMARY KEY,
    created_at text NOT NULL
);
