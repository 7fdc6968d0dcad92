-- Webhooks to partners (docs/webhooks.md): the sender's outbox, built from the event store by a projection
-- (no dual writes), and its delivery log.
--
-- orders:    which orders are a partner's (from OrderInitiated): the outbox skips every other order's events
--            without reading the order.
-- messages:  one per (order event, subscribed endpoint), created in the projection's transaction with its
--            position; its id (`webhook-id`) and body never change, so a receiver deduplicates on the id and
--            a re-sent message is byte for byte the first. `pending` until a 2xx (`delivered`) or until it is
--            given up (`failed`: retries spent, endpoint answered 410, disabled or deleted).
-- attempts:  every POST (or refusal to POST) of a message: status code, latency, error, what comes next.
-- endpoints: delivery health per endpoint: failing since when (the sender disables an endpoint that fails
--            for days) and the last 2xx.
-- depends: 0012_mes_orders_by_position

CREATE SCHEMA IF NOT EXISTS webhooks;
CREATE TABLE webhooks.tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO webhooks.tracking VALUES ('__migration__', 1);
CREATE TABLE webhooks.parked (LIKE mes.parked INCLUDING ALL);
CREATE TABLE webhooks.runner_state (LIKE mes.runner_state INCLUDING ALL);

CREATE TABLE webhooks.orders (
    order_id uuid PRIMARY KEY,
    partner_id text NOT NULL
);

CREATE TABLE webhooks.messages (
    message_id text PRIMARY KEY,            -- msg_ + 32 hex digits: the webhook-id header
    partner_id text NOT NULL,
    endpoint_id uuid NOT NULL,
    order_id uuid NOT NULL,
    order_version integer NOT NULL,         -- messages of one order reach an endpoint in this order
    position bigint NOT NULL,               -- the order event's notification id in the event store
    event_type text NOT NULL,               -- order.created, order.shipped, ...
    body text NOT NULL,                     -- the JSON that is signed and sent, exactly
    occurred_at timestamptz NOT NULL,       -- when the order event was stored
    created_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,    -- attempts since it was created or last replayed
    next_attempt_at timestamptz,            -- while pending
    last_attempt_at timestamptz,
    last_status_code integer,
    last_error text,
    delivered_at timestamptz,
    replayed_at timestamptz
);
-- What is due, the head of each (endpoint, order) queue, and the delivery log by endpoint and time.
CREATE INDEX messages_due ON webhooks.messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX messages_queue ON webhooks.messages (endpoint_id, order_id, order_version) WHERE status = 'pending';
CREATE INDEX messages_by_endpoint ON webhooks.messages (endpoint_id, created_at DESC, message_id);

CREATE TABLE webhooks.attempts (
    attempt_id bigserial PRIMARY KEY,
    message_id text NOT NULL REFERENCES webhooks.messages ON DELETE CASCADE,
    endpoint_id uuid NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code integer,                    -- NULL: no answer (timeout, refused, no connection)
    latency_ms integer NOT NULL,
    error text,                             -- why it did not count as delivered; NULL on a 2xx
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    next_attempt_at timestamptz             -- when it is tried again (outcome retry)
);
CREATE INDEX attempts_by_endpoint ON webhooks.attempts (endpoint_id, attempt_id DESC);
CREATE INDEX attempts_by_message ON webhooks.attempts (message_id, attempt_id);

CREATE TABLE webhooks.endpoints (
    endpoint_id uuid PRIMARY KEY,
    partner_id text NOT NULL,
    failing_since timestamptz,              -- the first failed attempt after the last 2xx
    last_success_at timestamptz,
    disabled_at timestamptz,                -- when the sender disabled it (410, or failing for days)
    disabled_reason text
);

-- The sender's role: reads the event store, owns its schema. Disabling an endpoint is a command, which it
-- sends with the crm role like the results consumer.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'backbone_webhooks') THEN
        BEGIN
            CREATE ROLE backbone_webhooks NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_has_role(current_user, 'backbone_webhooks', 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', 'backbone_webhooks', current_user);
    END IF;
END
$roles$;

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
END
$grants$;
REVOKE EXECUTE ON FUNCTION backbone.grant_privileges() FROM PUBLIC;

-- The sender's outbox projection stands in `projections status` and /health like the others.
CREATE OR REPLACE FUNCTION monitor.projection_health(
    projection text,
    OUT reached bigint,
    OUT head bigint,
    OUT first_unapplied_at timestamptz,
    OUT parked_aggregates bigint,
    OUT last_success_at timestamptz,
    OUT failing_since timestamptz,
    OUT last_error text
) LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $health$
DECLARE
    stored jsonb;
BEGIN
    IF projection NOT IN ('mes', 'shop', 'relay', 'webhooks') THEN
        RAISE EXCEPTION 'no projection %', projection USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('SELECT coalesce(max(notification_id), 0) FROM %I.tracking '
                   'WHERE application_name <> %L', projection, '__migration__') INTO reached;
    SELECT coalesce(max(notification_id), 0) INTO head FROM crm.orders_events;
    SELECT convert_from(state, 'UTF8')::jsonb INTO stored FROM crm.orders_events
        WHERE notification_id > reached ORDER BY notification_id LIMIT 1;
    first_unapplied_at := coalesce(stored -> 'timestamp' ->> '_data_', stored ->> 'timestamp')::timestamptz;
    EXECUTE format('SELECT count(DISTINCT aggregate_id) FROM %I.parked', projection) INTO parked_aggregates;
    EXECUTE format('SELECT last_success_at, failing_since, last_error FROM %I.runner_state', projection)
        INTO last_success_at, failing_since, last_error;
END
$health$;
REVOKE EXECUTE ON FUNCTION monitor.projection_health(text) FROM PUBLIC;
GRANT USAGE ON SCHEMA monitor TO backbone_webhooks;
GRANT EXECUTE ON FUNCTION monitor.projection_health(text) TO backbone_webhooks;
