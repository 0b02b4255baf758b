-- The trust layer (cityos/trust.py, cityos/auth, cityos/core/access.py and consent.py):
-- its documents (API keys, policies, consents, ...) by kind, tenant and id, with an
-- optional lookup key (a consent's recipient, an API key's id). json, as written.
CREATE TABLE trust_docs (
    kind text NOT NULL,
    tenant text NOT NULL,
    id text NOT NULL,
    key text NOT NULL DEFAULT '',
    doc json NOT NULL,
    PRIMARY KEY (kind, tenant, id)
);
-- (kind, key) first: an API key is looked up by its id in every tenant at once.
CREATE INDEX trust_docs_key ON trust_docs (kind, key, tenant);

-- The hash-chained audit log (cityos/core/audit.py). Append-only: seq is the head's plus
-- one, given by the writer that holds the log's advisory lock (storage/postgres/trust.py),
-- so the chain has no gap and never forks across connections and processes.
CREATE TABLE audit_log (
    seq bigint PRIMARY KEY,
    at text NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    tenant text NOT NULL,
    target text NOT NULL,
    person text NOT NULL,
    detail json NOT NULL,
    prev text NOT NULL,
    hash text NOT NULL
);
CREATE INDEX audit_log_person ON audit_log (person, seq);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
