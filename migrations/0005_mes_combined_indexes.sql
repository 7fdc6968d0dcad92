-- Combined filters operators use together (bench/search.py at 1M orders): status with material, and an
-- operator's own orders by status, each served by one index scan in the default order.
-- depends: 0002_read_models

CREATE INDEX mes_orders_status_material_approved
    ON mes.orders (status, material_code, approved_at DESC, order_id DESC);
CREATE INDEX mes_orders_operator_status_approved
    ON mes.orders (operator_id, status, approved_at DESC, order_id DESC) WHERE operator_id IS NOT NULL;
