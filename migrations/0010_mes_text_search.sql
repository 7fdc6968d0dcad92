-- Text search over mes.orders (read_models/mes.py) tests the next 10,000 orders in the page's order and,
-- when fewer than a page of them match, reads the matches from the trigram index and sorts them. That walk
-- read each order from the table to test its text: with the text in the sort index (INCLUDE), it tests it
-- in the index and reads only the page's orders. At a million orders (bench/search.py), a name fragment
-- found in 1% of the orders: 7.5 -> 0.9 ms; a word in none: 2 ms before the trigram index answers.
-- depends: 0009_mes_overdue_stuck_indexes

DROP INDEX mes.mes_orders_approved;
CREATE INDEX mes_orders_approved ON mes.orders (approved_at DESC, order_id DESC) INCLUDE (search);
