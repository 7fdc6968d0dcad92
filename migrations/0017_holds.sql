-- Holds with reasons (issue 17): an order put on hold (HoldOrder) stays in its status but leaves the
-- operators' queue, showing why and since when, until it is released (ReleaseOrder) or cancelled.
-- A hold and a release each start a stay of their own in the same status, flagged `held`, so the board
-- tells time on hold apart from time waiting (/mes/stats); the partial index of MANUFACTURING_APPROVED
-- stays carries the order and the flag, so the waits per order are still read from the index alone.
-- depends: 0016_mes_due

ALTER TABLE mes.orders ADD COLUMN held_since timestamptz, ADD COLUMN hold_reason text;
ALTER TABLE shop.orders ADD COLUMN held_since timestamptz, ADD COLUMN hold_reason text;
ALTER TABLE mes.status_stays ADD COLUMN held boolean NOT NULL DEFAULT false;

DROP INDEX mes.mes_status_stays_approved;
CREATE INDEX mes_status_stays_approved ON mes.status_stays (left_at, entered_at) INCLUDE (order_id, held)
    WHERE status = 'MANUFACTURING_APPROVED';

CREATE INDEX mes_orders_held ON mes.orders (held_since) WHERE held_since IS NOT NULL;
