-- Model previews (pricing.preview, docs/architecture.md "Model previews"): a small GLB per quoted or
-- too-thin model, coloured by wall thickness, content-addressed beside the models (BLOB_STORE=postgres;
-- the local store keeps them under blobs/previews/). The order views keep the preview's sha256.
-- depends: 0017_holds

CREATE TABLE blobs.previews (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL,
    content bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE mes.orders ADD COLUMN preview_sha256 text;
ALTER TABLE shop.orders ADD COLUMN preview_sha256 text;

CREATE OR REPLACE FUNCTION backbone.grant_privileges() RETURNS void LANGUAGE plpgsql AS $grants$
BEGIN
    -- crm, the event store. Appending takes LOCK TABLE ... IN EXCLUSIVE MODE (orders_core/event_store.py),
    -- which PostgreSQL allows only with UPDATE, DELETE or TRUNCATE on the table: UPDATE is the least of
    -- them (events are never updated). nextval on the order numbers and the notification ids needs USAGE.
    GRANT USAGE ON SCHEMA crm TO backbone_crm, backbone_projector, backbone_relay, backbone_webhooks;
    GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA crm TO backbone_crm;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO backbone_crm;
    -- Functions are executable by everyone unless revoked; in crm only the appending part may call them.
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA crm FROM PUBLIC;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA crm TO backbone_crm;
    GRANT SELECT ON ALL TABLES IN SCHEMA crm TO backbone_projector, backbone_relay, backbone_webhooks;

    -- The read models: the read API reads them, their projector writes view and tracking together.
    -- Default privileges cover tables a later migration adds; a replay copies grants onto the tables it
    -- swaps in (projectors/replay.py).
    GRANT USAGE ON SCHEMA mes, shop TO backbone_read, backbone_projector;
    GRANT SELECT ON ALL TABLES IN SCHEMA mes, shop TO backbone_read;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mes, shop TO backbone_projector;
    ALTER DEFAULT PRIVILEGES IN SCHEMA mes, shop GRANT SELECT ON TABLES TO backbone_read;
    ALTER DEFAULT PRIVILEGES IN SCHEMA mes, shop
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO backbone_projector;

    -- The relay's tracking position (an upsert: SELECT, INSERT, UPDATE).
    GRANT USAGE ON SCHEMA relay TO backbone_relay;
    GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA relay TO backbone_relay;
    ALTER DEFAULT PRIVILEGES IN SCHEMA relay GRANT SELECT, INSERT, UPDATE ON TABLES TO backbone_relay;

    -- The webhook sender owns its outbox and log. The command API reads the delivery log and replays
    -- (puts messages back to pending), and nothing else of it.
    GRANT USAGE ON SCHEMA webhooks TO backbone_webhooks, backbone_crm;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA webhooks TO backbone_webhooks;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA webhooks TO backbone_webhooks;
    GRANT SELECT ON webhooks.messages, webhooks.attempts, webhooks.endpoints TO backbone_crm;
    GRANT UPDATE (status, attempts, next_attempt_at, replayed_at) ON webhooks.messages TO backbone_crm;

    -- Connecting, for login users that hold a role (DATABASE_URL_<PART>), and the projector's staging tables
    -- (projectors/tables.py): PUBLIC has both by default, but a hardened server may have revoked them. Only
    -- the database's owner may grant them; a migrating user that is not gets a warning, not a failure.
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO backbone_crm, backbone_read, backbone_projector, '
                       'backbone_relay, backbone_pricing, backbone_webhooks', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO backbone_projector', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'CONNECT and TEMPORARY on database % are for its owner to grant to the roles',
            current_database();
    END;

    -- Model files (BLOB_STORE=postgres): the command API stores uploads, pricing workers read them. The
    -- upload's ON CONFLICT (sha256) needs to see that column, and only that one.
    GRANT USAGE ON SCHEMA blobs TO backbone_crm, backbone_pricing;
    GRANT SELECT (sha256), INSERT ON blobs.models TO backbone_crm;
    GRANT SELECT ON blobs.models TO backbone_pricing;
    -- Previews (pricing.preview): the pricing workers store them, the read API serves them. The read API
    -- sees no model file, only previews.
    GRANT USAGE ON SCHEMA blobs TO backbone_read;
    GRANT SELECT, INSERT ON blobs.previews TO backbone_pricing;
    GRANT SELECT ON blobs.previews TO backbone_read;
END
$grants$;
REVOKE EXECUTE ON FUNCTION backbone.grant_privileges() FROM PUBLIC;
