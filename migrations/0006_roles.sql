-- A database role per part, each with the least it needs (docs/architecture.md, "Storage"): the read API cannot write,
-- nothing that serves the shop can read crm, pricing reads model blobs and nothing else. Roles are NOLOGIN:
-- a part either sets its role on a session of the shared DSN (libpq `options=-c role=...`,
-- backbone/database.py) or logs in with a DSN of its own as a user that is a member of the role.
--
--   role                used by                              may
--   backbone_crm        command API, results consumer        crm: read, append (+ numbers); blobs: add
--   backbone_read       read API and console                 mes, shop: read
--   backbone_projector  projectors mes and shop              crm: read; mes, shop: read and write
--   backbone_relay      relay                                crm: read; relay: read and write
--   backbone_pricing    pricing workers (BLOB_STORE=postgres) blobs.models: read
--
-- The grants themselves are in backbone.grant_privileges() below, which `backbone migrate` calls after every
-- run (backbone/migrate.py): the event store's tables in crm are created by the eventsourcing library after
-- the SQL migrations, so they can only be granted on then. Migrations that add tables extend it.
-- depends: 0003_relay_and_blobs 0004_order_number_blocks 0005_mes_combined_indexes

-- Roles belong to the server, not to one database: another database on it (tests make many) may have
-- created them already, possibly at this very moment.
DO $roles$
DECLARE
    part text;
BEGIN
    FOREACH part IN ARRAY ARRAY['backbone_crm', 'backbone_read', 'backbone_projector', 'backbone_relay',
                                'backbone_pricing'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = part) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', part);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
        -- A migrating user that is not a superuser may only set a role it is a member of.
        IF NOT pg_has_role(current_user, part, 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', part, current_user);
        END IF;
    END LOOP;
END
$roles$;

-- The owner's helpers; no part has any business here.
CREATE SCHEMA IF NOT EXISTS backbone;
REVOKE ALL ON SCHEMA backbone FROM PUBLIC;

CREATE OR REPLACE FUNCTION backbone.grant_privileges() RETURNS void LANGUAGE plpgsql AS $grants$
BEGIN
    -- crm, the event store. Appending takes LOCK TABLE ... IN EXCLUSIVE MODE (orders_core/event_store.py),
    -- which PostgreSQL allows only with UPDATE, DELETE or TRUNCATE on the table: UPDATE is the least of
    -- them (events are never updated). nextval on the order numbers and the notification ids needs USAGE.
    GRANT USAGE ON SCHEMA crm TO backbone_crm, backbone_projector, backbone_relay;
    GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA crm TO backbone_crm;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO backbone_crm;
    -- Functions are executable by everyone unless revoked; in crm only the appending part may call them.
    REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA crm FROM PUBLIC;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA crm TO backbone_crm;
    GRANT SELECT ON ALL TABLES IN SCHEMA crm TO backbone_projector, backbone_relay;

    -- The read models: the read API reads them, their projector writes view and tracking together.
    -- Default privileges cover tables a later migration adds; a replay copies grants onto the tables it
    -- swaps in (projectors/replay.py).
    GRANT USAGE ON SCHEMA mes, shop TO backbone_read, backbone_projector;
    GRANT SELECT ON ALL TABLES IN SCHEMA mes, shop TO backbone_read;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA mes, shop TO backbone_projector;
    ALTER DEFAULT PRIVILEGES IN SCHEMA mes, shop GRANT SELECT ON TABLES TO backbone_read;
    ALTER DEFAULT PRIVILEGES IN SCHEMA mes, shop
        GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO backbone_projector;

    -- The relay's tracking position (an upsert: SELECT, INSERT, UPDATE).
    GRANT USAGE ON SCHEMA relay TO backbone_relay;
    GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA relay TO backbone_relay;
    ALTER DEFAULT PRIVILEGES IN SCHEMA relay GRANT SELECT, INSERT, UPDATE ON TABLES TO backbone_relay;

    -- Connecting, for login users that hold a role (DATABASE_URL_<PART>), and the projector's staging tables
    -- (projectors/tables.py): PUBLIC has both by default, but a hardened server may have revoked them. Only
    -- the database's owner may grant them; a migrating user that is not gets a warning, not a failure.
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO backbone_crm, backbone_read, backbone_projector, '
                       'backbone_relay, backbone_pricing', current_database());
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO backbone_projector', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'CONNECT and TEMPORARY on database % are for its owner to grant to the roles',
            current_database();
    END;

    -- Model files (BLOB_STORE=postgres): the command API stores uploads, pricing workers read them. The
    -- upload's ON CONFLICT (sha256) needs to see that column, and only that one.
    GRANT USAGE ON SCHEMA blobs TO backbone_crm, backbone_pricing;
    GRANT SELECT (sha256), INSERT ON blobs.models TO backbone_crm;
    GRANT SELECT ON blobs.models TO backbone_pricing;
END
$grants$;
REVOKE EXECUTE ON FUNCTION backbone.grant_privileges() FROM PUBLIC;
