-- Projections that never freeze (projectors/runner.py, projectors/health.py).
--
-- parked: an event a projection cannot apply (not a database fault: a bug, or an event it cannot read) is
-- parked with every later event of the same aggregate, in the same transaction as the position, so every
-- other order keeps flowing and the parked order's history is never applied out of order or in part.
-- `backbone projections retry NAME` asks the active runner (which holds the projection's state and, for the
-- relay, the broker connection) to apply them again and unpark. One table per view schema, so a replay
-- that swaps the schema swaps them with the view.
--
-- runner_state: what the active runner last saw, written outside its batches (a failing batch is rolled
-- back): when it last caught up, since when it has been failing and why. /health, `projections status`
-- and the metrics read it with the position and the store's head.
--
-- The order rows say since when and why they are stale (parked_since, parked_reason), where people look.
-- depends: 0010_mes_text_search

CREATE TABLE mes.parked (
    aggregate_id uuid NOT NULL,
    position bigint NOT NULL,           -- the event's notification id in the event store
    version integer NOT NULL,           -- the event's version of its aggregate
    event_type text NOT NULL,           -- the event's class name (OrderShipped, MaterialSet, ...)
    error text NOT NULL,                -- why it could not be applied; later events: which one they wait behind
    parked_at timestamptz NOT NULL DEFAULT now(),
    retry_requested_at timestamptz,     -- `projections retry` asks; the active runner retries and clears it
    retried_at timestamptz,             -- the last retry that failed (its error replaces the first one's)
    PRIMARY KEY (aggregate_id, position)
);
CREATE TABLE shop.parked (LIKE mes.parked INCLUDING ALL);
CREATE TABLE relay.parked (LIKE mes.parked INCLUDING ALL);

CREATE TABLE mes.runner_state (
    id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    runner text,                        -- the active runner: host and pid
    last_success_at timestamptz,        -- the last catch-up that ended without an error
    failing_since timestamptz,          -- the first failure after the last success; NULL while it succeeds
    last_error text,
    last_error_at timestamptz
);
CREATE TABLE shop.runner_state (LIKE mes.runner_state INCLUDING ALL);
CREATE TABLE relay.runner_state (LIKE mes.runner_state INCLUDING ALL);

ALTER TABLE mes.orders ADD COLUMN parked_since timestamptz, ADD COLUMN parked_reason text;
ALTER TABLE shop.orders ADD COLUMN parked_since timestamptz, ADD COLUMN parked_reason text;

-- The relay's tables: retry deletes what it unparks.
GRANT SELECT, INSERT, UPDATE, DELETE ON relay.parked, relay.runner_state TO backbone_relay;

-- How a projection stands, for whoever reports it without the right to read the events or the relay's
-- tables (the read API's /health): the position it reached, the store's head, when the first event
-- after that position was stored (the age of the oldest event it has not applied), its parked aggregates
-- and its runner's state. Nothing else of crm or relay is exposed. plpgsql: the events table is created after the
-- SQL migrations, and a plpgsql body is only resolved when it runs.
CREATE SCHEMA IF NOT EXISTS monitor;
REVOKE ALL ON SCHEMA monitor FROM PUBLIC;
CREATE FUNCTION monitor.projection_health(
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
    IF projection NOT IN ('mes', 'shop', 'relay') THEN
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
GRANT USAGE ON SCHEMA monitor TO backbone_read, backbone_projector, backbone_relay;
GRANT EXECUTE ON FUNCTION monitor.projection_health(text) TO backbone_read, backbone_projector, backbone_relay;
