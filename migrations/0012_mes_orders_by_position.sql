-- The MES change feed on a hot standby (read_models/stream.py), where LISTEN is not allowed, follows the
-- view by position: the orders changed since the position it last saw. Replays copy this index too.
-- depends: 0011_parked_and_runner_health

CREATE INDEX mes_orders_position ON mes.orders (position);
