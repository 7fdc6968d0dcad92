-- The status board (/mes/stats) at a million orders (bench/search.py). Orders per status are kept by the MES
-- projector in the same transaction as the rows (projectors/mes.py), instead of being counted over the
-- whole table on every request. The waits and the hourly series read only MANUFACTURING_APPROVED stays:
-- a partial index with both times answers them from the index alone, and is a tenth of the size of the
-- index on every stay it replaces (which nothing else read), so a replay also builds it faster.
-- Apply it with the MES projector stopped (as every migration of its schema): it counts the rows once.
-- depends: 0006_roles

CREATE TABLE mes.status_counts (
    status text PRIMARY KEY,
    orders bigint NOT NULL
);
INSERT INTO mes.status_counts (status, orders) SELECT status, count(*) FROM mes.orders GROUP BY status;

DROP INDEX mes.mes_status_stays_left;
CREATE INDEX mes_status_stays_approved ON mes.status_stays (left_at, entered_at)
    WHERE status = 'MANUFACTURING_APPROVED';
