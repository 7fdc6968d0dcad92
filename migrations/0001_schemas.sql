-- One schema per owner (docs/architecture.md, "Storage"). The event store's tables in crm are created by the
-- eventsourcing library itself after this migration; read-model tables come in later migrations.
CREATE SCHEMA IF NOT EXISTS crm;
CREATE SCHEMA IF NOT EXISTS shop;
CREATE SCHEMA IF NOT EXISTS mes;

-- Short human order numbers (A-100001, ...). Gaps are fine: a number is only ever used once.
CREATE SEQUENCE IF NOT EXISTS crm.order_numbers START WITH 100001;
