-- Context source registration subscriptions (GS CIM 009 clause 5.11), kept like the
-- Subscriptions of 001, and the outbox of their notifications (clause 5.3.2).
CREATE TABLE csource_subscriptions (
    tenant text NOT NULL,
    id text NOT NULL,
    doc json NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE csource_notification_outbox (
    key bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    subscription_id text NOT NULL,
    registration_id text NOT NULL,
    payload json NOT NULL
);
CREATE INDEX csource_notification_outbox_subscription
    ON csource_notification_outbox (tenant, subscription_id);
