-- The relay's position in the event store (it publishes to RabbitMQ; its tracking is its only state),
-- and a content-addressed blob store in PostgreSQL, so pricing workers on other machines can read the
-- model files without a shared filesystem (BLOB_STORE=postgres).
-- depends: 0002_read_models

CREATE SCHEMA IF NOT EXISTS relay;
CREATE TABLE relay.tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO relay.tracking VALUES ('__migration__', 1);

CREATE SCHEMA IF NOT EXISTS blobs;
CREATE TABLE blobs.models (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL,
    content bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
