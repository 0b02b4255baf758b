-- Context source registration subscriptions (GS CIM 009 clause 5.11) as City OS keeps them,
-- like 003's subscriptions, and the outbox of their notifications (clause 5.3.2): a row is
-- written when a matching registration changes and deleted once its delivery is final.
CREATE TABLE csource_subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE csource_notification_outbox (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the dispatcher reads past a cursor
    tenant TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    payload TEXT NOT NULL
)
