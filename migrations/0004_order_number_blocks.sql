-- Each process reserves order numbers 50 at a time with one nextval, instead of one round trip per order
-- (OrdersApplication._number_block reads the step from the sequence). Unused numbers of a block are lost
-- when the process stops: gaps are fine, a number is still only ever used once.
ALTER SEQUENCE crm.order_numbers INCREMENT BY 50;
