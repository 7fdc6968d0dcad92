-- Read models (docs/architecture.md, "Storage"): the shop's and the MES's tables, each with the tracking table of the
-- projection that writes it. Tracking lives in the same schema as its view, so that a replay that swaps
-- the schema swaps both together: a view never exists without the position it was built to.
-- depends: 0001_schemas

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Same shape as eventsourcing's single-row tracking table (PostgresTrackingRecorder), created here so
-- that no code creates tables at run time. The '__migration__' row marks it as single-row tracking.
CREATE TABLE mes.tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO mes.tracking VALUES ('__migration__', 1);

CREATE TABLE mes.orders (
    order_id uuid PRIMARY KEY,
    number text NOT NULL,
    channel text NOT NULL,
    owner_id text NOT NULL,
    contact_name text NOT NULL,
    item_title text NOT NULL,
    material_code text NOT NULL,
    quantity integer NOT NULL,
    status text NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,                 -- event store position of the order's last event
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    status_since timestamptz NOT NULL,        -- when the current status was entered
    stuck_at timestamptz,                     -- status_since + the status's time limit; NULL when final
    approved_at timestamptz NOT NULL DEFAULT '-infinity',  -- '-infinity' until approved: sorts last
    promised_date date,
    promise_open boolean NOT NULL DEFAULT false,  -- promised and not yet shipped, closed or cancelled
    operator_id text,
    model_sha256 text,
    model_filename text,
    model_format text,
    model_size_bytes bigint,
    triangle_count integer,
    quote_total_minor bigint,
    currency text,
    quote jsonb,
    carrier text,
    tracking_number text,
    rejection_reason text,
    cancellation_reason text,
    status_times jsonb NOT NULL DEFAULT '{}',
    search text GENERATED ALWAYS AS (lower(number || ' ' || contact_name || ' ' || item_title)) STORED
);

-- Default MES order: newest approved first, keyset on (approved_at, order_id).
CREATE INDEX mes_orders_approved ON mes.orders (approved_at DESC, order_id DESC);
CREATE INDEX mes_orders_status_approved ON mes.orders (status, approved_at DESC, order_id DESC);
CREATE INDEX mes_orders_material_approved ON mes.orders (material_code, approved_at DESC, order_id DESC);
CREATE INDEX mes_orders_channel_approved ON mes.orders (channel, approved_at DESC, order_id DESC);
CREATE INDEX mes_orders_operator ON mes.orders (operator_id, approved_at DESC, order_id DESC)
    WHERE operator_id IS NOT NULL;
CREATE INDEX mes_orders_created ON mes.orders (created_at DESC, order_id DESC);
CREATE INDEX mes_orders_promised ON mes.orders (promised_date, order_id) WHERE promise_open;
CREATE INDEX mes_orders_stuck ON mes.orders (stuck_at, order_id) WHERE stuck_at IS NOT NULL;
CREATE INDEX mes_orders_search ON mes.orders USING gin (search gin_trgm_ops);
CREATE INDEX mes_orders_number ON mes.orders (number);

-- Every stay of an order in a status, closed when it leaves: waiting times per status come from here.
CREATE TABLE mes.status_stays (
    order_id uuid NOT NULL,
    status text NOT NULL,
    entered_at timestamptz NOT NULL,
    left_at timestamptz,
    PRIMARY KEY (order_id, entered_at, status)
);
CREATE INDEX mes_status_stays_left ON mes.status_stays (status, left_at);

CREATE TABLE shop.tracking (
    application_name text PRIMARY KEY,
    notification_id bigint
);
INSERT INTO shop.tracking VALUES ('__migration__', 1);

CREATE TABLE shop.orders (
    order_id uuid PRIMARY KEY,
    owner_id text NOT NULL,
    number text NOT NULL,
    channel text NOT NULL,
    status text NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,
    item_title text NOT NULL,
    contact_name text NOT NULL,
    material_code text NOT NULL,
    quantity integer NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    promised_date date,
    model_filename text,
    triangle_count integer,
    quote_total_minor bigint,
    currency text,
    quote jsonb,
    carrier text,
    tracking_number text,
    rejection_reason text,
    cancellation_reason text,
    status_times jsonb NOT NULL DEFAULT '{}'
);
-- A customer's or partner's own orders, newest first.
CREATE INDEX shop_orders_owner ON shop.orders (owner_id, created_at DESC, order_id DESC);

CREATE TABLE shop.catalog (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL,
    currency text NOT NULL
);

CREATE TABLE shop.materials (
    code text PRIMARY KEY,
    name text NOT NULL,
    density_g_cm3 double precision NOT NULL,
    price_per_gram_minor bigint NOT NULL,
    casting_loss_permille integer NOT NULL
);

CREATE TABLE shop.labour_rates (
    code text PRIMARY KEY,
    name text NOT NULL,
    unit text NOT NULL,
    amount_minor bigint NOT NULL
);

CREATE TABLE shop.products (
    sku text PRIMARY KEY,
    title text NOT NULL,
    material_code text NOT NULL,
    price_minor bigint NOT NULL,
    description text NOT NULL
);
