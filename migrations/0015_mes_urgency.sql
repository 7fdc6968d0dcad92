-- The operators' queue by urgency (issue 17): each order with an open promise has start_by, the latest
-- start of manufacturing that keeps it (the end of its promised day, UTC, less its material's expected
-- manufacturing time); its slack is start_by less now. Most urgent first is start_by ascending, which
-- these indexes serve as a keyset, alone and after a status filter (the queue is MANUFACTURING_APPROVED).
-- Orders without an open promise have 'infinity': last, most urgent first.
-- mes.manufacturing_estimates holds the catalog's estimates the rows were derived from (materials
-- without one take two days: orders_core/lifecycle.py EXPECTED_MANUFACTURING).
-- depends: 0014_quote_terms

ALTER TABLE mes.orders ADD COLUMN start_by timestamptz NOT NULL DEFAULT 'infinity';

CREATE TABLE mes.manufacturing_estimates (
    material_code text PRIMARY KEY,
    seconds bigint NOT NULL CHECK (seconds > 0)
);

UPDATE mes.orders
   SET start_by = (promised_date + 1)::timestamp AT TIME ZONE 'UTC' - interval '2 days'
 WHERE promise_open;

CREATE INDEX mes_orders_urgency ON mes.orders (start_by, order_id);
CREATE INDEX mes_orders_status_urgency ON mes.orders (status, start_by, order_id);
