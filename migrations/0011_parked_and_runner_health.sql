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

-- The relay's tables: retry deletes what it unparks; the read API shows the relay's health too.
GRANT SELECT, INSERT, UPDATE, DELETE ON relay.parked, relay.runner_state TO backbone_relay;
GRANT USAGE ON SCHEMA relay TO backbone_read;
GRANT SELECT ON relay.tracking, relay.parked, relay.runner_state TO backbone_read;

-- The store's head, for whoever reports lag without the right to read the events (the read API): the last
-- position, and when the first event after a given position was stored (the age of the oldest event a view
-- has not applied). Nothing else of crm is exposed. plpgsql: the events table is created after the SQL
-- migrations, and a plpgsql body is only resolved when it runs.
CREATE SCHEMA IF NOT EXISTS monitor;
REVOKE ALL ON SCHEMA monitor FROM PUBLIC;
CREATE FUNCTION monitor.event_store_head(after bigint, OUT head bigint, OUT first_after_at timestamptz)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $head$
DECLARE
    stored jsonb;
BEGIN
    SELECT coalesce(max(notification_id), 0) INTO head FROM crm.orders_events;
    SELECT convert_from(state, 'UTF8')::jsonb INTO stored FROM crm.orders_events
        WHERE notification_id > after ORDER BY notification_id LIMIT 1;
    first_after_at := coalesce(stored -> 'timestamp' ->> '_data_', stored ->> 'timestamp')::timestamptz;
END
$head$;
REVOKE EXECUTE ON FUNCTION monitor.event_store_head(bigint) FROM PUBLIC;
GRANT USAGE ON SCHEMA monitor TO backbone_read, backbone_projector, backbone_relay;
GRANT EXECUTE ON FUNCTION monitor.event_store_head(bigint) TO backbone_read, backbone_projector, backbone_relay;
