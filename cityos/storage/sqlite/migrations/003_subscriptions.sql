-- Subscriptions (their JSON as City OS keeps it) and the outbox of notifications that are
-- written in the same transaction as the change they report, so none is lost by a crash.
CREATE TABLE subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE notification_outbox (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the dispatcher reads past a cursor
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    payload TEXT NOT NULL
)
