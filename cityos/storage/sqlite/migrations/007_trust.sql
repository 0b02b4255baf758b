-- The trust layer (cityos/trust.py, cityos/auth, cityos/core/access.py and consent.py):
-- its documents (API keys, policies, consents, ...) by kind, tenant and id, with an
-- optional lookup key (a consent's recipient, an API key's id), kept as JSON text.
CREATE TABLE trust_docs (
    kind TEXT NOT NULL,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, tenant, id)
);
-- (kind, key) first: an API key is looked up by its id in every tenant at once.
CREATE INDEX trust_docs_key ON trust_docs (kind, key, tenant);

-- The hash-chained audit log (cityos/core/audit.py). Append-only: seq is the head's plus
-- one, given by the writer inside the transaction that reads the head, so the chain has
-- no gap and never forks. detail is JSON text. hash covers prev and every other column.
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    tenant TEXT NOT NULL,
    target TEXT NOT NULL,
    person TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_person ON audit_log (person, seq);
CREATE INDEX audit_log_tenant ON audit_log (tenant, seq);
