-- Quotes hold their terms (issue 16): the operators' table shows until when an order's quote holds, so a
-- seller sees which quotes to approve (or re-price) first. The quote itself, in both views' JSON, carries
-- valid_until, the catalog version and the metal price per gram it used.
-- Rows of quotes recorded before they had terms hold for 24 h after they were recorded, as the order
-- decides (orders_core/values.py QUOTE_VALIDITY); a replay folds the same.
-- depends: 0013_webhooks

ALTER TABLE mes.orders ADD COLUMN quote_valid_until timestamptz;

UPDATE mes.orders
   SET quote_valid_until = coalesce(
           (quote->>'valid_until')::timestamptz,
           (status_times->>'PRICE_CALCULATED')::timestamptz + interval '24 hours')
 WHERE quote IS NOT NULL;
