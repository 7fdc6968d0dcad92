-- The overdue and stuck filters in the default order, newest approved first (or oldest, backwards): each
-- partial index holds only the orders that can be overdue (promise open) or stuck (not final), keyed by
-- the sort, with the date the filter compares as a last key column, so the scan skips the orders not yet
-- overdue or stuck inside the index. Without them the first page walked mes_orders_approved and read
-- 60,000 rows from the table to find 51 overdue orders (35-50 ms at a million orders, bench/search.py).
-- depends: 0008_mes_stats

CREATE INDEX mes_orders_overdue_approved ON mes.orders (approved_at DESC, order_id DESC, promised_date)
    WHERE promise_open;
CREATE INDEX mes_orders_stuck_approved ON mes.orders (approved_at DESC, order_id DESC, stuck_at)
    WHERE stuck_at IS NOT NULL;
