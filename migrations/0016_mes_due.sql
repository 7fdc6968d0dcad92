-- Earliest promised date first (issue 17): bench/dispatch.py found this order (EDD) keeps more promises
-- than newest approved first, FIFO and least slack. due_at is the end of the promised day (UTC) of an
-- order with an open promise, 'infinity' otherwise; the indexes serve it as a keyset, alone and after a
-- status filter. Orders due the same day follow each other by id.
-- depends: 0015_mes_urgency

ALTER TABLE mes.orders ADD COLUMN due_at timestamptz NOT NULL DEFAULT 'infinity';

UPDATE mes.orders
   SET due_at = (promised_date + 1)::timestamp AT TIME ZONE 'UTC'
 WHERE promise_open;

CREATE INDEX mes_orders_due ON mes.orders (due_at, order_id);
CREATE INDEX mes_orders_status_due ON mes.orders (status, due_at, order_id);
